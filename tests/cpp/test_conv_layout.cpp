// The convolution layouts: NCHW input to the packed phase planes and back (with the finite
// flags read while packing), and the output gradient onto its bordered grid (with the
// channel sums, the bias gradient).
#include "tester.h"

namespace st_test {
namespace {

class ConvLayout : public IsaTest {};

TEST_P(ConvLayout, RoundTripAndMatchScalar) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(9);
  struct G {
    int64_t n, c, h, w, sh, sw, pt, pl;
  };
  for (const G& g :
       {G{3, 2, 5, 7, 1, 1, 1, 1}, G{17, 3, 9, 20, 2, 2, 1, 2}, G{16, 2, 4, 300, 1, 3, 0, 2},
        G{33, 1, 6, 5, 3, 1, 2, 0},
        // stride 2 with rows long enough for whole-vector (de)interleaving, odd and
        // even left padding, odd widths
        G{3, 2, 7, 75, 2, 2, 1, 1}, G{2, 2, 6, 64, 2, 2, 0, 3}, G{1, 1, 5, 33, 2, 2, 1, 0}}) {
    for (int64_t unit : {1, 16}) {
      const int64_t hq = (g.h + 2 * g.pt + g.sh - 1) / g.sh,
                    wq = (g.w + 2 * g.pl + g.sw - 1) / g.sw;
      const k::ConvInputLayout l{
          g.n, g.c, (g.n + unit - 1) / unit, unit, g.h, g.w, g.sh, g.sw, g.pt, g.pl, hq, wq};
      const int64_t packed_size = l.groups * g.c * g.sh * g.sw * hq * wq * unit;
      std::vector<float> x = random_vec(g.n * g.c * g.h * g.w, rng);
      std::vector<float> p(packed_size, NAN), ps(packed_size, NAN), back(x.size(), NAN);
      run::conv_pack_input(table, {l, x.data(), p.data(), 2});
      run::conv_pack_input(scalar, {l, x.data(), ps.data(), 2});
      for (size_t i = 0; i < p.size(); ++i) ASSERT_EQ(p[i], ps[i]) << "pack_input at " << i;
      run::conv_unpack_grad_input(table, {l, back.data(), p.data(), 2});
      for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(back[i], x[i]) << "input round trip at " << i;
      // Finite flags per (group, channel): all set for finite x; a NaN, +Inf or -Inf clears
      // exactly the flag of the channel (and group) holding it.
      const size_t flags_n = static_cast<size_t>(l.groups * g.c);
      std::vector<unsigned char> flags(flags_n, 7);
      run::conv_pack_input(table, {l, x.data(), p.data(), 2, flags.data()});
      for (size_t i = 0; i < flags_n; ++i) ASSERT_EQ(flags[i], 1) << "finite flag " << i;
      const float bad[] = {NAN, INFINITY, -INFINITY};
      for (int b = 0; b < 3; ++b) {
        std::vector<float> xb = x;
        const size_t at = (x.size() * (2 * b + 1)) / 6;  // spread over images and channels
        xb[at] = bad[b];
        const int64_t n = static_cast<int64_t>(at) / (g.c * g.h * g.w);
        const int64_t c = static_cast<int64_t>(at) / (g.h * g.w) % g.c;
        for (const auto* t : {&table, &scalar}) {
          std::fill(flags.begin(), flags.end(), 7);
          run::conv_pack_input(*t, {l, xb.data(), p.data(), 2, flags.data()});
          for (size_t i = 0; i < flags_n; ++i)
            ASSERT_EQ(flags[i], static_cast<int64_t>(i) == (n / unit) * g.c + c ? 0 : 1)
                << "finite flag " << i << " with a non-finite value at " << at;
        }
      }

      // Output side: a grid with offset and row stride wider than the output.
      const int64_t ho = g.h, wo = g.w, owq = g.w + 2, offset = 5, per = offset + ho * owq + 3;
      const k::ConvOutputLayout o{g.n, g.c, l.groups, unit, ho, wo, owq, per, offset};
      std::vector<float> y = random_vec(g.n * g.c * ho * wo, rng);
      std::vector<float> grid(l.groups * g.c * per * unit, NAN), gs(grid.size(), NAN);
      std::vector<double> sums(l.groups * g.c), ssums(sums.size());
      run::conv_pack_grad_output(table, {o, y.data(), grid.data(), sums.data(), 2});
      run::conv_pack_grad_output(scalar, {o, y.data(), gs.data(), ssums.data(), 2});
      for (size_t i = 0; i < grid.size(); ++i)
        ASSERT_EQ(grid[i], gs[i]) << "pack_grad_output at " << i;
      // Every output pixel at its grid position (lane n % unit of group n / unit), zeros elsewhere.
      std::vector<float> expect(grid.size(), 0.f);
      for (int64_t n = 0; n < g.n; ++n)
        for (int64_t c = 0; c < g.c; ++c)
          for (int64_t oh = 0; oh < ho; ++oh)
            for (int64_t ow = 0; ow < wo; ++ow) {
              const int64_t px = ((n / unit) * g.c + c) * per + offset + oh * owq + ow;
              expect[px * unit + n % unit] = y[((n * g.c + c) * ho + oh) * wo + ow];
            }
      for (size_t i = 0; i < grid.size(); ++i) ASSERT_EQ(grid[i], expect[i]) << "grid at " << i;
      // Channel sums (the bias gradient), against exact double sums: float partial sums of
      // at most 16 floats each bound the error by ~16 eps of the sum of magnitudes.
      for (int64_t i = 0; i < l.groups * g.c; ++i) {
        const int64_t grp = i / g.c, c = i % g.c;
        double exact = 0.0, mag = 0.0;
        for (int64_t n = grp * unit; n < std::min(g.n, (grp + 1) * unit); ++n)
          for (int64_t k = 0; k < ho * wo; ++k) {
            const float v = y[(n * g.c + c) * ho * wo + k];
            exact += v;
            mag += std::fabs(v);
          }
        ASSERT_NEAR(sums[i], exact, 2e-6 * mag) << "channel sum " << i;
        ASSERT_NEAR(ssums[i], exact, 2e-6 * mag) << "scalar channel sum " << i;
      }
    }
  }
}

ST_TEST_EVERY_ISA(ConvLayout);

}  // namespace
}  // namespace st_test
