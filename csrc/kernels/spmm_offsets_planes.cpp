// spmm_offsets_planes: per image, C[r, t] = sum_j val[j] * B[off[j] + t] written straight into
// NCHW planes (PlanesOut), one image per vector. A convolution's forward pass (bias and a
// batch norm's statistics added as the planes are written; B packed beforehand, or from NCHW
// x by the kernel image by image) and a stride-1 input gradient (the padded plane's interior
// is dx itself; B the output gradient, packed beforehand or by the kernel). Threads own
// disjoint (image, row) pairs balanced by nonzero count, or whole images when the kernel
// packs B itself.
#include "kernels/image_pack.h"
#include "kernels/image_rows_split.h"
#include "kernels/kernels.h"
#include "kernels/offsets_image.h"
#include "kernels/plane_scatter.h"
#include "kernels/spmm_tiles.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {

// Rows [r0, r1) of image n, with b = B_n, chunk by chunk into the planes.
template <class T>
void planes_image(const SpmmOffsetsPlanesArgs<T>& a, const float* values, int64_t n, int64_t r0,
                  int64_t r1, const float* b) {
  const OffsetsProduct<T>& p = a.product;
  double* const stats = a.stats ? a.stats + 2 * n * p.rows : nullptr;
  if (stats)
    for (int64_t r = r0; r < r1; ++r) stats[2 * r] = stats[2 * r + 1] = 0.0;
  rows_into_planes(p.spans, a.out, 1, 0, n, r0, r1, stats,
                   [&](int64_t r, int64_t c0, int64_t c1, float* buf) {
                     const auto src_chunk = [&](int64_t j) { return b + p.off[j] + c0; };
                     spmm_span(p.ptr[r], p.ptr[r + 1], src_chunk, values, 0, c1 - c0, buf);
                   });
}

}  // namespace

template <class T>
void spmm_offsets_planes_image(const SpmmOffsetsPlanesArgs<T>& a, const float* values, int64_t n,
                               const float* b) {
  planes_image(a, values, n, 0, a.product.rows, b);
}

namespace {

template <class T>
void spmm_offsets_planes_impl(const SpmmOffsetsPlanesArgs<T>& a) {
  const OffsetsProduct<T>& p = a.product;
  if (p.rows <= 0 || p.images <= 0) return;
  const float* values = index_values(p);
  if (packs(a.pack)) {
    const int64_t nnz = p.ptr[p.rows] - p.ptr[0];
    for_each_own_image(p, a.pack, (nnz + p.rows) * p.spans.len, [&](int64_t n, const float* b) {
      planes_image(a, values, n, 0, p.rows, b);
    });
    return;
  }
  split_image_rows(p.nthreads, p.ptr, p.rows, p.images, p.spans.len,
                   [&](int64_t n, int64_t r0, int64_t r1) {
                     planes_image(a, values, n, r0, r1, p.b + n * p.b_image_stride);
                   });
}

}  // namespace

template <class T>
void spmm_offsets_planes(const SpmmOffsetsPlanesArgs<T>& a) {
  spmm_offsets_planes_impl(a);
}

template void spmm_offsets_planes<f32>(const SpmmOffsetsPlanesArgs<f32>&);
template void spmm_offsets_planes_image<f32>(const SpmmOffsetsPlanesArgs<f32>&, const float*,
                                             int64_t, const float*);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
