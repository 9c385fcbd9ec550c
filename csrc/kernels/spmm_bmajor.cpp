// spmm_bmajor: C = A · B with A sparse (CSR) and B, C batch-major.
// Used for the forward pass (A = W, B = Xᵀ) and the input gradient (A = Wᵀ as CSC, B = dYᵀ).
// Threads own disjoint rows, balanced by nonzero count. See spmm_tiles.h for the blocking.
#include <type_traits>

#include "kernels/bf16_dot_tiles.h"
#include "kernels/kernels.h"
#include "kernels/spmm_tiles.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// Scatters CSR-ordered values into the order of a transposed index (scratch[pos[j]] = val[j]).
// Random writes: about twice as fast here as the equivalent random-read gather.
const float* scatter_values(const float* val, const int64_t* pos, int64_t nnz, float* scratch,
                            int nthreads) {
  parallel_uniform(nthreads, nnz, 4, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) scratch[pos[j]] = val[j];
  });
  return scratch;
}

namespace {

template <class T>
void spmm_bmajor_impl(const SpmmArgs<T>& a) {
  const float* values = a.val;
  if (a.pos != nullptr && a.rows > 0)
    values = scatter_values(a.val, a.pos, a.ptr[a.rows] - a.ptr[0], a.scratch, a.nthreads);
  const int64_t base = a.rows > 0 ? a.ptr[0] : 0;
  const auto src = [&](int64_t j) { return a.b + static_cast<int64_t>(a.idx[j]) * a.ldb; };
  parallel_balanced(
      a.nthreads, a.rows, a.nb, [&](int64_t r) { return a.ptr[r] - base + r; },
      [&](int64_t r0, int64_t r1) {
        const int64_t chunk = batch_chunk(a.b_rows, sizeof(T));
        for (int64_t c0 = 0; c0 < a.nb; c0 += chunk) {
          const int64_t c1 = c0 + chunk < a.nb ? c0 + chunk : a.nb;
          for (int64_t r = r0; r < r1; ++r) {
#if defined(ST_ISA_avx512_bf16)
            if constexpr (std::is_same_v<T, bf16>) {
              spmm_dot_span(a.ptr[r], a.ptr[r + 1], src, values, c0, c1, a.c + r * a.ldc);
              continue;
            }
#endif
            spmm_span(a.ptr[r], a.ptr[r + 1], src, values, c0, c1, a.c + r * a.ldc);
          }
        }
      });
}

}  // namespace

template <class T>
void spmm_bmajor(const SpmmArgs<T>& a) {
  spmm_bmajor_impl(a);
}

#if !defined(ST_ISA_avx512_bf16)  // (it has only the bf16 forms)
template void spmm_bmajor<f32>(const SpmmArgs<f32>&);
#endif
template void spmm_bmajor<bf16>(const SpmmArgs<bf16>&);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
