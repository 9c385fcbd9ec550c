// f32_conv_grads_offsets: both gradients of a convolution in one call, the results of
// f32_spmm_csr_offsets(dx) then f32_sddmm_csr_offsets(dv) (see kernels.h): dy packed once per
// image for both, or, in the stride-1 plane form (conv_grads_form.h), every window of dy
// loaded once for both.
#include "kernels/conv_grads_form.h"
#include "kernels/kernels.h"
#include "kernels/offsets_image.h"
#include "kernels/sddmm_offsets_images.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {

// Both gradients in one pass (conv_grads_one_pass_plane), the values gradient summed in the
// transposed index's order and gathered into out (out[j] = entry pos[j]). The kernel packing
// x and dy: threads own the fixed image slices of for_each_packed_image, each summing its
// own copy. Packed beforehand: threads own (image, row) pairs, balanced by nonzeros (all of
// them busy even for one image group), each image summing into its own copy. Either way the
// copies are added in a fixed order: the same result for any thread count.
void grads_one_pass(const SpmmOffsetsArgs& dx, const float* values, const SddmmOffsetsArgs& dv,
                    int64_t x_plane) {
  const int64_t nnz = dv.ptr[dv.rows], rows = dx.rows;
  const bool packs = dv.pack != nullptr;
  const int64_t copies = packs ? image_slices(dv) : dv.images;
  ZeroedFloats sums(copies * nnz);
  if (packs) {
    for_each_packed_image(dv, copies, 2 * (nnz + rows) * dx.len, dx.finite,
                          [&](int64_t p, int64_t n, bool, const float* packed, const float*,
                              const float* x) {
      grads_offsets_image(dx, values, n, 0, rows, packed, x, x_plane, sums.data() + p * nnz);
    });
  } else {
    const int64_t per_image = nnz + rows;
    parallel_balanced(
        dx.nthreads, rows * dv.images, 2 * dx.len,
        [&](int64_t i) {
          const int64_t n = i / rows, r = i - n * rows;
          return n * per_image + dx.ptr[r] + r;
        },
        [&](int64_t i0, int64_t i1) {
          for (int64_t n = i0 / rows; n * rows < i1; ++n) {
            const int64_t r0 = i0 > n * rows ? i0 - n * rows : 0;
            const int64_t r1 = i1 < (n + 1) * rows ? i1 - n * rows : rows;
            grads_offsets_image(dx, values, n, r0, r1, dx.b + n * dx.b_image_stride,
                                dv.b + n * dv.b_image_stride, x_plane, sums.data() + n * nnz);
          }
        });
  }
  for (int64_t j = 0; j < nnz; ++j) {
    const int64_t k = dx.pos[j];
    float s = sums[k];
    for (int64_t p = 1; p < copies; ++p) s += sums[p * nnz + k];
    dv.out[j] = s;
  }
}

}  // namespace

void f32_conv_grads_offsets(const SpmmOffsetsArgs& dx, const SddmmOffsetsArgs& dv) {
  const int64_t x_plane = conv_grads_one_pass_plane(dx, dv);
  const bool shared = dx.pack_grid != nullptr && dv.pack_grid != nullptr && dx.b == dv.a &&
                      dx.b_image_stride == dv.a_image_stride && dx.images == dv.images &&
                      *dx.pack_grid == *dv.pack_grid;
  if (x_plane <= 0 && (!shared || dx.rows <= 0 || dx.len <= 0 || dv.rows <= 0 || dv.len <= 0 ||
                       dv.images <= 0)) {  // nothing to share: one after the other
    f32_spmm_csr_offsets(dx);
    f32_sddmm_csr_offsets(dv);
    return;
  }
  const int64_t nnz = dx.ptr[dx.rows] - dx.ptr[0];
  const float* values = dx.val;
  if (dx.pos != nullptr) values = scatter_values(dx.val, dx.pos, nnz, dx.scratch, dx.nthreads);
  if (x_plane > 0) {
    grads_one_pass(dx, values, dv, x_plane);
    return;
  }
  // Sized for the team packed_by_image starts (dv's), so no two threads share a buffer.
  ThreadScratch planes(dx.merge ? dv.nthreads : 0, merge_planes_size(dx));
  packed_by_image(dv, (nnz + dx.rows) * dx.len, dx.finite, [&](int64_t n, const float* packed) {
    spmm_offsets_image(dx, values, n, packed, planes.mine());
  });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
