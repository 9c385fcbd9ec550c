// The checks every binding shares: size arithmetic that cannot wrap, views of NumPy buffers of
// one dtype, rank and contiguity, and the CSR, overlap and scatter checks. They run in O(1) (or
// O(nnz) where a kernel would index with the values), so that a kernel never sees a buffer
// smaller than it will touch; index *contents* are validated once per pattern by validate_csr
// (python/sparsetrain/formats/ keeps that invariant). Every failure is a ValueError.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // std::optional arguments and results

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/bf16.h"

namespace sparsetrain {
namespace bindings {

namespace py = pybind11;

// Raises ValueError (pybind11 translates std::invalid_argument).
[[noreturn]] void bad(const std::string& what);

// Size arithmetic of the checks, in 64 bits with overflow detected: a product or sum of sizes
// that does not fit int64 describes no buffer that can exist, so it is rejected (a wrapped
// result could pass a bounds check and send a kernel far outside its buffers).
int64_t mul(int64_t a, int64_t b);
int64_t mul(int64_t a, int64_t b, int64_t c);
int64_t mul(int64_t a, int64_t b, int64_t c, int64_t d);
int64_t sum(int64_t a, int64_t b);
int64_t sum(int64_t a, int64_t b, int64_t c);

// The NumPy dtype holding a kernel storage type: T itself, but for bf16, which NumPy lacks and
// Python hands over as its bits (a bfloat16 tensor viewed as torch.uint16).
template <class T>
struct NumpyOf {
  using type = T;
};
template <>
struct NumpyOf<kernels::bf16> {
  using type = uint16_t;
};
template <class T>
bool has_dtype(const py::array& a) {
  return py::isinstance<py::array_t<typename NumpyOf<std::remove_const_t<T>>::type>>(a);
}

// A checked view of a C-contiguous NumPy array of exactly dtype T and rank ndim.
template <class T>
struct View {
  T* data;
  int64_t rows, cols;  // cols == 1 for rank 1
  int64_t size() const { return rows * cols; }
};

template <class T>
View<T> view(const py::array& a, const char* name, int ndim, bool writable = false) {
  // Equivalence, not identity, of dtypes: an unpickled array's int64 is an equal but distinct
  // dtype object.
  using N = typename NumpyOf<std::remove_const_t<T>>::type;
  if (!has_dtype<T>(a))
    bad(std::string(name) + ": expected dtype " + py::str(py::dtype::of<N>()).cast<std::string>() +
        ", got " + py::str(a.dtype()).cast<std::string>());
  if (a.ndim() != ndim)
    bad(std::string(name) + ": expected rank " + std::to_string(ndim) + ", got " +
        std::to_string(a.ndim()));
  if (!(a.flags() & py::array::c_style)) bad(std::string(name) + ": must be C-contiguous");
  if (writable && !a.writeable()) bad(std::string(name) + ": must be writable");
  return {static_cast<T*>(const_cast<void*>(a.data())), a.shape(0), ndim == 2 ? a.shape(1) : 1};
}

// The padded batch of a batch-major buffer is a whole number of vectors.
void check_batch_major(int64_t nb, const char* name);

// ptr (rows + 1) must be non-decreasing from ptr[0] >= 0 for any kernel to be in bounds;
// checked fully at validate_csr, here only its ends against the buffers handed in. Returns nnz.
int64_t check_csr_ends(const View<int64_t>& ptr, int64_t rows, int64_t idx_len, int64_t val_len);

// Whether two buffers share any element.
template <class T, class U>
bool overlap(const View<T>& p, const View<U>& q) {
  const auto a = reinterpret_cast<std::uintptr_t>(p.data);
  const auto b = reinterpret_cast<std::uintptr_t>(q.data);
  return a < b + q.size() * sizeof(U) && b < a + p.size() * sizeof(T);
}

// The optional (pos, scratch) pair of the transposed products: pos must index [0, nnz).
struct Scatter {
  const int64_t* pos = nullptr;
  float* scratch = nullptr;
};
Scatter scatter_args(const std::optional<py::array>& pos, const std::optional<py::array>& scratch,
                     int64_t nnz);

// True when every per-image (or per-channel) flag a kernel set is 1.
bool all_set(const std::vector<unsigned char>& flags);

}  // namespace bindings
}  // namespace sparsetrain
