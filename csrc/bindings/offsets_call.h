// The arguments of spmm_offsets and sddmm_offsets, by name, and their checked kernel
// arguments. Both bindings and conv_grads_offsets' dict arguments fill the same parameters,
// so every form is checked by the same code.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "bindings/checks.h"
#include "kernels/kernels.h"

namespace sparsetrain {
namespace bindings {

// spmm_offsets' parameters (kernels.h, SpmmOffsetsArgs, says what each means). The required
// buffers are NumPy arrays (the caller checked that); the optional ones absent by default.
struct SpmmOffsetsParams {
  py::object ptr, offsets, values;
  std::optional<py::array> pos, scratch;
  py::object b;
  int64_t b_image_stride = 0;
  py::object c;
  int64_t ldc = 0, c_image_stride = 0, len = 0, images = 0;
  int nthreads = 1;
  int64_t grid_w = 0, t_base = 0, row0 = 0, col0 = 0, plane_h = 0, plane_w = 0;
  std::optional<py::array> bias;
  int64_t seg_len = 0, seg_stride = 0, unit = 1, batch = 0;
  std::optional<kernels::ConvInputLayout> merge, pack;
  bool check_finite = false;
  std::optional<kernels::ConvOutputLayout> pack_grid;
  std::optional<py::array> stats;
};

// sddmm_offsets' parameters (SddmmOffsetsArgs).
struct SddmmOffsetsParams {
  py::object ptr, offsets, a;
  int64_t lda = 0, a_image_stride = 0;
  py::object b;
  int64_t b_image_stride = 0, len = 0, images = 0;
  py::object out;
  int nthreads = 1;
  int64_t seg_len = 0, seg_stride = 0;
  std::optional<kernels::ConvInputLayout> pack;
  std::optional<kernels::ConvOutputLayout> pack_grid;
};

// The checked arguments of one spmm_offsets call, with the layouts and flags they point to.
// Filled in place (args points into the struct), so it is never copied or moved.
struct SpmmOffsetsCall {
  kernels::SpmmOffsetsArgs args{};
  kernels::ConvInputLayout pack{}, merge{};
  kernels::ConvOutputLayout grid{};
  std::vector<unsigned char> finite;
  bool check_finite = false;
  bool empty = false;  // len or images 0: no kernel to run (its sums zeroed here)
  SpmmOffsetsCall() = default;
  SpmmOffsetsCall(const SpmmOffsetsCall&) = delete;
  SpmmOffsetsCall& operator=(const SpmmOffsetsCall&) = delete;
  // check_finite: whether every image of b the kernel packed was finite; else None.
  std::optional<bool> result() const {
    if (check_finite) return all_set(finite);
    return std::nullopt;
  }
};

// The same for sddmm_offsets.
struct SddmmOffsetsCall {
  kernels::SddmmOffsetsArgs args{};
  kernels::ConvInputLayout pack{};
  kernels::ConvOutputLayout grid{};
  SddmmOffsetsCall() = default;
  SddmmOffsetsCall(const SddmmOffsetsCall&) = delete;
  SddmmOffsetsCall& operator=(const SddmmOffsetsCall&) = delete;
};

// Check p and fill call (ValueError on the first argument that does not fit).
void prepare_spmm_offsets(SpmmOffsetsCall& call, const SpmmOffsetsParams& p);
void prepare_sddmm_offsets(SddmmOffsetsCall& call, const SddmmOffsetsParams& p);

// A parameter known to be a NumPy array (the binding's signature or the dict parser said so).
inline py::array as_array(const py::object& o) { return py::reinterpret_borrow<py::array>(o); }

}  // namespace bindings
}  // namespace sparsetrain
