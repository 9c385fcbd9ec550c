// Both gradients of a convolution at once (conv_grads_offsets_planes / _planes16 / _merge): the
// same numbers as the two offsets kernels one after the other, and the one-pass form against
// the convolution itself.
#include "tester.h"

namespace st_test {
namespace {

class ConvGrads : public IsaTest {};

// Both gradients from one packing of dy per image: the same numbers as the two kernels one
// after the other (input gradient into planes of one row each and merged into NCHW, values
// gradient with x and dy packed by the kernel), the same finite flags of dy, for 1 and 3
// threads.
TEST_P(ConvGrads, MatchTheTwoKernels) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(16);
  const GridCase g(rng);
  const int64_t n = g.n, c = g.c, ho = g.ho, wo = g.wo, per = g.per;
  const int64_t image = g.image, len = g.len;
  const k::ConvOutputLayout& o = g.o;
  const std::vector<float>& y = g.y;
  // dx: 8 rows (2 channels x 2 x 2 phases) reading dy's grid.
  const int64_t rows = 8, t_len = len - 20, plane = 16, hw = 7 * 6;
  const k::ConvInputLayout merge{n, 2, n, 1, 7, 6, 2, 2, 1, 1, 4, 4};
  OffsetCsr a = random_offsets(rows, 6, image - t_len, rng);
  OffsetCsr am = random_offsets(rows, 6, image - plane, rng);
  std::vector<int64_t> pos(a.off.size());
  for (size_t j = 0; j < pos.size(); ++j) pos[j] = static_cast<int64_t>(pos.size() - 1 - j);
  std::vector<float> scratch(pos.size());
  // dv: rows = dy's channels, B = x (2 channels of 6 x 7, padded 1) packed by the kernel.
  const k::ConvInputLayout xl{n, 2, n, 1, 6, 7, 1, 1, 1, 1, 8, 9};
  const int64_t x_image = 2 * 8 * 9, s_len = 40;
  std::vector<float> x = random_vec(n * 2 * 6 * 7, rng);
  OffsetCsr as = random_offsets(c, 5, x_image - s_len, rng);
  for (int threads : {1, 3}) {
    for (bool merged : {false, true}) {
      const std::string what =
          std::string(merged ? "merged" : "rows") + ", threads " + std::to_string(threads);
      const int64_t out_size = merged ? n * 2 * hw : n * rows * t_len;
      std::vector<float> dx_ref(out_size, -7.f), dx(out_size, -7.f);
      std::vector<float> dv_ref(as.off.size(), -7.f), dv(as.off.size(), -7.f);
      const SddmmOffsetsArgs fv{as.ptr.data(), as.off.data(), c,         y.data(), per,
                                c * ho * wo,   x.data(),      2 * 6 * 7, n,        {s_len},
                                dv_ref.data(), threads,       &xl,       &o};
      // fx: the input gradient form, dy packed by the kernel.
      const auto check = [&](auto fx) {
        fx.pack.grid = &o;
        run::spmm_offsets(table, fx);
        run::sddmm_offsets(table, fv);
        for (float bad : {0.0f, NAN, INFINITY}) {
          std::vector<float> yb = y;
          const int64_t image_with = 2;
          if (bad != 0.0f) yb[image_with * c * ho * wo + 17] = bad;
          std::vector<unsigned char> finite(n, 7);
          auto gx = fx;
          auto gv = fv;
          gx.product.b = gv.a = yb.data();
          gx.out.c = dx.data();
          gv.out = dv.data();
          gx.pack.finite = finite.data();
          run::conv_grads_offsets(table, grads(gx, gv));
          for (int64_t i = 0; i < n; ++i)
            ASSERT_EQ(finite[i], bad != 0.0f && i == image_with ? 0 : 1) << "image " << i << what;
          if (bad != 0.0f) continue;  // only the flags are defined with a NaN or Inf in dy
          for (int64_t i = 0; i < out_size; ++i)
            ASSERT_EQ(dx[i], dx_ref[i]) << "dx " << what << " at " << i;
          for (size_t j = 0; j < dv.size(); ++j)
            ASSERT_EQ(dv[j], dv_ref[j]) << "dv " << what << " at " << j;
        }
      };
      if (merged) {
        check(MergeArgs{product(am, rows, y.data(), c * ho * wo, plane, n, threads),
                        {dx_ref.data(), 2 * hw, &merge, 0}});
      } else {  // planes of one grid row each: the rows of C, values scattered by pos
        Product p = product(a, rows, y.data(), c * ho * wo, t_len, n, threads);
        p.pos = pos.data();
        p.scratch = scratch.data();
        check(PlanesArgs{
            p, planes_out(dx_ref.data(), t_len, rows * t_len, t_len, 0, 0, 0, 1, t_len, nullptr)});
      }
    }
  }
}

// A real stride-1 convolution (3 x 3, padding 1, 3 -> 4 channels, 9 x 21 images), indexed as
// the Python layouts index it: conv_grads_offsets takes the one-pass form (each window of
// dy loaded once for both gradients), packing x and dy itself or given them packed (one
// image or 16 per vector). Against a double-precision direct convolution, the two kernels,
// and itself on another thread count (bitwise).
TEST_P(ConvGrads, OnePassMatchesTheConvolution) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(17);
  const int64_t n = 5, cin = 3, cout = 4, h = 9, w = 21, hq = h + 2, wq = w + 2;
  const int64_t plane = hq * wq, margin = 2 * wq + 2, grid_len = (h - 1) * wq + w;
  const int64_t dy_len = margin + plane, dx_start = wq + 1, dx_len = (h - 1) * wq + w;
  const k::ConvOutputLayout o{n, cout, n, 1, h, w, wq, dy_len, margin};
  const k::ConvInputLayout xl{n, cin, n, 1, h, w, 1, 1, 1, 1, hq, wq};
  // Pattern over (cout, cin * 9), about half the weights.
  std::vector<int64_t> ptr{0}, col;
  for (int64_t r = 0; r < cout; ++r) {
    for (int64_t c = 0; c < cin * 9; ++c)
      if (rng() % 2) col.push_back(c);
    ptr.push_back(static_cast<int64_t>(col.size()));
  }
  const int64_t nnz = ptr.back();
  std::vector<float> val = random_vec(nnz, rng);
  std::vector<int64_t> off(nnz), ci(nnz), shift(nnz), row(nnz);
  for (int64_t r = 0; r < cout; ++r)
    for (int64_t j = ptr[r]; j < ptr[r + 1]; ++j) {
      row[j] = r;
      ci[j] = col[j] / 9;
      shift[j] = (col[j] / 3 % 3) * wq + col[j] % 3;
      off[j] = ci[j] * plane + shift[j];
    }
  // Transposed: by input channel, CSR order within one.
  std::vector<int64_t> t_ptr(cin + 1, 0), t_off(nnz), t_pos(nnz);
  for (int64_t j = 0; j < nnz; ++j) ++t_ptr[ci[j] + 1];
  for (int64_t c = 0; c < cin; ++c) t_ptr[c + 1] += t_ptr[c];
  std::vector<int64_t> fill(t_ptr.begin(), t_ptr.end() - 1);
  for (int64_t j = 0; j < nnz; ++j) {
    const int64_t kk = fill[ci[j]]++;
    t_pos[j] = kk;
    t_off[kk] = row[j] * dy_len + margin - shift[j] + dx_start;
  }
  const std::vector<float> x = random_vec(n * cin * h * w, rng);
  const std::vector<float> dy = random_vec(n * cout * h * w, rng);
  // Double-precision references, with the sums of absolute products for the tolerances.
  std::vector<double> ref_dx(n * cin * h * w, 0.0), mag_dx(ref_dx.size(), 0.0);
  std::vector<double> ref_dv(nnz, 0.0), mag_dv(nnz, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < nnz; ++j)
      for (int64_t oh = 0; oh < h; ++oh)
        for (int64_t ow = 0; ow < w; ++ow) {
          const int64_t ih = oh + col[j] / 3 % 3 - 1, iw = ow + col[j] % 3 - 1;
          if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
          const double g = dy[((i * cout + row[j]) * h + oh) * w + ow];
          const int64_t xi = ((i * cin + ci[j]) * h + ih) * w + iw;
          ref_dx[xi] += val[j] * g;
          mag_dx[xi] += std::fabs(val[j] * g);
          ref_dv[j] += g * x[xi];
          mag_dv[j] += std::fabs(g * x[xi]);
        }
  std::vector<float> scratch(nnz);
  // Forms: the kernel packing x and dy (unit 1), both packed beforehand (unit 1 and 16).
  for (int form = 0; form < 3; ++form) {
    const bool packs = form == 0;
    const int64_t u = form == 2 ? 16 : 1, groups = (n + u - 1) / u;
    const k::ConvInputLayout xu{n, cin, groups, u, h, w, 1, 1, 1, 1, hq, wq};
    const k::ConvOutputLayout ou{n, cout, groups, u, h, w, wq, dy_len, margin};
    std::vector<float> xq(groups * cin * plane * u), dyq(groups * cout * dy_len * u);
    run::conv_pack_input(table, {xu, const_cast<float*>(x.data()), xq.data(), 2});
    run::conv_pack_grad_output(table, {ou, dy.data(), dyq.data(), nullptr, 2});
    std::vector<int64_t> t_off_u(nnz), off_u(nnz);
    for (int64_t j = 0; j < nnz; ++j) {
      t_off_u[j] = t_off[j] * u;
      off_u[j] = off[j] * u;
    }
    std::vector<float> first_dx, first_dv;
    for (int threads : {1, 3}) {
      const std::string what =
          "form " + std::to_string(form) + ", threads " + std::to_string(threads);
      std::vector<float> dx(ref_dx.size(), -7.f), dv(nnz, -7.f);
      const int64_t seg_len = u == 16 ? w * 16 : 0, seg_stride = u == 16 ? wq * 16 : 0;
      const Product p{t_ptr.data(),
                      t_off_u.data(),
                      val.data(),
                      t_pos.data(),
                      scratch.data(),
                      cin,
                      packs ? dy.data() : dyq.data(),
                      packs ? cout * h * w : cout * dy_len * u,
                      groups,
                      {dx_len * u, seg_len, seg_stride},
                      threads};
      const k::PlanesOut<float> win =
          planes_out(dx.data(), h * w, cin * h * w, wq, dx_start, 1, 1, h, w, nullptr);
      const SddmmOffsetsArgs fv{ptr.data(),
                                off_u.data(),
                                cout,
                                packs ? dy.data() : dyq.data() + margin * u,
                                dy_len * u,
                                packs ? cout * h * w : cout * dy_len * u,
                                packs ? x.data() : xq.data(),
                                packs ? cin * h * w : cin * plane * u,
                                groups,
                                {grid_len * u, seg_len, seg_stride},
                                dv.data(),
                                threads,
                                packs ? &xl : nullptr,
                                packs ? &o : nullptr};
      // fx: the input gradient form, one image per vector or (u = 16) lanes into NCHW.
      const auto check = [&](auto fx) {
        ASSERT_EQ(run::conv_grads_one_pass_plane(grads(fx, fv)), plane * u) << what;
        run::conv_grads_offsets(table, grads(fx, fv));
        for (size_t i = 0; i < dx.size(); ++i)
          ASSERT_NEAR(dx[i], ref_dx[i], 1e-5 * mag_dx[i] + 1e-6) << "dx at " << i << ", " << what;
        for (int64_t j = 0; j < nnz; ++j)
          ASSERT_NEAR(dv[j], ref_dv[j], 1e-5 * mag_dv[j] + 1e-6) << "dv at " << j << ", " << what;
        if (first_dx.empty()) {
          first_dx = dx;
          first_dv = dv;
        } else {
          ASSERT_EQ(dx, first_dx) << "dx depends on the thread count, " << what;
          ASSERT_EQ(dv, first_dv) << "dv depends on the thread count, " << what;
        }
        // The two kernels: the same products.
        std::vector<float> dx2(dx.size(), -7.f), dv2(nnz, -7.f);
        auto fx2 = fx;
        auto fv2 = fv;
        fx2.out.c = dx2.data();
        fv2.out = dv2.data();
        run::spmm_offsets(table, fx2);
        run::sddmm_offsets(table, fv2);
        for (size_t i = 0; i < dx.size(); ++i)
          ASSERT_NEAR(dx[i], dx2[i], 2e-5 * mag_dx[i] + 1e-6)
              << "dx vs spmm at " << i << ", " << what;
        for (int64_t j = 0; j < nnz; ++j)
          ASSERT_NEAR(dv[j], dv2[j], 2e-5 * mag_dv[j] + 1e-6)
              << "dv vs sddmm at " << j << ", " << what;
        // One entry of the transposed index moved: not the one-pass form any more.
        t_off_u[0] += u;
        EXPECT_EQ(run::conv_grads_one_pass_plane(grads(fx, fv)), 0) << what;
        t_off_u[0] -= u;
      };
      if (u == 16)
        check(Planes16Args{p, win, n});
      else
        check(PlanesArgs{p, win, {nullptr, packs ? &o : nullptr}});
    }
  }
}

ST_TEST_EVERY_ISA(ConvGrads);

}  // namespace
}  // namespace st_test
