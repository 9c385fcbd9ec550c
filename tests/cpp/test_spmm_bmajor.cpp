// The batch-major sparse products: C = A B (spmm, also on the transposed index with values
// in CSR order) and C = Aᵀ B from A's own index (spmmt).
#include "tester.h"

namespace st_test {
namespace {

class SpmmBmajor : public IsaTest {};

TEST_P(SpmmBmajor, MatchesNaiveAndScalar) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(1);
  for (const CsrCase& cs : kCsrCases) {
    Csr a = random_csr(cs.rows, cs.cols, cs.density, rng);
    const int64_t nb = k::padded_batch(cs.batch);
    std::vector<float> b = random_vec(cs.cols * nb, rng);
    const std::vector<float> ref = ref_spmm_bmajor(a, b, nb);
    std::vector<float> c(cs.rows * nb, NAN), cs_out(cs.rows * nb, NAN);
    for (int threads : {1, 2}) {
      run::spmm_bmajor(table, {a.ptr.data(), a.idx.data(), a.val.data(), nullptr, nullptr, cs.rows,
                               cs.cols, b.data(), nb, c.data(), nb, nb, threads});
      run::spmm_bmajor(scalar, {a.ptr.data(), a.idx.data(), a.val.data(), nullptr, nullptr, cs.rows,
                                cs.cols, b.data(), nb, cs_out.data(), nb, nb, threads});
      expect_close(c, ref, 1e-5f, "spmm " + describe(cs) + " vs naive");
      expect_close(c, cs_out, 1e-5f, "spmm " + describe(cs) + " vs scalar");
    }
  }
}

// C = Aᵀ B both ways: spmm on the transposed index (values scattered from CSR order through
// pos) and spmmt on A's own index, for 1 to 3 threads.
TEST_P(SpmmBmajor, TransposedProductBothWays) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(6);
  for (const CsrCase& cs : kCsrCases) {
    Csr a = random_csr(cs.rows, cs.cols, cs.density, rng);
    const Transposed t = transpose(a);
    const int64_t nb = k::padded_batch(cs.batch);
    std::vector<float> b = random_vec(cs.rows * nb, rng);
    const std::vector<float> ref = ref_spmmt_bmajor(a, b, nb);
    const std::string what = describe(cs);
    std::vector<float> c(cs.cols * nb, NAN), scratch(a.idx.size());
    run::spmm_bmajor(table, {t.ptr.data(), t.idx.data(), a.val.data(), t.pos.data(), scratch.data(),
                             cs.cols, cs.rows, b.data(), nb, c.data(), nb, nb, 2});
    expect_close(c, ref, 1e-5f, "transposed spmm, " + what);
    std::vector<float> c_scalar(cs.cols * nb, NAN), ct_scalar(cs.cols * nb, NAN);
    run::spmm_bmajor(
        scalar, {t.ptr.data(), t.idx.data(), a.val.data(), t.pos.data(), scratch.data(), cs.cols,
                 cs.rows, b.data(), nb, c_scalar.data(), nb, nb, 2});
    expect_close(c, c_scalar, 1e-5f, "transposed spmm vs scalar, " + what);
    run::spmmt_bmajor(scalar, {a.ptr.data(), a.idx.data(), a.val.data(), t.ptr.data(), cs.rows,
                               cs.cols, b.data(), nb, ct_scalar.data(), nb, nb, 2});
    for (int threads : {1, 2, 3}) {
      std::vector<float> c2(cs.cols * nb, NAN);
      run::spmmt_bmajor(table, {a.ptr.data(), a.idx.data(), a.val.data(), t.ptr.data(), cs.rows,
                                cs.cols, b.data(), nb, c2.data(), nb, nb, threads});
      expect_close(c2, ref, 1e-5f, "spmmt vs naive, " + what);
      expect_close(c2, ct_scalar, 1e-5f, "spmmt vs scalar, " + what);
    }
  }
}

// Large offsets: B's and C's row strides beyond 2^31, so idx * ldb and r * ldc (and k * ldc
// in the transposed product) are beyond 2^32; any index computed in 32 bits would read or
// write the wrong element (or fault).
TEST_P(SpmmBmajor, RowStridesBeyond2To31) {
  ST_RESERVE_OR_SKIP(mem);
  const auto& table = st::kernel_table(GetParam());
  const int64_t nb = 32, rows = 2, cols = 4;
  const std::vector<int64_t> ptr = {0, 2, 4};
  const std::vector<int32_t> idx = {1, 3, 0, 3};
  const std::vector<float> values = {1.5f, -0.5f, 2.0f, 0.25f};
  const std::vector<int64_t> col_ptr = {0, 1, 2, 2, 4};  // nonzeros per column, cumulative
  const int64_t ld = kTwo31 + 48;  // a multiple of 16: B, C rows stay aligned like the real ones
  float* b = mem.at(0);            // cols rows of ld
  float* c = mem.at(int64_t{5} << 31);  // rows (or cols) rows of ld
  for (int64_t q = 0; q < cols; ++q)
    for (int64_t t = 0; t < nb; ++t) *(b + q * ld + t) = val_at(q * 100 + t);
  auto b_at = [&](int64_t q, int64_t t) { return val_at(q * 100 + t); };
  for (int threads : {1, 2}) {
    run::spmm_bmajor(table, {ptr.data(), idx.data(), values.data(), nullptr, nullptr, rows, cols, b,
                             ld, c, ld, nb, threads});
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t t = 0; t < nb; ++t) {
        float ref = 0.f;
        for (int64_t j = ptr[r]; j < ptr[r + 1]; ++j) ref += values[j] * b_at(idx[j], t);
        ASSERT_NEAR(*(c + r * ld + t), ref, 1e-5f) << "spmm row " << r << " t " << t;
      }
    // C = Aᵀ B with B = the rows x nb block at b (rows of ld) and C (cols rows of ld).
    run::spmmt_bmajor(table, {ptr.data(), idx.data(), values.data(), col_ptr.data(), rows, cols, b,
                              ld, c, ld, nb, threads});
    for (int64_t q = 0; q < cols; ++q)
      for (int64_t t = 0; t < nb; ++t) {
        float ref = 0.f;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = ptr[r]; j < ptr[r + 1]; ++j)
            if (idx[j] == q) ref += values[j] * b_at(r, t);
        ASSERT_NEAR(*(c + q * ld + t), ref, 1e-5f) << "spmmt column " << q << " t " << t;
      }
  }
}

ST_TEST_EVERY_ISA(SpmmBmajor);

}  // namespace
}  // namespace st_test
