// Run-time ISA selection: one binary for every x86-64 CPU.
#pragma once

#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace sparsetrain {

// avx512_bf16: avx512 plus AVX512-BF16 (vdpbf16ps) for the bf16 kernels that have a form for it.
enum class Isa { scalar = 0, avx2 = 1, avx512 = 2, avx512_bf16 = 3 };

namespace kernels {
// One ISA's kernels: a member name_T per row X(name, Args, T) of kernels/kernel_list.h.
struct KernelTable {
  Isa isa;
#define ST_TABLE_MEMBER(name, Args, T) void (*name##_##T)(const Args<T>&);
  SPARSETRAIN_KERNELS(ST_TABLE_MEMBER)
#undef ST_TABLE_MEMBER
};
}  // namespace kernels
using kernels::KernelTable;

const char* isa_name(Isa isa);
// Throws std::invalid_argument for an unknown name.
Isa isa_from_name(const std::string& name);
// Compiled into this build and supported by this CPU (and its OS), best last.
std::vector<Isa> supported_isas();
bool isa_supported(Isa isa);
// The best supported ISA, or the one named by SPARSETRAIN_ISA (std::runtime_error when
// that names an unknown or unsupported ISA).
Isa default_isa();

// The table in use; set_isa throws std::invalid_argument when the ISA is not supported.
const KernelTable& kernel_table();
const KernelTable& kernel_table(Isa isa);
void set_isa(Isa isa);
Isa current_isa();

}  // namespace sparsetrain
