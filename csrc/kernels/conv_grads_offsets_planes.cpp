// conv_grads_offsets_planes: both gradients of a convolution whose input gradient is written
// into NCHW planes one image per vector (spmm_offsets_planes on the transposed index) and
// whose values gradient is sddmm_offsets: in the stride-1 one-pass form (conv_grads_form.h)
// every window of dy loaded once for both; else, where both pack the same NCHW dy, each image
// of dy packed once for both; else the two kernels one after the other.
#include "kernels/conv_grads_form.h"
#include "kernels/conv_grads_one_pass.h"
#include "kernels/kernels.h"
#include "kernels/offsets_image.h"
#include "kernels/sddmm_offsets_images.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

namespace {

template <class T>
void conv_grads_offsets_planes_impl(const ConvGradsPlanesArgs<T>& a) {
  const SpmmOffsetsPlanesArgs<T>& dx = a.dx;
  const SddmmOffsetsArgs<T>& dv = a.dv;
  const OffsetsProduct<T>& p = dx.product;
  const int64_t x_plane = conv_grads_one_pass_plane(a);
  const bool shared = dx.pack.grid != nullptr && dv.pack_a != nullptr && p.b == dv.a &&
                      p.b_image_stride == dv.a_image_stride && p.images == dv.images &&
                      *dx.pack.grid == *dv.pack_a;
  if (x_plane <= 0 && (!shared || p.rows <= 0 || p.spans.len <= 0 || dv.rows <= 0 ||
                       dv.spans.len <= 0 || dv.images <= 0)) {  // nothing to share
    spmm_offsets_planes(dx);
    sddmm_offsets(dv);
    return;
  }
  const float* values = index_values(p);
  if (x_plane > 0) {
    grads_one_pass(p, dx.out, 1, 0, dx.pack.finite, values, dv, x_plane);
    return;
  }
  const int64_t nnz = p.ptr[p.rows] - p.ptr[0];
  packed_by_image(
      dv, (nnz + p.rows) * p.spans.len, dx.pack.finite,
      [&](int64_t n, const float* packed) { spmm_offsets_planes_image(dx, values, n, packed); });
}

}  // namespace

template <class T>
void conv_grads_offsets_planes(const ConvGradsPlanesArgs<T>& a) {
  conv_grads_offsets_planes_impl(a);
}

template void conv_grads_offsets_planes<f32>(const ConvGradsPlanesArgs<f32>&);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
