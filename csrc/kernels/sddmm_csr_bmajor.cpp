// f32_sddmm_csr_bmajor: out[j] = <A[r, :], B[idx[j], :]> for each nonzero j of row r.
// This is the gradient of the nonzero values: A = dYᵀ, B = Xᵀ (both batch-major).
//
// A tile of the row of A stays in registers; G nonzeros at a time each get a chain of
// multiply-adds into their own accumulator (G chains hide FMA latency), then one combined
// horizontal reduction turns G vectors into G sums. Threads own disjoint rows.
#include "kernels/kernels.h"
#include "kernels/tiling.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {

// Nonzeros per group; a multiple of 4 (reduce4).
constexpr int kGroup = Vec::kRegs >= 24 ? 8 : 4;

template <int NT>
inline void sddmm_tile(int64_t begin, int64_t end, const int32_t* idx, const float* arow,
                       const float* b, int64_t ldb, float* out, bool accumulate) {
  constexpr int W = Vec::W;
  Vec x[NT];
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) x[t] = Vec::load(arow + t * W);
  int64_t j = begin;
  for (; j + kGroup <= end; j += kGroup) {
    Vec acc[kGroup];
    const float* brow[kGroup];
#pragma GCC unroll 8
    for (int g = 0; g < kGroup; ++g) {
      brow[g] = b + static_cast<int64_t>(idx[j + g]) * ldb;
      acc[g] = Vec::zero();
    }
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t)
#pragma GCC unroll 8
      for (int g = 0; g < kGroup; ++g) acc[g] = fma(x[t], Vec::load(brow[g] + t * W), acc[g]);
    float s[kGroup];
#pragma GCC unroll 2
    for (int g = 0; g < kGroup; g += 4) reduce4(acc[g], acc[g + 1], acc[g + 2], acc[g + 3], s + g);
#pragma GCC unroll 8
    for (int g = 0; g < kGroup; ++g) out[j + g] = accumulate ? out[j + g] + s[g] : s[g];
  }
  for (; j < end; j += 4) {
    // Tail of fewer than kGroup nonzeros, at most four at a time.
    Vec acc[4] = {Vec::zero(), Vec::zero(), Vec::zero(), Vec::zero()};
    const int n = end - j < 4 ? static_cast<int>(end - j) : 4;
    for (int g = 0; g < n; ++g) {
      const float* brow = b + static_cast<int64_t>(idx[j + g]) * ldb;
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) acc[g] = fma(x[t], Vec::load(brow + t * W), acc[g]);
    }
    float s[4];
    reduce4(acc[0], acc[1], acc[2], acc[3], s);
    for (int g = 0; g < n; ++g) out[j + g] = accumulate ? out[j + g] + s[g] : s[g];
  }
}

}  // namespace

void f32_sddmm_csr_bmajor(const SddmmArgs& a) {
  constexpr int W = Vec::W;
  const int64_t base = a.rows > 0 ? a.ptr[0] : 0;
  if (a.nb == 0) {  // empty batch: every gradient is an empty sum
    for (int64_t j = base; a.rows > 0 && j < a.ptr[a.rows]; ++j) a.out[j] = 0.0f;
    return;
  }
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
                sddmm_tile<NT()>(begin, end, a.idx, a.a + r * a.lda + t0, a.b + t0, a.ldb, a.out,
                                 t0 != 0);
              });
            }
          }
        }
      });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
