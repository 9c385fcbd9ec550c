// Register-blocked building blocks of a convolution's two gradients from one load of each
// output-gradient window: along one row r of the transposed index (an input channel),
//   c[t]      = sum_j val[j] * B[off[j] + t]           (the input gradient, as spmm_tile)
//   dvt[j]   += sum_t x[t] * B[off[j] + t]             (the values gradient of nonzero j)
// where x is the packed input plane of that channel at the same positions. Each vector of B
// feeds two multiply-adds instead of being loaded once by each gradient's kernel: the
// gradients stream half the windows from L2 that the two kernels do.
#pragma once

#include <cstdint>

#include "kernels/tiling.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// Vectors per tile and nonzeros per group: tile x, tile accumulators, a group's value
// broadcasts and sums must all stay in registers (8 + 8 + 4 + 4 + 1 of 32 zmm; AVX2's 16
// ymm hold 4 + 4 + 2 + 2 + 1).
constexpr int kGradsTile = Vec::kRegs >= 24 ? 8 : 4;
constexpr int kGradsGroup = Vec::kRegs >= 24 ? 4 : 2;

// dvt[g] += the lanes of d[g] summed, g < G (up to four sums from one reduction).
template <int G>
inline void grads_add_sums(const Vec* d, float* dvt) {
  static_assert(G >= 1 && G <= 4, "reduce4 sums four vectors");
  Vec v[4] = {Vec::zero(), Vec::zero(), Vec::zero(), Vec::zero()};
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g) v[g] = d[g];
  float s[4];
  reduce4(v[0], v[1], v[2], v[3], s);
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g) dvt[g] += s[g];
}

template <int NT, class Src>
inline void grads_tile(int64_t begin, int64_t end, const Src& src, const float* val, const float* x,
                       int64_t t0, float* c, float* dvt) {
  constexpr int W = Vec::W;
  constexpr int G = kGradsGroup;
  Vec xt[NT], acc[NT];
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) {
    xt[t] = Vec::load(x + t0 + t * W);
    acc[t] = Vec::zero();
  }
  int64_t j = begin;
  for (; j + G <= end; j += G) {
    const float* brow[G];
    Vec w[G], d[G];
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      brow[g] = src(j + g) + t0;
      w[g] = Vec::bcast(val[j + g]);
      d[g] = Vec::zero();
    }
    // Each accumulator of the input gradient takes the nonzeros in index order.
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t)
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const Vec b = in_register(Vec::load(brow[g] + t * W));  // one load, two uses
        acc[t] = fma(w[g], b, acc[t]);
        d[g] = fma(xt[t], b, d[g]);
      }
    grads_add_sums<G>(d, dvt + j);
  }
  for (; j < end; ++j) {
    const float* brow = src(j) + t0;
    const Vec w = Vec::bcast(val[j]);
    Vec d = Vec::zero();
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      const Vec b = in_register(Vec::load(brow + t * W));
      acc[t] = fma(w, b, acc[t]);
      d = fma(xt[t], b, d);
    }
    grads_add_sums<1>(&d, dvt + j);
  }
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) Vec::store(c + t0 + t * W, acc[t]);
}

// One partial vector of n < W elements at t0: masked loads on every side, so nothing past
// the end (even NaN) enters either sum.
template <class Src>
inline void grads_tail(int64_t begin, int64_t end, const Src& src, const float* val, const float* x,
                       int64_t t0, int n, float* c, float* dvt) {
  const Vec xt = Vec::load_n(x + t0, n);
  Vec acc = Vec::zero();
  for (int64_t j = begin; j < end; ++j) {
    const Vec b = Vec::load_n(src(j) + t0, n);
    acc = fma(Vec::bcast(val[j]), b, acc);
    const Vec d = fma(xt, b, Vec::zero());
    grads_add_sums<1>(&d, dvt + j);
  }
  Vec::store_n(c + t0, acc, n);
}

// c[t0:t1] of one row and its nonzeros' sums over [t0, t1) added into dvt.
template <class Src>
inline void grads_span(int64_t begin, int64_t end, const Src& src, const float* val, const float* x,
                       int64_t t0, int64_t t1, float* c, float* dvt) {
  for_each_tile<kGradsTile>(
      t0, t1, [&](int64_t t, auto NT) { grads_tile<NT()>(begin, end, src, val, x, t, c, dvt); },
      [&](int64_t t, int n) { grads_tail(begin, end, src, val, x, t, n, c, dvt); });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
