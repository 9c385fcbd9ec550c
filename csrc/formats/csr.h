// CSR index validation and the derived transposed (CSC) index. Every path that sets a
// sparsity pattern goes through validate_csr before any kernel may read it.
#pragma once

#include <cstdint>

namespace sparsetrain {
namespace formats {

// Throws std::invalid_argument naming the first defect: ptr of the wrong length, not
// starting at 0, decreasing, or not ending at nnz; a column out of [0, cols); columns not
// strictly increasing within a row.
void validate_csr(const int64_t* ptr, int64_t ptr_len, const int32_t* idx, int64_t nnz,
                  int64_t rows, int64_t cols);

// The transposed index of a valid CSR matrix (rows x cols): tptr (cols + 1), tidx (nnz,
// row numbers, increasing within each column) and pos (nnz): the CSR nonzero j sits at
// position pos[j] of the CSC order, value_csc[pos[j]] = value_csr[j].
void csr_transpose(const int64_t* ptr, const int32_t* idx, int64_t rows, int64_t cols,
                   int64_t* tptr, int32_t* tidx, int64_t* pos);

}  // namespace formats
}  // namespace sparsetrain
