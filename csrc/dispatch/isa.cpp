#include "dispatch/isa.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace sparsetrain {
namespace {

constexpr Isa kAll[] = {Isa::scalar, Isa::avx2, Isa::avx512, Isa::avx512_bf16};  // best last

// Each ISA's table, filled member by member from kernels/kernel_list.h at compile time.
#define ST_TABLE_ENTRY(name, Args, T) t.name##_##T = &kernels::ST_TABLE_NS::name<kernels::T>;
#define ST_TABLE_NS scalar
constexpr KernelTable kScalar = [] {
  KernelTable t{};
  t.isa = Isa::scalar;
  SPARSETRAIN_KERNELS(ST_TABLE_ENTRY)
  return t;
}();
#undef ST_TABLE_NS
#if SPARSETRAIN_HAVE_AVX2
#define ST_TABLE_NS avx2
constexpr KernelTable kAvx2 = [] {
  KernelTable t{};
  t.isa = Isa::avx2;
  SPARSETRAIN_KERNELS(ST_TABLE_ENTRY)
  return t;
}();
#undef ST_TABLE_NS
#endif
#if SPARSETRAIN_HAVE_AVX512
#define ST_TABLE_NS avx512
constexpr KernelTable kAvx512 = [] {
  KernelTable t{};
  t.isa = Isa::avx512;
  SPARSETRAIN_KERNELS(ST_TABLE_ENTRY)
  return t;
}();
#undef ST_TABLE_NS
#endif
#if SPARSETRAIN_HAVE_AVX512_BF16
// avx512's table with its own versions of the bf16 kernels listed for it.
#define ST_TABLE_NS avx512_bf16
constexpr KernelTable kAvx512Bf16 = [] {
  KernelTable t = kAvx512;
  t.isa = Isa::avx512_bf16;
  SPARSETRAIN_BF16_DOT_KERNELS(ST_TABLE_ENTRY)
  return t;
}();
#undef ST_TABLE_NS
#endif
#undef ST_TABLE_ENTRY

bool cpu_has(Isa isa) {
#if defined(__x86_64__) || defined(_M_X64)
  // libgcc's checks include the OS side (XCR0 state for ymm/zmm), not just CPUID bits.
  __builtin_cpu_init();
  switch (isa) {
    case Isa::scalar:
      return true;
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512_bf16:
      return cpu_has(Isa::avx512) && __builtin_cpu_supports("avx512bf16");
  }
  return false;
#else
  return isa == Isa::scalar;
#endif
}

const KernelTable* compiled_table(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return &kScalar;
#if SPARSETRAIN_HAVE_AVX2
    case Isa::avx2:
      return &kAvx2;
#endif
#if SPARSETRAIN_HAVE_AVX512
    case Isa::avx512:
      return &kAvx512;
#endif
#if SPARSETRAIN_HAVE_AVX512_BF16
    case Isa::avx512_bf16:
      return &kAvx512Bf16;
#endif
    default:
      return nullptr;
  }
}

std::atomic<const KernelTable*>& current() {
  static std::atomic<const KernelTable*> table{compiled_table(default_isa())};
  return table;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return "scalar";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    case Isa::avx512_bf16:
      return "avx512_bf16";
  }
  return "?";
}

Isa isa_from_name(const std::string& name) {
  for (Isa isa : kAll)
    if (name == isa_name(isa)) return isa;
  throw std::invalid_argument("unknown ISA '" + name +
                              "': expected one of scalar, avx2, avx512, avx512_bf16");
}

bool isa_supported(Isa isa) { return compiled_table(isa) != nullptr && cpu_has(isa); }

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : kAll)
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

Isa default_isa() {
  const char* env = std::getenv("SPARSETRAIN_ISA");
  if (env != nullptr && *env != '\0') {
    Isa isa;
    try {
      isa = isa_from_name(env);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(std::string("SPARSETRAIN_ISA: ") + e.what());
    }
    if (!isa_supported(isa))
      throw std::runtime_error(std::string("SPARSETRAIN_ISA=") + env +
                               " is not supported by this CPU or build");
    return isa;
  }
  return supported_isas().back();
}

const KernelTable& kernel_table() { return *current().load(std::memory_order_acquire); }

const KernelTable& kernel_table(Isa isa) {
  const KernelTable* t = isa_supported(isa) ? compiled_table(isa) : nullptr;
  if (t == nullptr)
    throw std::invalid_argument(std::string("ISA '") + isa_name(isa) +
                                "' is not supported by this CPU or build");
  return *t;
}

void set_isa(Isa isa) { current().store(&kernel_table(isa), std::memory_order_release); }

Isa current_isa() { return kernel_table().isa; }

}  // namespace sparsetrain
