// spmm_offsets_planes16: per group of 16 images, C[r, t] = sum_j val[j] * B[off[j] + t] on a
// batch-innermost B (every grid point 16 elements, one per image), each lane written straight
// into its image's NCHW planes through a 16 x 16 transpose. The batch layout's forward pass
// (bias and statistics added as written) and its stride-1 input gradient. Threads own
// disjoint (group, row) pairs balanced by nonzero count.
#include "kernels/image_rows_split.h"
#include "kernels/kernels.h"
#include "kernels/offsets_image.h"
#include "kernels/plane_scatter.h"
#include "kernels/spmm_tiles.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {

// Rows [r0, r1) of group n, with b = B_n, chunk by chunk into the planes of its images.
template <class T>
void planes16_group(const SpmmOffsetsPlanes16Args<T>& a, const float* values, int64_t n, int64_t r0,
                    int64_t r1, const float* b) {
  const OffsetsProduct<T>& p = a.product;
  double* const stats = a.stats ? a.stats + 2 * n * p.rows : nullptr;
  if (stats)
    for (int64_t r = r0; r < r1; ++r) stats[2 * r] = stats[2 * r + 1] = 0.0;
  rows_into_planes(p.spans, a.out, 16, a.batch, n, r0, r1, stats,
                   [&](int64_t r, int64_t c0, int64_t c1, float* buf) {
                     const auto src_chunk = [&](int64_t j) { return b + p.off[j] + c0; };
                     spmm_span(p.ptr[r], p.ptr[r + 1], src_chunk, values, 0, c1 - c0, buf);
                   });
}

template <class T>
void spmm_offsets_planes16_impl(const SpmmOffsetsPlanes16Args<T>& a) {
  const OffsetsProduct<T>& p = a.product;
  if (p.rows <= 0 || p.images <= 0) return;
  const float* values = index_values(p);
  split_image_rows(p.nthreads, p.ptr, p.rows, p.images, p.spans.len,
                   [&](int64_t n, int64_t r0, int64_t r1) {
                     planes16_group(a, values, n, r0, r1, p.b + n * p.b_image_stride);
                   });
}

}  // namespace

template <class T>
void spmm_offsets_planes16(const SpmmOffsetsPlanes16Args<T>& a) {
  spmm_offsets_planes16_impl(a);
}

template void spmm_offsets_planes16<f32>(const SpmmOffsetsPlanes16Args<f32>&);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
