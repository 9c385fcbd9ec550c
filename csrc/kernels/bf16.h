// The bfloat16 storage type of the kernels (kernel_list.h's `bf16` rows) and its scalar
// conversions. A bf16 is the high half of a float32: widening is exact, narrowing rounds to
// nearest even, and a NaN narrows to the quiet NaN 0x7FC0, all as PyTorch's c10::BFloat16.
// Kernels compute in float: they widen every bf16 they load and narrow what they store.
#pragma once

#include <cstdint>
#include <cstring>

namespace sparsetrain {
namespace kernels {

struct bf16 {
  uint16_t bits;
};
static_assert(sizeof(bf16) == 2, "bf16 is stored as its 16 bits");

inline float widen(float x) { return x; }
inline float widen(bf16 x) {
  const uint32_t u = static_cast<uint32_t>(x.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// float -> T: the identity for float, rounding to nearest even for bf16.
template <class T>
inline T narrow(float f);
template <>
inline float narrow<float>(float f) {
  return f;
}
template <>
inline bf16 narrow<bf16>(float f) {
  return bf16{bf16_bits(f)};
}

}  // namespace kernels
}  // namespace sparsetrain
