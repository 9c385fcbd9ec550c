// conv_grads_offsets_planes16: both gradients of a convolution on the batch-innermost layout,
// the input gradient written into NCHW planes from 16-image lanes (spmm_offsets_planes16 on
// the transposed index) and the values gradient sddmm_offsets: in the stride-1 one-pass form
// (conv_grads_form.h) every window of dy loaded once for both; else the two kernels one after
// the other.
#include "kernels/conv_grads_form.h"
#include "kernels/conv_grads_one_pass.h"
#include "kernels/kernels.h"
#include "kernels/offsets_image.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

namespace {

template <class T>
void conv_grads_offsets_planes16_impl(const ConvGradsPlanes16Args<T>& a) {
  const SpmmOffsetsPlanes16Args<T>& dx = a.dx;
  const int64_t x_plane = conv_grads_one_pass_plane(a);
  if (x_plane <= 0) {
    spmm_offsets_planes16(dx);
    sddmm_offsets(a.dv);
    return;
  }
  grads_one_pass(dx.product, dx.out, 16, dx.batch, nullptr, index_values(dx.product), a.dv,
                 x_plane);
}

}  // namespace

template <class T>
void conv_grads_offsets_planes16(const ConvGradsPlanes16Args<T>& a) {
  conv_grads_offsets_planes16_impl(a);
}

template void conv_grads_offsets_planes16<f32>(const ConvGradsPlanes16Args<f32>&);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
