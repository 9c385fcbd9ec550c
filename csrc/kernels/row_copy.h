// Short row copies and block transposes, inlined: a memcpy/memset call per short row costs
// more than the copy.
// Float-typed on purpose (a memcpy is a char access that may alias anything, which made the
// compiler reload values after every copy).
#pragma once

#include <cstdint>

#include "kernels/vec.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

inline void copy_row(const float* s, float* d, int64_t k) {
  constexpr int64_t W = Vec::W;
  int64_t j = 0;
  for (; j + W <= k; j += W) Vec::store(d + j, Vec::load(s + j));
  if (j < k)
    Vec::store_n(d + j, Vec::load_n(s + j, static_cast<int>(k - j)), static_cast<int>(k - j));
}

inline void copy_row_add(const float* s, float* d, int64_t k, float b) {
  constexpr int64_t W = Vec::W;
  const Vec bv = Vec::bcast(b);
  int64_t j = 0;
  for (; j + W <= k; j += W) Vec::store(d + j, add(Vec::load(s + j), bv));
  if (j < k) {
    const int n = static_cast<int>(k - j);
    Vec::store_n(d + j, add(Vec::load_n(s + j, n), bv), n);
  }
}

inline void zero_row(float* d, int64_t k) {
  constexpr int64_t W = Vec::W;
  int64_t j = 0;
  for (; j + W <= k; j += W) Vec::store(d + j, Vec::zero());
  if (j < k) Vec::store_n(d + j, Vec::zero(), static_cast<int>(k - j));
}

// True iff every float of p[0:k] is finite: x * 0 is NaN exactly when x is NaN or ±Inf.
inline bool finite_row(const float* p, int64_t k) {
  constexpr int64_t W = Vec::W;
  const Vec z = Vec::zero();
  Vec a = z, b = z;
  int64_t j = 0;
  for (; j + 2 * W <= k; j += 2 * W) {
    a = fma(Vec::load(p + j), z, a);
    b = fma(Vec::load(p + j + W), z, b);
  }
  for (; j < k; j += W) a = fma(Vec::load_n(p + j, k - j < W ? static_cast<int>(k - j) : W), z, a);
  alignas(64) float lanes[W];
  Vec::store(lanes, add(a, b));
  bool finite = true;
  for (int64_t i = 0; i < W; ++i) finite = finite && lanes[i] == 0.0f;  // NaN compares unequal
  return finite;
}

// 16 x 16 transpose: dst[j * ldd + i] = src[i * lds + j], from W x W register transposes
// (the pixel x image blocks of the batch-innermost convolution layout).
inline void transpose16(const float* src, int64_t lds, float* dst, int64_t ldd) {
  constexpr int64_t W = Vec::W;
  for (int64_t i = 0; i < 16; i += W)
    for (int64_t j = 0; j < 16; j += W)
      transpose_block(src + i * lds + j, lds, dst + j * ldd + i, ldd, nullptr);
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
