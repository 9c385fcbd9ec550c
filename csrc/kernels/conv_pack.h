// Packing one image at a time, for the kernels that fuse the layout change into their own
// loop (the packed image is used from cache right after it is written, and the packed
// tensor never exists): see SpmmOffsetsArgs::pack.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// out = the phase planes of image x (NCHW, l.c channels; unit 1), as conv_pack_input writes
// them for one image. With finite set, *finite = 1 iff every value of x is finite.
// Defined in conv_layout.cpp.
void pack_image(const ConvInputLayout& l, const float* x, float* out, unsigned char* finite);

// Floats of one packed image (unit 1).
inline int64_t packed_image_size(const ConvInputLayout& l) {
  return l.c * l.sh * l.sw * l.hq * l.wq;
}

// out = image y (NCHW, o.c channels of ho x wo) on the bordered grid, as conv_pack_grad_output
// writes one image (unit 1; zeros at every non-output position). With finite set, *finite = 1
// iff every value of y is finite. Defined in conv_layout.cpp.
void pack_grid_image(const ConvOutputLayout& o, const float* y, float* out, unsigned char* finite);

inline int64_t packed_grid_size(const ConvOutputLayout& o) { return o.c * o.per_channel; }

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
