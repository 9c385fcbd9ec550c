// The parameters of the offsets family's bindings, by name, and their checked kernel arguments
// (kernels/offsets_args.h). The parameters come in the kernels' pieces (the product, the
// packing of B, the destination), each checked by one function, so every form and both
// gradients at once are checked by the same code.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "bindings/checks.h"
#include "kernels/kernels.h"

namespace sparsetrain {
namespace bindings {

using OptArray = std::optional<py::array>;

// The product of every spmm form (OffsetsProduct). The required buffers are NumPy arrays (the
// binding's signature says so); the optional ones absent by default.
struct ProductParams {
  py::object ptr, offsets, values;
  OptArray pos, scratch;
  py::object b;
  int64_t b_image_stride = 0, len = 0, images = 0;
  int nthreads = 1;
  int64_t seg_len = 0, seg_stride = 0;
};

// Where B comes from (ImagePack): packed by the kernel from NCHW x (pack) or dy (pack_grid),
// check_finite asking for the per-image finite flags of what it packed.
struct PackParams {
  std::optional<kernels::ConvInputLayout> pack;
  std::optional<kernels::ConvOutputLayout> pack_grid;
  bool check_finite = false;
};

// A plane window (PlanesOut).
struct PlanesParams {
  py::object c;
  int64_t ldc = 0, c_image_stride = 0;
  int64_t grid_w = 0, t_base = 0, row0 = 0, col0 = 0, plane_h = 0, plane_w = 0;
  OptArray bias;
  int64_t px = 1;  // pixel stride: 1 (NCHW planes) or the channel count (channels_last)
};

struct SpmmRowsParams {
  ProductParams p;
  PackParams pack;
  py::object c;
  int64_t ldc = 0, c_image_stride = 0;
  OptArray stats;
};

struct SpmmPlanesParams {
  ProductParams p;
  PackParams pack;
  PlanesParams out;
  OptArray stats;
};

struct SpmmPlanes16Params {
  ProductParams p;
  PlanesParams out;
  int64_t batch = 0;
  OptArray stats;
};

struct SpmmMergeParams {
  ProductParams p;
  PackParams pack;
  py::object c;
  int64_t c_image_stride = 0, t_base = 0;
  kernels::ConvInputLayout merge{};
};

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

// The checked arguments of one spmm form's call, with the layouts and flags they point to.
// Filled in place (args points into the struct), so it is never copied or moved.
template <class Args>
struct SpmmCall {
  Args args{};
  kernels::ConvInputLayout pack{}, merge{};
  kernels::ConvOutputLayout grid{};
  std::vector<unsigned char> finite;
  bool check_finite = false;
  bool empty = false;  // len or images 0: no kernel to run (its sums zeroed here)
  SpmmCall() = default;
  SpmmCall(const SpmmCall&) = delete;
  SpmmCall& operator=(const SpmmCall&) = delete;
  // check_finite: whether every image of b the kernel packed was finite; else None.
  std::optional<bool> result() const {
    if (check_finite) return all_set(finite);
    return std::nullopt;
  }
};
using SpmmRowsCall = SpmmCall<kernels::SpmmOffsetsRowsArgs<float>>;
using SpmmPlanesCall = SpmmCall<kernels::SpmmOffsetsPlanesArgs<float>>;
using SpmmPlanes16Call = SpmmCall<kernels::SpmmOffsetsPlanes16Args<float>>;
using SpmmMergeCall = SpmmCall<kernels::SpmmOffsetsMergeArgs<float>>;

// The same for sddmm_offsets.
struct SddmmOffsetsCall {
  kernels::SddmmOffsetsArgs<float> args{};
  kernels::ConvInputLayout pack{};
  kernels::ConvOutputLayout grid{};
  SddmmOffsetsCall() = default;
  SddmmOffsetsCall(const SddmmOffsetsCall&) = delete;
  SddmmOffsetsCall& operator=(const SddmmOffsetsCall&) = delete;
};

// Check p and fill call (ValueError on the first argument that does not fit).
void prepare(SpmmRowsCall& call, const SpmmRowsParams& p);
void prepare(SpmmPlanesCall& call, const SpmmPlanesParams& p);
void prepare(SpmmPlanes16Call& call, const SpmmPlanes16Params& p);
void prepare(SpmmMergeCall& call, const SpmmMergeParams& p);
void prepare(SddmmOffsetsCall& call, const SddmmOffsetsParams& p);

// A parameter known to be a NumPy array (the binding's signature said so).
inline py::array as_array(const py::object& o) { return py::reinterpret_borrow<py::array>(o); }

}  // namespace bindings
}  // namespace sparsetrain
