#include "kernels/conv_grads_form.h"

#include <cstddef>
#include <vector>

namespace sparsetrain {
namespace kernels {
namespace {

// Whether dx's transposed index lists exactly dv's nonzeros: nonzero j of dv's row r, at
// input plane ic and shift s (dv.off[j] = ic * plane + s), is entry pos[j] of dx's row ic,
// whose window of dy starts where dv's row r of A does, moved by t_base - s. The sum over
// dx's positions is then dv's sum over its own: the two ranges differ only by positions
// where the packed input or the bordered dy is zero. O(nnz).
bool transposes(const SpmmOffsetsArgs& dx, const SddmmOffsetsArgs& dv, int64_t plane) {
  const int64_t nnz = dx.ptr[dx.rows];
  std::vector<int64_t> row_of(static_cast<std::size_t>(nnz));
  for (int64_t ic = 0; ic < dx.rows; ++ic)
    for (int64_t k = dx.ptr[ic]; k < dx.ptr[ic + 1]; ++k) row_of[k] = ic;
  for (int64_t r = 0; r < dv.rows; ++r) {
    for (int64_t j = dv.ptr[r]; j < dv.ptr[r + 1]; ++j) {
      const int64_t k = dx.pos[j], o = dv.off[j];
      if (k < 0 || k >= nnz || o < 0) return false;
      const int64_t ic = o / plane, shift = o - ic * plane;
      if (row_of[k] != ic || dx.off[k] != dv.pack_grid->offset + r * dv.lda + dx.t_base - shift)
        return false;
    }
  }
  return true;
}

}  // namespace

int64_t conv_grads_one_pass_plane(const SpmmOffsetsArgs& dx, const SddmmOffsetsArgs& dv) {
  if (dx.merge != nullptr || dx.unit != 1 || dx.grid_w <= 0 || dx.seg_len > 0 ||
      dx.pos == nullptr || dx.stats != nullptr || dx.bias != nullptr || dx.pack != nullptr ||
      dx.pack_grid == nullptr || dv.pack_grid == nullptr || !(*dx.pack_grid == *dv.pack_grid) ||
      dx.b != dv.a || dx.images != dv.images || dv.seg_len > 0 || dv.pack == nullptr ||
      dv.pack->sh != 1 || dv.pack->sw != 1 || dv.pack->c != dx.rows || dx.rows <= 0 ||
      dv.rows <= 0 || dx.len <= 0 || dv.images <= 0 || dx.ptr[0] != 0 || dv.ptr[0] != 0 ||
      dx.ptr[dx.rows] != dv.ptr[dv.rows])
    return 0;
  const int64_t plane = dv.pack->hq * dv.pack->wq;
  if (plane <= 0 || dx.t_base < 0 || dx.t_base + dx.len > plane) return 0;
  return transposes(dx, dv, plane) ? plane : 0;
}

}  // namespace kernels
}  // namespace sparsetrain
