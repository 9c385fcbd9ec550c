// Stride-1 convolutions straight on NCHW planes (conv_direct.cpp), and the subsampling that
// turns a strided 1x1 convolution into a stride-1 one (subsample.cpp).
// T is the storage type of every element buffer (see kernels.h).
#pragma once

#include <cstdint>

namespace sparsetrain {
namespace kernels {

// spmm_direct:
//   out_n[r, y, x] = sum_j val[j] * src_n[plane[j] + (y + dy[j]) * sw + x + shift_w[slot[j]]]
// with source positions outside the sh x sw plane read as zero; out rows are oh x ow planes.
// sddmm_direct: out[j] = sum_n sum_{y, x} grad_n[r, y, x] * (the same source element).
template <class T>
struct ConvDirectArgs {
  const int64_t* ptr;      // rows + 1
  const int64_t* plane;    // ptr[rows]: start of the nonzero's source plane in an image
  const int32_t* dy;       // ptr[rows]: row shift
  const int32_t* slot;     // ptr[rows]: index into shift_w
  const int64_t* shift_w;  // slots column shifts
  int64_t slots;           // <= 64
  const T* val;
  const int64_t* pos;  // nullptr, or as in SpmmArgs
  T* scratch;
  int64_t rows;
  const T* src;
  int64_t src_image_stride;
  int64_t sh, sw;
  T* out;  // spmm: images x rows x oh x ow (image stride out_image_stride); sddmm: nnz
  int64_t out_image_stride;
  int64_t oh, ow;
  const T* bias;  // spmm: rows, or nullptr
  const T* grad;  // sddmm: images x rows x oh x ow (image stride grad_image_stride)
  int64_t grad_image_stride;
  int64_t images;
  int nthreads;
};

// subsample: out = x[:, :, ::sh, ::sw] of `planes` NCHW planes (h x w in, ho x wo out,
// ho = ceil(h / sh), wo = ceil(w / sw)); subsample_grad: its gradient, src = g (ho x wo
// planes), dst = dx (h x w planes), the sampled pixels from g and zeros elsewhere.
template <class T>
struct SubsampleArgs {
  const T* src;
  T* dst;
  int64_t planes, h, w, sh, sw;  // sh, sw >= 1
  int nthreads;
};

}  // namespace kernels
}  // namespace sparsetrain
