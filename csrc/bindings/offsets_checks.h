// The bounds checks of the offsets kernels, which read B_n[off[j] + t] and write
// C_n[r * ldc + t] for `images` images a stride apart: every such element must be inside the
// buffers handed in (O(rows + nnz), small next to the products), output images disjoint.
#pragma once

#include <cstdint>
#include <string>

#include "bindings/checks.h"
#include "kernels/kernels.h"

namespace sparsetrain {
namespace bindings {

struct OffsetsExtent {
  int64_t min_off = 0, max_off = -1;
};

// The index every offsets kernel takes, checked (pointer from 0, non-decreasing, ending at the
// number of offsets; no negative offset), with the sizes the calls share.
struct OffsetsIndex {
  View<int64_t> ptr, off;
  OffsetsExtent extent;
  int64_t rows, nnz;
};
OffsetsIndex offsets_index(const py::array& ptr, const py::array& off, int64_t len, int64_t images);

// Images a stride apart, each read from last_start for len floats: inside a buffer of size.
void check_extent(const char* name, int64_t size, int64_t images, int64_t image_stride,
                  int64_t last_start, int64_t len);

// Images of an output (or of the output gradient) must not overlap: overlapping outputs
// would be written by several threads at once, and they bound the image count by the buffer.
void check_disjoint(const char* name, int64_t images, int64_t image_stride, int64_t footprint);

// `rows` rows of `len` floats, `ld` apart, in images `image_stride` apart: inside the buffer,
// and images disjoint.
void check_row_block(const char* name, int64_t size, int64_t images, int64_t image_stride,
                     int64_t rows, int64_t ld, int64_t len);

// Segments (seg_len of every seg_stride positions) only ever narrow the range [0, len) the
// bounds checks cover.
void check_segments(int64_t seg_len, int64_t seg_stride);

// The fused forms' offsets: every run [off, off + len) inside one packed image.
void check_within_packed(const OffsetsExtent& e, int64_t nnz, int64_t len, int64_t image,
                         const char* form);

// spmm_offsets' merge form: the rows are the phase planes of `merge` (unit 1, `images`
// images), written straight into `images` NCHW tensors of merge.c channels, c_image_stride
// apart.
void check_merge(const kernels::ConvInputLayout& merge, int64_t rows, int64_t images,
                 int64_t t_base, int64_t len, int64_t c_size, int64_t c_image_stride);

// The fused-pack form: b is the NCHW input (images x c x h x w, image stride
// b_image_stride = c * h * w), packed image by image per `pack` (unit 1, `images` images);
// the offsets index a packed image.
void check_pack(const kernels::ConvInputLayout& pack, int64_t images, int64_t b_size,
                int64_t b_image_stride, const OffsetsExtent& e, int64_t nnz, int64_t len);

// The same for an output gradient: the NCHW tensor `name` (images x c x ho x wo, image stride
// c * ho * wo) goes onto the bordered grid of pack_grid (unit 1, `images` images) image by
// image.
void check_pack_grid(const kernels::ConvOutputLayout& grid, int64_t images, int64_t size,
                     int64_t image_stride, const std::string& name);

}  // namespace bindings
}  // namespace sparsetrain
