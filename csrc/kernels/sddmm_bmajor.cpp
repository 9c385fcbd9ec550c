// sddmm_bmajor: out[j] = <A[r, :], B[idx[j], :]> for each nonzero j of row r.
// The gradient of the nonzero values of a linear layer: A = dYᵀ, B = Xᵀ (both batch-major).
// Threads own disjoint rows. See sddmm_tiles.h for the blocking.
#include <type_traits>

#include "kernels/bf16_dot_tiles.h"
#include "kernels/kernels.h"
#include "kernels/sddmm_tiles.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {

template <class T>
void sddmm_bmajor_impl(const SddmmArgs<T>& a) {
  const int64_t base = a.rows > 0 ? a.ptr[0] : 0;
  if (a.nb == 0) {  // empty batch: every gradient is an empty sum
    for (int64_t j = base; a.rows > 0 && j < a.ptr[a.rows]; ++j) a.out[j] = 0.0f;
    return;
  }
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
              sddmm_dot_span(a.ptr[r], a.ptr[r + 1], src, a.a + r * a.lda, c0, c1, a.out, c0 != 0);
              continue;
            }
#endif
            sddmm_span(a.ptr[r], a.ptr[r + 1], src, a.a + r * a.lda, c0, c1, a.out, c0 != 0);
          }
        }
      });
}

}  // namespace

template <class T>
void sddmm_bmajor(const SddmmArgs<T>& a) {
  sddmm_bmajor_impl(a);
}
#if !defined(ST_ISA_avx512_bf16)  // (it has only the bf16 forms)
template void sddmm_bmajor<f32>(const SddmmArgs<f32>&);
#endif
template void sddmm_bmajor<bf16>(const SddmmArgs<bf16>&);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
