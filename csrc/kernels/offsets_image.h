// What the offsets forms share beyond their building blocks: the values in the index's order,
// and one image of a form, for the kernels that run several products per packed image (both
// gradients of a convolution from one packing of dy, conv_grads_offsets_<form>.cpp).
#pragma once

#include <cstdint>

#include "kernels/offsets_args.h"
#include "kernels/spmm_tiles.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// The product's values in its index's order: val, or (pos set) val scattered into scratch.
template <class T>
inline const float* index_values(const OffsetsProduct<T>& p) {
  if (p.pos == nullptr) return p.val;
  return scatter_values(p.val, p.pos, p.ptr[p.rows] - p.ptr[0], p.scratch, p.nthreads);
}

// Elements of the merge form's per-thread phase-plane buffer: one channel's phase planes, or
// (channels_last) 16 channels' phase planes and then their 16 NCHW planes.
inline int64_t merge_planes_size(const ConvInputLayout& l) {
  const int64_t planes = l.sh * l.sw * l.hq * l.wq;
  return l.nhwc ? 16 * (planes + l.h * l.w) : planes;
}

// Image n of spmm_offsets_planes with B_n already packed at b: all its rows. values are in
// the index's order (index_values). Defined in spmm_offsets_planes.cpp.
template <class T>
void spmm_offsets_planes_image(const SpmmOffsetsPlanesArgs<T>& a, const float* values, int64_t n,
                               const float* b);

// Image n of spmm_offsets_merge with B_n already packed at b: all its channels (planes: a
// zeroed merge_planes_size buffer the calling thread owns). Defined in spmm_offsets_merge.cpp.
template <class T>
void spmm_offsets_merge_image(const SpmmOffsetsMergeArgs<T>& a, const float* values, int64_t n,
                              const float* b, float* planes);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
