// The kernel interface: plain structs of raw pointers and sizes, no Python, no allocation.
// Every kernel exists once per ISA (namespaces scalar / avx2 / avx512, one source compiled
// with different flags); dispatch/isa.h picks one at run time. The list of kernels is
// kernel_list.h.
//
// Layout ("batch-major", bmajor): a dense activation block is stored as rows of features,
// each row holding the batch contiguously and zero-padded to a multiple of kBatchAlign
// floats. Vectorizing along that padded batch needs no tails and no masks.
#pragma once

#include <cstdint>

#include "kernels/kernel_list.h"

namespace sparsetrain {
namespace kernels {

constexpr int64_t kBatchAlign = 16;

inline int64_t padded_batch(int64_t batch) {
  return (batch + kBatchAlign - 1) / kBatchAlign * kBatchAlign;
}

// C[r, 0:nb] = sum over nonzeros j of row r: val[j] * B[idx[j], 0:nb]   for r in [0, rows)
// A is CSR (rows x any), B and C are batch-major with nb % kBatchAlign == 0.
// With pos set, A is the transpose of a CSR matrix whose values (CSR order) are val: the
// input gradient runs on the transposed index while the values stay in CSR order. The
// values are first scattered into CSC order in scratch (scratch[pos[j]] = val[j]: random
// writes, about twice as fast here as the equivalent random-read gather), then used.
struct SpmmArgs {
  const int64_t* ptr;   // rows + 1
  const int32_t* idx;   // ptr[rows]
  const float* val;     // ptr[rows] (CSC order), or CSR order when pos is set
  const int64_t* pos;   // nullptr, or ptr[rows]: a permutation of [0, ptr[rows])
  float* scratch;       // ptr[rows] floats when pos is set
  int64_t rows;
  int64_t b_rows;       // rows of B (sizes the cache blocking)
  const float* b;
  int64_t ldb;
  float* c;
  int64_t ldc;
  int64_t nb;
  int nthreads;
};

// C[k, 0:nb] = sum over nonzeros j = (r, k) of A: val[j] * B[r, 0:nb]   for k in [0, cols)
// i.e. C = Aᵀ B from A's CSR index; col_ptr (cols + 1) is the cumulative nonzero count per
// column (the CSC pointer), used to balance threads.
struct SpmmTArgs {
  const int64_t* ptr;      // rows + 1
  const int32_t* idx;      // ptr[rows]
  const float* val;        // ptr[rows]
  const int64_t* col_ptr;  // cols + 1
  int64_t rows;
  int64_t cols;
  const float* b;  // rows x nb
  int64_t ldb;
  float* c;        // cols x nb
  int64_t ldc;
  int64_t nb;
  int nthreads;
};

// out[j] = sum_{0 <= t < nb} A[r, t] * B[idx[j], t]   for every nonzero j of every row r:
// the gradient of the nonzero values (sampled dense-dense product), batch-major A and B.
struct SddmmArgs {
  const int64_t* ptr;
  const int32_t* idx;
  int64_t rows;
  int64_t b_rows;  // rows of B (sizes the cache blocking)
  const float* a;
  int64_t lda;
  const float* b;
  int64_t ldb;
  int64_t nb;
  float* out;  // ptr[rows]
  int nthreads;
};

// dst[k, t] = src[t, k] for t < batch, 0 for batch <= t < ld_dst   (k < features)
// src is PyTorch's (batch, features) row-major with row stride ld_src.
struct PackArgs {
  const float* src;
  int64_t batch;
  int64_t features;
  int64_t ld_src;
  float* dst;
  int64_t ld_dst;  // padded batch
  int nthreads;
};

// dst[t, k] = src[k, t] (+ bias[k])  for t < batch, k < features: back to PyTorch's layout.
struct UnpackArgs {
  const float* src;
  int64_t ld_src;  // padded batch
  int64_t batch;
  int64_t features;
  float* dst;
  int64_t ld_dst;
  const float* bias;  // features, or nullptr
  int nthreads;
};

// Convolutions as sparse products over precomputed element offsets, for `images`
// independent problems (one per image, or one for a batch-innermost layout):
//   C_n[r, 0:len] = sum over nonzeros j of row r: val[j] * B_n[off[j] + 0:len]
// B_n = b + n * b_image_stride, C_n = c + n * c_image_stride. len is any length (masked
// tail). The caller guarantees every B_n[off[j] + t], t < len, is inside its buffer.
// With pos set, values are CSR-ordered and scattered into this index's order first (as in
// SpmmArgs).
struct ConvInputLayout;  // below
struct ConvOutputLayout;  // below
struct SpmmOffsetsArgs {
  const int64_t* ptr;  // rows + 1
  const int64_t* off;  // ptr[rows]
  const float* val;
  const int64_t* pos;  // nullptr, or ptr[rows]
  float* scratch;      // ptr[rows] floats when pos is set
  int64_t rows;
  const float* b;
  int64_t b_image_stride;
  float* c;
  int64_t ldc;
  int64_t c_image_stride;
  int64_t len;
  int64_t images;
  int nthreads;
  // Optional (grid_w > 0): write C straight into planes instead of rows of len. Position t
  // is grid point p = t + t_base, grid row p / grid_w, column p % grid_w; it lands at
  // C_n[r * ldc + (row - row0) * plane_w + column - col0] when inside the plane_h x plane_w
  // window at (row0, col0), and is dropped otherwise; bias[r] is added if given. This fuses
  // the copy from the kernel's grid to PyTorch's NCHW (a whole pass over the activations).
  int64_t grid_w = 0, t_base = 0, row0 = 0, col0 = 0, plane_h = 0, plane_w = 0;
  const float* bias = nullptr;
  // Optional (seg_len > 0): compute only the positions t with t % seg_stride < seg_len (a
  // grid's real columns; the rest of C is left unwritten, or never reaches the planes).
  int64_t seg_len = 0, seg_stride = 0;
  // Planes of a batch-innermost B (unit = 16, grid_w > 0): every grid point is 16 floats, one
  // per image of a group (t counts floats, the grid point is t / 16 + t_base; len and the
  // segments are multiples of 16). Lane m of group n is image 16 n + m of `batch`; its planes
  // start at c + (16 n + m) * c_image_stride (NCHW). Lanes past `batch` are dropped.
  int64_t unit = 1, batch = 0;
  // Optional (merge set; unit 1, no grid_w): the input gradient of a strided convolution
  // written straight into NCHW. Rows are the merge->c channels x (sh * sw) stride phases of
  // the padded input, channel-major; row position t is phase-plane pixel t_base + t. Each
  // channel's phase planes are computed into a per-thread buffer (positions outside
  // [t_base, t_base + len) read as zero) and interleaved into C_n's plane for that channel
  // (h x w, channel planes contiguous): the phase planes never go through memory.
  const ConvInputLayout* merge = nullptr;
  // Optional (pack set; unit 1): B_n is image n of the NCHW input b (b_image_stride =
  // c * h * w) packed per `pack`, by the thread that uses it right before it does (threads
  // own whole images): the packed tensor never goes through memory. finite (optional,
  // images) = 1 where the image is all finite.
  const ConvInputLayout* pack = nullptr;
  unsigned char* finite = nullptr;
  // Optional (pack_grid set, pack not; unit 1): the same for an output gradient: B_n is image
  // n of the NCHW b (b_image_stride = c * ho * wo) on the bordered grid of pack_grid; finite
  // (optional) then flags the images of the output gradient.
  const ConvOutputLayout* pack_grid = nullptr;
  // Optional (no merge): stats[(n * rows + r) * 2 + {0, 1}] = the sum and the sum of squares
  // of the values written to row r of image n (its plane with grid_w; group n with unit 16;
  // bias included):
  // a batch norm's statistics of the output, summed while each chunk is still in cache
  // (float within a chunk, double across chunks). Each (n, r) is summed by one thread, in
  // chunk order: the same for any thread count.
  double* stats = nullptr;
};

//   out[j] = sum_n sum_{t < len} A_n[r, t] * B_n[off[j] + t]   for nonzero j of row r
struct SddmmOffsetsArgs {
  const int64_t* ptr;
  const int64_t* off;
  int64_t rows;
  const float* a;
  int64_t lda;
  int64_t a_image_stride;
  const float* b;
  int64_t b_image_stride;
  int64_t len;
  int64_t images;
  float* out;
  int nthreads;
  // Optional (seg_len > 0): sum only over t with t % seg_stride < seg_len.
  int64_t seg_len = 0, seg_stride = 0;
  // Optional: B_n packed from the NCHW input b image by image, as in SpmmOffsetsArgs (threads
  // then own images and sum their own partial results, added up in a fixed order).
  const ConvInputLayout* pack = nullptr;
  // Optional: A_n packed the same way from the NCHW output gradient a (a_image_stride =
  // c * ho * wo): A_n[r, t] = grid position t of channel r, i.e. the packed image from
  // pack_grid->offset on, rows lda = pack_grid->per_channel apart.
  const ConvOutputLayout* pack_grid = nullptr;
};

// f32_conv_grads_offsets(dx, dv): both gradients of a convolution whose kernels pack the output
// gradient themselves (dx.pack_grid and dv.pack_grid the same layout, dx.b == dv.a: the same
// NCHW dy), each image of dy packed once and used by both while in cache: the results of
// f32_spmm_csr_offsets(dx) then f32_sddmm_csr_offsets(dv), bitwise. In the stride-1 plane form
// (conv_grads_form.h) every window of dy is loaded once for both gradients instead: the same
// products, summed in another order. Arguments that share nothing run as those two calls.

// Convolution layouts: (groups, channels, stride phases sh x sw, hq, wq, unit) with the batch
// in groups of `unit` (1 or 16) images, each pixel a vector of `unit` floats.
struct ConvInputLayout {
  int64_t n, c;          // images, channels of the NCHW tensor
  int64_t groups, unit;  // groups = ceil(n / unit)
  int64_t h, w;          // NCHW spatial size
  int64_t sh, sw;        // stride phases
  int64_t pt, pl;        // top / left zero padding
  int64_t hq, wq;        // phase plane size: hq * sh >= h + pt, wq * sw >= w + pl
};

// pack: NCHW x -> packed (zero padding, zero lanes for missing images);
// unpack: packed -> NCHW x (the padding positions are dropped).
struct ConvInputArgs {
  ConvInputLayout layout;
  float* x;       // n * c * h * w
  float* packed;  // groups * c * sh * sw * hq * wq * unit
  int nthreads;
  // pack only, optional (groups * c): finite[g * c + ch] = 1 iff every value channel ch of
  // group g packed is finite (read back while it is in cache: the forward pass's NaN/Inf
  // check without a pass of its own over x).
  unsigned char* finite = nullptr;
};

// Output side: channel c of group g holds per_channel pixels; output pixel (oh, ow) is at
// offset + oh * wq + ow.
struct ConvOutputLayout {
  int64_t n, c, groups, unit;
  int64_t ho, wo, wq;
  int64_t per_channel, offset;
};

inline bool operator==(const ConvOutputLayout& p, const ConvOutputLayout& q) {
  return p.n == q.n && p.c == q.c && p.groups == q.groups && p.unit == q.unit && p.ho == q.ho &&
         p.wo == q.wo && p.wq == q.wq && p.per_channel == q.per_channel && p.offset == q.offset;
}

// The output gradient: NCHW y -> grid, zeros at every non-output pixel, and, when
// channel_sums is given, channel_sums[g * c + ch] = the sum of group g's values of channel ch
// (the bias gradient, in the same pass). grid == nullptr (unit 1): the sums only, for the
// layouts whose kernels pack y themselves. (The forward pass needs no way back: the offsets
// kernel writes NCHW outputs itself.)
struct ConvOutputArgs {
  ConvOutputLayout layout;
  const float* y;  // n * c * ho * wo
  float* grid;     // groups * c * per_channel * unit, or nullptr
  double* channel_sums;  // groups * c, or nullptr
  int nthreads;
};

// Stride-1 convolutions on NCHW planes (see conv_direct.cpp):
//   out_n[r, y, x] = sum_j val[j] * src_n[plane[j] + (y + dy[j]) * sw + x + shift_w[slot[j]]]
// with source positions outside the sh x sw plane read as zero; out rows are oh x ow planes.
// The sddmm form: out[j] = sum_n sum_{y, x} grad_n[r, y, x] * (the same source element).
struct ConvDirectArgs {
  const int64_t* ptr;      // rows + 1
  const int64_t* plane;    // ptr[rows]: start of the nonzero's source plane in an image
  const int32_t* dy;       // ptr[rows]: row shift
  const int32_t* slot;     // ptr[rows]: index into shift_w
  const int64_t* shift_w;  // slots column shifts
  int64_t slots;           // <= 64
  const float* val;
  const int64_t* pos;  // nullptr, or as in SpmmArgs
  float* scratch;
  int64_t rows;
  const float* src;
  int64_t src_image_stride;
  int64_t sh, sw;
  float* out;  // spmm: images x rows x oh x ow (image stride out_image_stride); sddmm: nnz
  int64_t out_image_stride;
  int64_t oh, ow;
  const float* bias;  // spmm: rows, or nullptr
  const float* grad;  // sddmm: images x rows x oh x ow (image stride grad_image_stride)
  int64_t grad_image_stride;
  int64_t images;
  int nthreads;
};

// out = x[:, :, ::sh, ::sw] of `planes` NCHW planes (h x w in, ho x wo out, ho = ceil(h / sh),
// wo = ceil(w / sw)); and its gradient: src = g (ho x wo planes), dst = dx (h x w planes), the
// sampled pixels from g and zeros elsewhere.
struct SubsampleArgs {
  const float* src;
  float* dst;
  int64_t planes, h, w, sh, sw;  // sh, sw >= 1
  int nthreads;
};

// Every kernel of kernel_list.h, declared once per ISA namespace.
#define ST_DECLARE_KERNEL(member, function, params) void function params;
namespace scalar { SPARSETRAIN_KERNELS(ST_DECLARE_KERNEL) }
namespace avx2 { SPARSETRAIN_KERNELS(ST_DECLARE_KERNEL) }
namespace avx512 { SPARSETRAIN_KERNELS(ST_DECLARE_KERNEL) }
#undef ST_DECLARE_KERNEL

}  // namespace kernels
}  // namespace sparsetrain
