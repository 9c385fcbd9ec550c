// f32_spmm_csr_offsets: per image, C[r, 0:len] = sum_j val[j] * B[off[j] + 0:len].
// A convolution's forward pass (rows = output channels, off = where each nonzero's shifted
// input plane starts) and its input gradient (rows = input channel phase planes, off into
// the padded output gradient), vectorized along the flattened spatial grid.
// Threads own disjoint (image, row) pairs, balanced by nonzero count.
#include "kernels/kernels.h"
#include "kernels/rows.h"
#include "kernels/spmm_tiles.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {
// Copies grid positions [t0, t1) of one row, computed into buf, to their plane positions.
inline void scatter_to_plane(const SpmmOffsetsArgs& a, const float* buf, int64_t t0, int64_t t1,
                             float* plane, const float* bias) {
  for (int64_t t = t0; t < t1;) {
    const int64_t p = t + a.t_base, gr = p / a.grid_w, gc = p - gr * a.grid_w;
    const int64_t seg_end = t + (a.grid_w - gc) < t1 ? t + (a.grid_w - gc) : t1;
    const int64_t row = gr - a.row0;
    if (row >= 0 && row < a.plane_h) {
      const int64_t lo = gc > a.col0 ? gc : a.col0;
      const int64_t end_col = gc + (seg_end - t);
      const int64_t hi = end_col < a.col0 + a.plane_w ? end_col : a.col0 + a.plane_w;
      if (lo < hi) {
        const float* s = buf + (t - t0) + (lo - gc);
        float* d = plane + row * a.plane_w + (lo - a.col0);
        if (bias) copy_row_add(s, d, hi - lo, *bias); else copy_row(s, d, hi - lo);
      }
    }
    t = seg_end;
  }
}
}  // namespace

void f32_spmm_csr_offsets(const SpmmOffsetsArgs& a) {
  if (a.rows <= 0 || a.images <= 0) return;
  const float* values = a.val;
  const int64_t nnz = a.ptr[a.rows] - a.ptr[0];
  if (a.pos != nullptr) values = scatter_values(a.val, a.pos, nnz, a.scratch, a.nthreads);
  const int64_t base = a.ptr[0];
  const int64_t per_image = nnz + a.rows;
  parallel_balanced(
      a.nthreads, a.rows * a.images, a.len,
      [&](int64_t i) {
        const int64_t n = i / a.rows, r = i - n * a.rows;
        return n * per_image + a.ptr[r] - base + r;
      },
      [&](int64_t i0, int64_t i1) {
        for (int64_t n = i0 / a.rows; n * a.rows < i1; ++n) {
          const int64_t r0 = i0 > n * a.rows ? i0 - n * a.rows : 0;
          const int64_t r1 = i1 < (n + 1) * a.rows ? i1 - n * a.rows : a.rows;
          const float* b = a.b + n * a.b_image_stride;
          float* c = a.c + n * a.c_image_stride;
          const auto src = [&](int64_t j) { return b + a.off[j]; };
          if (a.grid_w <= 0) {
            for_each_span(a.len, a.seg_len, a.seg_stride, [&](int64_t t0, int64_t t1) {
              for (int64_t r = r0; r < r1; ++r)
                spmm_span(a.ptr[r], a.ptr[r + 1], src, values, t0, t1, c + r * a.ldc);
            });
            continue;
          }
          alignas(64) float buf[kGridChunk];
          for_each_span(a.len, 0, 0, [&](int64_t c0, int64_t c1) {
            const auto src_chunk = [&](int64_t j) { return b + a.off[j] + c0; };
            for (int64_t r = r0; r < r1; ++r) {
              spmm_span(a.ptr[r], a.ptr[r + 1], src_chunk, values, 0, c1 - c0, buf);
              scatter_to_plane(a, buf, c0, c1, c + r * a.ldc, a.bias ? a.bias + r : nullptr);
            }
          });
        }
      });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
