// One image of the offsets products, for kernels that run several of them per packed image
// (the fused gradients: the input gradient and the values gradient from one packing of dy).
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// Floats of the merge form's per-thread phase-plane buffer (0 without merge).
inline int64_t merge_planes_size(const SpmmOffsetsArgs& a) {
  return a.merge ? a.merge->sh * a.merge->sw * a.merge->hq * a.merge->wq : 0;
}

// Image n of f32_spmm_csr_offsets with B_n already packed at b (the pack / pack_grid forms):
// all its rows, or with merge all its channels (planes: a zeroed merge_planes_size buffer the
// calling thread owns). values are in the index's order (scattered already where pos is set).
// Defined in spmm_csr_offsets.cpp.
void spmm_offsets_image(const SpmmOffsetsArgs& a, const float* values, int64_t n, const float* b,
                        float* planes);

// Both gradients of rows [r0, r1) of image n (with unit 16: group n) of a stride-1
// convolution from one load of each window of its packed output gradient b: the input
// gradient as spmm_offsets_image writes it (the grid form, a.grid_w > 0; no merge), and
// every nonzero's products with the packed input x (row r's plane x_plane floats apart,
// position t of the row at unit * t_base + t) added into dvt, indexed as the transposed
// index (a.ptr / a.off) is.
// Defined in spmm_csr_offsets.cpp.
void grads_offsets_image(const SpmmOffsetsArgs& a, const float* values, int64_t n, int64_t r0,
                         int64_t r1, const float* b, const float* x, int64_t x_plane,
                         float* dvt);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
