// spmmt_bmajor: C = Aᵀ · B with A sparse (CSR, rows x cols) and B, C batch-major.
// The input gradient dXᵀ = Wᵀ · dYᵀ, straight from W's CSR index and values.
//
// Threads own disjoint ranges of C's rows (= A's columns), balanced by the nonzeros per
// column, so there are no atomics and no barriers. Each thread walks every row r of A, keeps
// the tile of B[r, :] in registers and, for the nonzeros of r that fall in its column range
// (one binary search per row), accumulates w · B[r, :] into C[col, :]. Reading W in CSR order
// avoids gathering the values into CSC order every step: that gather is a random read per
// nonzero and cost as much as the product itself at small batch.
#include "kernels/kernels.h"
#include "kernels/tiling.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {

template <int NT>
inline void spmmt_tile(int64_t begin, int64_t end, const int32_t* idx, const float* val,
                       const float* brow, float* c, int64_t ldc) {
  constexpr int W = Vec::W;
  Vec x[NT];
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) x[t] = Vec::load(brow + t * W);
  for (int64_t j = begin; j < end; ++j) {
    float* crow = c + static_cast<int64_t>(idx[j]) * ldc;
    const Vec w = Vec::bcast(val[j]);
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) Vec::store(crow + t * W, fma(w, x[t], Vec::load(crow + t * W)));
  }
}

// First position in idx[begin, end) (sorted) holding a value >= key.
inline int64_t lower_bound_idx(const int32_t* idx, int64_t begin, int64_t end, int64_t key) {
  while (begin < end) {
    const int64_t mid = begin + (end - begin) / 2;
    if (idx[mid] < key)
      begin = mid + 1;
    else
      end = mid;
  }
  return begin;
}

template <class T>
void spmmt_bmajor_impl(const SpmmTArgs<T>& a) {
  constexpr int W = Vec::W;
  parallel_balanced(
      a.nthreads, a.cols, a.nb, [&](int64_t k) { return a.col_ptr[k] + k; },
      [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k) {
          float* crow = a.c + k * a.ldc;
          for (int64_t t = 0; t < a.nb; ++t) crow[t] = 0.0f;
        }
        const bool all_cols = k0 == 0 && k1 == a.cols;
        const int64_t chunk = batch_chunk((k1 - k0) * 2);
        for (int64_t c0 = 0; c0 < a.nb; c0 += chunk) {
          const int64_t c1 = c0 + chunk < a.nb ? c0 + chunk : a.nb;
          for (int64_t r = 0; r < a.rows; ++r) {
            int64_t begin = a.ptr[r], end = a.ptr[r + 1];
            if (begin == end) continue;
            if (!all_cols) {
              begin = lower_bound_idx(a.idx, begin, end, k0);
              end = lower_bound_idx(a.idx, begin, end, k1);
              if (begin == end) continue;
            }
            for (int64_t t0 = c0; t0 < c1; t0 += int64_t{kTileMax} * W) {
              const int64_t left = (c1 - t0) / W;
              const int nt = left < kTileMax ? static_cast<int>(left) : kTileMax;
              with_tile(nt, [&](auto NT) {
                spmmt_tile<NT()>(begin, end, a.idx, a.val, a.b + r * a.ldb + t0, a.c + t0, a.ldc);
              });
            }
          }
        }
      });
}

}  // namespace

template <class T>
void spmmt_bmajor(const SpmmTArgs<T>& a) {
  spmmt_bmajor_impl(a);
}

template void spmmt_bmajor<f32>(const SpmmTArgs<f32>&);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
