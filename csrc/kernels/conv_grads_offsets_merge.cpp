// conv_grads_offsets_merge: both gradients of a strided convolution whose input gradient is
// merged from its stride phases into NCHW (spmm_offsets_merge on the transposed index) and
// whose values gradient is sddmm_offsets: where both pack the same NCHW dy, each image of dy
// packed once for both; else the two kernels one after the other.
#include "kernels/kernels.h"
#include "kernels/offsets_image.h"
#include "kernels/sddmm_offsets_images.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

namespace {

template <class T>
void conv_grads_offsets_merge_impl(const ConvGradsMergeArgs<T>& a) {
  const SpmmOffsetsMergeArgs<T>& dx = a.dx;
  const SddmmOffsetsArgs<T>& dv = a.dv;
  const OffsetsProduct<T>& p = dx.product;
  const bool shared = dx.pack.grid != nullptr && dv.pack_a != nullptr && p.b == dv.a &&
                      p.b_image_stride == dv.a_image_stride && p.images == dv.images &&
                      *dx.pack.grid == *dv.pack_a;
  if (!shared || p.rows <= 0 || p.spans.len <= 0 || dv.rows <= 0 || dv.spans.len <= 0 ||
      dv.images <= 0) {  // nothing to share
    spmm_offsets_merge(dx);
    sddmm_offsets(dv);
    return;
  }
  const float* values = index_values(p);
  const int64_t nnz = p.ptr[p.rows] - p.ptr[0];
  // Sized for the team packed_by_image starts (dv's), so no two threads share a buffer.
  ThreadScratch planes(dv.nthreads, merge_planes_size(*dx.out.layout));
  packed_by_image(dv, (nnz + p.rows) * p.spans.len, dx.pack.finite,
                  [&](int64_t n, const float* packed) {
                    spmm_offsets_merge_image(dx, values, n, packed, planes.mine());
                  });
}

}  // namespace

template <class T>
void conv_grads_offsets_merge(const ConvGradsMergeArgs<T>& a) {
  conv_grads_offsets_merge_impl(a);
}

template void conv_grads_offsets_merge<f32>(const ConvGradsMergeArgs<f32>&);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
