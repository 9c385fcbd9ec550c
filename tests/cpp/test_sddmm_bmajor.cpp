// The batch-major sampled product (the values gradient): out[j] = <A[r, :], B[idx[j], :]>.
#include "tester.h"

namespace st_test {
namespace {

class SddmmBmajor : public IsaTest {};

TEST_P(SddmmBmajor, MatchesNaiveAndScalar) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(2);
  for (const CsrCase& cs : kCsrCases) {
    Csr s = random_csr(cs.rows, cs.cols, cs.density, rng);
    const int64_t nb = k::padded_batch(cs.batch);
    std::vector<float> a = random_vec(cs.rows * nb, rng), b = random_vec(cs.cols * nb, rng);
    const std::vector<float> ref = ref_sddmm_bmajor(s, a, b, nb);
    std::vector<float> out(s.idx.size(), NAN), sc(s.idx.size(), NAN);
    run::sddmm_bmajor(table, {s.ptr.data(), s.idx.data(), cs.rows, cs.cols, a.data(), nb, b.data(),
                              nb, nb, out.data(), 2});
    run::sddmm_bmajor(scalar, {s.ptr.data(), s.idx.data(), cs.rows, cs.cols, a.data(), nb, b.data(),
                               nb, nb, sc.data(), 2});
    expect_close(out, ref, 1e-4f, "sddmm vs naive, " + describe(cs));
    expect_close(out, sc, 1e-4f, "sddmm vs scalar, " + describe(cs));
  }
}

// A batch of 0 (no data at all): every value gradient is 0.
TEST_P(SddmmBmajor, EmptyBatchIsZero) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(3);
  Csr s = random_csr(6, 6, 0.5, rng);
  std::vector<float> out(s.idx.size(), NAN);
  run::sddmm_bmajor(table,
                    {s.ptr.data(), s.idx.data(), 6, 6, nullptr, 0, nullptr, 0, 0, out.data(), 2});
  for (float x : out) EXPECT_EQ(x, 0.f);
}

// Large offsets: A's and B's row strides beyond 2^31 (idx * ldb and r * lda beyond 2^32).
TEST_P(SddmmBmajor, RowStridesBeyond2To31) {
  ST_RESERVE_OR_SKIP(mem);
  const auto& table = st::kernel_table(GetParam());
  const int64_t nb = 32, rows = 2, cols = 4;
  const std::vector<int64_t> ptr = {0, 2, 4};
  const std::vector<int32_t> idx = {1, 3, 0, 3};
  const int64_t ld = kTwo31 + 48;       // a multiple of 16, like the real rows
  float* b = mem.at(0);                 // cols rows of ld
  float* a = mem.at(int64_t{5} << 31);  // rows rows of ld
  for (int64_t q = 0; q < cols; ++q)
    for (int64_t t = 0; t < nb; ++t) *(b + q * ld + t) = val_at(q * 100 + t);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < nb; ++t) *(a + r * ld + t) = val_at(r * 53 + 7 * t);
  for (int threads : {1, 2}) {
    std::vector<float> out(4, NAN);
    run::sddmm_bmajor(table,
                      {ptr.data(), idx.data(), rows, cols, a, ld, b, ld, nb, out.data(), threads});
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = ptr[r]; j < ptr[r + 1]; ++j) {
        double ref = 0.0;
        for (int64_t t = 0; t < nb; ++t)
          ref += double(val_at(r * 53 + 7 * t)) * val_at(idx[j] * 100 + t);
        ASSERT_NEAR(out[j], ref, 1e-4) << "sddmm nonzero " << j << ", threads " << threads;
      }
  }
}

ST_TEST_EVERY_ISA(SddmmBmajor);

}  // namespace
}  // namespace st_test
