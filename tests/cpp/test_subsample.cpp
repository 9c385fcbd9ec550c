// Strided subsampling of NCHW planes (x[:, :, ::sh, ::sw]) and its gradient.
#include "tester.h"

namespace st_test {
namespace {

class Subsample : public IsaTest {};

TEST_P(Subsample, ForwardAndGradientMatchNaive) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(21);
  struct G {
    int64_t planes, h, w, sh, sw;
  };
  // Rows short and long enough for whole-vector (de)interleaving, odd widths, strides 1-3.
  for (const G& g : {G{3, 7, 9, 2, 2}, G{2, 8, 64, 2, 2}, G{2, 5, 33, 2, 2}, G{1, 1, 1, 2, 2},
                     G{2, 6, 40, 1, 2}, G{2, 9, 31, 3, 3}, G{1, 4, 70, 2, 1}, G{2, 3, 5, 1, 1}}) {
    const int64_t ho = (g.h + g.sh - 1) / g.sh, wo = (g.w + g.sw - 1) / g.sw;
    // Exactly sized buffers, so ASan catches any read or write past them.
    std::vector<float> x = random_vec(g.planes * g.h * g.w, rng);
    std::vector<float> y(g.planes * ho * wo, NAN);
    run::subsample(table, {x.data(), y.data(), g.planes, g.h, g.w, g.sh, g.sw, 2});
    for (int64_t p = 0; p < g.planes; ++p)
      for (int64_t oh = 0; oh < ho; ++oh)
        for (int64_t ow = 0; ow < wo; ++ow)
          ASSERT_EQ(y[(p * ho + oh) * wo + ow], x[(p * g.h + oh * g.sh) * g.w + ow * g.sw])
              << "subsample at plane " << p << " (" << oh << ", " << ow << ")";
    std::vector<float> dx(x.size(), NAN);
    run::subsample_grad(table, {y.data(), dx.data(), g.planes, g.h, g.w, g.sh, g.sw, 2});
    for (int64_t p = 0; p < g.planes; ++p)
      for (int64_t ih = 0; ih < g.h; ++ih)
        for (int64_t iw = 0; iw < g.w; ++iw) {
          const bool sampled = ih % g.sh == 0 && iw % g.sw == 0;
          ASSERT_EQ(dx[(p * g.h + ih) * g.w + iw], sampled ? x[(p * g.h + ih) * g.w + iw] : 0.0f)
              << "gradient at plane " << p << " (" << ih << ", " << iw << ")";
        }
  }
}

ST_TEST_EVERY_ISA(Subsample);

}  // namespace
}  // namespace st_test
