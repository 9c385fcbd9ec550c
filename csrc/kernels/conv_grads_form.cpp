#include "kernels/conv_grads_form.h"

#include <cstdint>

namespace sparsetrain {
namespace kernels {
namespace {

constexpr int64_t kMaxPartials = int64_t{8} << 20;  // floats (32 MiB), as the sddmm kernel's

// Whether dx's transposed index lists exactly dv's nonzeros: nonzero j of dv's row r, at
// input plane ic and shift s (dv.off[j] = unit * (ic * plane + s)), is entry pos[j] of dx's
// row ic, whose window of dy starts where dv's row r of A does (a_offset floats after dx's
// B), moved by t_base - s pixels. The sum over dx's positions is then dv's sum over its own:
// the two ranges differ only by positions where the packed input or the bordered dy is zero.
// O(nnz), no allocation: it runs on every call.
bool transposes(const SpmmOffsetsArgs& dx, const SddmmOffsetsArgs& dv, int64_t plane,
                int64_t a_offset) {
  const int64_t u = dx.unit;
  for (int64_t r = 0; r < dv.rows; ++r) {
    for (int64_t j = dv.ptr[r]; j < dv.ptr[r + 1]; ++j) {
      const int64_t k = dx.pos[j], o = dv.off[j];
      if (o < 0 || o % u != 0) return false;
      const int64_t ic = o / u / plane, shift = o / u - ic * plane;
      // Entry k in dx's row ic (its rows partition the entries: ptr is validated monotone).
      if (ic >= dx.rows || k < dx.ptr[ic] || k >= dx.ptr[ic + 1] ||
          dx.off[k] != a_offset + r * dv.lda + u * (dx.t_base - shift))
        return false;
    }
  }
  return true;
}

}  // namespace

int64_t conv_grads_one_pass_plane(const SpmmOffsetsArgs& dx, const SddmmOffsetsArgs& dv) {
  const int64_t u = dx.unit;
  if (dx.merge != nullptr || (u != 1 && u != 16) || dx.grid_w <= 0 || dx.pos == nullptr ||
      dx.stats != nullptr || dx.bias != nullptr || dx.pack != nullptr || dx.rows <= 0 ||
      dv.rows <= 0 || dx.len <= 0 || dv.images <= 0 || dx.images != dv.images ||
      dx.ptr[0] != 0 || dv.ptr[0] != 0 || dx.ptr[dx.rows] != dv.ptr[dv.rows])
    return 0;
  int64_t x_plane, a_offset;  // floats
  if (dv.pack != nullptr) {  // the kernel packs x and dy image by image (unit 1)
    if (u != 1 || dx.pack_grid == nullptr || dv.pack_grid == nullptr ||
        !(*dx.pack_grid == *dv.pack_grid) || dx.b != dv.a || dv.pack->sh != 1 ||
        dv.pack->sw != 1 || dv.pack->c != dx.rows)
      return 0;
    x_plane = dv.pack->hq * dv.pack->wq;
    a_offset = dv.pack_grid->offset;
  } else {  // packed beforehand: dv's A is a view into dx's B, dv's B is x, plane by plane
    // (and the values gradient summed per image: at most kMaxPartials floats of them)
    if (dx.pack_grid != nullptr || dv.pack_grid != nullptr ||
        dv.images > kMaxPartials / (dx.ptr[dx.rows] > 0 ? dx.ptr[dx.rows] : 1) ||
        dx.b_image_stride != dv.a_image_stride || dv.b_image_stride % (dx.rows * u) != 0)
      return 0;
    const auto xb = reinterpret_cast<std::uintptr_t>(dx.b);
    const auto va = reinterpret_cast<std::uintptr_t>(dv.a);
    if (va < xb || (va - xb) % sizeof(float) != 0) return 0;
    x_plane = dv.b_image_stride / dx.rows;
    a_offset = static_cast<int64_t>((va - xb) / sizeof(float));
  }
  if (x_plane <= 0 || x_plane % u != 0 || dx.t_base < 0 || u * dx.t_base + dx.len > x_plane)
    return 0;
  return transposes(dx, dv, x_plane / u, a_offset) ? x_plane : 0;
}

}  // namespace kernels
}  // namespace sparsetrain
