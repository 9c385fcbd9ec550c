// The fused-pack forms of the offsets products: the kernel packs each image of an NCHW input
// (or output gradient) itself, right before it uses it, against packing first and running
// the plain kernel on the packed tensor; also called from inside an enclosing OpenMP team.
#include "tester.h"

namespace st_test {
namespace {

class OffsetsFused : public IsaTest {};

// The fused-pack forms (the kernel packs each image of an NCHW b itself): the same results as
// conv_pack_input followed by the kernel on the packed tensor (bitwise for the products; the
// values gradient sums images in another order, so within rounding), for 1 and 3 threads,
// with the per-image finite flags of the forward form.
TEST_P(OffsetsFused, PackImagesThemselves) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(13);
  struct G {
    int64_t n, c, h, w, sh, sw, pt, pl;
  };
  for (const G& g :
       {G{5, 3, 9, 11, 1, 1, 1, 1}, G{19, 2, 12, 40, 2, 2, 1, 1}, G{2, 4, 7, 5, 2, 1, 0, 2}}) {
    const int64_t hq = (g.h + 2 * g.pt + g.sh - 1) / g.sh + 1,
                  wq = (g.w + 2 * g.pl + g.sw - 1) / g.sw;
    const k::ConvInputLayout l{g.n, g.c, g.n, 1, g.h, g.w, g.sh, g.sw, g.pt, g.pl, hq, wq};
    const int64_t image = g.c * g.sh * g.sw * hq * wq, len = (hq - 1) * wq - 1, rows = 6;
    OffsetCsr a = random_offsets(rows, 7, image - len, rng);
    std::vector<float> x = random_vec(g.n * g.c * g.h * g.w, rng);
    std::vector<float> packed(g.n * image);
    run::conv_pack_input(table, {l, x.data(), packed.data(), 1});
    const int64_t ph = hq - 2, pw = wq - 1;  // planes: a window of the grid
    std::vector<float> ref(g.n * rows * ph * pw, -7.f);
    const PlanesArgs args{
        product(a, rows, packed.data(), image, len, g.n, 2),
        planes_out(ref.data(), ph * pw, rows * ph * pw, wq, 0, 0, 0, ph, pw, nullptr)};
    run::spmm_offsets(table, args);
    std::vector<float> dv_ref(a.off.size()), a_grid = random_vec(g.n * rows * len, rng);
    run::sddmm_offsets(table, {a.ptr.data(),
                               a.off.data(),
                               rows,
                               a_grid.data(),
                               len,
                               rows * len,
                               packed.data(),
                               image,
                               g.n,
                               {len},
                               dv_ref.data(),
                               2});
    std::vector<float> dv_first;
    for (int threads : {1, 3}) {
      const std::string what =
          " from NCHW, n " + std::to_string(g.n) + ", threads " + std::to_string(threads);
      std::vector<float> y(ref.size(), -7.f);
      std::vector<unsigned char> finite(g.n, 7);
      auto f = args;
      f.product.b = x.data();
      f.product.b_image_stride = g.c * g.h * g.w;
      f.out.c = y.data();
      f.product.nthreads = threads;
      f.pack = {&l, nullptr, finite.data()};
      run::spmm_offsets(table, f);
      for (size_t i = 0; i < y.size(); ++i)
        ASSERT_EQ(y[i], ref[i]) << "spmm_offsets" << what << " at " << i;
      for (int64_t n = 0; n < g.n; ++n) ASSERT_EQ(finite[n], 1) << "finite flag of image " << n;
      std::vector<float> xb = x;
      xb[(g.n - 1) * g.c * g.h * g.w + 3] = NAN;  // the last image only
      f.product.b = xb.data();
      run::spmm_offsets(table, f);
      for (int64_t n = 0; n < g.n; ++n) ASSERT_EQ(finite[n], n == g.n - 1 ? 0 : 1) << "image " << n;
      std::vector<float> dv(a.off.size(), NAN);
      SddmmOffsetsArgs s{a.ptr.data(), a.off.data(),    rows, a_grid.data(), len,       rows * len,
                         x.data(),     g.c * g.h * g.w, g.n,  {len},         dv.data(), threads};
      s.pack_b = &l;
      run::sddmm_offsets(table, s);
      expect_close(dv, dv_ref, 1e-5f, "sddmm_offsets" + what);
      if (dv_first.empty()) dv_first = dv;
      for (size_t j = 0; j < dv.size(); ++j)  // the same sums whatever the thread count
        ASSERT_EQ(dv[j], dv_first[j]) << "sddmm_offsets" << what << " at " << j;
    }
  }
}

// The output-gradient side of the fused forms: B (spmm, plain and phase-merging) or A (sddmm)
// packed onto its bordered grid by the kernel from NCHW dy, against conv_pack_grad_output
// followed by the kernel on the packed tensor; the channel sums without a grid.
TEST_P(OffsetsFused, PackGridsThemselves) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(14);
  const GridCase g(rng);
  const int64_t n = g.n, c = g.c, ho = g.ho, wo = g.wo, per = g.per, offset = g.offset;
  const int64_t image = g.image, len = g.len;
  const k::ConvOutputLayout& o = g.o;
  const std::vector<float>& y = g.y;
  std::vector<float> grid(n * image);
  std::vector<double> sums(n * c), sums_only(n * c);
  run::conv_pack_grad_output(table, {o, y.data(), grid.data(), sums.data(), 2});
  run::conv_pack_grad_output(table, {o, y.data(), nullptr, sums_only.data(), 2});
  for (int64_t i = 0; i < n * c; ++i) {  // both against exact sums (their float lanes differ)
    double exact = 0.0, mag = 0.0;
    for (int64_t k = 0; k < ho * wo; ++k) {
      exact += y[i * ho * wo + k];
      mag += std::fabs(y[i * ho * wo + k]);
    }
    ASSERT_NEAR(sums[i], exact, 2e-6 * mag) << "channel sum " << i;
    ASSERT_NEAR(sums_only[i], exact, 2e-6 * mag) << "channel sum without grid " << i;
  }
  // spmm: rows of a transposed product (phase planes of a 2 x 2 strided input, 2 channels)
  // reading the grid at offsets; into rows, and merged into NCHW.
  const int64_t rows = 8, t_len = len - 20;
  OffsetCsr a = random_offsets(rows, 6, image - t_len, rng);
  const k::ConvInputLayout merge{n, 2, n, 1, 7, 6, 2, 2, 1, 1, 4, 4};  // planes of 16
  const int64_t plane = 16, hw = 7 * 6;
  std::vector<float> ref(n * rows * t_len, -7.f);
  const RowsArgs args{product(a, rows, grid.data(), image, t_len, n, 2),
                      {ref.data(), t_len, rows * t_len}};
  run::spmm_offsets(table, args);
  std::vector<float> merged_ref(n * 2 * hw, -7.f), merged(merged_ref.size(), -7.f);
  OffsetCsr am = random_offsets(rows, 6, image - plane, rng);
  const MergeArgs merged_args{product(am, rows, grid.data(), image, plane, n, 2),
                              {merged_ref.data(), 2 * hw, &merge, 0}};
  run::spmm_offsets(table, merged_args);
  for (int threads : {1, 3}) {
    const std::string what = ", threads " + std::to_string(threads);
    // The same call, B packed by the kernel from NCHW y.
    const auto from_nchw = [&](auto f, float* out) {
      f.product.b = y.data();
      f.product.b_image_stride = c * ho * wo;
      f.out.c = out;
      f.product.nthreads = threads;
      f.pack.grid = &o;
      return f;
    };
    std::vector<float> out(ref.size(), -7.f);
    run::spmm_offsets(table, from_nchw(args, out.data()));
    for (size_t i = 0; i < out.size(); ++i)
      ASSERT_EQ(out[i], ref[i]) << "spmm_offsets" << what << " at " << i;
    run::spmm_offsets(table, from_nchw(merged_args, merged.data()));
    for (size_t i = 0; i < merged.size(); ++i)
      ASSERT_EQ(merged[i], merged_ref[i]) << "merged spmm_offsets" << what << " at " << i;
    // Per-image finite flags of y, read while packing: all set, then cleared for exactly the
    // image holding a NaN, +Inf or -Inf (plain and merging forms).
    const auto check_flags = [&](auto f) {
      std::vector<unsigned char> finite(n, 7);
      f.pack.finite = finite.data();
      run::spmm_offsets(table, f);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(finite[i], 1) << "finite flag of image " << i << what;
      int64_t image_with = 0;
      for (float bad : {NAN, INFINITY, -INFINITY}) {
        std::vector<float> yb = y;
        yb[image_with * c * ho * wo + (c * ho * wo) / 2 + image_with] = bad;
        f.product.b = yb.data();
        run::spmm_offsets(table, f);
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(finite[i], i == image_with ? 0 : 1) << "image " << i << " with " << bad << what;
        image_with += 3;
      }
    };
    check_flags(from_nchw(args, out.data()));
    check_flags(from_nchw(merged_args, merged.data()));
  }
  // sddmm: A from the grid (rows = channels from `offset` on), B a plain tensor.
  const int64_t b_image = 300, s_len = len - 3;
  OffsetCsr as = random_offsets(c, 5, b_image - s_len, rng);
  std::vector<float> b = random_vec(n * b_image, rng), dv_ref(as.off.size()), dv(as.off.size());
  run::sddmm_offsets(table, {as.ptr.data(),
                             as.off.data(),
                             c,
                             grid.data() + offset,
                             per,
                             image,
                             b.data(),
                             b_image,
                             n,
                             {s_len},
                             dv_ref.data(),
                             2});
  SddmmOffsetsArgs sa{as.ptr.data(), as.off.data(), c, y.data(), per,       c * ho * wo,
                      b.data(),      b_image,       n, {s_len},  dv.data(), 2};
  sa.pack_a = &o;
  run::sddmm_offsets(table, sa);
  expect_close(dv, dv_ref, 1e-5f, "sddmm_offsets with A packed from NCHW");
}

// Called from inside an OpenMP team (the caller's own parallel region), one thread each: every
// call still packs into its own scratch (thread numbers of the enclosing team are not slots).
TEST_P(OffsetsFused, InsideAnOpenMPTeam) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(15);
  const int64_t n = 2, c = 2, h = 6, w = 7, hq = 8, wq = 9, rows = 3, len = 40;
  const k::ConvInputLayout l{n, c, n, 1, h, w, 1, 1, 1, 1, hq, wq};
  const int64_t image = c * hq * wq;
  OffsetCsr a = random_offsets(rows, 4, image - len, rng);
  std::vector<float> x = random_vec(n * c * h * w, rng), packed(n * image);
  run::conv_pack_input(table, {l, x.data(), packed.data(), 1});
  std::vector<float> ref(n * rows * len);
  run::spmm_offsets(table, RowsArgs{product(a, rows, packed.data(), image, len, n, 1),
                                    {ref.data(), len, rows * len}});
  constexpr int kCallers = 4;
  std::vector<std::vector<float>> out(kCallers, std::vector<float>(ref.size(), -7.f));
#pragma omp parallel for num_threads(kCallers)
  for (int t = 0; t < kCallers; ++t) {
    const RowsArgs f{
        product(a, rows, x.data(), c * h * w, len, n, 1), {out[t].data(), len, rows * len}, {&l}};
    run::spmm_offsets(table, f);
  }
  for (int t = 0; t < kCallers; ++t)
    for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(out[t][i], ref[i]) << "caller " << t;
  // Both gradients at once (dy packed by the kernel, 2 threads asked for), from every caller:
  // each call still has scratch of its own.
  const int64_t ho = 6, wo = 7, per = 80, offset = 10, dlen = 40;
  const k::ConvOutputLayout o{n, rows, n, 1, ho, wo, wq, per, offset};
  std::vector<float> dy = random_vec(n * rows * ho * wo, rng);
  OffsetCsr at = random_offsets(c, 3, rows * per - dlen, rng);
  // The input gradient into planes of one grid row each (the rows of C).
  PlanesArgs gx{product(at, c, dy.data(), rows * ho * wo, dlen, n, 2),
                planes_out(nullptr, dlen, c * dlen, dlen, 0, 0, 0, 1, dlen, nullptr),
                {nullptr, &o}};
  SddmmOffsetsArgs gv{
      a.ptr.data(), a.off.data(), rows, dy.data(), per, rows * ho * wo, x.data(), c * h * w, n,
      {len},        nullptr,      2,    &l,        &o};
  std::vector<float> dx_ref(n * c * dlen), dv_ref(a.off.size());
  gx.out.c = dx_ref.data();
  gv.out = dv_ref.data();
  run::spmm_offsets(table, gx);
  run::sddmm_offsets(table, gv);
  std::vector<std::vector<float>> dxs(kCallers, std::vector<float>(dx_ref.size(), -7.f));
  std::vector<std::vector<float>> dvs(kCallers, std::vector<float>(dv_ref.size(), -7.f));
#pragma omp parallel for num_threads(kCallers)
  for (int t = 0; t < kCallers; ++t) {
    auto fx = gx;
    auto fv = gv;
    fx.out.c = dxs[t].data();
    fv.out = dvs[t].data();
    run::conv_grads_offsets(table, grads(fx, fv));
  }
  for (int t = 0; t < kCallers; ++t) {
    for (size_t i = 0; i < dx_ref.size(); ++i)
      ASSERT_EQ(dxs[t][i], dx_ref[i]) << "dx, caller " << t;
    for (size_t j = 0; j < dv_ref.size(); ++j)
      ASSERT_EQ(dvs[t][j], dv_ref[j]) << "dv, caller " << t;
  }
}

ST_TEST_EVERY_ISA(OffsetsFused);

}  // namespace
}  // namespace st_test
