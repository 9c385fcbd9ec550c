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

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
