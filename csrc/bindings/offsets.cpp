// The offsets family (convolutions as sparse products over precomputed element offsets), one
// function per kernel form (kernels/offsets_args.h): spmm_offsets_rows / _planes / _planes16 /
// _merge, sddmm_offsets, and both gradients at once, conv_grads_offsets_planes / _planes16 /
// _merge (with conv_grads_one_pass_planes / _planes16, which say whether that call loads each
// window of dy once for both).
#include <optional>
#include <string>

#include "bindings/checks.h"
#include "bindings/families.h"
#include "bindings/offsets_call.h"
#include "dispatch/isa.h"
#include "kernels/conv_grads_form.h"

namespace sparsetrain {
namespace bindings {
namespace {

namespace k = sparsetrain::kernels;
using InputLayout = std::optional<k::ConvInputLayout>;
using OutputLayout = std::optional<k::ConvOutputLayout>;

// One spmm form's call: checked, then the kernel without the GIL (none when empty).
template <class Call, class Params, class Kernel>
std::optional<bool> run_spmm(const Params& p, const Kernel& kernel) {
  Call call;
  prepare(call, p);
  if (!call.empty) {
    py::gil_scoped_release release;
    kernel(call.args);
  }
  return call.result();
}

ProductParams product(const py::array& ptr, const py::array& offsets, const py::array& values,
                      const OptArray& pos, const OptArray& scratch, const py::array& b,
                      int64_t b_image_stride, int64_t len, int64_t images, int nthreads,
                      int64_t seg_len, int64_t seg_stride) {
  ProductParams p;
  p.ptr = ptr;
  p.offsets = offsets;
  p.values = values;
  p.pos = pos;
  p.scratch = scratch;
  p.b = b;
  p.b_image_stride = b_image_stride;
  p.len = len;
  p.images = images;
  p.nthreads = nthreads;
  p.seg_len = seg_len;
  p.seg_stride = seg_stride;
  return p;
}

PackParams packing(const InputLayout& pack, const OutputLayout& pack_grid, bool check_finite) {
  return {pack, pack_grid, check_finite};
}

PlanesParams planes(const py::array& c, int64_t ldc, int64_t c_image_stride, int64_t grid_w,
                    int64_t plane_h, int64_t plane_w, int64_t t_base, int64_t row0, int64_t col0,
                    const OptArray& bias, int64_t px = 1) {
  PlanesParams o;
  o.c = c;
  o.ldc = ldc;
  o.c_image_stride = c_image_stride;
  o.grid_w = grid_w;
  o.plane_h = plane_h;
  o.plane_w = plane_w;
  o.t_base = t_base;
  o.row0 = row0;
  o.col0 = col0;
  o.bias = bias;
  o.px = px;
  return o;
}

// ---- Both gradients at once ---------------------------------------------------------------

// The values gradient's parameters in conv_grads_offsets_<form>: sddmm_offsets on the forward
// index (ptr, offsets), A = the output gradient dy the input gradient reads (its rows from
// a_offset on in each image, lda apart), B = x.
struct ValuesGradParams {
  py::object ptr, offsets;
  int64_t lda = 0, a_offset = 0;
  py::object x;
  int64_t x_image_stride = 0, len = 0, seg_len = 0, seg_stride = 0;
  py::object dv;
  InputLayout pack;
};

// Checks both gradients' arguments as the two kernels' (dx: the input gradient form on the
// transposed index, b = dy) and what the one call adds: dy, the image and the thread count are
// the two products' by construction; the values gradient packs x exactly when both pack dy;
// packed beforehand, x holds every plane of every image (the one-pass form reads them all);
// the two outputs are disjoint (different threads write them at once).
template <class DxCall>
struct ConvGradsCall {
  DxCall cx;
  SddmmOffsetsCall cv;

  // dx_out: the buffer dx writes.
  template <class DxParams>
  ConvGradsCall(const DxParams& dx, const py::object& dx_out, const OutputLayout& pack_grid,
                const ValuesGradParams& v, const char* call) {
    const ProductParams& p = dx.p;
    if (pack_grid.has_value() != v.pack.has_value())
      bad(std::string(call) +
          ": pack (x) and pack_grid (dy) go together: both gradients "
          "pack dy and the values gradient x, or none of them (all packed beforehand)");
    prepare(cx, dx);
    const auto dy = view<float>(as_array(p.b), "dy", 1);
    // Past the end: an empty A (its bounds checks then take any image count but 0).
    if (v.a_offset < 0) bad(std::string(call) + ": negative a_offset");
    const int64_t a_start = v.a_offset < dy.size() ? v.a_offset : dy.size();
    SddmmOffsetsParams s;
    s.ptr = v.ptr;
    s.offsets = v.offsets;
    s.a = as_array(p.b)[py::slice(a_start, dy.size(), 1)];
    s.lda = v.lda;
    s.a_image_stride = p.b_image_stride;
    s.b = v.x;
    s.b_image_stride = v.x_image_stride;
    s.len = v.len;
    s.images = p.images;
    s.out = v.dv;
    s.nthreads = p.nthreads;
    s.seg_len = v.seg_len;
    s.seg_stride = v.seg_stride;
    s.pack = v.pack;
    s.pack_grid = pack_grid;
    prepare(cv, s);
    if (!pack_grid && view<float>(as_array(v.x), "x", 1).size() < mul(p.images, v.x_image_stride))
      bad(std::string(call) + ": x (packed beforehand) must hold images x x_image_stride elements");
    if (overlap(view<float>(as_array(dx_out), "dx", 1, true),
                view<float>(as_array(v.dv), "dv", 1, true)))
      bad(std::string(call) + ": dx and dv overlap");
  }
};

// Both gradients in one kernel call (dv alone when dx has no positions or images); returns
// what the input gradient's form returns.
template <class DxCall, class GradsArgs, class DxParams, class Kernel>
std::optional<bool> run_grads(const DxParams& dx, const py::object& dx_out,
                              const OutputLayout& pack_grid, const ValuesGradParams& v,
                              const char* call, const Kernel& kernel) {
  const ConvGradsCall<DxCall> c(dx, dx_out, pack_grid, v, call);
  {
    py::gil_scoped_release release;
    if (c.cx.empty)
      kernel_table().sddmm_offsets_f32(c.cv.args);
    else
      kernel(GradsArgs{c.cx.args, c.cv.args});
  }
  return c.cx.result();
}

template <class DxCall, class GradsArgs, class DxParams>
bool one_pass(const DxParams& dx, const py::object& dx_out, const OutputLayout& pack_grid,
              const ValuesGradParams& v, const char* call) {
  const ConvGradsCall<DxCall> c(dx, dx_out, pack_grid, v, call);
  return !c.cx.empty && k::conv_grads_one_pass_plane(GradsArgs{c.cx.args, c.cv.args}) > 0;
}

ValuesGradParams values_grad(const py::array& ptr, const py::array& offsets, int64_t lda,
                             int64_t a_offset, const py::array& x, int64_t x_image_stride,
                             int64_t len, int64_t seg_len, int64_t seg_stride, const py::array& dv,
                             const InputLayout& pack) {
  ValuesGradParams v;
  v.ptr = ptr;
  v.offsets = offsets;
  v.lda = lda;
  v.a_offset = a_offset;
  v.x = x;
  v.x_image_stride = x_image_stride;
  v.len = len;
  v.seg_len = seg_len;
  v.seg_stride = seg_stride;
  v.dv = dv;
  v.pack = pack;
  return v;
}

// The parameters of conv_grads_offsets_planes and conv_grads_one_pass_planes (and, below, of
// the other two forms), in one place: the two bindings of a form take the same arguments.
struct GradsPlanes {
  SpmmPlanesParams dx;
  OutputLayout pack_grid;
  ValuesGradParams v;
};
GradsPlanes grads_planes(const py::array& t_ptr, const py::array& t_offsets,
                         const py::array& values, const OptArray& pos, const OptArray& scratch,
                         const py::array& dy, int64_t dy_image_stride, const py::array& dx,
                         int64_t ldx, int64_t dx_image_stride, int64_t dx_len, int64_t grid_w,
                         int64_t plane_h, int64_t plane_w, const py::array& ptr,
                         const py::array& offsets, int64_t lda, const py::array& x,
                         int64_t x_image_stride, int64_t len, const py::array& dv, int64_t images,
                         int nthreads, int64_t t_base, int64_t row0, int64_t col0,
                         int64_t dx_seg_len, int64_t dx_seg_stride, int64_t a_offset,
                         int64_t seg_len, int64_t seg_stride, const InputLayout& pack,
                         const OutputLayout& pack_grid, bool check_finite, int64_t dx_px) {
  GradsPlanes g;
  g.dx.p = product(t_ptr, t_offsets, values, pos, scratch, dy, dy_image_stride, dx_len, images,
                   nthreads, dx_seg_len, dx_seg_stride);
  g.dx.pack = packing(std::nullopt, pack_grid, check_finite);
  g.dx.out = planes(dx, ldx, dx_image_stride, grid_w, plane_h, plane_w, t_base, row0, col0,
                    std::nullopt, dx_px);
  g.pack_grid = pack_grid;
  g.v = values_grad(ptr, offsets, lda, a_offset, x, x_image_stride, len, seg_len, seg_stride, dv,
                    pack);
  return g;
}

struct GradsPlanes16 {
  SpmmPlanes16Params dx;
  ValuesGradParams v;
};
GradsPlanes16 grads_planes16(const py::array& t_ptr, const py::array& t_offsets,
                             const py::array& values, const OptArray& pos, const OptArray& scratch,
                             const py::array& dy, int64_t dy_image_stride, const py::array& dx,
                             int64_t ldx, int64_t dx_image_stride, int64_t dx_len, int64_t grid_w,
                             int64_t plane_h, int64_t plane_w, int64_t batch, const py::array& ptr,
                             const py::array& offsets, int64_t lda, const py::array& x,
                             int64_t x_image_stride, int64_t len, const py::array& dv,
                             int64_t images, int nthreads, int64_t t_base, int64_t row0,
                             int64_t col0, int64_t dx_seg_len, int64_t dx_seg_stride,
                             int64_t a_offset, int64_t seg_len, int64_t seg_stride,
                             int64_t dx_px) {
  GradsPlanes16 g;
  g.dx.p = product(t_ptr, t_offsets, values, pos, scratch, dy, dy_image_stride, dx_len, images,
                   nthreads, dx_seg_len, dx_seg_stride);
  g.dx.out = planes(dx, ldx, dx_image_stride, grid_w, plane_h, plane_w, t_base, row0, col0,
                    std::nullopt, dx_px);
  g.dx.batch = batch;
  g.v = values_grad(ptr, offsets, lda, a_offset, x, x_image_stride, len, seg_len, seg_stride, dv,
                    std::nullopt);
  return g;
}

// The keyword arguments of the two input gradient forms on planes (planes16 adds batch, the
// one-image form pack, pack_grid and check_finite).
#define ST_GRADS_PLANES_ARGS                                                                \
  py::kw_only(), py::arg("t_ptr"), py::arg("t_offsets"), py::arg("values"), py::arg("pos"), \
      py::arg("scratch"), py::arg("dy"), py::arg("dy_image_stride"), py::arg("dx"),         \
      py::arg("ldx"), py::arg("dx_image_stride"), py::arg("dx_len"), py::arg("grid_w"),     \
      py::arg("plane_h"), py::arg("plane_w")
#define ST_GRADS_VALUES_ARGS                                                                      \
  py::arg("ptr"), py::arg("offsets"), py::arg("lda"), py::arg("x"), py::arg("x_image_stride"),    \
      py::arg("len"), py::arg("dv"), py::arg("images"), py::arg("nthreads"),                      \
      py::arg("t_base") = 0, py::arg("row0") = 0, py::arg("col0") = 0, py::arg("dx_seg_len") = 0, \
      py::arg("dx_seg_stride") = 0, py::arg("a_offset") = 0, py::arg("seg_len") = 0,              \
      py::arg("seg_stride") = 0

}  // namespace

void register_offsets(py::module_& m) {
  m.def(
      "spmm_offsets_rows",
      [](const py::array& ptr, const py::array& offsets, const py::array& values,
         const OptArray& pos, const OptArray& scratch, const py::array& b, int64_t b_image_stride,
         const py::array& c, int64_t ldc, int64_t c_image_stride, int64_t len, int64_t images,
         int nthreads, int64_t seg_len, int64_t seg_stride, const InputLayout& pack,
         const OutputLayout& pack_grid, bool check_finite, const OptArray& stats) {
        SpmmRowsParams p;
        p.p = product(ptr, offsets, values, pos, scratch, b, b_image_stride, len, images, nthreads,
                      seg_len, seg_stride);
        p.pack = packing(pack, pack_grid, check_finite);
        p.c = c;
        p.ldc = ldc;
        p.c_image_stride = c_image_stride;
        p.stats = stats;
        return run_spmm<SpmmRowsCall>(
            p, [](const auto& a) { kernel_table().spmm_offsets_rows_f32(a); });
      },
      py::kw_only(), py::arg("ptr"), py::arg("offsets"), py::arg("values"), py::arg("pos"),
      py::arg("scratch"), py::arg("b"), py::arg("b_image_stride"), py::arg("c"), py::arg("ldc"),
      py::arg("c_image_stride"), py::arg("len"), py::arg("images"), py::arg("nthreads"),
      py::arg("seg_len") = 0, py::arg("seg_stride") = 0, py::arg("pack") = py::none(),
      py::arg("pack_grid") = py::none(), py::arg("check_finite") = false,
      py::arg("stats") = py::none(),
      "C_n[r, :len] = sum_j values[j] * B_n[offsets[j]:][:len] per image n, into rows of c; "
      "with check_finite, whether the b it packed was all finite (else None).");
  m.def(
      "spmm_offsets_planes",
      [](const py::array& ptr, const py::array& offsets, const py::array& values,
         const OptArray& pos, const OptArray& scratch, const py::array& b, int64_t b_image_stride,
         const py::array& c, int64_t ldc, int64_t c_image_stride, int64_t len, int64_t images,
         int nthreads, int64_t grid_w, int64_t plane_h, int64_t plane_w, int64_t t_base,
         int64_t row0, int64_t col0, const OptArray& bias, int64_t seg_len, int64_t seg_stride,
         const InputLayout& pack, const OutputLayout& pack_grid, bool check_finite,
         const OptArray& stats, int64_t pixel_stride) {
        SpmmPlanesParams p;
        p.p = product(ptr, offsets, values, pos, scratch, b, b_image_stride, len, images, nthreads,
                      seg_len, seg_stride);
        p.pack = packing(pack, pack_grid, check_finite);
        p.out = planes(c, ldc, c_image_stride, grid_w, plane_h, plane_w, t_base, row0, col0, bias,
                       pixel_stride);
        p.stats = stats;
        return run_spmm<SpmmPlanesCall>(
            p, [](const auto& a) { kernel_table().spmm_offsets_planes_f32(a); });
      },
      py::kw_only(), py::arg("ptr"), py::arg("offsets"), py::arg("values"), py::arg("pos"),
      py::arg("scratch"), py::arg("b"), py::arg("b_image_stride"), py::arg("c"), py::arg("ldc"),
      py::arg("c_image_stride"), py::arg("len"), py::arg("images"), py::arg("nthreads"),
      py::arg("grid_w"), py::arg("plane_h"), py::arg("plane_w"), py::arg("t_base") = 0,
      py::arg("row0") = 0, py::arg("col0") = 0, py::arg("bias") = py::none(),
      py::arg("seg_len") = 0, py::arg("seg_stride") = 0, py::arg("pack") = py::none(),
      py::arg("pack_grid") = py::none(), py::arg("check_finite") = false,
      py::arg("stats") = py::none(), py::arg("pixel_stride") = 1,
      "The same product written straight into NCHW planes: position t is grid point "
      "t + t_base of a grid of grid_w columns, kept inside the plane_h x plane_w window at "
      "(row0, col0), plus bias. pixel_stride > 1 (ldc 1): channels_last pixels instead.");
  m.def(
      "spmm_offsets_planes16",
      [](const py::array& ptr, const py::array& offsets, const py::array& values,
         const OptArray& pos, const OptArray& scratch, const py::array& b, int64_t b_image_stride,
         const py::array& c, int64_t ldc, int64_t c_image_stride, int64_t len, int64_t images,
         int nthreads, int64_t grid_w, int64_t plane_h, int64_t plane_w, int64_t batch,
         int64_t t_base, int64_t row0, int64_t col0, const OptArray& bias, int64_t seg_len,
         int64_t seg_stride, const OptArray& stats, int64_t pixel_stride) {
        SpmmPlanes16Params p;
        p.p = product(ptr, offsets, values, pos, scratch, b, b_image_stride, len, images, nthreads,
                      seg_len, seg_stride);
        p.out = planes(c, ldc, c_image_stride, grid_w, plane_h, plane_w, t_base, row0, col0, bias,
                       pixel_stride);
        p.batch = batch;
        p.stats = stats;
        return run_spmm<SpmmPlanes16Call>(
            p, [](const auto& a) { kernel_table().spmm_offsets_planes16_f32(a); });
      },
      py::kw_only(), py::arg("ptr"), py::arg("offsets"), py::arg("values"), py::arg("pos"),
      py::arg("scratch"), py::arg("b"), py::arg("b_image_stride"), py::arg("c"), py::arg("ldc"),
      py::arg("c_image_stride"), py::arg("len"), py::arg("images"), py::arg("nthreads"),
      py::arg("grid_w"), py::arg("plane_h"), py::arg("plane_w"), py::arg("batch"),
      py::arg("t_base") = 0, py::arg("row0") = 0, py::arg("col0") = 0, py::arg("bias") = py::none(),
      py::arg("seg_len") = 0, py::arg("seg_stride") = 0, py::arg("stats") = py::none(),
      py::arg("pixel_stride") = 1,
      "The planes product on a batch-innermost b (16 images per grid point, images = "
      "groups): lane m of group n into image 16 n + m's planes, lanes past batch dropped.");
  m.def(
      "spmm_offsets_merge",
      [](const py::array& ptr, const py::array& offsets, const py::array& values,
         const OptArray& pos, const OptArray& scratch, const py::array& b, int64_t b_image_stride,
         const py::array& c, int64_t c_image_stride, int64_t len, int64_t images, int nthreads,
         const k::ConvInputLayout& merge, int64_t t_base, int64_t seg_len, int64_t seg_stride,
         const InputLayout& pack, const OutputLayout& pack_grid, bool check_finite) {
        SpmmMergeParams p;
        p.p = product(ptr, offsets, values, pos, scratch, b, b_image_stride, len, images, nthreads,
                      seg_len, seg_stride);
        p.pack = packing(pack, pack_grid, check_finite);
        p.c = c;
        p.c_image_stride = c_image_stride;
        p.t_base = t_base;
        p.merge = merge;
        return run_spmm<SpmmMergeCall>(
            p, [](const auto& a) { kernel_table().spmm_offsets_merge_f32(a); });
      },
      py::kw_only(), py::arg("ptr"), py::arg("offsets"), py::arg("values"), py::arg("pos"),
      py::arg("scratch"), py::arg("b"), py::arg("b_image_stride"), py::arg("c"),
      py::arg("c_image_stride"), py::arg("len"), py::arg("images"), py::arg("nthreads"),
      py::arg("merge"), py::arg("t_base") = 0, py::arg("seg_len") = 0, py::arg("seg_stride") = 0,
      py::arg("pack") = py::none(), py::arg("pack_grid") = py::none(),
      py::arg("check_finite") = false,
      "A strided input gradient straight into NCHW c: rows are merge's channels x stride "
      "phases, position t phase-plane pixel t_base + t, each channel's phases interleaved.");
  m.def(
      "sddmm_offsets",
      [](const py::array& ptr, const py::array& offsets, const py::array& a, int64_t lda,
         int64_t a_image_stride, const py::array& b, int64_t b_image_stride, int64_t len,
         int64_t images, const py::array& out, int nthreads, int64_t seg_len, int64_t seg_stride,
         const InputLayout& pack, const OutputLayout& pack_grid) {
        SddmmOffsetsParams p;
        p.ptr = ptr;
        p.offsets = offsets;
        p.a = a;
        p.lda = lda;
        p.a_image_stride = a_image_stride;
        p.b = b;
        p.b_image_stride = b_image_stride;
        p.len = len;
        p.images = images;
        p.out = out;
        p.nthreads = nthreads;
        p.seg_len = seg_len;
        p.seg_stride = seg_stride;
        p.pack = pack;
        p.pack_grid = pack_grid;
        SddmmOffsetsCall call;
        prepare(call, p);
        py::gil_scoped_release release;
        kernel_table().sddmm_offsets_f32(call.args);
      },
      py::kw_only(), py::arg("ptr"), py::arg("offsets"), py::arg("a"), py::arg("lda"),
      py::arg("a_image_stride"), py::arg("b"), py::arg("b_image_stride"), py::arg("len"),
      py::arg("images"), py::arg("out"), py::arg("nthreads"), py::arg("seg_len") = 0,
      py::arg("seg_stride") = 0, py::arg("pack") = py::none(), py::arg("pack_grid") = py::none(),
      "out[j] = sum_n sum_t A_n[r, t] * B_n[offsets[j] + t] for every nonzero j of row r.");

  // Both gradients: the input gradient's form on the transposed index (t_ptr, t_offsets, the
  // values in CSR order scattered by pos) reading dy, and sddmm_offsets on the forward index
  // (ptr, offsets) reading dy from a_offset on and x.
  const auto planes_fn = [](auto run) {
    return [run](const py::array& t_ptr, const py::array& t_offsets, const py::array& values,
                 const OptArray& pos, const OptArray& scratch, const py::array& dy,
                 int64_t dy_image_stride, const py::array& dx, int64_t ldx, int64_t dx_image_stride,
                 int64_t dx_len, int64_t grid_w, int64_t plane_h, int64_t plane_w,
                 const py::array& ptr, const py::array& offsets, int64_t lda, const py::array& x,
                 int64_t x_image_stride, int64_t len, const py::array& dv, int64_t images,
                 int nthreads, int64_t t_base, int64_t row0, int64_t col0, int64_t dx_seg_len,
                 int64_t dx_seg_stride, int64_t a_offset, int64_t seg_len, int64_t seg_stride,
                 const InputLayout& pack, const OutputLayout& pack_grid, bool check_finite,
                 int64_t dx_pixel_stride) {
      return run(grads_planes(t_ptr, t_offsets, values, pos, scratch, dy, dy_image_stride, dx, ldx,
                              dx_image_stride, dx_len, grid_w, plane_h, plane_w, ptr, offsets, lda,
                              x, x_image_stride, len, dv, images, nthreads, t_base, row0, col0,
                              dx_seg_len, dx_seg_stride, a_offset, seg_len, seg_stride, pack,
                              pack_grid, check_finite, dx_pixel_stride));
    };
  };
  m.def("conv_grads_offsets_planes", planes_fn([](const GradsPlanes& g) {
          return run_grads<SpmmPlanesCall, k::ConvGradsPlanesArgs<float>>(
              g.dx, g.dx.out.c, g.pack_grid, g.v, "conv_grads_offsets_planes",
              [](const auto& a) { kernel_table().conv_grads_offsets_planes_f32(a); });
        }),
        ST_GRADS_PLANES_ARGS, ST_GRADS_VALUES_ARGS, py::arg("pack") = py::none(),
        py::arg("pack_grid") = py::none(), py::arg("check_finite") = false,
        py::arg("dx_pixel_stride") = 1,
        "Both gradients of a convolution in one call: spmm_offsets_planes on the transposed "
        "index into dx, sddmm_offsets into dv; what spmm_offsets_planes returns.");
  m.def("conv_grads_one_pass_planes", planes_fn([](const GradsPlanes& g) {
          return one_pass<SpmmPlanesCall, k::ConvGradsPlanesArgs<float>>(
              g.dx, g.dx.out.c, g.pack_grid, g.v, "conv_grads_one_pass_planes");
        }),
        ST_GRADS_PLANES_ARGS, ST_GRADS_VALUES_ARGS, py::arg("pack") = py::none(),
        py::arg("pack_grid") = py::none(), py::arg("check_finite") = false,
        py::arg("dx_pixel_stride") = 1,
        "Whether conv_grads_offsets_planes with these arguments loads each window of dy once "
        "for both gradients.");

  const auto planes16_fn = [](auto run) {
    return [run](const py::array& t_ptr, const py::array& t_offsets, const py::array& values,
                 const OptArray& pos, const OptArray& scratch, const py::array& dy,
                 int64_t dy_image_stride, const py::array& dx, int64_t ldx, int64_t dx_image_stride,
                 int64_t dx_len, int64_t grid_w, int64_t plane_h, int64_t plane_w, int64_t batch,
                 const py::array& ptr, const py::array& offsets, int64_t lda, const py::array& x,
                 int64_t x_image_stride, int64_t len, const py::array& dv, int64_t images,
                 int nthreads, int64_t t_base, int64_t row0, int64_t col0, int64_t dx_seg_len,
                 int64_t dx_seg_stride, int64_t a_offset, int64_t seg_len, int64_t seg_stride,
                 int64_t dx_pixel_stride) {
      return run(grads_planes16(t_ptr, t_offsets, values, pos, scratch, dy, dy_image_stride, dx,
                                ldx, dx_image_stride, dx_len, grid_w, plane_h, plane_w, batch, ptr,
                                offsets, lda, x, x_image_stride, len, dv, images, nthreads, t_base,
                                row0, col0, dx_seg_len, dx_seg_stride, a_offset, seg_len,
                                seg_stride, dx_pixel_stride));
    };
  };
  m.def("conv_grads_offsets_planes16", planes16_fn([](const GradsPlanes16& g) {
          return run_grads<SpmmPlanes16Call, k::ConvGradsPlanes16Args<float>>(
              g.dx, g.dx.out.c, std::nullopt, g.v, "conv_grads_offsets_planes16",
              [](const auto& a) { kernel_table().conv_grads_offsets_planes16_f32(a); });
        }),
        ST_GRADS_PLANES_ARGS, py::arg("batch"), ST_GRADS_VALUES_ARGS, py::arg("dx_pixel_stride") = 1,
        "Both gradients on the batch-innermost layout: spmm_offsets_planes16 on the "
        "transposed index into dx, sddmm_offsets into dv.");
  m.def("conv_grads_one_pass_planes16", planes16_fn([](const GradsPlanes16& g) {
          return one_pass<SpmmPlanes16Call, k::ConvGradsPlanes16Args<float>>(
              g.dx, g.dx.out.c, std::nullopt, g.v, "conv_grads_one_pass_planes16");
        }),
        ST_GRADS_PLANES_ARGS, py::arg("batch"), ST_GRADS_VALUES_ARGS, py::arg("dx_pixel_stride") = 1,
        "Whether conv_grads_offsets_planes16 with these arguments loads each window of dy once "
        "for both gradients.");

  m.def(
      "conv_grads_offsets_merge",
      [](const py::array& t_ptr, const py::array& t_offsets, const py::array& values,
         const OptArray& pos, const OptArray& scratch, const py::array& dy, int64_t dy_image_stride,
         const py::array& dx, int64_t dx_image_stride, int64_t dx_len,
         const k::ConvInputLayout& merge, const py::array& ptr, const py::array& offsets,
         int64_t lda, const py::array& x, int64_t x_image_stride, int64_t len, const py::array& dv,
         int64_t images, int nthreads, int64_t t_base, int64_t dx_seg_len, int64_t dx_seg_stride,
         int64_t a_offset, int64_t seg_len, int64_t seg_stride, const InputLayout& pack,
         const OutputLayout& pack_grid, bool check_finite) {
        SpmmMergeParams p;
        p.p = product(t_ptr, t_offsets, values, pos, scratch, dy, dy_image_stride, dx_len, images,
                      nthreads, dx_seg_len, dx_seg_stride);
        p.pack = packing(std::nullopt, pack_grid, check_finite);
        p.c = dx;
        p.c_image_stride = dx_image_stride;
        p.t_base = t_base;
        p.merge = merge;
        const ValuesGradParams v = values_grad(ptr, offsets, lda, a_offset, x, x_image_stride, len,
                                               seg_len, seg_stride, dv, pack);
        return run_grads<SpmmMergeCall, k::ConvGradsMergeArgs<float>>(
            p, p.c, pack_grid, v, "conv_grads_offsets_merge",
            [](const auto& a) { kernel_table().conv_grads_offsets_merge_f32(a); });
      },
      py::kw_only(), py::arg("t_ptr"), py::arg("t_offsets"), py::arg("values"), py::arg("pos"),
      py::arg("scratch"), py::arg("dy"), py::arg("dy_image_stride"), py::arg("dx"),
      py::arg("dx_image_stride"), py::arg("dx_len"), py::arg("merge"), py::arg("ptr"),
      py::arg("offsets"), py::arg("lda"), py::arg("x"), py::arg("x_image_stride"), py::arg("len"),
      py::arg("dv"), py::arg("images"), py::arg("nthreads"), py::arg("t_base") = 0,
      py::arg("dx_seg_len") = 0, py::arg("dx_seg_stride") = 0, py::arg("a_offset") = 0,
      py::arg("seg_len") = 0, py::arg("seg_stride") = 0, py::arg("pack") = py::none(),
      py::arg("pack_grid") = py::none(), py::arg("check_finite") = false,
      "Both gradients of a strided convolution in one call: spmm_offsets_merge on the "
      "transposed index into dx, sddmm_offsets into dv.");
}

#undef ST_GRADS_PLANES_ARGS
#undef ST_GRADS_VALUES_ARGS

}  // namespace bindings
}  // namespace sparsetrain
