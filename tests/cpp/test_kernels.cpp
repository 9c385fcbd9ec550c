// Each kernel on every ISA this CPU supports, against a naive loop and against the scalar
// kernel, over odd sizes, empty rows, nnz = 0 and full density.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "dispatch/isa.h"
#include "formats/csr.h"
#include "kernels/conv_grads_form.h"
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

// ---- convolution kernels: offsets products and layouts, every ISA against scalar ----------

namespace {

// A random CSR over `rows` with nonzeros carrying offsets in [0, max_off].
struct OffsetCsr {
  std::vector<int64_t> ptr{0}, off;
  std::vector<float> val;
};

OffsetCsr random_offsets(int64_t rows, int64_t per_row, int64_t max_off, std::mt19937& rng) {
  std::uniform_int_distribution<int64_t> o(0, max_off), cnt(0, per_row);
  std::uniform_real_distribution<float> v(-1.f, 1.f);
  OffsetCsr a;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r % 5 == 2 ? 0 : cnt(rng);
    for (int64_t j = 0; j < n; ++j) {
      a.off.push_back(o(rng));
      a.val.push_back(v(rng));
    }
    a.ptr.push_back(static_cast<int64_t>(a.off.size()));
  }
  return a;
}

// Plane output of spmm_offsets: grid rows of grid_w, a ph x pw window at (row0, col0), bias.
void set_planes(k::SpmmOffsetsArgs& args, int64_t grid_w, int64_t t_base, int64_t row0,
                int64_t col0, int64_t ph, int64_t pw, const float* bias) {
  args.grid_w = grid_w;
  args.t_base = t_base;
  args.row0 = row0;
  args.col0 = col0;
  args.plane_h = ph;
  args.plane_w = pw;
  args.bias = bias;
}

// The batch-norm statistics a plane-writing spmm_offsets call sums (SpmmOffsetsArgs::stats):
// against exact double sums of what it should write (exp: sum, sum of squares, sum of |v|
// per image x row), and the same bits for 1 and 3 threads.
void expect_output_stats(const st::KernelTable& table, k::SpmmOffsetsArgs args,
                         const std::vector<double>& exp, const std::string& what) {
  const size_t n = exp.size() / 3 * 2;
  std::vector<double> one(n, NAN), three(n, NAN);
  args.stats = one.data();
  args.nthreads = 1;
  table.spmm_offsets(args);
  args.stats = three.data();
  args.nthreads = 3;
  table.spmm_offsets(args);
  for (size_t i = 0; i < n / 2; ++i) {
    const double sum = exp[3 * i], sq = exp[3 * i + 1], mag = exp[3 * i + 2];
    EXPECT_NEAR(one[2 * i], sum, 1e-5 * mag + 1e-6) << what << ": sum of image x row " << i;
    EXPECT_NEAR(one[2 * i + 1], sq, 1e-5 * sq + 1e-6) << what << ": squares of image x row " << i;
    ASSERT_EQ(one[2 * i], three[2 * i]) << what << ": thread count changed the sum " << i;
    ASSERT_EQ(one[2 * i + 1], three[2 * i + 1]) << what << ": thread count changed the squares " << i;
  }
}

}  // namespace

TEST_P(Kernels, SpmmOffsetsMatchesNaiveAndScalar) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(7);
  for (int64_t len : {1, 7, 16, 33, 300, 517}) {
    const int64_t rows = 9, images = 3, max_off = 200, ldc = len + 3;
    OffsetCsr a = random_offsets(rows, 6, max_off, rng);
    const int64_t b_image = max_off + len + 5, c_image = rows * ldc;
    std::vector<float> b = random_vec(images * b_image, rng);
    std::vector<float> c(images * c_image, 0.f), sc(images * c_image, 0.f), ref(images * c_image, 0.f);
    for (int64_t n = 0; n < images; ++n)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = a.ptr[r]; j < a.ptr[r + 1]; ++j)
          for (int64_t t = 0; t < len; ++t)
            ref[n * c_image + r * ldc + t] += a.val[j] * b[n * b_image + a.off[j] + t];
    k::SpmmOffsetsArgs args{a.ptr.data(), a.off.data(), a.val.data(), nullptr, nullptr, rows,
                            b.data(), b_image, c.data(), ldc, c_image, len, images, 2};
    table.spmm_offsets(args);
    auto args_s = args;
    args_s.c = sc.data();
    scalar.spmm_offsets(args_s);
    expect_close(c, ref, 1e-5f, "spmm_offsets vs naive, len " + std::to_string(len));
    expect_close(c, sc, 1e-5f, "spmm_offsets vs scalar, len " + std::to_string(len));
    std::vector<double> row_stats(images * rows * 3, 0.0);  // rows of len values, no planes
    for (int64_t i = 0; i < images * rows; ++i)
      for (int64_t t = 0; t < len; ++t) {
        const double v = ref[(i / rows) * c_image + (i % rows) * ldc + t];
        row_stats[3 * i] += v, row_stats[3 * i + 1] += v * v, row_stats[3 * i + 2] += std::fabs(v);
      }
    expect_output_stats(table, args, row_stats, "row stats, len " + std::to_string(len));
    // Written straight into planes: grid rows of grid_w, a ph x pw window at (row0, col0).
    const int64_t grid_w = 13, t_base = 3, row0 = 1, col0 = 2, pw = 9;
    const int64_t ph = (len + t_base) / grid_w - row0 + 1 > 0 ? (len + t_base) / grid_w - row0 + 1 : 1;
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
    auto args_p = args;
    args_p.c = planes.data();
    args_p.ldc = ph * pw;
    args_p.c_image_stride = rows * ph * pw;
    set_planes(args_p, grid_w, t_base, row0, col0, ph, pw, bias.data());
    table.spmm_offsets(args_p);
    expect_close(planes, pref, 1e-5f, "spmm_offsets into planes, len " + std::to_string(len));
    expect_output_stats(table, args_p, exp_stats, "plane stats, len " + std::to_string(len));
  }
}

// Batch-innermost B (16 images per grid point) written straight into each image's NCHW
// planes: a partial last group of images, a window that drops grid points on every side,
// with and without segments (only the segment positions may reach the planes).
TEST_P(Kernels, SpmmOffsetsUnit16IntoPlanes) {
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
      k::SpmmOffsetsArgs args{a.ptr.data(), a.off.data(), a.val.data(), nullptr, nullptr, rows,
                              b.data(), b_group, c.data(), plane, c_img, points * U, groups, 2};
      set_planes(args, grid_w, t_base, row0, col0, ph, pw, bias.data());
      args.seg_len = seg * U;
      args.seg_stride = seg > 0 ? grid_w * U : 0;
      args.unit = U;
      args.batch = batch;
      table.spmm_offsets(args);
      auto args_s = args;
      args_s.c = sc.data();
      scalar.spmm_offsets(args_s);
      const std::string what = ", points " + std::to_string(points) + ", seg " + std::to_string(seg);
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
TEST_P(Kernels, SpmmOffsetsMergesPhasesIntoNchw) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(12);
  struct G { int64_t c, h, w, sh, sw, pt, pl, t_base, tail; };
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
      k::SpmmOffsetsArgs args{a.ptr.data(), a.off.data(), a.val.data(), nullptr, nullptr, rows,
                              b.data(), b_image, c.data(), 0, c_image, len, images, 2};
      args.t_base = g.t_base;
      args.merge = &l;
      t->spmm_offsets(args);
      expect_close(c, ref, 1e-5f, std::string(t == &scalar ? "scalar" : "isa") +
                                      " merge, width " + std::to_string(g.w));
    }
  }
}

// The fused-pack forms (the kernel packs each image of an NCHW b itself): the same results as
// conv_pack_input followed by the kernel on the packed tensor (bitwise for the products; the
// values gradient sums images in another order, so within rounding), for 1 and 3 threads,
// with the per-image finite flags of the forward form.
TEST_P(Kernels, OffsetsKernelsPackImagesThemselves) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(13);
  struct G { int64_t n, c, h, w, sh, sw, pt, pl; };
  for (const G& g : {G{5, 3, 9, 11, 1, 1, 1, 1}, G{19, 2, 12, 40, 2, 2, 1, 1}, G{2, 4, 7, 5, 2, 1, 0, 2}}) {
    const int64_t hq = (g.h + 2 * g.pt + g.sh - 1) / g.sh + 1, wq = (g.w + 2 * g.pl + g.sw - 1) / g.sw;
    const k::ConvInputLayout l{g.n, g.c, g.n, 1, g.h, g.w, g.sh, g.sw, g.pt, g.pl, hq, wq};
    const int64_t image = g.c * g.sh * g.sw * hq * wq, len = (hq - 1) * wq - 1, rows = 6;
    OffsetCsr a = random_offsets(rows, 7, image - len, rng);
    std::vector<float> x = random_vec(g.n * g.c * g.h * g.w, rng);
    std::vector<float> packed(g.n * image);
    table.conv_pack_input({l, x.data(), packed.data(), 1});
    const int64_t ph = hq - 2, pw = wq - 1;  // planes: a window of the grid
    std::vector<float> ref(g.n * rows * ph * pw, -7.f);
    k::SpmmOffsetsArgs args{a.ptr.data(), a.off.data(), a.val.data(), nullptr, nullptr, rows,
                            packed.data(), image, ref.data(), ph * pw, rows * ph * pw, len, g.n, 2};
    set_planes(args, wq, 0, 0, 0, ph, pw, nullptr);
    table.spmm_offsets(args);
    std::vector<float> dv_ref(a.off.size()), a_grid = random_vec(g.n * rows * len, rng);
    table.sddmm_offsets({a.ptr.data(), a.off.data(), rows, a_grid.data(), len, rows * len,
                         packed.data(), image, len, g.n, dv_ref.data(), 2});
    std::vector<float> dv_first;
    for (int threads : {1, 3}) {
      const std::string what = " from NCHW, n " + std::to_string(g.n) + ", threads " +
                               std::to_string(threads);
      std::vector<float> y(ref.size(), -7.f);
      std::vector<unsigned char> finite(g.n, 7);
      auto f = args;
      f.b = x.data();
      f.b_image_stride = g.c * g.h * g.w;
      f.c = y.data();
      f.nthreads = threads;
      f.pack = &l;
      f.finite = finite.data();
      table.spmm_offsets(f);
      for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], ref[i]) << "spmm_offsets" << what << " at " << i;
      for (int64_t n = 0; n < g.n; ++n) ASSERT_EQ(finite[n], 1) << "finite flag of image " << n;
      std::vector<float> xb = x;
      xb[(g.n - 1) * g.c * g.h * g.w + 3] = NAN;  // the last image only
      f.b = xb.data();
      table.spmm_offsets(f);
      for (int64_t n = 0; n < g.n; ++n) ASSERT_EQ(finite[n], n == g.n - 1 ? 0 : 1) << "image " << n;
      std::vector<float> dv(a.off.size(), NAN);
      k::SddmmOffsetsArgs s{a.ptr.data(), a.off.data(), rows, a_grid.data(), len, rows * len,
                            x.data(), g.c * g.h * g.w, len, g.n, dv.data(), threads};
      s.pack = &l;
      table.sddmm_offsets(s);
      expect_close(dv, dv_ref, 1e-5f, "sddmm_offsets" + what);
      if (dv_first.empty()) dv_first = dv;
      for (size_t j = 0; j < dv.size(); ++j)  // the same sums whatever the thread count
        ASSERT_EQ(dv[j], dv_first[j]) << "sddmm_offsets" << what << " at " << j;
    }
  }
}

// An output gradient y (NCHW, n x c x ho x wo) and the bordered grid it packs onto: channel
// rows per floats apart from `offset` on, wq columns, `len` positions from the offset.
struct GridCase {
  int64_t n = 7, c = 3, ho = 5, wo = 9, wq = 11, offset = 13;
  int64_t per = offset + (ho - 1) * wq + wo + 4, image = c * per, len = per - offset;
  k::ConvOutputLayout o{n, c, n, 1, ho, wo, wq, per, offset};
  std::vector<float> y;
  explicit GridCase(std::mt19937& rng) : y(random_vec(n * c * ho * wo, rng)) {}
};

// The output-gradient side of the fused forms: B (spmm, plain and phase-merging) or A (sddmm)
// packed onto its bordered grid by the kernel from NCHW dy, against conv_pack_grad_output
// followed by the kernel on the packed tensor; the channel sums without a grid.
TEST_P(Kernels, OffsetsKernelsPackGridsThemselves) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(14);
  const GridCase g(rng);
  const int64_t n = g.n, c = g.c, ho = g.ho, wo = g.wo, per = g.per, offset = g.offset;
  const int64_t image = g.image, len = g.len;
  const k::ConvOutputLayout& o = g.o;
  const std::vector<float>& y = g.y;
  std::vector<float> grid(n * image);
  std::vector<double> sums(n * c), sums_only(n * c);
  table.conv_pack_grad_output({o, y.data(), grid.data(), sums.data(), 2});
  table.conv_pack_grad_output({o, y.data(), nullptr, sums_only.data(), 2});
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
  k::SpmmOffsetsArgs args{a.ptr.data(), a.off.data(), a.val.data(), nullptr, nullptr, rows,
                          grid.data(), image, ref.data(), t_len, rows * t_len, t_len, n, 2};
  table.spmm_offsets(args);
  auto merged_args = args;
  merged_args.len = plane;
  merged_args.merge = &merge;
  merged_args.c_image_stride = 2 * hw;
  std::vector<float> merged_ref(n * 2 * hw, -7.f), merged(merged_ref.size(), -7.f);
  merged_args.c = merged_ref.data();
  OffsetCsr am = random_offsets(rows, 6, image - plane, rng);
  merged_args.ptr = am.ptr.data();
  merged_args.off = am.off.data();
  merged_args.val = am.val.data();
  table.spmm_offsets(merged_args);
  for (int threads : {1, 3}) {
    const std::string what = ", threads " + std::to_string(threads);
    // The same call, B packed by the kernel from NCHW y.
    const auto from_nchw = [&](k::SpmmOffsetsArgs f, float* out) {
      f.b = y.data();
      f.b_image_stride = c * ho * wo;
      f.c = out;
      f.nthreads = threads;
      f.pack_grid = &o;
      return f;
    };
    std::vector<float> out(ref.size(), -7.f);
    table.spmm_offsets(from_nchw(args, out.data()));
    for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], ref[i]) << "spmm_offsets" << what << " at " << i;
    table.spmm_offsets(from_nchw(merged_args, merged.data()));
    for (size_t i = 0; i < merged.size(); ++i)
      ASSERT_EQ(merged[i], merged_ref[i]) << "merged spmm_offsets" << what << " at " << i;
    // Per-image finite flags of y, read while packing: all set, then cleared for exactly the
    // image holding a NaN, +Inf or -Inf (plain and merging forms).
    for (auto* form : {&args, &merged_args}) {
      std::vector<unsigned char> finite(n, 7);
      auto f = from_nchw(*form, form == &args ? out.data() : merged.data());
      f.finite = finite.data();
      table.spmm_offsets(f);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(finite[i], 1) << "finite flag of image " << i << what;
      int64_t image_with = 0;
      for (float bad : {NAN, INFINITY, -INFINITY}) {
        std::vector<float> yb = y;
        yb[image_with * c * ho * wo + (c * ho * wo) / 2 + image_with] = bad;
        f.b = yb.data();
        table.spmm_offsets(f);
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(finite[i], i == image_with ? 0 : 1) << "image " << i << " with " << bad << what;
        image_with += 3;
      }
    }
  }
  // sddmm: A from the grid (rows = channels from `offset` on), B a plain tensor.
  const int64_t b_image = 300, s_len = len - 3;
  OffsetCsr as = random_offsets(c, 5, b_image - s_len, rng);
  std::vector<float> b = random_vec(n * b_image, rng), dv_ref(as.off.size()), dv(as.off.size());
  table.sddmm_offsets({as.ptr.data(), as.off.data(), c, grid.data() + offset, per, image,
                       b.data(), b_image, s_len, n, dv_ref.data(), 2});
  k::SddmmOffsetsArgs sa{as.ptr.data(), as.off.data(), c, y.data(), per, c * ho * wo, b.data(),
                         b_image, s_len, n, dv.data(), 2};
  sa.pack_grid = &o;
  table.sddmm_offsets(sa);
  expect_close(dv, dv_ref, 1e-5f, "sddmm_offsets with A packed from NCHW");
}

// Both gradients from one packing of dy per image: the same numbers as the two kernels one
// after the other (input gradient into rows and merged into NCHW, values gradient with x and
// dy packed by the kernel), the same finite flags of dy, for 1 and 3 threads.
TEST_P(Kernels, ConvGradsOffsetsMatchTheTwoKernels) {
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
      const std::string what = std::string(merged ? "merged" : "rows") + ", threads " +
                               std::to_string(threads);
      const OffsetCsr& ax = merged ? am : a;
      const int64_t out_size = merged ? n * 2 * hw : n * rows * t_len;
      std::vector<float> dx_ref(out_size, -7.f), dx(out_size, -7.f);
      k::SpmmOffsetsArgs fx{ax.ptr.data(), ax.off.data(), ax.val.data(), nullptr, nullptr, rows,
                            y.data(), c * ho * wo, dx_ref.data(), t_len, rows * t_len, t_len, n,
                            threads};
      fx.pack_grid = &o;
      if (merged) {
        fx.len = plane;
        fx.merge = &merge;
        fx.c_image_stride = 2 * hw;
      } else {
        fx.pos = pos.data();
        fx.scratch = scratch.data();
      }
      std::vector<float> dv_ref(as.off.size(), -7.f), dv(as.off.size(), -7.f);
      k::SddmmOffsetsArgs fv{as.ptr.data(), as.off.data(), c, y.data(), per, c * ho * wo,
                             x.data(), 2 * 6 * 7, s_len, n, dv_ref.data(), threads};
      fv.pack = &xl;
      fv.pack_grid = &o;
      table.spmm_offsets(fx);
      table.sddmm_offsets(fv);
      for (float bad : {0.0f, NAN, INFINITY}) {
        std::vector<float> yb = y;
        const int64_t image_with = 2;
        if (bad != 0.0f) yb[image_with * c * ho * wo + 17] = bad;
        std::vector<unsigned char> finite(n, 7);
        auto gx = fx;
        auto gv = fv;
        gx.b = gv.a = yb.data();
        gx.c = dx.data();
        gv.out = dv.data();
        gx.finite = finite.data();
        table.conv_grads_offsets(gx, gv);
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(finite[i], bad != 0.0f && i == image_with ? 0 : 1) << "image " << i << what;
        if (bad != 0.0f) continue;  // only the flags are defined with a NaN or Inf in dy
        for (int64_t i = 0; i < out_size; ++i) ASSERT_EQ(dx[i], dx_ref[i]) << "dx " << what << " at " << i;
        for (size_t j = 0; j < dv.size(); ++j) ASSERT_EQ(dv[j], dv_ref[j]) << "dv " << what << " at " << j;
      }
    }
  }
}

// A real stride-1 convolution (3 x 3, padding 1, 3 -> 4 channels, 9 x 21 images), indexed as
// the Python layouts index it: conv_grads_offsets takes the one-pass form (each window of
// dy loaded once for both gradients), packing x and dy itself or given them packed (one
// image or 16 per vector). Against a double-precision direct convolution, the two kernels,
// and itself on another thread count (bitwise).
TEST_P(Kernels, ConvGradsOnePassMatchesTheConvolution) {
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
    table.conv_pack_input({xu, const_cast<float*>(x.data()), xq.data(), 2});
    table.conv_pack_grad_output({ou, dy.data(), dyq.data(), nullptr, 2});
    std::vector<int64_t> t_off_u(nnz), off_u(nnz);
    for (int64_t j = 0; j < nnz; ++j) {
      t_off_u[j] = t_off[j] * u;
      off_u[j] = off[j] * u;
    }
    std::vector<float> first_dx, first_dv;
    for (int threads : {1, 3}) {
      const std::string what = "form " + std::to_string(form) + ", threads " +
                               std::to_string(threads);
      std::vector<float> dx(ref_dx.size(), -7.f), dv(nnz, -7.f);
      k::SpmmOffsetsArgs fx{t_ptr.data(), t_off_u.data(), val.data(), t_pos.data(),
                            scratch.data(), cin, packs ? dy.data() : dyq.data(),
                            packs ? cout * h * w : cout * dy_len * u, dx.data(), h * w,
                            cin * h * w, dx_len * u, groups, threads};
      fx.grid_w = wq;
      fx.t_base = dx_start;
      fx.row0 = fx.col0 = 1;
      fx.plane_h = h;
      fx.plane_w = w;
      k::SddmmOffsetsArgs fv{ptr.data(), off_u.data(), cout,
                             packs ? dy.data() : dyq.data() + margin * u, dy_len * u,
                             packs ? cout * h * w : cout * dy_len * u,
                             packs ? x.data() : xq.data(), packs ? cin * h * w : cin * plane * u,
                             grid_len * u, groups, dv.data(), threads};
      if (packs) {
        fx.pack_grid = &o;
        fv.pack = &xl;
        fv.pack_grid = &o;
      }
      if (u == 16) {  // lanes into NCHW; only the real columns of each grid row
        fx.unit = 16;
        fx.batch = n;
        fx.seg_len = w * 16;
        fx.seg_stride = wq * 16;
        fv.seg_len = w * 16;
        fv.seg_stride = wq * 16;
      }
      ASSERT_EQ(k::conv_grads_one_pass_plane(fx, fv), plane * u) << what;
      table.conv_grads_offsets(fx, fv);
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
      fx.c = dx2.data();
      fv.out = dv2.data();
      table.spmm_offsets(fx);
      table.sddmm_offsets(fv);
      for (size_t i = 0; i < dx.size(); ++i)
        ASSERT_NEAR(dx[i], dx2[i], 2e-5 * mag_dx[i] + 1e-6) << "dx vs spmm at " << i << ", " << what;
      for (int64_t j = 0; j < nnz; ++j)
        ASSERT_NEAR(dv[j], dv2[j], 2e-5 * mag_dv[j] + 1e-6) << "dv vs sddmm at " << j << ", " << what;
      // One entry of the transposed index moved: not the one-pass form any more.
      t_off_u[0] += u;
      EXPECT_EQ(k::conv_grads_one_pass_plane(fx, fv), 0) << what;
      t_off_u[0] -= u;
    }
  }
}

// Called from inside an OpenMP team (the caller's own parallel region), one thread each: every
// call still packs into its own scratch (thread numbers of the enclosing team are not slots).
TEST_P(Kernels, FusedKernelsInsideAnOpenMPTeam) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(15);
  const int64_t n = 2, c = 2, h = 6, w = 7, hq = 8, wq = 9, rows = 3, len = 40;
  const k::ConvInputLayout l{n, c, n, 1, h, w, 1, 1, 1, 1, hq, wq};
  const int64_t image = c * hq * wq;
  OffsetCsr a = random_offsets(rows, 4, image - len, rng);
  std::vector<float> x = random_vec(n * c * h * w, rng), packed(n * image);
  table.conv_pack_input({l, x.data(), packed.data(), 1});
  std::vector<float> ref(n * rows * len);
  table.spmm_offsets({a.ptr.data(), a.off.data(), a.val.data(), nullptr, nullptr, rows,
                      packed.data(), image, ref.data(), len, rows * len, len, n, 1});
  constexpr int kCallers = 4;
  std::vector<std::vector<float>> out(kCallers, std::vector<float>(ref.size(), -7.f));
#pragma omp parallel for num_threads(kCallers)
  for (int t = 0; t < kCallers; ++t) {
    k::SpmmOffsetsArgs f{a.ptr.data(), a.off.data(), a.val.data(), nullptr, nullptr, rows,
                         x.data(), c * h * w, out[t].data(), len, rows * len, len, n, 1};
    f.pack = &l;
    table.spmm_offsets(f);
  }
  for (int t = 0; t < kCallers; ++t)
    for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(out[t][i], ref[i]) << "caller " << t;
  // Both gradients at once (dy packed by the kernel, 2 threads asked for), from every caller:
  // each call still has scratch of its own.
  const int64_t ho = 6, wo = 7, per = 80, offset = 10, dlen = 40;
  const k::ConvOutputLayout o{n, rows, n, 1, ho, wo, wq, per, offset};
  std::vector<float> dy = random_vec(n * rows * ho * wo, rng);
  OffsetCsr at = random_offsets(c, 3, rows * per - dlen, rng);
  k::SpmmOffsetsArgs gx{at.ptr.data(), at.off.data(), at.val.data(), nullptr, nullptr, c,
                        dy.data(), rows * ho * wo, nullptr, dlen, c * dlen, dlen, n, 2};
  gx.pack_grid = &o;
  k::SddmmOffsetsArgs gv{a.ptr.data(), a.off.data(), rows, dy.data(), per, rows * ho * wo,
                         x.data(), c * h * w, len, n, nullptr, 2};
  gv.pack = &l;
  gv.pack_grid = &o;
  std::vector<float> dx_ref(n * c * dlen), dv_ref(a.off.size());
  gx.c = dx_ref.data();
  gv.out = dv_ref.data();
  table.spmm_offsets(gx);
  table.sddmm_offsets(gv);
  std::vector<std::vector<float>> dxs(kCallers, std::vector<float>(dx_ref.size(), -7.f));
  std::vector<std::vector<float>> dvs(kCallers, std::vector<float>(dv_ref.size(), -7.f));
#pragma omp parallel for num_threads(kCallers)
  for (int t = 0; t < kCallers; ++t) {
    auto fx = gx;
    auto fv = gv;
    fx.c = dxs[t].data();
    fv.out = dvs[t].data();
    table.conv_grads_offsets(fx, fv);
  }
  for (int t = 0; t < kCallers; ++t) {
    for (size_t i = 0; i < dx_ref.size(); ++i) ASSERT_EQ(dxs[t][i], dx_ref[i]) << "dx, caller " << t;
    for (size_t j = 0; j < dv_ref.size(); ++j) ASSERT_EQ(dvs[t][j], dv_ref[j]) << "dv, caller " << t;
  }
}

TEST_P(Kernels, SddmmOffsetsMatchesNaiveAndScalar) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(8);
  for (int64_t len : {1, 9, 16, 45, 300}) {
    const int64_t rows = 7, images = 2, max_off = 120, lda = len + 1;
    OffsetCsr s = random_offsets(rows, 9, max_off, rng);
    const int64_t b_image = max_off + len, a_image = rows * lda;
    std::vector<float> a = random_vec(images * a_image, rng), b = random_vec(images * b_image, rng);
    const size_t nnz = s.off.size();
    std::vector<float> out(nnz, NAN), so(nnz, NAN), ref(nnz, 0.f);
    for (int64_t n = 0; n < images; ++n)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = s.ptr[r]; j < s.ptr[r + 1]; ++j)
          for (int64_t t = 0; t < len; ++t)
            ref[j] += a[n * a_image + r * lda + t] * b[n * b_image + s.off[j] + t];
    k::SddmmOffsetsArgs args{s.ptr.data(), s.off.data(), rows, a.data(), lda, a_image, b.data(),
                             b_image, len, images, out.data(), 2};
    table.sddmm_offsets(args);
    args.out = so.data();
    scalar.sddmm_offsets(args);
    expect_close(out, ref, 1e-4f, "sddmm_offsets vs naive");
    expect_close(out, so, 1e-4f, "sddmm_offsets vs scalar");
  }
}

// Row segments: only t with t % seg_stride < seg_len are computed (spmm: the rest of C is left
// as it was) or summed (sddmm). Strides that are and are not multiples of the vector width.
TEST_P(Kernels, OffsetsSegmentsComputeOnlyTheirPositions) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(9);
  struct Seg { int64_t len, seg_len, seg_stride; };
  for (Seg g : {Seg{9 * 16 * 6 + 7 * 16, 7 * 16, 9 * 16}, Seg{16 * 16 * 13 + 14 * 16, 14 * 16, 16 * 16},
                Seg{37, 5, 11}, Seg{100, 10, 10}, Seg{33, 33, 40}}) {
    const int64_t rows = 6, images = 2, max_off = 90, ldc = g.len + 2;
    OffsetCsr a = random_offsets(rows, 7, max_off, rng);
    const int64_t b_image = max_off + g.len + 3, c_image = rows * ldc;
    std::vector<float> b = random_vec(images * b_image, rng);
    std::vector<float> c(images * c_image, -3.f), sc(images * c_image, -3.f), ref(images * c_image, -3.f);
    const auto in_seg = [&](int64_t t) { return t % g.seg_stride < g.seg_len; };
    for (int64_t n = 0; n < images; ++n)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t t = 0; t < g.len; ++t) {
          if (!in_seg(t)) continue;
          float acc = 0.f;
          for (int64_t j = a.ptr[r]; j < a.ptr[r + 1]; ++j) acc += a.val[j] * b[n * b_image + a.off[j] + t];
          ref[n * c_image + r * ldc + t] = acc;
        }
    k::SpmmOffsetsArgs args{a.ptr.data(), a.off.data(), a.val.data(), nullptr, nullptr, rows,
                            b.data(), b_image, c.data(), ldc, c_image, g.len, images, 2};
    args.seg_len = g.seg_len;
    args.seg_stride = g.seg_stride;
    table.spmm_offsets(args);
    auto args_s = args;
    args_s.c = sc.data();
    scalar.spmm_offsets(args_s);
    const std::string what = " segments " + std::to_string(g.seg_len) + "/" + std::to_string(g.seg_stride);
    expect_close(c, ref, 1e-5f, "spmm_offsets vs naive," + what);
    expect_close(c, sc, 1e-5f, "spmm_offsets vs scalar," + what);

    // The values gradient over the same positions; NaN outside the segments must not enter.
    const int64_t lda = g.len + 1, a_image = rows * lda;
    std::vector<float> grad = random_vec(images * a_image, rng);
    for (int64_t n = 0; n < images; ++n)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t t = 0; t < g.len; ++t)
          if (!in_seg(t)) grad[n * a_image + r * lda + t] = NAN;
    const size_t nnz = a.off.size();
    std::vector<float> out(nnz, NAN), so(nnz, NAN), dref(nnz, 0.f);
    for (int64_t n = 0; n < images; ++n)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = a.ptr[r]; j < a.ptr[r + 1]; ++j)
          for (int64_t t = 0; t < g.len; ++t)
            if (in_seg(t)) dref[j] += grad[n * a_image + r * lda + t] * b[n * b_image + a.off[j] + t];
    k::SddmmOffsetsArgs sargs{a.ptr.data(), a.off.data(), rows, grad.data(), lda, a_image, b.data(),
                              b_image, g.len, images, out.data(), 2};
    sargs.seg_len = g.seg_len;
    sargs.seg_stride = g.seg_stride;
    table.sddmm_offsets(sargs);
    sargs.out = so.data();
    scalar.sddmm_offsets(sargs);
    expect_close(out, dref, 1e-4f, "sddmm_offsets vs naive," + what);
    expect_close(out, so, 1e-4f, "sddmm_offsets vs scalar," + what);
  }
}

TEST_P(Kernels, SubsampleAndItsGradientMatchNaive) {
  const auto& table = st::kernel_table(GetParam());
  std::mt19937 rng(21);
  struct G { int64_t planes, h, w, sh, sw; };
  // Rows short and long enough for whole-vector (de)interleaving, odd widths, strides 1-3.
  for (const G& g : {G{3, 7, 9, 2, 2}, G{2, 8, 64, 2, 2}, G{2, 5, 33, 2, 2}, G{1, 1, 1, 2, 2},
                     G{2, 6, 40, 1, 2}, G{2, 9, 31, 3, 3}, G{1, 4, 70, 2, 1}, G{2, 3, 5, 1, 1}}) {
    const int64_t ho = (g.h + g.sh - 1) / g.sh, wo = (g.w + g.sw - 1) / g.sw;
    // Exactly sized buffers, so ASan catches any read or write past them.
    std::vector<float> x = random_vec(g.planes * g.h * g.w, rng);
    std::vector<float> y(g.planes * ho * wo, NAN);
    table.subsample({x.data(), y.data(), g.planes, g.h, g.w, g.sh, g.sw, 2});
    for (int64_t p = 0; p < g.planes; ++p)
      for (int64_t oh = 0; oh < ho; ++oh)
        for (int64_t ow = 0; ow < wo; ++ow)
          ASSERT_EQ(y[(p * ho + oh) * wo + ow], x[(p * g.h + oh * g.sh) * g.w + ow * g.sw])
              << "subsample at plane " << p << " (" << oh << ", " << ow << ")";
    std::vector<float> dx(x.size(), NAN);
    table.subsample_grad({y.data(), dx.data(), g.planes, g.h, g.w, g.sh, g.sw, 2});
    for (int64_t p = 0; p < g.planes; ++p)
      for (int64_t ih = 0; ih < g.h; ++ih)
        for (int64_t iw = 0; iw < g.w; ++iw) {
          const bool sampled = ih % g.sh == 0 && iw % g.sw == 0;
          ASSERT_EQ(dx[(p * g.h + ih) * g.w + iw],
                    sampled ? x[(p * g.h + ih) * g.w + iw] : 0.0f)
              << "gradient at plane " << p << " (" << ih << ", " << iw << ")";
        }
  }
}

TEST_P(Kernels, ConvLayoutsRoundTripAndMatchScalar) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(9);
  struct G { int64_t n, c, h, w, sh, sw, pt, pl; };
  for (const G& g : {G{3, 2, 5, 7, 1, 1, 1, 1}, G{17, 3, 9, 20, 2, 2, 1, 2}, G{16, 2, 4, 300, 1, 3, 0, 2},
                     G{33, 1, 6, 5, 3, 1, 2, 0},
                     // stride 2 with rows long enough for whole-vector (de)interleaving, odd and
                     // even left padding, odd widths
                     G{3, 2, 7, 75, 2, 2, 1, 1}, G{2, 2, 6, 64, 2, 2, 0, 3}, G{1, 1, 5, 33, 2, 2, 1, 0}}) {
    for (int64_t unit : {1, 16}) {
      const int64_t hq = (g.h + 2 * g.pt + g.sh - 1) / g.sh, wq = (g.w + 2 * g.pl + g.sw - 1) / g.sw;
      const k::ConvInputLayout l{g.n, g.c, (g.n + unit - 1) / unit, unit, g.h, g.w, g.sh, g.sw,
                                 g.pt, g.pl, hq, wq};
      const int64_t packed_size = l.groups * g.c * g.sh * g.sw * hq * wq * unit;
      std::vector<float> x = random_vec(g.n * g.c * g.h * g.w, rng);
      std::vector<float> p(packed_size, NAN), ps(packed_size, NAN), back(x.size(), NAN);
      table.conv_pack_input({l, x.data(), p.data(), 2});
      scalar.conv_pack_input({l, x.data(), ps.data(), 2});
      for (size_t i = 0; i < p.size(); ++i) ASSERT_EQ(p[i], ps[i]) << "pack_input at " << i;
      table.conv_unpack_grad_input({l, back.data(), p.data(), 2});
      for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(back[i], x[i]) << "input round trip at " << i;
      // Finite flags per (group, channel): all set for finite x; a NaN, +Inf or -Inf clears
      // exactly the flag of the channel (and group) holding it.
      const size_t flags_n = static_cast<size_t>(l.groups * g.c);
      std::vector<unsigned char> flags(flags_n, 7);
      table.conv_pack_input({l, x.data(), p.data(), 2, flags.data()});
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
          t->conv_pack_input({l, xb.data(), p.data(), 2, flags.data()});
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
      table.conv_pack_grad_output({o, y.data(), grid.data(), sums.data(), 2});
      scalar.conv_pack_grad_output({o, y.data(), gs.data(), ssums.data(), 2});
      for (size_t i = 0; i < grid.size(); ++i) ASSERT_EQ(grid[i], gs[i]) << "pack_grad_output at " << i;
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
