// f32_sddmm_csr_offsets: out[j] = sum over images n and t < len of A_n[r, t] * B_n[off[j] + t].
// The gradient of a convolution's nonzero weights: A = output gradient on the grid, B = the
// packed input, summed over the batch. Threads own disjoint rows (output channels).
#include "kernels/kernels.h"
#include "kernels/sddmm_tiles.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
void f32_sddmm_csr_offsets(const SddmmOffsetsArgs& a) {
  if (a.rows <= 0) return;
  const int64_t base = a.ptr[0];
  if (a.len <= 0 || a.images <= 0) {  // empty sums
    for (int64_t j = base; j < a.ptr[a.rows]; ++j) a.out[j] = 0.0f;
    return;
  }
  parallel_balanced(
      a.nthreads, a.rows, a.len * a.images, [&](int64_t r) { return a.ptr[r] - base + r; },
      [&](int64_t r0, int64_t r1) {
        for (int64_t n = 0; n < a.images; ++n) {
          const float* b = a.b + n * a.b_image_stride;
          const float* an = a.a + n * a.a_image_stride;
          const auto src = [&](int64_t j) { return b + a.off[j]; };
          for_each_span(a.len, a.seg_len, a.seg_stride, [&](int64_t c0, int64_t c1) {
            for (int64_t r = r0; r < r1; ++r)
              sddmm_span(a.ptr[r], a.ptr[r + 1], src, an + r * a.lda, c0, c1, a.out,
                         n > 0 || c0 > 0);
          });
        }
      });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
