// The conv layout classes and the kernels that change layouts: NCHW x <-> phase planes
// (conv_pack_input, conv_unpack_grad_input) and NCHW dy -> its bordered grid
// (conv_pack_grad_output).
#include "bindings/conv_layout.h"

#include <optional>
#include <string>
#include <vector>

#include "bindings/checks.h"
#include "bindings/families.h"
#include "dispatch/isa.h"

namespace sparsetrain {
namespace bindings {

namespace k = sparsetrain::kernels;

k::ConvInputLayout conv_input_layout(int64_t n, int64_t c, int64_t unit, int64_t h, int64_t w,
                                     int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t hq,
                                     int64_t wq, bool nhwc) {
  if (unit != 1 && unit != 16) bad("unit must be 1 or 16");
  if (n < 0 || c < 0 || h < 0 || w < 0 || sh < 1 || sw < 1 || pt < 0 || pl < 0)
    bad("bad convolution input layout");
  if (hq < 0 || wq < 0 || mul(hq, sh) < sum(h, pt) || mul(wq, sw) < sum(w, pl))
    bad("phase planes smaller than the padded input");
  return {n, c, (n + unit - 1) / unit, unit, h, w, sh, sw, pt, pl, hq, wq, nhwc ? 1 : 0};
}

k::ConvOutputLayout conv_output_layout(int64_t n, int64_t c, int64_t unit, int64_t ho, int64_t wo,
                                       int64_t wq, int64_t per_channel, int64_t offset,
                                       bool nhwc) {
  if (unit != 1 && unit != 16) bad("unit must be 1 or 16");
  if (n < 0 || c < 0 || ho < 0 || wo < 0 || wo > wq || offset < 0 || per_channel < 0)
    bad("bad convolution output layout");
  if (ho > 0 && wo > 0 && sum(offset, mul(ho - 1, wq), wo) > per_channel)
    bad("per_channel too small for the output pixels");
  return {n, c, (n + unit - 1) / unit, unit, ho, wo, wq, per_channel, offset, nhwc ? 1 : 0};
}

namespace {

// The constructor's fields, in its order: repr, pickling and equality use them.
std::vector<int64_t> fields(const k::ConvInputLayout& l) {
  return {l.n, l.c, l.unit, l.h, l.w, l.sh, l.sw, l.pt, l.pl, l.hq, l.wq, l.nhwc};
}
std::vector<int64_t> fields(const k::ConvOutputLayout& l) {
  return {l.n, l.c, l.unit, l.ho, l.wo, l.wq, l.per_channel, l.offset, l.nhwc};
}
const char* const kInputFields[] = {"n",  "c",  "unit", "h",  "w",   "sh",
                                    "sw", "pt", "pl",   "hq", "wq", "nhwc"};
const char* const kOutputFields[] = {"n",  "c",           "unit",   "ho",  "wo",
                                     "wq", "per_channel", "offset", "nhwc"};

// The last field, nhwc, is shown only when set (an NCHW layout reads as it always did).
template <class L, size_t N>
std::string repr(const char* cls, const L& l, const char* const (&names)[N]) {
  const auto v = fields(l);
  std::string s = std::string(cls) + "(";
  for (size_t i = 0; i < N; ++i)
    if (i + 1 < N || v[i] != 0)
      s += (i ? ", " : "") + std::string(names[i]) + "=" + std::to_string(v[i]);
  return s + ")";
}

k::ConvInputLayout input_from(const std::vector<int64_t>& v) {
  // (11 fields: pickled before channels_last layouts existed)
  if (v.size() != 11 && v.size() != 12) bad("ConvInputLayout: 12 fields expected");
  return conv_input_layout(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10],
                           v.size() == 12 && v[11] != 0);
}
k::ConvOutputLayout output_from(const std::vector<int64_t>& v) {
  if (v.size() != 8 && v.size() != 9) bad("ConvOutputLayout: 9 fields expected");
  return conv_output_layout(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                            v.size() == 9 && v[8] != 0);
}

// Packs (or unpacks) x; a pack with check_finite also returns whether every value of x is
// finite (None otherwise).
std::optional<bool> conv_input(bool pack, const py::array& x_a, const py::array& packed_a,
                               const k::ConvInputLayout& l, int nthreads, bool check_finite) {
  auto x = view<float>(x_a, "x", 1, !pack);
  auto packed = view<float>(packed_a, "packed", 1, pack);
  if (x.size() != mul(l.n, l.c, l.h, l.w)) bad("x has the wrong size for the layout");
  if (packed.size() != mul(mul(l.groups, l.c, l.sh, l.sw), l.hq, l.wq, l.unit))
    bad("packed has the wrong size for the layout");
  std::vector<unsigned char> finite(check_finite && pack ? mul(l.groups, l.c) : 0, 1);
  k::ConvInputArgs<float> args{l, x.data, packed.data, nthreads,
                               finite.empty() ? nullptr : finite.data()};
  {
    py::gil_scoped_release release;
    if (pack)
      kernel_table().conv_pack_input_f32(args);
    else
      kernel_table().conv_unpack_grad_input_f32(args);
  }
  if (check_finite && pack) return all_set(finite);
  return std::nullopt;
}

void conv_pack_grad_output(const py::array& y_a, const std::optional<py::array>& grid_a,
                           const std::optional<py::array>& sums_a, const k::ConvOutputLayout& l,
                           int nthreads) {
  auto y = view<float>(y_a, "y", 1);
  const bool sums_only = !grid_a;
  View<float> grid{};
  if (!sums_only) grid = view<float>(*grid_a, "grid", 1, true);
  if (sums_only && (l.unit != 1 || !sums_a))
    bad("without a grid only channel sums are computed: unit 1 and channel_sums needed");
  if (y.size() != mul(l.n, l.c, l.ho, l.wo)) bad("y has the wrong size for the layout");
  if (!sums_only && grid.size() < mul(l.groups, l.c, l.per_channel, l.unit))
    bad("grid is too small for the layout");
  double* sums = nullptr;
  if (sums_a) {
    auto sv = view<double>(*sums_a, "channel_sums", 1, true);
    if (sv.size() != mul(l.groups, l.c)) bad("channel_sums must hold groups * channels values");
    sums = sv.data;
  }
  k::ConvOutputArgs<float> args{l, y.data, sums_only ? nullptr : grid.data, sums, nthreads};
  py::gil_scoped_release release;
  kernel_table().conv_pack_grad_output_f32(args);
}

}  // namespace

void register_conv_layout(py::module_& m) {
  py::class_<k::ConvInputLayout>(
      m, "ConvInputLayout",
      "n NCHW images of c channels, h x w, in groups of unit (1 or 16) images, as sh x sw "
      "phase planes of hq x wq holding the input padded by pt rows and pl columns.")
      .def(py::init(&conv_input_layout), py::kw_only(), py::arg("n"), py::arg("c"), py::arg("unit"),
           py::arg("h"), py::arg("w"), py::arg("sh"), py::arg("sw"), py::arg("pt"), py::arg("pl"),
           py::arg("hq"), py::arg("wq"), py::arg("nhwc") = false,
           "A checked layout (ValueError if the planes cannot hold the padded input); nhwc: x "
           "is channels_last (N, H, W, C) instead of NCHW.")
      .def_readonly("n", &k::ConvInputLayout::n)
      .def_readonly("c", &k::ConvInputLayout::c)
      .def_readonly("groups", &k::ConvInputLayout::groups)
      .def_readonly("unit", &k::ConvInputLayout::unit)
      .def_readonly("h", &k::ConvInputLayout::h)
      .def_readonly("w", &k::ConvInputLayout::w)
      .def_readonly("sh", &k::ConvInputLayout::sh)
      .def_readonly("sw", &k::ConvInputLayout::sw)
      .def_readonly("pt", &k::ConvInputLayout::pt)
      .def_readonly("pl", &k::ConvInputLayout::pl)
      .def_readonly("hq", &k::ConvInputLayout::hq)
      .def_readonly("wq", &k::ConvInputLayout::wq)
      .def_property_readonly("nhwc", [](const k::ConvInputLayout& l) { return l.nhwc != 0; })
      .def("__repr__",
           [](const k::ConvInputLayout& l) { return repr("ConvInputLayout", l, kInputFields); })
      .def(
          "__eq__",
          [](const k::ConvInputLayout& p, const k::ConvInputLayout& q) {
            return fields(p) == fields(q);
          },
          py::is_operator())
      .def(py::pickle([](const k::ConvInputLayout& l) { return fields(l); }, &input_from));

  py::class_<k::ConvOutputLayout>(
      m, "ConvOutputLayout",
      "n NCHW output images of c channels, ho x wo, in groups of unit (1 or 16) images, on a "
      "grid of wq columns: pixel (y, x) of a channel at offset + y * wq + x, channels "
      "per_channel apart.")
      .def(py::init(&conv_output_layout), py::kw_only(), py::arg("n"), py::arg("c"),
           py::arg("unit"), py::arg("ho"), py::arg("wo"), py::arg("wq"), py::arg("per_channel"),
           py::arg("offset"), py::arg("nhwc") = false,
           "A checked layout (ValueError if a channel cannot hold its pixels); nhwc: y is "
           "channels_last.")
      .def_readonly("n", &k::ConvOutputLayout::n)
      .def_readonly("c", &k::ConvOutputLayout::c)
      .def_readonly("groups", &k::ConvOutputLayout::groups)
      .def_readonly("unit", &k::ConvOutputLayout::unit)
      .def_readonly("ho", &k::ConvOutputLayout::ho)
      .def_readonly("wo", &k::ConvOutputLayout::wo)
      .def_readonly("wq", &k::ConvOutputLayout::wq)
      .def_readonly("per_channel", &k::ConvOutputLayout::per_channel)
      .def_readonly("offset", &k::ConvOutputLayout::offset)
      .def_property_readonly("nhwc", [](const k::ConvOutputLayout& l) { return l.nhwc != 0; })
      .def("__repr__",
           [](const k::ConvOutputLayout& l) { return repr("ConvOutputLayout", l, kOutputFields); })
      .def(
          "__eq__",
          [](const k::ConvOutputLayout& p, const k::ConvOutputLayout& q) { return p == q; },
          py::is_operator())
      .def(py::pickle([](const k::ConvOutputLayout& l) { return fields(l); }, &output_from));

  m.def(
      "conv_pack_input",
      [](const py::array& x, const py::array& packed, const k::ConvInputLayout& layout,
         int nthreads,
         bool check_finite) { return conv_input(true, x, packed, layout, nthreads, check_finite); },
      py::kw_only(), py::arg("x"), py::arg("packed"), py::arg("layout"), py::arg("nthreads"),
      py::arg("check_finite") = false,
      "NCHW x -> its phase planes; with check_finite, whether x is all finite (else None).");
  m.def(
      "conv_unpack_grad_input",
      [](const py::array& x, const py::array& packed, const k::ConvInputLayout& layout,
         int nthreads) { conv_input(false, x, packed, layout, nthreads, false); },
      py::kw_only(), py::arg("x"), py::arg("packed"), py::arg("layout"), py::arg("nthreads"),
      "Phase planes (an input gradient) -> NCHW x, the padding dropped.");
  m.def("conv_pack_grad_output", &conv_pack_grad_output, py::kw_only(), py::arg("y"),
        py::arg("grid"), py::arg("channel_sums"), py::arg("layout"), py::arg("nthreads"),
        "NCHW y -> its bordered grid (grid None: none), and its channel sums if given.");
}

}  // namespace bindings
}  // namespace sparsetrain
