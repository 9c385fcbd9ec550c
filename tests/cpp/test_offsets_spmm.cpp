// The offsets product (the convolution kernels' core): C_n[r, 0:len] = sum_j val[j] *
// B_n[off[j] + 0:len], into rows (spmm_offsets_rows) or straight into NCHW planes
// (spmm_offsets_planes, with bias and batch-norm statistics), with batch-innermost B (16
// images a grid point, spmm_offsets_planes16), merging stride phases into NCHW
// (spmm_offsets_merge), and restricted to row segments.
#include "tester.h"

namespace st_test {
namespace {

class SpmmOffsets : public IsaTest {};

// Row lengths: masked tails on both vector widths (8 and 16 floats) and long rows.
const LenCase kLens[] = {
    {"one position", 1},         {"shorter than a vector", 7},
    {"one 16-float vector", 16}, {"two vectors and a tail", 33},
    {"long rows", 300},          {"long rows with a tail", 517},
};

TEST_P(SpmmOffsets, MatchesNaiveAndScalar) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(7);
  for (const LenCase& lc : kLens) {
    const int64_t len = lc.len;
    const int64_t rows = 9, images = 3, max_off = 200, ldc = len + 3;
    OffsetCsr a = random_offsets(rows, 6, max_off, rng);
    const int64_t b_image = max_off + len + 5, c_image = rows * ldc;
    std::vector<float> b = random_vec(images * b_image, rng);
    std::vector<float> c(images * c_image, 0.f), sc(images * c_image, 0.f),
        ref(images * c_image, 0.f);
    for (int64_t n = 0; n < images; ++n)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = a.ptr[r]; j < a.ptr[r + 1]; ++j)
          for (int64_t t = 0; t < len; ++t)
            ref[n * c_image + r * ldc + t] += a.val[j] * b[n * b_image + a.off[j] + t];
    const Product prod = product(a, rows, b.data(), b_image, len, images, 2);
    RowsArgs args{prod, {c.data(), ldc, c_image}};
    run::spmm_offsets(table, args);
    auto args_s = args;
    args_s.out.c = sc.data();
    run::spmm_offsets(scalar, args_s);
    expect_close(c, ref, 1e-5f, "spmm_offsets vs naive, " + describe(lc));
    expect_close(c, sc, 1e-5f, "spmm_offsets vs scalar, " + describe(lc));
    std::vector<double> row_stats(images * rows * 3, 0.0);  // rows of len values, no planes
    for (int64_t i = 0; i < images * rows; ++i)
      for (int64_t t = 0; t < len; ++t) {
        const double v = ref[(i / rows) * c_image + (i % rows) * ldc + t];
        row_stats[3 * i] += v, row_stats[3 * i + 1] += v * v, row_stats[3 * i + 2] += std::fabs(v);
      }
    expect_output_stats(table, args, row_stats, "row stats, " + describe(lc));
    // Written straight into planes: grid rows of grid_w, a ph x pw window at (row0, col0).
    const int64_t grid_w = 13, t_base = 3, row0 = 1, col0 = 2, pw = 9;
    const int64_t ph =
        (len + t_base) / grid_w - row0 + 1 > 0 ? (len + t_base) / grid_w - row0 + 1 : 1;
    std::vector<float> planes(images * rows * ph * pw, -7.f), pref(planes.size(), -7.f);
    std::vector<float> bias = random_vec(rows, rng);
    std::vector<double> exp_stats(images * rows * 3, 0.0);
    for (int64_t n = 0; n < images; ++n)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t t = 0; t < len; ++t) {
          const int64_t p = t + t_base, row = p / grid_w - row0, col = p % grid_w - col0;
          if (row >= 0 && row < ph && col >= 0 && col < pw) {
            const float v = ref[n * c_image + r * ldc + t] + bias[r];
            pref[(n * rows + r) * ph * pw + row * pw + col] = v;
            double* e = &exp_stats[(n * rows + r) * 3];
            e[0] += v, e[1] += double(v) * v, e[2] += std::fabs(v);
          }
        }
    PlanesArgs args_p{prod, planes_out(planes.data(), ph * pw, rows * ph * pw, grid_w, t_base, row0,
                                       col0, ph, pw, bias.data())};
    run::spmm_offsets(table, args_p);
    expect_close(planes, pref, 1e-5f, "spmm_offsets into planes, " + describe(lc));
    expect_output_stats(table, args_p, exp_stats, "plane stats, " + describe(lc));
  }
}

// Batch-innermost B (16 images per grid point) written straight into each image's NCHW
// planes: a partial last group of images, a window that drops grid points on every side,
// with and without segments (only the segment positions may reach the planes).
TEST_P(SpmmOffsets, Unit16IntoPlanes) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(10);
  constexpr int64_t U = 16;
  for (int64_t points : {1, 5, 16, 23, 70}) {
    for (int64_t seg : {0, 3}) {
      const int64_t rows = 6, batch = 21, groups = 2, grid_w = 7, t_base = 2, row0 = 1, col0 = 1;
      const int64_t pw = 5, ph = (points + t_base) / grid_w + 1, max_pt = 40;
      OffsetCsr a = random_offsets(rows, 5, max_pt, rng);
      for (auto& o : a.off) o *= U;  // whole grid points
      const int64_t b_group = (max_pt + points + 1) * U, plane = ph * pw, c_img = rows * plane;
      std::vector<float> b = random_vec(groups * b_group, rng), bias = random_vec(rows, rng);
      std::vector<float> c(batch * c_img, -7.f), sc(c.size(), -7.f), ref(c.size(), -7.f);
      std::vector<double> exp_stats(groups * rows * 3, 0.0);  // per group of 16 images
      for (int64_t n = 0; n < groups; ++n)
        for (int64_t m = 0; m < U && n * U + m < batch; ++m)
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t q = 0; q < points; ++q) {
              if (seg > 0 && q % grid_w >= seg) continue;  // outside its segment
              const int64_t p = q + t_base, row = p / grid_w - row0, col = p % grid_w - col0;
              if (row < 0 || row >= ph || col < 0 || col >= pw) continue;
              float v = 0.f;
              for (int64_t j = a.ptr[r]; j < a.ptr[r + 1]; ++j)
                v += a.val[j] * b[n * b_group + a.off[j] + q * U + m];
              ref[(n * U + m) * c_img + r * plane + row * pw + col] = v + bias[r];
              double* e = &exp_stats[(n * rows + r) * 3];
              const double w = double(v + bias[r]);
              e[0] += w, e[1] += w * w, e[2] += std::fabs(w);
            }
      Product prod = product(a, rows, b.data(), b_group, points * U, groups, 2);
      prod.spans.seg_len = seg * U;
      prod.spans.seg_stride = seg > 0 ? grid_w * U : 0;
      Planes16Args args{
          prod, planes_out(c.data(), plane, c_img, grid_w, t_base, row0, col0, ph, pw, bias.data()),
          batch};
      run::spmm_offsets(table, args);
      auto args_s = args;
      args_s.out.c = sc.data();
      run::spmm_offsets(scalar, args_s);
      const std::string what =
          ", points " + std::to_string(points) + ", seg " + std::to_string(seg);
      expect_close(c, ref, 1e-5f, "unit-16 planes vs naive" + what);
      expect_close(c, sc, 1e-5f, "unit-16 planes vs scalar" + what);
      expect_output_stats(table, args, exp_stats, "unit-16 stats" + what);
    }
  }
}

// The input gradient of a strided convolution straight into NCHW: rows are channels x
// stride phases, each channel's phase planes interleaved into its plane. Positions of a
// phase plane outside [t_base, t_base + len) count as zero; the gap between images is never
// written.
TEST_P(SpmmOffsets, MergesPhasesIntoNchw) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(12);
  struct G {
    int64_t c, h, w, sh, sw, pt, pl, t_base, tail;
  };
  for (const G& g : {G{3, 7, 9, 2, 2, 1, 1, 0, 0}, G{2, 6, 75, 2, 2, 1, 1, 4, 3},
                     G{2, 5, 64, 2, 2, 0, 3, 0, 0}, G{1, 5, 33, 2, 2, 1, 0, 2, 40},
                     G{2, 7, 8, 3, 2, 2, 1, 1, 1}, G{1, 4, 40, 1, 3, 0, 2, 0, 0}}) {
    const int64_t hq = (g.h + 2 * g.pt + g.sh - 1) / g.sh, wq = (g.w + 2 * g.pl + g.sw - 1) / g.sw;
    const int64_t phases = g.sh * g.sw, plane = hq * wq, rows = g.c * phases, images = 3;
    const int64_t len = plane - g.t_base - g.tail, max_off = 50;
    const k::ConvInputLayout l{images, g.c, images, 1, g.h, g.w, g.sh, g.sw, g.pt, g.pl, hq, wq};
    OffsetCsr a = random_offsets(rows, 5, max_off, rng);
    const int64_t b_image = max_off + len + 3, hw = g.h * g.w, c_image = g.c * hw + 5;
    std::vector<float> b = random_vec(images * b_image, rng);
    // The phase planes, then interleaved by the definition of the packed layout.
    std::vector<float> ref(images * c_image, -7.f);
    for (int64_t n = 0; n < images; ++n) {
      std::vector<float> planes(rows * plane, 0.f);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = a.ptr[r]; j < a.ptr[r + 1]; ++j)
          for (int64_t t = 0; t < len; ++t)
            planes[r * plane + g.t_base + t] += a.val[j] * b[n * b_image + a.off[j] + t];
      for (int64_t ch = 0; ch < g.c; ++ch)
        for (int64_t ih = 0; ih < g.h; ++ih)
          for (int64_t iw = 0; iw < g.w; ++iw) {
            const int64_t hp = ih + g.pt, wp = iw + g.pl;
            const int64_t r = ch * phases + (hp % g.sh) * g.sw + wp % g.sw;
            ref[n * c_image + ch * hw + ih * g.w + iw] =
                planes[r * plane + (hp / g.sh) * wq + wp / g.sw];
          }
    }
    for (const auto* t : {&table, &scalar}) {
      std::vector<float> c(images * c_image, -7.f);
      MergeArgs args{product(a, rows, b.data(), b_image, len, images, 2),
                     {c.data(), c_image, &l, g.t_base}};
      run::spmm_offsets(*t, args);
      expect_close(
          c, ref, 1e-5f,
          std::string(t == &scalar ? "scalar" : "isa") + " merge, width " + std::to_string(g.w));
    }
  }
}

// Row segments: only t with t % seg_stride < seg_len are computed; the rest of C is left as
// it was.
TEST_P(SpmmOffsets, SegmentsComputeOnlyTheirPositions) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(9);
  for (const SegCase& g : kSegCases) {
    const int64_t rows = 6, images = 2, max_off = 90, ldc = g.len + 2;
    OffsetCsr a = random_offsets(rows, 7, max_off, rng);
    const int64_t b_image = max_off + g.len + 3, c_image = rows * ldc;
    std::vector<float> b = random_vec(images * b_image, rng);
    std::vector<float> c(images * c_image, -3.f), sc(images * c_image, -3.f),
        ref(images * c_image, -3.f);
    const auto in_seg = [&](int64_t t) { return t % g.seg_stride < g.seg_len; };
    for (int64_t n = 0; n < images; ++n)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t t = 0; t < g.len; ++t) {
          if (!in_seg(t)) continue;
          float acc = 0.f;
          for (int64_t j = a.ptr[r]; j < a.ptr[r + 1]; ++j)
            acc += a.val[j] * b[n * b_image + a.off[j] + t];
          ref[n * c_image + r * ldc + t] = acc;
        }
    Product prod = product(a, rows, b.data(), b_image, g.len, images, 2);
    prod.spans = {g.len, g.seg_len, g.seg_stride};
    RowsArgs args{prod, {c.data(), ldc, c_image}};
    run::spmm_offsets(table, args);
    auto args_s = args;
    args_s.out.c = sc.data();
    run::spmm_offsets(scalar, args_s);
    const std::string what = std::string(" ") + g.name;
    expect_close(c, ref, 1e-5f, "spmm_offsets vs naive," + what);
    expect_close(c, sc, 1e-5f, "spmm_offsets vs scalar," + what);
  }
}

// C_n[r, 0:len] = sum_j val[j] * B_n[off[j] + 0:len], with B's image stride, the offsets, C's
// image stride and C's row stride all beyond 2^31.
TEST_P(SpmmOffsets, StridesAndOffsetsBeyond2To31) {
  ST_RESERVE_OR_SKIP(mem);
  const auto& table = st::kernel_table(GetParam());
  const int64_t len = 37, images = 2, rows = 2;
  const std::vector<int64_t> ptr = {0, 2, 3};
  const std::vector<int64_t> off = {kTwo31 + 5, 3 * kTwo31 + 1, 7};  // one small, two huge
  const std::vector<float> values = {0.5f, -2.0f, 1.25f};
  const int64_t b_stride = kTwo32 + 4099;  // image runs far apart: no overlaps
  float* b = mem.at(0);
  for (int64_t n = 0; n < images; ++n)
    for (int64_t o : off)
      for (int64_t t = 0; t < len; ++t)
        *(b + n * b_stride + o + t) = val_at(n * 1000 + o % 1000 + t);
  const int64_t ldc = kTwo31 + 64, c_stride = 2 * kTwo31 + 128;
  float* c = mem.at(int64_t{3} << 33);  // 2^34.6: past everything B uses
  for (int threads : {1, 2}) {
    const RowsArgs a{{ptr.data(),
                      off.data(),
                      values.data(),
                      nullptr,
                      nullptr,
                      rows,
                      b,
                      b_stride,
                      images,
                      {len},
                      threads},
                     {c, ldc, c_stride}};
    run::spmm_offsets(table, a);
    for (int64_t n = 0; n < images; ++n)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t t = 0; t < len; ++t) {
          float ref = 0.f;
          for (int64_t j = ptr[r]; j < ptr[r + 1]; ++j)
            ref += values[j] * val_at(n * 1000 + off[j] % 1000 + t);
          ASSERT_NEAR(*(c + n * c_stride + r * ldc + t), ref, 1e-5f)
              << "image " << n << " row " << r << " t " << t << " threads " << threads;
        }
  }
}

ST_TEST_EVERY_ISA(SpmmOffsets);

}  // namespace
}  // namespace st_test
