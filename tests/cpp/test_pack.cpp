// Batch-major packing: PyTorch's (batch, features) into rows of features holding the batch
// zero-padded to a multiple of 16 (pack), and back with an optional bias (unpack).
#include "tester.h"

namespace st_test {
namespace {

class PackBmajor : public IsaTest {};

// Batches below, at and past one vector of 16, feature counts from 1 to past two vectors.
TEST_P(PackBmajor, PackUnpackRoundTrip) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(4);
  for (int64_t batch : {1, 5, 16, 17, 100}) {
    for (int64_t feat : {1, 3, 16, 33}) {
      const int64_t nb = k::padded_batch(batch);
      std::vector<float> x = random_vec(batch * feat, rng), bias = random_vec(feat, rng);
      std::vector<float> xt(feat * nb, NAN), y(batch * feat, NAN);
      run::pack_bmajor(table, {x.data(), batch, feat, feat, xt.data(), nb, 2});
      for (int64_t f = 0; f < feat; ++f)
        for (int64_t t = 0; t < nb; ++t)
          ASSERT_EQ(xt[f * nb + t], t < batch ? x[t * feat + f] : 0.f);
      run::unpack_bmajor(table, {xt.data(), nb, batch, feat, y.data(), feat, bias.data(), 2});
      for (int64_t t = 0; t < batch; ++t)
        for (int64_t f = 0; f < feat; ++f) ASSERT_EQ(y[t * feat + f], x[t * feat + f] + bias[f]);
    }
  }
}

// The feature sums pack can form on the way: each the float sum over the batch in token order
// (so bitwise the naive loop's), for partial vectors and 64-blocks on both sides, 1-3 threads.
TEST_P(PackBmajor, FeatureSums) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(5);
  for (auto [batch, feat] :
       {std::pair<int64_t, int64_t>{1, 1}, {17, 33}, {130, 70}, {64, 64}, {300, 129}}) {
    const int64_t nb = k::padded_batch(batch);
    const std::vector<float> x = random_vec(batch * feat, rng);
    std::vector<float> ref(feat, 0.f);
    for (int64_t t = 0; t < batch; ++t)
      for (int64_t f = 0; f < feat; ++f) ref[f] += x[t * feat + f];
    for (int threads : {1, 2, 3}) {
      std::vector<float> xt(feat * nb, NAN), sums(feat, NAN);
      run::pack_bmajor(table, {x.data(), batch, feat, feat, xt.data(), nb, threads, sums.data()});
      expect_bitwise(sums, ref, "sums of " + std::to_string(batch) + "x" + std::to_string(feat));
      for (int64_t f = 0; f < feat; ++f)
        for (int64_t t = 0; t < nb; ++t)
          ASSERT_EQ(xt[f * nb + t], t < batch ? x[t * feat + f] : 0.f);
    }
  }
}

// Large offsets: source (and destination) rows so far apart that t * ld_src passes 2^32.
TEST_P(PackBmajor, RowStridesBeyond2To31) {
  ST_RESERVE_OR_SKIP(mem);
  const auto& table = st::kernel_table(GetParam());
  const int64_t batch = 35, features = 21, ld_src = (int64_t{1} << 27) + 8, ld_dst = 48;
  float* src = mem.at(0);
  for (int64_t t = 0; t < batch; ++t)
    for (int64_t q = 0; q < features; ++q) *(src + t * ld_src + q) = val_at(t * 31 + q);
  std::vector<float> packed(features * ld_dst, NAN);
  run::pack_bmajor(table, {src, batch, features, ld_src, packed.data(), ld_dst, 2});
  for (int64_t q = 0; q < features; ++q)
    for (int64_t t = 0; t < ld_dst; ++t)
      ASSERT_EQ(packed[q * ld_dst + t], t < batch ? val_at(t * 31 + q) : 0.f) << q << "," << t;
  float* dst = mem.at(int64_t{1} << 34);
  run::unpack_bmajor(table, {packed.data(), ld_dst, batch, features, dst, ld_src, nullptr, 2});
  for (int64_t t = 0; t < batch; ++t)
    for (int64_t q = 0; q < features; ++q)
      ASSERT_EQ(*(dst + t * ld_src + q), val_at(t * 31 + q)) << t << "," << q;
}

ST_TEST_EVERY_ISA(PackBmajor);

}  // namespace
}  // namespace st_test
