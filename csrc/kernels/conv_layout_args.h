// The convolution layouts and the kernels that change them (conv_layout.cpp): PyTorch's NCHW
// tensors <-> (groups, channels, stride phases sh x sw, hq, wq, unit), the batch in groups of
// `unit` (1 or 16) images, each pixel a vector of `unit` elements.
// T is the storage type of every element buffer (see kernels.h).
#pragma once

#include <cstdint>

namespace sparsetrain {
namespace kernels {

// The input side: the zero-padded input as phase planes.
struct ConvInputLayout {
  int64_t n, c;          // images, channels of the NCHW tensor
  int64_t groups, unit;  // groups = ceil(n / unit)
  int64_t h, w;          // NCHW spatial size
  int64_t sh, sw;        // stride phases
  int64_t pt, pl;        // top / left zero padding
  int64_t hq, wq;        // phase plane size: hq * sh >= h + pt, wq * sw >= w + pl
  // The PyTorch side in channels_last order (N, H, W, C) instead of NCHW: the layout
  // changes read and write it as such (conv_layout_nhwc.cpp); the packed side is the same.
  int64_t nhwc = 0;
};

// conv_pack_input: NCHW x -> packed (zero padding, zero lanes for missing images);
// conv_unpack_grad_input: packed -> NCHW x (the padding positions are dropped).
template <class T>
struct ConvInputArgs {
  ConvInputLayout layout;
  T* x;       // n * c * h * w
  T* packed;  // groups * c * sh * sw * hq * wq * unit
  int nthreads;
  // pack only, optional (groups * c): finite[g * c + ch] = 1 iff every value channel ch of
  // group g packed is finite (read back while it is in cache: the forward pass's NaN/Inf
  // check without a pass of its own over x).
  unsigned char* finite = nullptr;
};

// The output side: channel c of group g holds per_channel pixels; output pixel (oh, ow) is at
// offset + oh * wq + ow (the bordered grid the offsets products read an output gradient on).
struct ConvOutputLayout {
  int64_t n, c, groups, unit;
  int64_t ho, wo, wq;
  int64_t per_channel, offset;
  int64_t nhwc = 0;  // y in channels_last order (N, Ho, Wo, C), as ConvInputLayout's
};

inline bool operator==(const ConvOutputLayout& p, const ConvOutputLayout& q) {
  return p.n == q.n && p.c == q.c && p.groups == q.groups && p.unit == q.unit && p.ho == q.ho &&
         p.wo == q.wo && p.wq == q.wq && p.per_channel == q.per_channel && p.offset == q.offset &&
         p.nhwc == q.nhwc;
}

// conv_pack_grad_output: NCHW y -> grid, zeros at every non-output pixel, and, when
// channel_sums is given, channel_sums[g * c + ch] = the sum of group g's values of channel ch
// (the bias gradient, in the same pass). grid == nullptr (unit 1): the sums only, for the
// layouts whose kernels pack y themselves. (The forward pass needs no way back: the offsets
// products write NCHW outputs themselves.)
template <class T>
struct ConvOutputArgs {
  ConvOutputLayout layout;
  const T* y;            // n * c * ho * wo
  T* grid;               // groups * c * per_channel * unit, or nullptr
  double* channel_sums;  // groups * c, or nullptr
  int nthreads;
};

}  // namespace kernels
}  // namespace sparsetrain
