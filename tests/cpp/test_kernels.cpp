// Each kernel on every ISA this CPU supports, against a naive loop and against the scalar
// kernel, over odd sizes, empty rows, nnz = 0 and full density.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "dispatch/isa.h"
#include "formats/csr.h"
#include "kernels/kernels.h"

namespace st = sparsetrain;
namespace k = sparsetrain::kernels;

namespace {

struct Csr {
  int64_t rows, cols;
  std::vector<int64_t> ptr;
  std::vector<int32_t> idx;
  std::vector<float> val;
};

Csr random_csr(int64_t rows, int64_t cols, double density, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(0.f, 1.f), v(-1.f, 1.f);
  Csr a{rows, cols, {0}, {}, {}};
  for (int64_t r = 0; r < rows; ++r) {
    bool empty_row = (r % 7 == 3);  // some rows always empty
    for (int64_t c = 0; c < cols; ++c)
      if (!empty_row && u(rng) < density) {
        a.idx.push_back(static_cast<int32_t>(c));
        a.val.push_back(v(rng));
      }
    a.ptr.push_back(static_cast<int64_t>(a.idx.size()));
  }
  return a;
}

std::vector<float> random_vec(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> v(-1.f, 1.f);
  std::vector<float> out(n);
  for (auto& x : out) x = v(rng);
  return out;
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tol,
                  const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], tol * (1.f + std::fabs(b[i]))) << what << " at " << i;
}

struct Case {
  int64_t rows, cols, batch;
  double density;
};

const Case kCases[] = {
    {1, 1, 1, 1.0},   {3, 5, 7, 0.5},    {17, 33, 31, 0.3}, {64, 48, 64, 0.1},
    {100, 7, 129, 0.9}, {9, 200, 257, 0.05}, {20, 20, 16, 0.0}, {5, 6, 300, 1.0},
};

class Kernels : public ::testing::TestWithParam<st::Isa> {};

TEST_P(Kernels, SpmmMatchesNaiveAndScalar) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(1);
  for (const Case& cs : kCases) {
    Csr a = random_csr(cs.rows, cs.cols, cs.density, rng);
    const int64_t nb = k::padded_batch(cs.batch);
    std::vector<float> b = random_vec(cs.cols * nb, rng);
    std::vector<float> c(cs.rows * nb, NAN), ref(cs.rows * nb, 0.f), cs_out(cs.rows * nb, NAN);
    for (int64_t r = 0; r < cs.rows; ++r)
      for (int64_t j = a.ptr[r]; j < a.ptr[r + 1]; ++j)
        for (int64_t t = 0; t < nb; ++t) ref[r * nb + t] += a.val[j] * b[a.idx[j] * nb + t];
    for (int threads : {1, 2}) {
      table.spmm({a.ptr.data(), a.idx.data(), a.val.data(), nullptr, nullptr, cs.rows, cs.cols, b.data(),
                  nb, c.data(), nb, nb, threads});
      scalar.spmm({a.ptr.data(), a.idx.data(), a.val.data(), nullptr, nullptr, cs.rows, cs.cols, b.data(),
                   nb, cs_out.data(), nb, nb, threads});
      const std::string what = "spmm " + std::to_string(cs.rows) + "x" + std::to_string(cs.cols) +
                               " batch " + std::to_string(cs.batch);
      expect_close(c, ref, 1e-5f, what + " vs naive");
      expect_close(c, cs_out, 1e-5f, what + " vs scalar");
    }
  }
}

TEST_P(Kernels, TransposedProductBothWays) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(6);
  for (const Case& cs : kCases) {
    Csr a = random_csr(cs.rows, cs.cols, cs.density, rng);
    const int64_t nnz = static_cast<int64_t>(a.idx.size());
    std::vector<int64_t> tptr(cs.cols + 1), pos(nnz);
    std::vector<int32_t> tidx(nnz);
    st::formats::csr_transpose(a.ptr.data(), a.idx.data(), cs.rows, cs.cols, tptr.data(),
                               tidx.data(), pos.data());
    const int64_t nb = k::padded_batch(cs.batch);
    std::vector<float> b = random_vec(cs.rows * nb, rng);
    std::vector<float> c(cs.cols * nb, NAN), ref(cs.cols * nb, 0.f);
    for (int64_t r = 0; r < cs.rows; ++r)
      for (int64_t j = a.ptr[r]; j < a.ptr[r + 1]; ++j)
        for (int64_t t = 0; t < nb; ++t) ref[a.idx[j] * nb + t] += a.val[j] * b[r * nb + t];
    std::vector<float> scratch(nnz);
    table.spmm({tptr.data(), tidx.data(), a.val.data(), pos.data(), scratch.data(), cs.cols,
                cs.rows, b.data(), nb, c.data(), nb, nb, 2});
    expect_close(c, ref, 1e-5f, "transposed spmm");
    const auto& scalar = st::kernel_table(st::Isa::scalar);
    std::vector<float> c_scalar(cs.cols * nb, NAN), ct_scalar(cs.cols * nb, NAN);
    scalar.spmm({tptr.data(), tidx.data(), a.val.data(), pos.data(), scratch.data(), cs.cols,
                 cs.rows, b.data(), nb, c_scalar.data(), nb, nb, 2});
    expect_close(c, c_scalar, 1e-5f, "transposed spmm vs scalar");
    scalar.spmmt({a.ptr.data(), a.idx.data(), a.val.data(), tptr.data(), cs.rows, cs.cols,
                  b.data(), nb, ct_scalar.data(), nb, nb, 2});
    for (int threads : {1, 2, 3}) {
      std::vector<float> c2(cs.cols * nb, NAN);
      table.spmmt({a.ptr.data(), a.idx.data(), a.val.data(), tptr.data(), cs.rows, cs.cols,
                   b.data(), nb, c2.data(), nb, nb, threads});
      expect_close(c2, ref, 1e-5f, "spmmt vs naive");
      expect_close(c2, ct_scalar, 1e-5f, "spmmt vs scalar");
    }
  }
}

TEST_P(Kernels, SddmmMatchesNaiveAndScalar) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(2);
  for (const Case& cs : kCases) {
    Csr s = random_csr(cs.rows, cs.cols, cs.density, rng);
    const int64_t nb = k::padded_batch(cs.batch);
    std::vector<float> a = random_vec(cs.rows * nb, rng), b = random_vec(cs.cols * nb, rng);
    const size_t nnz = s.idx.size();
    std::vector<float> out(nnz, NAN), sc(nnz, NAN), ref(nnz, 0.f);
    for (int64_t r = 0; r < cs.rows; ++r)
      for (int64_t j = s.ptr[r]; j < s.ptr[r + 1]; ++j)
        for (int64_t t = 0; t < nb; ++t) ref[j] += a[r * nb + t] * b[s.idx[j] * nb + t];
    table.sddmm({s.ptr.data(), s.idx.data(), cs.rows, cs.cols, a.data(), nb, b.data(), nb, nb,
                 out.data(), 2});
    scalar.sddmm({s.ptr.data(), s.idx.data(), cs.rows, cs.cols, a.data(), nb, b.data(), nb, nb,
                  sc.data(), 2});
    expect_close(out, ref, 1e-4f, "sddmm vs naive");
    expect_close(out, sc, 1e-4f, "sddmm vs scalar");
  }
}

TEST_P(Kernels, SddmmEmptyBatchIsZero) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(3);
  Csr s = random_csr(6, 6, 0.5, rng);
  std::vector<float> out(s.idx.size(), NAN);
  table.sddmm({s.ptr.data(), s.idx.data(), 6, 6, nullptr, 0, nullptr, 0, 0, out.data(), 2});
  for (float x : out) EXPECT_EQ(x, 0.f);
}

TEST_P(Kernels, PackUnpackRoundTrip) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(4);
  for (int64_t batch : {1, 5, 16, 17, 100}) {
    for (int64_t feat : {1, 3, 16, 33}) {
      const int64_t nb = k::padded_batch(batch);
      std::vector<float> x = random_vec(batch * feat, rng), bias = random_vec(feat, rng);
      std::vector<float> xt(feat * nb, NAN), y(batch * feat, NAN);
      table.pack({x.data(), batch, feat, feat, xt.data(), nb, 2});
      for (int64_t f = 0; f < feat; ++f)
        for (int64_t t = 0; t < nb; ++t)
          ASSERT_EQ(xt[f * nb + t], t < batch ? x[t * feat + f] : 0.f);
      table.unpack({xt.data(), nb, batch, feat, y.data(), feat, bias.data(), 2});
      for (int64_t t = 0; t < batch; ++t)
        for (int64_t f = 0; f < feat; ++f) ASSERT_EQ(y[t * feat + f], x[t * feat + f] + bias[f]);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, Kernels, ::testing::ValuesIn(st::supported_isas()),
                         [](const auto& info) { return std::string(st::isa_name(info.param)); });

TEST(Formats, ValidateRejectsOutOfRangeColumn) {
  std::vector<int64_t> ptr{0, 1};
  std::vector<int32_t> idx{4};
  EXPECT_THROW(st::formats::validate_csr(ptr.data(), 2, idx.data(), 1, 1, 4), std::invalid_argument);
  idx[0] = 3;
  EXPECT_NO_THROW(st::formats::validate_csr(ptr.data(), 2, idx.data(), 1, 1, 4));
}

TEST(Formats, TransposeInvertsCsr) {
  std::mt19937 rng(5);
  Csr a = random_csr(13, 9, 0.4, rng);
  const int64_t nnz = static_cast<int64_t>(a.idx.size());
  std::vector<int64_t> tptr(10), pos(nnz);
  std::vector<int32_t> tidx(nnz);
  st::formats::csr_transpose(a.ptr.data(), a.idx.data(), 13, 9, tptr.data(), tidx.data(), pos.data());
  for (int64_t r = 0; r < 13; ++r)
    for (int64_t j = a.ptr[r]; j < a.ptr[r + 1]; ++j) {
      const int64_t k2 = pos[j];
      EXPECT_TRUE(k2 >= tptr[a.idx[j]] && k2 < tptr[a.idx[j] + 1]);
      EXPECT_EQ(tidx[k2], r);
    }
}

}  // namespace
