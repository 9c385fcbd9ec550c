// Register-blocked building blocks of every sparse x dense product (C = A · B, A sparse):
// one output row of A times gathered rows of B, along a contiguous dimension.
//
// A tile of NT vectors of the output row stays in registers while all nonzeros of the row
// stream by (one broadcast, NT fused multiply-adds each). For narrow tiles the nonzeros are
// split over U interleaved accumulator sets so enough independent FMAs are in flight.
// `src(j)` gives the start of the B row that nonzero j multiplies (an index times a
// leading dimension for linear layers, a precomputed element offset for convolutions).
// B and C hold float or bf16 (vec.h widens and narrows); the values are always float.
#pragma once

#include <cstdint>

#include "kernels/tiling.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// Scatters CSR-ordered values into the order of a transposed index (scratch[pos[j]] = val[j])
// and returns scratch. Defined in spmm_bmajor.cpp.
const float* scatter_values(const float* val, const int64_t* pos, int64_t nnz, float* scratch,
                            int nthreads);

template <int NT, int U, class Src, class T>
inline void spmm_tile(int64_t begin, int64_t end, const Src& src, const float* val, int64_t t0,
                      T* c) {
  constexpr int W = Vec::W;
  Vec acc[U][NT];
#pragma GCC unroll 16
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) acc[u][t] = Vec::zero();
  int64_t j = begin;
  for (; j + U <= end; j += U) {
#pragma GCC unroll 16
    for (int u = 0; u < U; ++u) {
      const auto* brow = src(j + u) + t0;
      const Vec w = Vec::bcast(val[j + u]);
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) acc[u][t] = fma(w, Vec::load(brow + t * W), acc[u][t]);
    }
  }
  for (; j < end; ++j) {
    const auto* brow = src(j) + t0;
    const Vec w = Vec::bcast(val[j]);
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) acc[0][t] = fma(w, Vec::load(brow + t * W), acc[0][t]);
  }
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) {
    Vec s = acc[0][t];
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) s = add(s, acc[u][t]);
    Vec::store(c + t0 + t * W, s);
  }
}

// One partial vector of n < W elements at t0 (masked loads and store).
template <class Src, class T>
inline void spmm_tail(int64_t begin, int64_t end, const Src& src, const float* val, int64_t t0,
                      int n, T* c) {
  Vec acc[4] = {Vec::zero(), Vec::zero(), Vec::zero(), Vec::zero()};
  int64_t j = begin;
  for (; j + 4 <= end; j += 4)
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u)
      acc[u] = fma(Vec::bcast(val[j + u]), Vec::load_n(src(j + u) + t0, n), acc[u]);
  for (; j < end; ++j) acc[0] = fma(Vec::bcast(val[j]), Vec::load_n(src(j) + t0, n), acc[0]);
  Vec::store_n(c + t0, add(add(acc[0], acc[1]), add(acc[2], acc[3])), n);
}

template <int NT>
constexpr int spmm_unroll() {
  constexpr int u = kAccTarget / NT;
  return u < 1 ? 1 : (u > 4 ? 4 : u);
}

// c[t0:t1] of one output row, in tiles of up to kTileMax vectors and a masked tail.
template <class Src, class T>
inline void spmm_span(int64_t begin, int64_t end, const Src& src, const float* val, int64_t t0,
                      int64_t t1, T* c) {
  for_each_tile<kTileMax>(
      t0, t1,
      [&](int64_t t, auto NT) { spmm_tile<NT(), spmm_unroll<NT()>()>(begin, end, src, val, t, c); },
      [&](int64_t t, int n) { spmm_tail(begin, end, src, val, t, n, c); });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
