#include "bindings/checks.h"

#include <stdexcept>

#include "kernels/kernels.h"

namespace sparsetrain {
namespace bindings {

namespace k = sparsetrain::kernels;

void bad(const std::string& what) { throw std::invalid_argument(what); }

int64_t mul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) bad("sizes overflow 64-bit arithmetic");
  return r;
}
int64_t mul(int64_t a, int64_t b, int64_t c) { return mul(mul(a, b), c); }
int64_t mul(int64_t a, int64_t b, int64_t c, int64_t d) { return mul(mul(a, b, c), d); }
int64_t sum(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) bad("sizes overflow 64-bit arithmetic");
  return r;
}
int64_t sum(int64_t a, int64_t b, int64_t c) { return sum(sum(a, b), c); }

void check_batch_major(int64_t nb, const char* name) {
  if (nb % k::kBatchAlign != 0)
    bad(std::string(name) + ": padded batch " + std::to_string(nb) + " is not a multiple of " +
        std::to_string(k::kBatchAlign));
}

int64_t check_csr_ends(const View<int64_t>& ptr, int64_t rows, int64_t idx_len, int64_t val_len) {
  if (ptr.size() != sum(rows, 1))
    bad("row pointer has length " + std::to_string(ptr.size()) + ", expected " +
        std::to_string(rows + 1));
  const int64_t nnz = ptr.data[rows];
  if (ptr.data[0] < 0 || nnz < ptr.data[0] || idx_len < nnz || val_len < nnz)
    bad("index/value buffers are shorter than the row pointer says");
  return nnz;
}

Scatter scatter_args(const std::optional<py::array>& pos, const std::optional<py::array>& scratch,
                     int64_t nnz) {
  Scatter out;
  if (!pos) return out;
  if (!scratch) bad("a transposed product needs a scratch buffer with pos");
  auto pv = view<int64_t>(*pos, "pos", 1);
  auto sv = view<float>(*scratch, "scratch", 1, true);
  if (pv.size() != nnz || sv.size() < nnz) bad("pos / scratch lengths differ from nnz");
  for (int64_t j = 0; j < nnz; ++j)
    if (pv.data[j] < 0 || pv.data[j] >= nnz) bad("pos entry out of range");
  out.pos = pv.data;
  out.scratch = sv.data;
  return out;
}

bool all_set(const std::vector<unsigned char>& flags) {
  for (unsigned char f : flags)
    if (!f) return false;
  return true;
}

}  // namespace bindings
}  // namespace sparsetrain
