#include "formats/csr.h"

#include <stdexcept>
#include <string>

namespace sparsetrain {
namespace formats {

void validate_csr(const int64_t* ptr, int64_t ptr_len, const int32_t* idx, int64_t nnz,
                  int64_t rows, int64_t cols) {
  using std::to_string;
  if (rows < 0 || cols < 0) throw std::invalid_argument("negative matrix shape");
  if (cols > INT32_MAX) throw std::invalid_argument("more than 2^31-1 columns");
  if (ptr_len != rows + 1)
    throw std::invalid_argument("row pointer has length " + to_string(ptr_len) + ", expected " +
                                to_string(rows + 1));
  if (ptr[0] != 0)
    throw std::invalid_argument("row pointer starts at " + to_string(ptr[0]) + ", expected 0");
  if (ptr[rows] != nnz)
    throw std::invalid_argument("row pointer ends at " + to_string(ptr[rows]) + " but there are " +
                                to_string(nnz) + " column indices");
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = ptr[r], e = ptr[r + 1];
    if (e < b)
      throw std::invalid_argument("row pointer decreases at row " + to_string(r) + " (" +
                                  to_string(b) + " -> " + to_string(e) + ")");
    if (e > nnz) throw std::invalid_argument("row pointer exceeds nnz at row " + to_string(r));
    int64_t prev = -1;
    for (int64_t j = b; j < e; ++j) {
      const int64_t c = idx[j];
      if (c < 0 || c >= cols)
        throw std::invalid_argument("column index " + to_string(c) + " at position " +
                                    to_string(j) + " (row " + to_string(r) +
                                    ") is out of range [0, " + to_string(cols) + ")");
      if (c <= prev)
        throw std::invalid_argument("column indices of row " + to_string(r) +
                                    " are not strictly increasing at position " + to_string(j));
      prev = c;
    }
  }
}

void csr_transpose(const int64_t* ptr, const int32_t* idx, int64_t rows, int64_t cols,
                   int64_t* tptr, int32_t* tidx, int64_t* pos) {
  for (int64_t c = 0; c <= cols; ++c) tptr[c] = 0;
  const int64_t nnz = ptr[rows];
  for (int64_t j = 0; j < nnz; ++j) ++tptr[idx[j] + 1];
  for (int64_t c = 0; c < cols; ++c) tptr[c + 1] += tptr[c];
  // Counting sort by column; rows are visited in order, so each column's rows increase.
  // tptr[c] serves as the insertion cursor and is restored afterwards.
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = ptr[r]; j < ptr[r + 1]; ++j) {
      const int64_t k = tptr[idx[j]]++;
      tidx[k] = static_cast<int32_t>(r);
      pos[j] = k;
    }
  }
  for (int64_t c = cols; c > 0; --c) tptr[c] = tptr[c - 1];
  tptr[0] = 0;
}

}  // namespace formats
}  // namespace sparsetrain
