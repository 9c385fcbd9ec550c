// Both gradients of a stride-1 convolution from one load of each window of its output
// gradient (the one-pass form of conv_grads_offsets_planes / _planes16, conv_grads_form.h):
// the input gradient written into NCHW planes as the form's kernel writes it, and every
// nonzero's products with the packed input summed alongside (grads_tiles.h).
#pragma once

#include <cstdint>

#include "kernels/grads_tiles.h"
#include "kernels/image_rows_split.h"
#include "kernels/offsets_args.h"
#include "kernels/plane_scatter.h"
#include "kernels/sddmm_offsets_images.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// Both gradients of rows [r0, r1) of image n (unit 16: group n, `batch` images in all) from
// its packed output gradient b: the input gradient into dx's planes, and every nonzero's
// products with the packed input x (row r's plane x_plane elements apart, position t of the
// row at unit * t_base + t) added into dvt, indexed as the transposed index (p.ptr / p.off) is.
template <class T>
void grads_image(const OffsetsProduct<T>& p, const PlanesOut<T>& o, int64_t unit, int64_t batch,
                 const float* values, int64_t n, int64_t r0, int64_t r1, const float* b,
                 const float* x, int64_t x_plane, float* dvt) {
  const float* x0 = x + o.t_base * unit;  // position 0 of each row
  rows_into_planes(p.spans, o, unit, batch, n, r0, r1, nullptr,
                   [&](int64_t r, int64_t c0, int64_t c1, float* buf) {
                     const auto src_chunk = [&](int64_t j) { return b + p.off[j] + c0; };
                     grads_span(p.ptr[r], p.ptr[r + 1], src_chunk, values, x0 + r * x_plane + c0, 0,
                                c1 - c0, buf, dvt);
                   });
}

// Both gradients in one pass (x_plane: conv_grads_one_pass_plane's), the values gradient
// summed in the transposed index's order and gathered into dv.out (out[j] = entry pos[j]).
// The kernel packing x and dy (dv.pack_b; dy_finite: dy's per-image flags, or nullptr):
// threads own the fixed image slices of for_each_packed_image, each summing its own copy.
// Packed beforehand: threads own (image, row) pairs, balanced by nonzeros (all of them busy
// even for one image group), each image summing into its own copy. Either way the copies are
// added in a fixed order: the same result for any thread count.
template <class T>
void grads_one_pass(const OffsetsProduct<T>& p, const PlanesOut<T>& o, int64_t unit, int64_t batch,
                    unsigned char* dy_finite, const float* values, const SddmmOffsetsArgs<T>& dv,
                    int64_t x_plane) {
  const int64_t nnz = dv.ptr[dv.rows], rows = p.rows;
  const bool packs = dv.pack_b != nullptr;
  const int64_t copies = packs ? image_slices(dv) : dv.images;
  ZeroedFloats sums(copies * nnz);
  if (packs) {
    for_each_packed_image(
        dv, copies, 2 * (nnz + rows) * p.spans.len, dy_finite,
        [&](int64_t part, int64_t n, bool, const float* packed, const float*, const float* x) {
          grads_image(p, o, unit, batch, values, n, 0, rows, packed, x, x_plane,
                      sums.data() + part * nnz);
        });
  } else {
    split_image_rows(p.nthreads, p.ptr, rows, dv.images, 2 * p.spans.len,
                     [&](int64_t n, int64_t r0, int64_t r1) {
                       grads_image(p, o, unit, batch, values, n, r0, r1, p.b + n * p.b_image_stride,
                                   dv.b + n * dv.b_image_stride, x_plane, sums.data() + n * nnz);
                     });
  }
  for (int64_t j = 0; j < nnz; ++j) {
    const int64_t k = p.pos[j];
    float s = sums[k];
    for (int64_t part = 1; part < copies; ++part) s += sums[part * nnz + k];
    dv.out[j] = s;
  }
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
