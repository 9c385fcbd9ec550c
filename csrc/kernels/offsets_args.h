// The offsets family: convolutions as sparse products over precomputed element offsets, for
// `images` independent problems (one per image, or one per group of 16 images of a
// batch-innermost layout). A convolution's forward pass has rows = output channels and
// off[j] = where nonzero j's shifted input plane starts; its input gradient runs on the
// transposed index (rows = input channel phase planes, off into the bordered output
// gradient); its values gradient is the sampled product of the two.
//
// One entry point per form, each in kernels/<form>.cpp; a form's arguments are the shared
// pieces below, and only the pieces it reads:
//   spmm_offsets_rows      C_n's rows                       OffsetsProduct, RowsOut, ImagePack
//   spmm_offsets_planes    NCHW planes, one image a vector  OffsetsProduct, PlanesOut, ImagePack
//   spmm_offsets_planes16  NCHW planes from 16-image lanes  OffsetsProduct, PlanesOut, batch
//   spmm_offsets_merge     stride phases merged into NCHW   OffsetsProduct, MergeOut, ImagePack
//   sddmm_offsets          the values gradient
//   conv_grads_offsets_<planes|planes16|merge>  both gradients in one call
// T is the storage type of every element buffer (see kernels.h).
#pragma once

#include <cstdint>

#include "kernels/conv_layout_args.h"

namespace sparsetrain {
namespace kernels {

// The positions t in [0, len) a product computes in every row: all of them, or (seg_len > 0)
// only those with t % seg_stride < seg_len (a grid's real columns; the others are left
// unwritten, or never reach the planes).
struct Spans {
  int64_t len;
  int64_t seg_len = 0, seg_stride = 0;
};

// The product of every spmm form, per image n:
//   C_n[r, t] = sum over nonzeros j of row r: val[j] * B_n[off[j] + t]   for t in spans
// B_n = b + n * b_image_stride; the caller guarantees every B_n[off[j] + t] read is inside
// its buffer. With pos set, the values are CSR-ordered and first scattered into this index's
// order (scratch[pos[j]] = val[j], as in SpmmArgs).
template <class T>
struct OffsetsProduct {
  const int64_t* ptr;  // rows + 1
  const int64_t* off;  // ptr[rows]
  const T* val;        // ptr[rows]
  const int64_t* pos;  // nullptr, or ptr[rows]
  T* scratch;          // ptr[rows] elements when pos is set
  int64_t rows;
  const T* b;
  int64_t b_image_stride;
  int64_t images;
  Spans spans;
  int nthreads;
};

// Where B_n comes from: b as given (input and grid null), or image n of an NCHW tensor b
// (b_image_stride one NCHW image) packed by the thread that uses it right before it does,
// into phase planes (input: b is a convolution's input) or onto the bordered grid (grid: b is
// an output gradient). Threads then own whole images, and the packed tensor never goes
// through memory. finite (optional, images): 1 where the image packed is all finite.
struct ImagePack {
  const ConvInputLayout* input = nullptr;  // unit 1
  const ConvOutputLayout* grid = nullptr;  // unit 1; at most one of the two
  unsigned char* finite = nullptr;
};

// C_n's rows: position t of row r at c + n * c_image_stride + r * ldc + t.
template <class T>
struct RowsOut {
  T* c;
  int64_t ldc;
  int64_t c_image_stride;
};

// C_n written straight into NCHW planes (fusing the copy from the kernel's grid into
// PyTorch's layout, a whole pass over the activations): position t is grid point
// p = t + t_base (t / 16 + t_base in the 16-image form), grid row p / grid_w, column
// p % grid_w. It lands in row r's plane (c + n * c_image_stride + r * ldc) at
// (row - row0) * plane_w + column - col0 when inside the plane_h x plane_w window at
// (row0, col0), and is dropped otherwise; bias[r] is added if given.
// With px > 1 (channels_last: ldc = 1, px = the channel count) plane position q of row r is
// at c + n * c_image_stride + r + q * px instead.
template <class T>
struct PlanesOut {
  T* c;
  int64_t ldc;
  int64_t c_image_stride;
  int64_t grid_w, t_base, row0, col0, plane_h, plane_w;
  const T* bias;    // rows, or nullptr
  int64_t px = 1;  // elements between consecutive plane positions
};

// The input gradient of a strided convolution straight into NCHW: rows are layout->c
// channels x (sh * sw) stride phases of the padded input, channel-major; row position t is
// phase-plane pixel t_base + t. Each channel's phase planes are computed into a per-thread
// buffer (positions outside [t_base, t_base + len) read as zero) and interleaved into C_n's
// plane for that channel (h x w at c + n * c_image_stride + ch * h * w): the phase planes
// never go through memory. With layout->nhwc, C_n is channels_last (channel ch at c +
// n * c_image_stride + ch, pixels c apart).
template <class T>
struct MergeOut {
  T* c;
  int64_t c_image_stride;
  const ConvInputLayout* layout;  // unit 1
  int64_t t_base;
};

// The forms' optional output statistics (`stats`): stats[(n * rows + r) * 2 + {0, 1}] = the
// sum and the sum of squares of the values written to row r of image n (its plane; with
// 16-image lanes, group n; bias included): a batch norm's statistics of the output, summed
// while each chunk is still in cache (float within a chunk, double across chunks). Each
// (n, r) is summed by one thread, in chunk order: the same for any thread count.

template <class T>
struct SpmmOffsetsRowsArgs {
  OffsetsProduct<T> product;
  RowsOut<T> out;
  ImagePack pack = {};
  double* stats = nullptr;
};

// One image per vector (unit 1).
template <class T>
struct SpmmOffsetsPlanesArgs {
  OffsetsProduct<T> product;
  PlanesOut<T> out;
  ImagePack pack = {};
  double* stats = nullptr;
};

// B batch-innermost: every grid point is 16 elements, one per image of a group (product.b
// packed beforehand; t counts elements, len and the segments are multiples of 16; images =
// groups). Lane m of group n is image 16 n + m of `batch`, its planes at
// out.c + (16 n + m) * out.c_image_stride; lanes past `batch` are dropped.
template <class T>
struct SpmmOffsetsPlanes16Args {
  OffsetsProduct<T> product;
  PlanesOut<T> out;
  int64_t batch;
  double* stats = nullptr;
};

template <class T>
struct SpmmOffsetsMergeArgs {
  OffsetsProduct<T> product;
  MergeOut<T> out;
  ImagePack pack = {};
};

// sddmm_offsets: out[j] = sum_n sum_{t in spans} A_n[r, t] * B_n[off[j] + t] for nonzero j
// of row r. Packing (optional, unit 1; threads then own images and sum their own partial
// results, added up in a fixed order): pack_b: B_n from the NCHW input b, as
// ImagePack::input; pack_a: A_n from the NCHW output gradient a (a_image_stride =
// c * ho * wo), A_n[r, t] = grid position t of channel r, i.e. the packed image from
// pack_a->offset on, rows lda = pack_a->per_channel apart.
template <class T>
struct SddmmOffsetsArgs {
  const int64_t* ptr;
  const int64_t* off;
  int64_t rows;
  const T* a;
  int64_t lda;
  int64_t a_image_stride;
  const T* b;
  int64_t b_image_stride;
  int64_t images;
  Spans spans;
  T* out;  // ptr[rows]
  int nthreads;
  const ConvInputLayout* pack_b = nullptr;
  const ConvOutputLayout* pack_a = nullptr;
};

// conv_grads_offsets_<form>: both gradients of a convolution in one call, dx an input
// gradient form (on the transposed index) and dv the values gradient; the results of the
// form's kernel on dx then sddmm_offsets(dv). Where both pack the same NCHW output gradient
// (dx.pack.grid and dv.pack_a the same layout, dx.product.b == dv.a) each image of dy is
// packed once and used by both while in cache: the same results bitwise. In the stride-1
// plane forms (conv_grads_form.h) every window of dy is loaded once for both gradients: the
// same products, summed in another order. Arguments that share nothing run as the two calls.
template <class T, template <class> class Dx>
struct ConvGradsArgs {
  Dx<T> dx;
  SddmmOffsetsArgs<T> dv;
};
template <class T>
using ConvGradsPlanesArgs = ConvGradsArgs<T, SpmmOffsetsPlanesArgs>;
template <class T>
using ConvGradsPlanes16Args = ConvGradsArgs<T, SpmmOffsetsPlanes16Args>;
template <class T>
using ConvGradsMergeArgs = ConvGradsArgs<T, SpmmOffsetsMergeArgs>;

}  // namespace kernels
}  // namespace sparsetrain
