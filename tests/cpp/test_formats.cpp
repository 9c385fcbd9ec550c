// CSR index validation and the transposed (CSC) index (formats/csr.h).
#include "tester.h"

namespace st_test {
namespace {

TEST(Formats, ValidateRejectsOutOfRangeColumn) {
  std::vector<int64_t> ptr{0, 1};
  std::vector<int32_t> idx{4};
  EXPECT_THROW(st::formats::validate_csr(ptr.data(), 2, idx.data(), 1, 1, 4),
               std::invalid_argument);
  idx[0] = 3;
  EXPECT_NO_THROW(st::formats::validate_csr(ptr.data(), 2, idx.data(), 1, 1, 4));
}

TEST(Formats, TransposeInvertsCsr) {
  std::mt19937 rng(5);
  Csr a = random_csr(13, 9, 0.4, rng);
  const int64_t nnz = static_cast<int64_t>(a.idx.size());
  std::vector<int64_t> tptr(10), pos(nnz);
  std::vector<int32_t> tidx(nnz);
  st::formats::csr_transpose(a.ptr.data(), a.idx.data(), 13, 9, tptr.data(), tidx.data(),
                             pos.data());
  for (int64_t r = 0; r < 13; ++r)
    for (int64_t j = a.ptr[r]; j < a.ptr[r + 1]; ++j) {
      const int64_t k2 = pos[j];
      EXPECT_TRUE(k2 >= tptr[a.idx[j]] && k2 < tptr[a.idx[j] + 1]);
      EXPECT_EQ(tidx[k2], r);
    }
}

}  // namespace
}  // namespace st_test
