// The layout changes for channels_last tensors (ConvInputLayout / ConvOutputLayout with nhwc
// set), one block of kChannelBlock channels [c0, c0 + 16) at a time; conv_layout.cpp's entry
// points call them for the layouts that say nhwc. The packed side is the same as for NCHW.
#pragma once

#include <cstdint>

#include "kernels/conv_layout_args.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// Unit 1: channels [c0, c1) of image x (H, W, C) into the image's phase planes (out: its
// packed image), zeros at every padding position of those channels.
void pack_image_nhwc(const ConvInputLayout& l, const float* x, float* out, int64_t c0,
                     int64_t c1);
// Unit 16: those channels of group g (x: the whole (N, H, W, C) tensor, packed: all groups).
void pack_group_nhwc(const ConvInputLayout& l, const float* x, float* packed, int64_t g,
                     int64_t c0);
// The way back (the padding positions dropped): one image (unit 1), or group g (unit 16).
void unpack_image_nhwc(const ConvInputLayout& l, const float* in, float* x, int64_t c0);
void unpack_group_nhwc(const ConvInputLayout& l, const float* packed, float* x, int64_t g,
                       int64_t c0);
// Unit 1: channels [c0, c1) of image y (Ho, Wo, C) onto the image's grid (out, or nullptr),
// and summed into sums[0:c1 - c0] (c1 - c0 <= 16; or not: sums nullptr).
void grid_image_nhwc(const ConvOutputLayout& o, const float* y, float* out, int64_t c0,
                     int64_t c1, double* sums);
// Unit 16: those channels of group g (y: the whole tensor, grid: all groups).
void grid_group_nhwc(const ConvOutputLayout& o, const float* y, float* grid, int64_t g,
                     int64_t c0, double* sums);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
