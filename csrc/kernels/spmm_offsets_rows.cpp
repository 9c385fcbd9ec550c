// spmm_offsets_rows: per image, C[r, t] = sum_j val[j] * B[off[j] + t] into rows of C.
// A 1x1 convolution on NCHW as it is, or an input gradient into phase planes (unpacked
// afterwards). Threads own disjoint (image, row) pairs balanced by nonzero count, or whole
// images when the kernel packs B itself.
#include "kernels/chunk_stats.h"
#include "kernels/image_pack.h"
#include "kernels/image_rows_split.h"
#include "kernels/kernels.h"
#include "kernels/offsets_image.h"
#include "kernels/spans.h"
#include "kernels/spmm_tiles.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {

// Rows [r0, r1) of image n, with b = B_n.
template <class T>
void rows_image(const SpmmOffsetsRowsArgs<T>& a, const float* values, int64_t n, int64_t r0,
                int64_t r1, const float* b) {
  const OffsetsProduct<T>& p = a.product;
  float* c = a.out.c + n * a.out.c_image_stride;
  const auto src = [&](int64_t j) { return b + p.off[j]; };
  double* const stats = a.stats ? a.stats + 2 * n * p.rows : nullptr;
  if (stats)
    for (int64_t r = r0; r < r1; ++r) stats[2 * r] = stats[2 * r + 1] = 0.0;
  for_each_span(p.spans, [&](int64_t t0, int64_t t1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* row = c + r * a.out.ldc;
      spmm_span(p.ptr[r], p.ptr[r + 1], src, values, t0, t1, row);
      if (stats) {
        ChunkStats cs;
        cs.add_run(row + t0, t1 - t0);
        cs.flush(stats + 2 * r);
      }
    }
  });
}

template <class T>
void spmm_offsets_rows_impl(const SpmmOffsetsRowsArgs<T>& a) {
  const OffsetsProduct<T>& p = a.product;
  if (p.rows <= 0 || p.images <= 0) return;
  const float* values = index_values(p);
  if (packs(a.pack)) {
    const int64_t nnz = p.ptr[p.rows] - p.ptr[0];
    for_each_own_image(p, a.pack, (nnz + p.rows) * p.spans.len,
                       [&](int64_t n, const float* b) { rows_image(a, values, n, 0, p.rows, b); });
    return;
  }
  split_image_rows(p.nthreads, p.ptr, p.rows, p.images, p.spans.len,
                   [&](int64_t n, int64_t r0, int64_t r1) {
                     rows_image(a, values, n, r0, r1, p.b + n * p.b_image_stride);
                   });
}

}  // namespace

template <class T>
void spmm_offsets_rows(const SpmmOffsetsRowsArgs<T>& a) {
  spmm_offsets_rows_impl(a);
}

template void spmm_offsets_rows<f32>(const SpmmOffsetsRowsArgs<f32>&);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
