// subsample: x[:, :, ::sh, ::sw] of NCHW planes and its gradient (the strided 1x1
// convolutions' input).
#include "bindings/checks.h"
#include "bindings/families.h"
#include "dispatch/isa.h"
#include "kernels/kernels.h"

namespace sparsetrain {
namespace bindings {
namespace {

namespace k = sparsetrain::kernels;

// grad = false: src = x (planes of h x w), dst = the subsampled planes; grad = true: src = g
// (the subsampled planes), dst = dx.
void subsample(const py::array& src_a, const py::array& dst_a, int64_t planes, int64_t h, int64_t w,
               int64_t sh, int64_t sw, int nthreads, bool grad) {
  if (planes < 0 || h < 0 || w < 0) bad("subsample: negative size");
  if (sh < 1 || sw < 1) bad("subsample: strides must be >= 1");
  auto src = view<float>(src_a, "src", 1);
  auto dst = view<float>(dst_a, "dst", 1, true);
  const int64_t full = mul(planes, h, w);
  const int64_t sampled = mul(planes, (h + sh - 1) / sh, (w + sw - 1) / sw);
  if (src.size() != (grad ? sampled : full) || dst.size() != (grad ? full : sampled))
    bad("subsample: src / dst sizes do not match planes x h x w and its subsampling");
  if (overlap(src, dst)) bad("subsample: src and dst must not overlap");
  const k::SubsampleArgs<float> args{src.data, dst.data, planes, h, w, sh, sw, nthreads};
  py::gil_scoped_release release;
  if (grad)
    kernel_table().subsample_grad_f32(args);
  else
    kernel_table().subsample_f32(args);
}

}  // namespace

void register_subsample(py::module_& m) {
  m.def("subsample", &subsample, py::kw_only(), py::arg("src"), py::arg("dst"), py::arg("planes"),
        py::arg("h"), py::arg("w"), py::arg("sh"), py::arg("sw"), py::arg("nthreads"),
        py::arg("grad") = false,
        "dst = src[:, :, ::sh, ::sw] of planes h x w; grad: its gradient (zeros elsewhere).");
}

}  // namespace bindings
}  // namespace sparsetrain
