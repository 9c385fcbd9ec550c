// f32_spmm_csr_bmajor: C = A · B with A sparse (CSR) and B, C batch-major.
// Used for the forward pass (A = W, B = Xᵀ) and the input gradient (A = Wᵀ as CSC, B = dYᵀ).
//
// Register blocking: a tile of NT batch vectors of one output row stays in registers while
// all nonzeros of the row stream by (one broadcast, NT fused multiply-adds per nonzero).
// For narrow tiles the nonzeros are split over U interleaved accumulator sets so enough
// independent FMAs are in flight. Threads own disjoint rows, balanced by nonzero count.
#include "kernels/kernels.h"
#include "kernels/tiling.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {

template <int NT, int U>
inline void spmm_tile(int64_t begin, int64_t end, const int32_t* idx, const float* val,
                      const float* b, int64_t ldb, float* c) {
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
      const float* brow = b + static_cast<int64_t>(idx[j + u]) * ldb;
      const Vec w = Vec::bcast(val[j + u]);
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) acc[u][t] = fma(w, Vec::load(brow + t * W), acc[u][t]);
    }
  }
  for (; j < end; ++j) {
    const float* brow = b + static_cast<int64_t>(idx[j]) * ldb;
    const Vec w = Vec::bcast(val[j]);
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) acc[0][t] = fma(w, Vec::load(brow + t * W), acc[0][t]);
  }
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) {
    Vec s = acc[0][t];
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) s = add(s, acc[u][t]);
    Vec::store(c + t * W, s);
  }
}

template <int NT>
constexpr int unroll_for() {
  constexpr int u = kAccTarget / NT;
  return u < 1 ? 1 : (u > 4 ? 4 : u);
}

}  // namespace

void f32_spmm_csr_bmajor(const SpmmArgs& a) {
  constexpr int W = Vec::W;
  const float* values = a.val;
  if (a.pos != nullptr && a.rows > 0) {
    const int64_t nnz = a.ptr[a.rows] - a.ptr[0];
    parallel_uniform(a.nthreads, nnz, 4, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) a.scratch[a.pos[j]] = a.val[j];
    });
    values = a.scratch;
  }
  const int64_t base = a.rows > 0 ? a.ptr[0] : 0;
  parallel_balanced(
      a.nthreads, a.rows, a.nb, [&](int64_t r) { return a.ptr[r] - base + r; },
      [&](int64_t r0, int64_t r1) {
        const int64_t chunk = batch_chunk(a.b_rows);
        for (int64_t c0 = 0; c0 < a.nb; c0 += chunk) {
          const int64_t c1 = c0 + chunk < a.nb ? c0 + chunk : a.nb;
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t begin = a.ptr[r], end = a.ptr[r + 1];
            for (int64_t t0 = c0; t0 < c1; t0 += int64_t{kTileMax} * W) {
              const int64_t left = (c1 - t0) / W;
              const int nt = left < kTileMax ? static_cast<int>(left) : kTileMax;
              with_tile(nt, [&](auto NT) {
                spmm_tile<NT(), unroll_for<NT()>()>(begin, end, a.idx, values, a.b + t0, a.ldb,
                                                   a.c + r * a.ldc + t0);
              });
            }
          }
        }
      });
}


}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
