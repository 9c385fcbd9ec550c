// sddmm_offsets: out[j] = sum over images n and t in spans of A_n[r, t] * B_n[off[j] + t].
// The gradient of a convolution's nonzero weights: A = output gradient on the grid, B = the
// packed input, summed over the batch. Threads own disjoint rows (output channels), or, when
// the kernel packs B or A itself image by image, disjoint images with partial sums of their own.
#include "kernels/kernels.h"
#include "kernels/sddmm_offsets_images.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

namespace {

template <class T>
void sddmm_offsets_impl(const SddmmOffsetsArgs<T>& a) {
  if (a.rows <= 0) return;
  const int64_t base = a.ptr[0];
  if (a.spans.len <= 0 || a.images <= 0) {  // empty sums
    for (int64_t j = base; j < a.ptr[a.rows]; ++j) a.out[j] = 0.0f;
    return;
  }
  if (a.pack_b != nullptr || a.pack_a != nullptr) {
    packed_by_image(a, 0, nullptr, [](int64_t, const float*) {});
    return;
  }
  parallel_balanced(
      a.nthreads, a.rows, a.spans.len * a.images, [&](int64_t r) { return a.ptr[r] - base + r; },
      [&](int64_t r0, int64_t r1) {
        for (int64_t n = 0; n < a.images; ++n)
          image_rows(a, a.a + n * a.a_image_stride, r0, r1, a.b + n * a.b_image_stride, a.out,
                     n > 0);
      });
}

}  // namespace

template <class T>
void sddmm_offsets(const SddmmOffsetsArgs<T>& a) {
  sddmm_offsets_impl(a);
}

template void sddmm_offsets<f32>(const SddmmOffsetsArgs<f32>&);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
