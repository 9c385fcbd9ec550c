// The direct convolutions (stride-1 products on NCHW planes, conv_direct.cpp of the kernels):
// conv_direct_spmm and conv_direct_sddmm.
#include <optional>

#include "bindings/checks.h"
#include "bindings/families.h"
#include "dispatch/isa.h"
#include "kernels/kernels.h"

namespace sparsetrain {
namespace bindings {
namespace {

namespace k = sparsetrain::kernels;

// Both kernels: every check that keeps their reads and writes in bounds.
k::ConvDirectArgs<float> conv_direct_args(const py::array& ptr_a, const py::array& plane_a,
                                          const py::array& dy_a, const py::array& slot_a,
                                          const py::array& shift_a, const py::array& src_a,
                                          int64_t src_image_stride, int64_t sh, int64_t sw,
                                          int64_t oh, int64_t ow, int64_t images, int nthreads) {
  auto ptr = view<int64_t>(ptr_a, "ptr", 1);
  auto plane = view<int64_t>(plane_a, "plane", 1);
  auto dy = view<int32_t>(dy_a, "dy", 1);
  auto slot = view<int32_t>(slot_a, "slot", 1);
  auto shift = view<int64_t>(shift_a, "shift_w", 1);
  auto src = view<float>(src_a, "src", 1);
  const int64_t rows = ptr.size() - 1, nnz = plane.size();
  if (rows < 0) bad("row pointer is empty");
  if (ptr.data[0] != 0 || ptr.data[rows] != nnz) bad("row pointer must run from 0 to nnz");
  for (int64_t r = 0; r < rows; ++r)
    if (ptr.data[r + 1] < ptr.data[r]) bad("row pointer decreases");
  if (dy.size() != nnz || slot.size() != nnz) bad("dy / slot lengths differ from nnz");
  if (shift.size() < 1 || shift.size() > 64) bad("between 1 and 64 column shifts");
  // Shifts past the row only ever meet masked-off lanes; bounded so that the kernels' column
  // arithmetic (and the pointers it forms before masking) cannot overflow.
  for (int64_t s = 0; s < shift.size(); ++s)
    if (shift.data[s] < -(int64_t{1} << 40) || shift.data[s] > (int64_t{1} << 40))
      bad("column shift out of range");
  if (sh < 0 || sw < 0 || oh < 0 || ow < 0 || images < 0 || src_image_stride < 0)
    bad("negative size");
  // Planes far beyond any real one would overflow the kernels' column / row arithmetic (a
  // nonzero's plane must fit its image anyway: checked below).
  if (sh > (int64_t{1} << 40) || sw > (int64_t{1} << 40)) bad("source plane too large");
  for (int64_t j = 0; j < nnz; ++j) {
    if (plane.data[j] < 0 || plane.data[j] > src_image_stride - mul(sh, sw))
      bad("a source plane lies outside the image");
    if (slot.data[j] < 0 || slot.data[j] >= shift.size()) bad("slot out of range");
  }
  if (images > 0 && src.size() < mul(images, src_image_stride))
    bad("src is smaller than its images");
  k::ConvDirectArgs<float> a{};
  a.ptr = ptr.data;
  a.plane = plane.data;
  a.dy = dy.data;
  a.slot = slot.data;
  a.shift_w = shift.data;
  a.slots = shift.size();
  a.rows = rows;
  a.src = src.data;
  a.src_image_stride = src_image_stride;
  a.sh = sh;
  a.sw = sw;
  a.oh = oh;
  a.ow = ow;
  a.images = images;
  a.nthreads = nthreads;
  return a;
}

void conv_direct_spmm(const py::array& ptr_a, const py::array& plane_a, const py::array& dy_a,
                      const py::array& slot_a, const py::array& shift_a, const py::array& val_a,
                      const std::optional<py::array>& pos_a,
                      const std::optional<py::array>& scratch_a, const py::array& src_a,
                      int64_t src_image_stride, int64_t sh, int64_t sw, const py::array& out_a,
                      int64_t oh, int64_t ow, const std::optional<py::array>& bias_a,
                      int64_t images, int nthreads) {
  auto a = conv_direct_args(ptr_a, plane_a, dy_a, slot_a, shift_a, src_a, src_image_stride, sh, sw,
                            oh, ow, images, nthreads);
  const int64_t nnz = a.ptr[a.rows];
  auto val = view<float>(val_a, "values", 1);
  auto out = view<float>(out_a, "out", 1, true);
  if (val.size() != nnz) bad("values and index differ in length");
  if (out.size() != mul(images, a.rows, oh, ow)) bad("out must hold images x rows x oh x ow");
  a.val = val.data;
  a.out = out.data;
  a.out_image_stride = a.rows * oh * ow;
  const Scatter sc = scatter_args(pos_a, scratch_a, nnz);
  a.pos = sc.pos;
  a.scratch = sc.scratch;
  if (bias_a) {
    auto bv = view<float>(*bias_a, "bias", 1);
    if (bv.size() != a.rows) bad("bias length differs from the row count");
    a.bias = bv.data;
  }
  py::gil_scoped_release release;
  kernel_table().spmm_direct_f32(a);
}

void conv_direct_sddmm(const py::array& ptr_a, const py::array& plane_a, const py::array& dy_a,
                       const py::array& slot_a, const py::array& shift_a, const py::array& grad_a,
                       int64_t oh, int64_t ow, const py::array& src_a, int64_t src_image_stride,
                       int64_t sh, int64_t sw, int64_t images, const py::array& out_a,
                       int nthreads) {
  auto a = conv_direct_args(ptr_a, plane_a, dy_a, slot_a, shift_a, src_a, src_image_stride, sh, sw,
                            oh, ow, images, nthreads);
  auto grad = view<float>(grad_a, "grad", 1);
  auto out = view<float>(out_a, "out", 1, true);
  if (out.size() != a.ptr[a.rows]) bad("out must hold one value per nonzero");
  if (grad.size() != mul(images, a.rows, oh, ow)) bad("grad must hold images x rows x oh x ow");
  a.grad = grad.data;
  a.grad_image_stride = a.rows * oh * ow;
  a.out = out.data;
  py::gil_scoped_release release;
  kernel_table().sddmm_direct_f32(a);
}

}  // namespace

void register_conv_direct(py::module_& m) {
  m.def("conv_direct_spmm", &conv_direct_spmm, py::kw_only(), py::arg("ptr"), py::arg("plane"),
        py::arg("dy"), py::arg("slot"), py::arg("shift_w"), py::arg("values"), py::arg("pos"),
        py::arg("scratch"), py::arg("src"), py::arg("src_image_stride"), py::arg("sh"),
        py::arg("sw"), py::arg("out"), py::arg("oh"), py::arg("ow"), py::arg("bias"),
        py::arg("images"), py::arg("nthreads"),
        "A stride-1 convolution on NCHW sh x sw planes of src into oh x ow planes of out.");
  m.def("conv_direct_sddmm", &conv_direct_sddmm, py::kw_only(), py::arg("ptr"), py::arg("plane"),
        py::arg("dy"), py::arg("slot"), py::arg("shift_w"), py::arg("grad"), py::arg("oh"),
        py::arg("ow"), py::arg("src"), py::arg("src_image_stride"), py::arg("sh"), py::arg("sw"),
        py::arg("images"), py::arg("out"), py::arg("nthreads"),
        "The values' gradient of conv_direct_spmm: out[j] = sum over images and pixels.");
}

}  // namespace bindings
}  // namespace sparsetrain
