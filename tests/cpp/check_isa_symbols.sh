#!/usr/bin/env bash
# check_isa_symbols.sh NM LIST: every weak or unique-global symbol (nm types W, V, u) that a
# per-ISA kernel object defines must lie inside that ISA's namespace
# (sparsetrain::kernels::<isa>::). The linker keeps one copy of each such symbol for the
# whole library, so an inline or template function outside the namespace (a std container's
# code, say) compiled with AVX-512 flags could be the copy the scalar path runs.
# LIST holds one "<isa> <object file>" line per object (CMake writes it).
set -euo pipefail
nm_tool=$1
list=$2

demangle() { if command -v c++filt >/dev/null; then c++filt "$1"; else echo "$1"; fi; }

declare -A objects_of=()
bad=0
while read -r isa obj; do
  [ -n "$isa" ] || continue
  objects_of[$isa]=$(( ${objects_of[$isa]:-0} + 1 ))
  # Mangled: _Z, an optional special prefix (vtable, typeinfo, guard variable, ...), an
  # optional Z (an entity local to a function), N and qualifiers, then the namespaces.
  own="^_Z(T[VITSHW]|GV|GR)?Z?N[rVKRO]*11sparsetrain7kernels${#isa}${isa}"
  symbols=$("$nm_tool" -P --defined-only "$obj")  # a failing nm ends the script (set -e)
  while read -r name type _; do
    case $type in W | V | u) ;; *) continue ;; esac
    [[ $name =~ $own ]] && continue
    # The exception-handling personality pointer: data, the same in every object.
    [ "$name" = DW.ref.__gxx_personality_v0 ] && continue
    echo "$(basename "$obj") ($isa): $(demangle "$name") is not in namespace sparsetrain::kernels::$isa::"
    bad=1
  done <<< "$symbols"
done < "$list"

if [ ${#objects_of[@]} -eq 0 ]; then
  echo "no per-ISA objects listed in $list"
  exit 1
fi
for isa in "${!objects_of[@]}"; do echo "$isa: ${objects_of[$isa]} objects checked"; done
exit $bad
