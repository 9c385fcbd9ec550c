// The batch-major family (linear layers): a dense activation block is stored as rows of
// features, each row holding the batch contiguously and zero-padded to a multiple of
// kBatchAlign elements. Vectorizing along that padded batch needs no tails and no masks.
// T is the storage type of the activation buffers (B, C, A; see kernels.h): float or bf16. The
// nonzero values and their gradient are float whatever T is: under bf16 autocast the values
// are float copies rounded to bf16, so every product is the one a bf16 dense layer forms, and
// broadcasting a float costs nothing extra. (The AVX512-BF16 kernels read only the high half
// of each value, so for T = bf16 the values should be bf16-valued; others are truncated.)
#pragma once

#include <cstdint>

namespace sparsetrain {
namespace kernels {

constexpr int64_t kBatchAlign = 16;
// The widest slice of the batch one pass of a product reads from every row (see tiling.h).
// Longer rows are read in slices, and their leading dimension should then be an odd number
// of kBatchAlign-element lines so the slices spread over every cache set
// (functional/linear.py pads to that).
constexpr int64_t kBatchChunk = 256;

inline int64_t padded_batch(int64_t batch) {
  return (batch + kBatchAlign - 1) / kBatchAlign * kBatchAlign;
}

// spmm_bmajor: C[r, 0:nb] = sum over nonzeros j of row r: val[j] * B[idx[j], 0:nb]
// for r in [0, rows). A is CSR (rows x any), B and C are batch-major with
// nb % kBatchAlign == 0.
// With pos set, A is the transpose of a CSR matrix whose values (CSR order) are val: the
// input gradient runs on the transposed index while the values stay in CSR order. The
// values are first scattered into CSC order in scratch (scratch[pos[j]] = val[j]: random
// writes, about twice as fast here as the equivalent random-read gather), then used.
template <class T>
struct SpmmArgs {
  const int64_t* ptr;  // rows + 1
  const int32_t* idx;  // ptr[rows]
  const float* val;    // ptr[rows] (CSC order), or CSR order when pos is set
  const int64_t* pos;  // nullptr, or ptr[rows]: a permutation of [0, ptr[rows])
  float* scratch;      // ptr[rows] elements when pos is set
  int64_t rows;
  int64_t b_rows;  // rows of B (sizes the cache blocking)
  const T* b;
  int64_t ldb;
  T* c;
  int64_t ldc;
  int64_t nb;
  int nthreads;
};

// spmmt_bmajor: C[k, 0:nb] = sum over nonzeros j = (r, k) of A: val[j] * B[r, 0:nb]
// for k in [0, cols), i.e. C = Aᵀ B from A's CSR index; col_ptr (cols + 1) is the cumulative
// nonzero count per column (the CSC pointer), used to balance threads.
template <class T>
struct SpmmTArgs {
  const int64_t* ptr;      // rows + 1
  const int32_t* idx;      // ptr[rows]
  const T* val;            // ptr[rows]
  const int64_t* col_ptr;  // cols + 1
  int64_t rows;
  int64_t cols;
  const T* b;  // rows x nb
  int64_t ldb;
  T* c;  // cols x nb
  int64_t ldc;
  int64_t nb;
  int nthreads;
};

// sddmm_bmajor: out[j] = sum_{0 <= t < nb} A[r, t] * B[idx[j], t] for every nonzero j of
// every row r: the gradient of the nonzero values (sampled dense-dense product), batch-major
// A and B.
template <class T>
struct SddmmArgs {
  const int64_t* ptr;
  const int32_t* idx;
  int64_t rows;
  int64_t b_rows;  // rows of B (sizes the cache blocking)
  const T* a;
  int64_t lda;
  const T* b;
  int64_t ldb;
  int64_t nb;
  float* out;  // ptr[rows]
  int nthreads;
};

// pack_bmajor: dst[k, t] = src[t, k] for t < batch, 0 for batch <= t < ld_dst (k < features).
// src is PyTorch's (batch, features) row-major with row stride ld_src. With sums set, also
// sums[k] = the float sum over t of src[t, k] in token order (the bias gradient of an output
// gradient, computed while its rows pass through L1).
template <class T>
struct PackArgs {
  const T* src;
  int64_t batch;
  int64_t features;
  int64_t ld_src;
  T* dst;
  int64_t ld_dst;  // padded batch
  int nthreads;
  float* sums = nullptr;  // features, or nullptr
};

// unpack_bmajor: dst[t, k] = src[k, t] (+ bias[k]) for t < batch, k < features: back to
// PyTorch's layout.
template <class T>
struct UnpackArgs {
  const T* src;
  int64_t ld_src;  // padded batch
  int64_t batch;
  int64_t features;
  T* dst;
  int64_t ld_dst;
  const T* bias;  // features, or nullptr
  int nthreads;
};

}  // namespace kernels
}  // namespace sparsetrain
