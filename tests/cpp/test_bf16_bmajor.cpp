// The batch-major family in bf16 storage: spmm (also on the transposed index), sddmm, pack and
// unpack with B, C, A in bf16 and the values (and their gradient) in float. Every product of
// bf16 inputs is exact in float, so a product kernel differs from the naive float sum of the
// same widened inputs only by float summation order, plus one bf16 rounding of what it stores
// (relative 2^-8 at most); pack is exact, unpack rounds once after adding the bias.
#include <cstring>

#include "tester.h"

namespace st_test {
namespace {

using k::bf16;

std::vector<bf16> to_bf16(const std::vector<float>& v) {
  std::vector<bf16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = k::narrow<bf16>(v[i]);
  return out;
}
std::vector<float> widen(const std::vector<bf16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = k::widen(v[i]);
  return out;
}
// Values as the Python side passes them under autocast: floats already rounded to bf16.
std::vector<float> rounded(std::vector<float> v) {
  for (auto& x : v) x = k::widen(k::narrow<bf16>(x));
  return v;
}
float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// One bf16 rounding of a float sum: |stored - exact| <= 2^-8 |exact| plus the float error.
constexpr float kStoreTol = 1.0f / 256;

class Bf16Bmajor : public IsaTest {};

TEST(Bf16Rounding, NearestEvenAndSpecials) {
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
  EXPECT_EQ(k::narrow<bf16>(bits_to_float(0x3F808000u)).bits, 0x3F80);
  EXPECT_EQ(k::narrow<bf16>(bits_to_float(0x3F818000u)).bits, 0x3F82);  // tie up to even
  EXPECT_EQ(k::narrow<bf16>(bits_to_float(0x3F808001u)).bits, 0x3F81);  // above the tie
  EXPECT_EQ(k::narrow<bf16>(INFINITY).bits, 0x7F80);
  EXPECT_EQ(k::narrow<bf16>(-INFINITY).bits, 0xFF80);
  EXPECT_EQ(k::narrow<bf16>(NAN).bits, 0x7FC0);
  EXPECT_EQ(k::narrow<bf16>(bits_to_float(0x7F7FFFFFu)).bits, 0x7F80);  // FLT_MAX rounds to Inf
  EXPECT_EQ(k::narrow<bf16>(-0.0f).bits, 0x8000);
  EXPECT_EQ(k::widen(bf16{0x3FC0}), 1.5f);
}

// Vector stores round as the scalar narrow does: unpack adds a bias in float, so each
// (value, bias) pair below makes a float sum that the store must round (ties to even, NaN to
// the quiet NaN, overflow to Inf, subnormals and signed zero kept), in full vectors (batch 16
// and 48) and in the scalar edge loops (batch 3).
TEST_P(Bf16Bmajor, StoresRoundLikeTheScalarNarrow) {
  const auto& table = st::kernel_table(GetParam());
  struct Case {
    uint16_t x, bias, expect;
  };
  const Case cases[] = {
      {0x3F80, 0x3B80, 0x3F80},  // 1 + 2^-8: a tie, to the even 1
      {0x3F81, 0x3B80, 0x3F82},  // (1 + 2^-7) + 2^-8: a tie, up to the even mantissa
      {0x3F80, 0x3B81, 0x3F81},  // just above the tie
      {0xBF80, 0xBB81, 0xBF81},  // the same, negative
      {0x7FA0, 0x0000, 0x7FC0},  // NaN with a payload -> the quiet NaN
      {0x7F80, 0x3F80, 0x7F80},  // Inf + 1
      {0xFF80, 0x3F80, 0xFF80},  // -Inf + 1
      {0x7F7F, 0x7F7F, 0x7F80},  // overflow to Inf
      {0x0001, 0x0000, 0x0001},  // subnormal kept
      {0x8000, 0x8000, 0x8000},  // -0 + -0
      {0x4049, 0x3C23, 0x404A},  // 3.140625 + 0.00994873 = 3.1505737 -> 3.15625
  };
  const int64_t features = sizeof(cases) / sizeof(cases[0]);
  std::vector<bf16> bias(features);
  for (int64_t f = 0; f < features; ++f) bias[f] = bf16{cases[f].bias};
  for (int64_t batch : {3, 16, 48}) {
    std::vector<bf16> src(features * batch), out(batch * features);
    for (int64_t f = 0; f < features; ++f)
      for (int64_t t = 0; t < batch; ++t) src[f * batch + t] = bf16{cases[f].x};
    run::unpack_bmajor_bf16(
        table, {src.data(), batch, batch, features, out.data(), features, bias.data(), 1});
    for (int64_t t = 0; t < batch; ++t)
      for (int64_t f = 0; f < features; ++f) {
        const float sum = k::widen(bf16{cases[f].x}) + k::widen(bf16{cases[f].bias});
        ASSERT_EQ(k::narrow<bf16>(sum).bits, cases[f].expect) << "scalar narrow, case " << f;
        ASSERT_EQ(out[t * features + f].bits, cases[f].expect)
            << "case " << f << ", batch " << batch << ", t " << t;
      }
  }
}

TEST_P(Bf16Bmajor, SpmmMatchesNaiveAndScalar) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(11);
  for (const CsrCase& cs : kCsrCases) {
    Csr a = random_csr(cs.rows, cs.cols, cs.density, rng);
    a.val = rounded(a.val);
    const int64_t nb = k::padded_batch(cs.batch);
    const std::vector<bf16> b = to_bf16(random_vec(cs.cols * nb, rng));
    const std::vector<float> ref = ref_spmm_bmajor(a, widen(b), nb);
    for (int threads : {1, 2}) {
      std::vector<bf16> c(cs.rows * nb, bf16{0x7FC0}), c_scalar(cs.rows * nb, bf16{0x7FC0});
      run::spmm_bmajor_bf16(table, {a.ptr.data(), a.idx.data(), a.val.data(), nullptr, nullptr,
                                    cs.rows, cs.cols, b.data(), nb, c.data(), nb, nb, threads});
      run::spmm_bmajor_bf16(
          scalar, {a.ptr.data(), a.idx.data(), a.val.data(), nullptr, nullptr, cs.rows, cs.cols,
                   b.data(), nb, c_scalar.data(), nb, nb, threads});
      expect_close(widen(c), ref, kStoreTol, "bf16 spmm " + describe(cs) + " vs naive");
      expect_close(widen(c), widen(c_scalar), kStoreTol,
                   "bf16 spmm " + describe(cs) + " vs scalar");
    }
  }
}

// Values that are not bf16-valued (the layers never pass such): every ISA stays within the
// bf16 truncation of the values (2^-7 relative) plus the store's rounding; none reads a
// float's low half as a number of its own.
TEST_P(Bf16Bmajor, SpmmWithValuesNotRoundedToBf16StaysClose) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(15);
  const Csr a = random_csr(40, 70, 0.3, rng);  // float values with full mantissas
  const int64_t nb = 64;
  const std::vector<bf16> b = to_bf16(random_vec(70 * nb, rng));
  const std::vector<float> ref = ref_spmm_bmajor(a, widen(b), nb);
  Csr mag = a;
  for (auto& v : mag.val) v = std::fabs(v);
  std::vector<float> babs = widen(b);
  for (auto& v : babs) v = std::fabs(v);
  const std::vector<float> bound = ref_spmm_bmajor(mag, babs, nb);
  std::vector<bf16> c(40 * nb);
  run::spmm_bmajor_bf16(table, {a.ptr.data(), a.idx.data(), a.val.data(), nullptr, nullptr, 40, 70,
                                b.data(), nb, c.data(), nb, nb, 2});
  for (size_t i = 0; i < c.size(); ++i)
    ASSERT_NEAR(k::widen(c[i]), ref[i], (1.0f / 128 + kStoreTol) * bound[i] + 1e-6f) << i;
}

TEST_P(Bf16Bmajor, TransposedSpmmMatchesNaive) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(12);
  for (const CsrCase& cs : kCsrCases) {
    Csr a = random_csr(cs.rows, cs.cols, cs.density, rng);
    a.val = rounded(a.val);
    const Transposed t = transpose(a);
    const int64_t nb = k::padded_batch(cs.batch);
    const std::vector<bf16> b = to_bf16(random_vec(cs.rows * nb, rng));
    const std::vector<float> ref = ref_spmmt_bmajor(a, widen(b), nb);
    std::vector<bf16> c(cs.cols * nb, bf16{0x7FC0});
    std::vector<float> scratch(a.idx.size());
    run::spmm_bmajor_bf16(
        table, {t.ptr.data(), t.idx.data(), a.val.data(), t.pos.data(), scratch.data(), cs.cols,
                cs.rows, b.data(), nb, c.data(), nb, nb, 2});
    expect_close(widen(c), ref, kStoreTol, "bf16 transposed spmm, " + describe(cs));
  }
}

TEST_P(Bf16Bmajor, SddmmMatchesNaiveAndScalar) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(13);
  for (const CsrCase& cs : kCsrCases) {
    const Csr s = random_csr(cs.rows, cs.cols, cs.density, rng);
    const int64_t nb = k::padded_batch(cs.batch);
    std::vector<float> af = random_vec(cs.rows * nb, rng), bf = random_vec(cs.cols * nb, rng);
    for (int64_t r = 0; r < cs.rows; ++r)  // the pad lanes are zeros, as pack writes them
      for (int64_t t = cs.batch; t < nb; ++t) af[r * nb + t] = 0.f;
    const std::vector<bf16> a = to_bf16(af), b = to_bf16(bf);
    const std::vector<float> ref = ref_sddmm_bmajor(s, widen(a), widen(b), nb);
    for (int threads : {1, 2}) {
      std::vector<float> out(s.idx.size(), NAN), out_scalar(s.idx.size(), NAN);
      run::sddmm_bmajor_bf16(table, {s.ptr.data(), s.idx.data(), cs.rows, cs.cols, a.data(), nb,
                                     b.data(), nb, nb, out.data(), threads});
      run::sddmm_bmajor_bf16(scalar, {s.ptr.data(), s.idx.data(), cs.rows, cs.cols, a.data(), nb,
                                      b.data(), nb, nb, out_scalar.data(), threads});
      // Float sums of exact products: float summation error only.
      expect_close(out, ref, 1e-5f, "bf16 sddmm " + describe(cs) + " vs naive");
      expect_close(out, out_scalar, 1e-5f, "bf16 sddmm " + describe(cs) + " vs scalar");
    }
  }
}

// Pack is an exact transpose with zero padding; unpack transposes back and adds the bias with
// one rounding. Sizes cover partial vectors and partial 64-blocks on both sides.
TEST_P(Bf16Bmajor, PackUnpackRoundTrip) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(14);
  for (auto [batch, features] :
       {std::pair<int64_t, int64_t>{1, 1}, {7, 5}, {16, 16}, {70, 130}, {129, 67}, {200, 16}}) {
    const int64_t nb = k::padded_batch(batch) + 16;  // extra padding, as the odd-line rule adds
    const std::vector<bf16> x = to_bf16(random_vec(batch * features, rng));
    const std::vector<bf16> bias = to_bf16(random_vec(features, rng));
    for (int threads : {1, 2}) {
      std::vector<bf16> xt(features * nb, bf16{0x7FC0}), back(batch * features, bf16{0x7FC0});
      std::vector<float> sums(features, NAN), ref_sums(features, 0.f);
      for (int64_t t = 0; t < batch; ++t)
        for (int64_t f = 0; f < features; ++f) ref_sums[f] += k::widen(x[t * features + f]);
      run::pack_bmajor_bf16(
          table, {x.data(), batch, features, features, xt.data(), nb, threads, sums.data()});
      expect_bitwise(sums, ref_sums, "bf16 pack sums");
      for (int64_t f = 0; f < features; ++f)
        for (int64_t t = 0; t < nb; ++t) {
          const uint16_t expect = t < batch ? x[t * features + f].bits : 0;
          ASSERT_EQ(xt[f * nb + t].bits, expect) << "pack " << batch << "x" << features;
        }
      run::unpack_bmajor_bf16(
          table, {xt.data(), nb, batch, features, back.data(), features, bias.data(), threads});
      for (int64_t t = 0; t < batch; ++t)
        for (int64_t f = 0; f < features; ++f) {
          const float sum = k::widen(x[t * features + f]) + k::widen(bias[f]);
          ASSERT_EQ(back[t * features + f].bits, k::narrow<bf16>(sum).bits)
              << "unpack " << batch << "x" << features;
        }
    }
  }
}

ST_TEST_EVERY_ISA(Bf16Bmajor);

}  // namespace
}  // namespace st_test
