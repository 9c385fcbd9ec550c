// f32_spmm_csr_offsets: per image, C[r, 0:len] = sum_j val[j] * B[off[j] + 0:len].
// A convolution's forward pass (rows = output channels, off = where each nonzero's shifted
// input plane starts) and its input gradient (rows = input channel phase planes, off into
// the padded output gradient), vectorized along the flattened spatial grid.
// Threads own disjoint (image, row) pairs, balanced by nonzero count.
#include "kernels/kernels.h"
#include "kernels/spmm_tiles.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {
// Floats of the grid per pass over all rows of an image: keeps the shifted windows of the
// input planes a pass touches in L2.
constexpr int64_t kGridChunk = 256;
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
          for (int64_t c0 = 0; c0 < a.len; c0 += kGridChunk) {
            const int64_t c1 = c0 + kGridChunk < a.len ? c0 + kGridChunk : a.len;
            for (int64_t r = r0; r < r1; ++r)
              spmm_span(a.ptr[r], a.ptr[r + 1], src, values, c0, c1, c + r * a.ldc);
          }
        }
      });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
