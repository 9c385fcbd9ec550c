#include "kernels/conv_grads_form.h"

#include <cstdint>

#include "kernels/kernels.h"

namespace sparsetrain {
namespace kernels {
namespace {

constexpr int64_t kMaxPartials = int64_t{8} << 20;  // elements (32 MiB), as sddmm_offsets'

// Whether dx's transposed index lists exactly dv's nonzeros: nonzero j of dv's row r, at
// input plane ic and shift s (dv.off[j] = u * (ic * plane + s)), is entry pos[j] of dx's
// row ic, whose window of dy starts where dv's row r of A does (a_offset elements after dx's
// B), moved by t_base - s pixels. The sum over dx's positions is then dv's sum over its own:
// the two ranges differ only by positions where the packed input or the bordered dy is zero.
// O(nnz), no allocation: it runs on every call.
template <class T>
bool transposes(const OffsetsProduct<T>& dx, int64_t t_base, int64_t u,
                const SddmmOffsetsArgs<T>& dv, int64_t plane, int64_t a_offset) {
  for (int64_t r = 0; r < dv.rows; ++r) {
    for (int64_t j = dv.ptr[r]; j < dv.ptr[r + 1]; ++j) {
      const int64_t k = dx.pos[j], o = dv.off[j];
      if (o < 0 || o % u != 0) return false;
      const int64_t ic = o / u / plane, shift = o / u - ic * plane;
      // Entry k in dx's row ic (its rows partition the entries: ptr is validated monotone).
      if (ic >= dx.rows || k < dx.ptr[ic] || k >= dx.ptr[ic + 1] ||
          dx.off[k] != a_offset + r * dv.lda + u * (t_base - shift))
        return false;
    }
  }
  return true;
}

// The check of both plane forms: dx's product p writing planes o, u elements per grid point,
// B packed by the kernel per `pack` (unit 1 only) and statistics summed where stats is set.
template <class T>
int64_t one_pass_plane(const OffsetsProduct<T>& dx, const PlanesOut<T>& o, int64_t u,
                       const ImagePack& pack, const double* stats, const SddmmOffsetsArgs<T>& dv) {
  if (o.grid_w <= 0 || dx.pos == nullptr || stats != nullptr || o.bias != nullptr ||
      pack.input != nullptr || dx.rows <= 0 || dv.rows <= 0 || dx.spans.len <= 0 ||
      dv.images <= 0 || dx.images != dv.images || dx.ptr[0] != 0 || dv.ptr[0] != 0 ||
      dx.ptr[dx.rows] != dv.ptr[dv.rows])
    return 0;
  int64_t x_plane, a_offset;   // elements
  if (dv.pack_b != nullptr) {  // the kernel packs x and dy image by image (unit 1)
    if (u != 1 || pack.grid == nullptr || dv.pack_a == nullptr || !(*pack.grid == *dv.pack_a) ||
        dx.b != dv.a || dv.pack_b->sh != 1 || dv.pack_b->sw != 1 || dv.pack_b->c != dx.rows)
      return 0;
    x_plane = dv.pack_b->hq * dv.pack_b->wq;
    a_offset = dv.pack_a->offset;
  } else {  // packed beforehand: dv's A is a view into dx's B, dv's B is x, plane by plane
    // (and the values gradient summed per image: at most kMaxPartials elements of them)
    if (pack.grid != nullptr || dv.pack_a != nullptr ||
        dv.images > kMaxPartials / (dx.ptr[dx.rows] > 0 ? dx.ptr[dx.rows] : 1) ||
        dx.b_image_stride != dv.a_image_stride || dv.b_image_stride % (dx.rows * u) != 0)
      return 0;
    const auto xb = reinterpret_cast<std::uintptr_t>(dx.b);
    const auto va = reinterpret_cast<std::uintptr_t>(dv.a);
    if (va < xb || (va - xb) % sizeof(T) != 0) return 0;
    x_plane = dv.b_image_stride / dx.rows;
    a_offset = static_cast<int64_t>((va - xb) / sizeof(T));
  }
  if (x_plane <= 0 || x_plane % u != 0 || o.t_base < 0 || u * o.t_base + dx.spans.len > x_plane)
    return 0;
  return transposes(dx, o.t_base, u, dv, x_plane / u, a_offset) ? x_plane : 0;
}

}  // namespace

template <class T>
int64_t conv_grads_one_pass_plane(const ConvGradsPlanesArgs<T>& a) {
  return one_pass_plane(a.dx.product, a.dx.out, 1, a.dx.pack, a.dx.stats, a.dv);
}

template <class T>
int64_t conv_grads_one_pass_plane(const ConvGradsPlanes16Args<T>& a) {
  return one_pass_plane(a.dx.product, a.dx.out, 16, ImagePack{}, a.dx.stats, a.dv);
}

template int64_t conv_grads_one_pass_plane<f32>(const ConvGradsPlanesArgs<f32>&);
template int64_t conv_grads_one_pass_plane<f32>(const ConvGradsPlanes16Args<f32>&);

}  // namespace kernels
}  // namespace sparsetrain
