// Register-blocked building blocks of the sampled products out[j] = <A[r, :], src(j)>
// (the gradient of the nonzero values), along a contiguous dimension.
//
// A tile of the row of A stays in registers; G nonzeros at a time each get a chain of
// multiply-adds into their own accumulator (G chains hide FMA latency), then one combined
// horizontal reduction turns G vectors into G sums. A and B hold float or bf16 (vec.h widens
// them); the sums are float.
#pragma once

#include <cstdint>

#include "kernels/tiling.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// Nonzeros per group; a multiple of 4 (reduce4).
constexpr int kSddmmGroup = Vec::kRegs >= 24 ? 8 : 4;

inline void sddmm_store(float* out, const float* s, int n, bool accumulate) {
  for (int g = 0; g < n; ++g) out[g] = accumulate ? out[g] + s[g] : s[g];
}

template <int NT, class Src, class T>
inline void sddmm_tile(int64_t begin, int64_t end, const Src& src, const T* arow, int64_t t0,
                       float* out, bool accumulate) {
  constexpr int W = Vec::W;
  constexpr int G = kSddmmGroup;
  Vec x[NT];
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) x[t] = Vec::load(arow + t0 + t * W);
  int64_t j = begin;
  for (; j + G <= end; j += G) {
    Vec acc[G];
    decltype(src(j)) brow[G];
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
      brow[g] = src(j + g) + t0;
      acc[g] = Vec::zero();
    }
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t)
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) acc[g] = fma(x[t], Vec::load(brow[g] + t * W), acc[g]);
    float s[G];
#pragma GCC unroll 2
    for (int g = 0; g < G; g += 4) reduce4(acc[g], acc[g + 1], acc[g + 2], acc[g + 3], s + g);
    sddmm_store(out + j, s, G, accumulate);
  }
  for (; j < end; j += 4) {  // fewer than G left: up to four at a time
    Vec acc[4] = {Vec::zero(), Vec::zero(), Vec::zero(), Vec::zero()};
    const int n = end - j < 4 ? static_cast<int>(end - j) : 4;
    for (int g = 0; g < n; ++g) {
      const auto* brow = src(j + g) + t0;
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) acc[g] = fma(x[t], Vec::load(brow + t * W), acc[g]);
    }
    float s[4];
    reduce4(acc[0], acc[1], acc[2], acc[3], s);
    sddmm_store(out + j, s, n, accumulate);
  }
}

// One partial vector of n < W elements at t0: masked loads on both sides, so whatever lies
// past the end (even NaN) never enters a sum.
template <class Src, class T>
inline void sddmm_tail(int64_t begin, int64_t end, const Src& src, const T* arow, int64_t t0, int n,
                       float* out, bool accumulate) {
  const Vec x = Vec::load_n(arow + t0, n);
  for (int64_t j = begin; j < end; j += 4) {
    Vec acc[4] = {Vec::zero(), Vec::zero(), Vec::zero(), Vec::zero()};
    const int m = end - j < 4 ? static_cast<int>(end - j) : 4;
    for (int g = 0; g < m; ++g) acc[g] = fma(x, Vec::load_n(src(j + g) + t0, n), acc[g]);
    float s[4];
    reduce4(acc[0], acc[1], acc[2], acc[3], s);
    sddmm_store(out + j, s, m, accumulate);
  }
}

// Adds (or, if !accumulate, stores) the products over [t0, t1) of one row.
template <class Src, class T>
inline void sddmm_span(int64_t begin, int64_t end, const Src& src, const T* arow, int64_t t0,
                       int64_t t1, float* out, bool accumulate) {
  for_each_tile<kTileMax>(
      t0, t1,
      [&](int64_t t, auto NT) {
        sddmm_tile<NT()>(begin, end, src, arow, t, out, accumulate);
        accumulate = true;  // later tiles add to what the first stored
      },
      [&](int64_t t, int n) { sddmm_tail(begin, end, src, arow, t, n, out, accumulate); });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
