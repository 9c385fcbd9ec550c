// The offsets family (convolutions as sparse products over precomputed element offsets):
// spmm_offsets, sddmm_offsets, and both gradients at once, conv_grads_offsets (with
// conv_grads_one_pass, which says which form that call takes).
#include <optional>
#include <string>

#include "bindings/checks.h"
#include "bindings/dict_args.h"
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
using OptArray = std::optional<py::array>;

std::optional<bool> spmm_offsets(const SpmmOffsetsParams& p) {
  SpmmOffsetsCall call;
  prepare_spmm_offsets(call, p);
  if (!call.empty) {
    py::gil_scoped_release release;
    kernel_table().spmm_offsets(call.args);
  }
  return call.result();
}

void sddmm_offsets(const SddmmOffsetsParams& p) {
  SddmmOffsetsCall call;
  prepare_sddmm_offsets(call, p);
  py::gil_scoped_release release;
  kernel_table().sddmm_offsets(call.args);
}

SpmmOffsetsParams spmm_params(const DictArgs& x) {
  SpmmOffsetsParams p;
  p.ptr = x.array("ptr");
  p.offsets = x.array("offsets");
  p.values = x.array("values");
  p.pos = x.optional_array("pos");
  p.scratch = x.optional_array("scratch");
  p.b = x.array("b");
  p.b_image_stride = x.get<int64_t>("b_image_stride");
  p.c = x.array("c");
  p.ldc = x.get<int64_t>("ldc");
  p.c_image_stride = x.get<int64_t>("c_image_stride");
  p.len = x.get<int64_t>("len");
  p.images = x.get<int64_t>("images");
  p.nthreads = x.get<int>("nthreads");
  p.grid_w = x.get<int64_t>("grid_w", 0);
  p.t_base = x.get<int64_t>("t_base", 0);
  p.row0 = x.get<int64_t>("row0", 0);
  p.col0 = x.get<int64_t>("col0", 0);
  p.plane_h = x.get<int64_t>("plane_h", 0);
  p.plane_w = x.get<int64_t>("plane_w", 0);
  p.seg_len = x.get<int64_t>("seg_len", 0);
  p.seg_stride = x.get<int64_t>("seg_stride", 0);
  p.unit = x.get<int64_t>("unit", 1);
  p.batch = x.get<int64_t>("batch", 0);
  p.merge = x.layout<k::ConvInputLayout>("merge", "ConvInputLayout");
  p.check_finite = x.get<bool>("check_finite", false);
  p.pack_grid = x.layout<k::ConvOutputLayout>("pack_grid", "ConvOutputLayout");
  return p;
}

SddmmOffsetsParams sddmm_params(const DictArgs& v) {
  SddmmOffsetsParams p;
  p.ptr = v.array("ptr");
  p.offsets = v.array("offsets");
  p.a = v.array("a");
  p.lda = v.get<int64_t>("lda");
  p.a_image_stride = v.get<int64_t>("a_image_stride");
  p.b = v.array("b");
  p.b_image_stride = v.get<int64_t>("b_image_stride");
  p.len = v.get<int64_t>("len");
  p.images = v.get<int64_t>("images");
  p.out = v.array("out");
  p.nthreads = v.get<int>("nthreads");
  p.seg_len = v.get<int64_t>("seg_len", 0);
  p.seg_stride = v.get<int64_t>("seg_stride", 0);
  p.pack = v.layout<k::ConvInputLayout>("pack", "ConvInputLayout");
  p.pack_grid = v.layout<k::ConvOutputLayout>("pack_grid", "ConvOutputLayout");
  return p;
}

// The arguments of f32_conv_grads_offsets: dx holds spmm_offsets' arguments for the input
// gradient, dv sddmm_offsets' for the values gradient, both packing the same NCHW output
// gradient (dx["b"] is dv["a"]) with the same pack_grid.
struct ConvGradsCall {
  DictArgs x, v;
  SpmmOffsetsCall cx;
  SddmmOffsetsCall cv;
  // call: the binding's name (for messages); call_dx / call_dv: it with " dx" / " dv".
  ConvGradsCall(const py::dict& dx, const py::dict& dv, const std::string& call,
                const char* call_dx, const char* call_dv)
      : x(dx, call_dx,
          {"ptr", "offsets", "values", "pos", "scratch", "b", "b_image_stride", "c", "ldc",
           "c_image_stride", "len", "images", "nthreads", "grid_w", "t_base", "row0", "col0",
           "plane_h", "plane_w", "seg_len", "seg_stride", "unit", "batch", "merge",
           "check_finite", "pack_grid"}),
        v(dv, call_dv,
          {"ptr", "offsets", "a", "lda", "a_image_stride", "b", "b_image_stride", "len",
           "images", "out", "nthreads", "seg_len", "seg_stride", "pack", "pack_grid"}) {
    const bool packs = x.has("pack_grid");
    if (packs != v.has("pack_grid") || packs != v.has("pack"))
      bad(call + ": dx and dv must both pack the output gradient (pack_grid), and dv the input "
          "(pack), or none of them (all packed beforehand)");
    prepare_spmm_offsets(cx, spmm_params(x));
    prepare_sddmm_offsets(cv, sddmm_params(v));
    // The same dy: the same NCHW tensor, or (packed beforehand) dv's rows a view into dx's.
    const auto xb = view<float>(x.array("b"), "b", 1);
    const auto va = view<float>(v.array("a"), "a", 1);
    const auto at = [](const float* p) { return reinterpret_cast<std::uintptr_t>(p); };
    const bool inside = va.size() == 0 || (at(va.data) >= at(xb.data) &&
                                           at(va.data + va.size()) <= at(xb.data + xb.size()));
    const bool same_dy = packs ? xb.data == va.data && xb.size() == va.size() : inside;
    if (!same_dy || x.get<int64_t>("images") != v.get<int64_t>("images") ||
        x.get<int64_t>("nthreads") != v.get<int64_t>("nthreads"))
      bad(call + ": dx and dv must share the output gradient (dx['b'] and dv['a']), the image "
          "count and the thread count");
    // Packed beforehand, the one-pass form reads every input plane of an image (not just the
    // shifted runs sddmm_offsets checks): x must hold all of them.
    if (!packs && view<float>(v.array("b"), "b", 1).size() <
                      mul(v.get<int64_t>("images"), v.get<int64_t>("b_image_stride")))
      bad(call + ": dv's b (x, packed beforehand) must hold images x b_image_stride floats");
    if (packs && !(cx.grid == cv.grid))
      bad(call + ": dx and dv must pack the output gradient alike (pack_grid)");
    // The two outputs are written at once by different threads: they must not overlap.
    if (overlap(view<float>(x.array("c"), "c", 1, true),
                view<float>(v.array("out"), "out", 1, true)))
      bad(call + ": dx's c and dv's out overlap");
  }
};

// Both gradients of a convolution in one pass over the images (f32_conv_grads_offsets).
// Returns what spmm_offsets returns.
std::optional<bool> conv_grads_offsets(const py::dict& dx, const py::dict& dv) {
  const ConvGradsCall c(dx, dv, "conv_grads_offsets", "conv_grads_offsets dx",
                        "conv_grads_offsets dv");
  {
    py::gil_scoped_release release;
    if (c.cx.empty)  // no images or positions: dv alone
      kernel_table().sddmm_offsets(c.cv.args);
    else
      kernel_table().conv_grads_offsets(c.cx.args, c.cv.args);
  }
  return c.cx.result();
}

// Whether conv_grads_offsets(dx, dv) loads each window of dy once for both gradients (the
// stride-1 plane form, conv_grads_form.h). Checks the arguments as conv_grads_offsets does.
bool conv_grads_one_pass(const py::dict& dx, const py::dict& dv) {
  const ConvGradsCall c(dx, dv, "conv_grads_one_pass", "conv_grads_one_pass dx",
                        "conv_grads_one_pass dv");
  return !c.cx.empty && k::conv_grads_one_pass_plane(c.cx.args, c.cv.args) > 0;
}

}  // namespace

void register_offsets(py::module_& m) {
  m.def(
      "spmm_offsets",
      [](const py::array& ptr, const py::array& offsets, const py::array& values,
         const OptArray& pos, const OptArray& scratch, const py::array& b,
         int64_t b_image_stride, const py::array& c, int64_t ldc, int64_t c_image_stride,
         int64_t len, int64_t images, int nthreads, int64_t grid_w, int64_t t_base, int64_t row0,
         int64_t col0, int64_t plane_h, int64_t plane_w, const OptArray& bias, int64_t seg_len,
         int64_t seg_stride, int64_t unit, int64_t batch, const InputLayout& merge,
         const InputLayout& pack, bool check_finite, const OutputLayout& pack_grid,
         const OptArray& stats) {
        SpmmOffsetsParams p;
        p.ptr = ptr;
        p.offsets = offsets;
        p.values = values;
        p.pos = pos;
        p.scratch = scratch;
        p.b = b;
        p.b_image_stride = b_image_stride;
        p.c = c;
        p.ldc = ldc;
        p.c_image_stride = c_image_stride;
        p.len = len;
        p.images = images;
        p.nthreads = nthreads;
        p.grid_w = grid_w;
        p.t_base = t_base;
        p.row0 = row0;
        p.col0 = col0;
        p.plane_h = plane_h;
        p.plane_w = plane_w;
        p.bias = bias;
        p.seg_len = seg_len;
        p.seg_stride = seg_stride;
        p.unit = unit;
        p.batch = batch;
        p.merge = merge;
        p.pack = pack;
        p.check_finite = check_finite;
        p.pack_grid = pack_grid;
        p.stats = stats;
        return spmm_offsets(p);
      },
      py::kw_only(), py::arg("ptr"), py::arg("offsets"), py::arg("values"), py::arg("pos"),
      py::arg("scratch"), py::arg("b"), py::arg("b_image_stride"), py::arg("c"), py::arg("ldc"),
      py::arg("c_image_stride"), py::arg("len"), py::arg("images"), py::arg("nthreads"),
      py::arg("grid_w") = 0, py::arg("t_base") = 0, py::arg("row0") = 0, py::arg("col0") = 0,
      py::arg("plane_h") = 0, py::arg("plane_w") = 0, py::arg("bias") = py::none(),
      py::arg("seg_len") = 0, py::arg("seg_stride") = 0, py::arg("unit") = 1,
      py::arg("batch") = 0, py::arg("merge") = py::none(), py::arg("pack") = py::none(),
      py::arg("check_finite") = false, py::arg("pack_grid") = py::none(),
      py::arg("stats") = py::none(),
      "C_n[r, :len] = sum_j values[j] * B_n[offsets[j]:][:len] per image n; with "
      "check_finite, whether the b it packed was all finite (else None).");
  m.def(
      "sddmm_offsets",
      [](const py::array& ptr, const py::array& offsets, const py::array& a, int64_t lda,
         int64_t a_image_stride, const py::array& b, int64_t b_image_stride, int64_t len,
         int64_t images, const py::array& out, int nthreads, int64_t seg_len,
         int64_t seg_stride, const InputLayout& pack, const OutputLayout& pack_grid) {
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
        sddmm_offsets(p);
      },
      py::kw_only(), py::arg("ptr"), py::arg("offsets"), py::arg("a"), py::arg("lda"),
      py::arg("a_image_stride"), py::arg("b"), py::arg("b_image_stride"), py::arg("len"),
      py::arg("images"), py::arg("out"), py::arg("nthreads"), py::arg("seg_len") = 0,
      py::arg("seg_stride") = 0, py::arg("pack") = py::none(), py::arg("pack_grid") = py::none(),
      "out[j] = sum_n sum_t A_n[r, t] * B_n[offsets[j] + t] for every nonzero j of row r.");
  // Two dicts of spmm_offsets' and sddmm_offsets' keyword arguments.
  m.def("conv_grads_offsets", &conv_grads_offsets, py::arg("dx"), py::arg("dv"),
        "Both gradients of a convolution in one pass: spmm_offsets(**dx), sddmm_offsets(**dv).");
  m.def("conv_grads_one_pass", &conv_grads_one_pass, py::arg("dx"), py::arg("dv"),
        "Whether conv_grads_offsets(dx, dv) loads each window of dy once for both gradients.");
}

}  // namespace bindings
}  // namespace sparsetrain
