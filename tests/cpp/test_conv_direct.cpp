// The direct NCHW convolutions (stride 1, no layout change): the forward pass and the input
// gradient (conv_direct_spmm, the latter on the transposed index with values in CSR order)
// and the values gradient (conv_direct_sddmm), on every ISA against the convolution by its
// definition and against the scalar kernel, over the named cases of kConvDirectCases.
#include "tester.h"

namespace st_test {
namespace {

class ConvDirect : public IsaTest {};

constexpr float kGap = -7.f;  // between images: never written

// Image by image, the first `per` floats of each `stride`; the gaps between must be kGap.
std::vector<float> images_of(const std::vector<float>& v, int64_t images, int64_t per,
                             int64_t stride, const std::string& what) {
  std::vector<float> out;
  for (int64_t n = 0; n < images; ++n) {
    out.insert(out.end(), v.begin() + n * stride, v.begin() + n * stride + per);
    for (int64_t i = per; i < stride; ++i)
      EXPECT_EQ(v[n * stride + i], kGap) << what << ": written after image " << n << " at " << i;
  }
  return out;
}

// One image buffer: `per` values of each image `stride` apart, random, the gaps NaN (a read
// of them would reach the results).
std::vector<float> random_images(int64_t images, int64_t per, int64_t stride, std::mt19937& rng) {
  std::vector<float> v = random_vec(images * stride, rng);
  for (int64_t n = 0; n < images; ++n)
    for (int64_t i = per; i < stride; ++i) v[n * stride + i] = NAN;
  return v;
}

TEST_P(ConvDirect, MatchesTheConvolutionAndScalar) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(31);
  for (const ConvDirectCase& cs : kConvDirectCases) {
    const std::string name = describe(cs);
    const int64_t ho = cs.ho(), wo = cs.wo(), images = cs.images;
    const int64_t x_per = cs.cin * cs.h * cs.w, y_per = cs.cout * ho * wo;
    const int64_t x_stride = x_per + 3, y_stride = y_per + 2;  // images with gaps between
    const ConvDirectIndex ix = conv_direct_index(cs, rng);
    const Csr& w = ix.weights;
    const int64_t nnz = static_cast<int64_t>(w.idx.size());
    const std::vector<float> x = random_images(images, x_per, x_stride, rng);
    const std::vector<float> g = random_images(images, y_per, y_stride, rng);
    const std::vector<float> bias = random_vec(cs.cout, rng);
    const ConvDirectRef ref = ref_conv_direct(cs, w, x, x_stride, g, y_stride);
    std::vector<double> ref_yb(ref.y), mag_yb(ref.y_mag);  // with the bias
    for (size_t i = 0; i < ref_yb.size(); ++i) {
      const float b = bias[i / (ho * wo) % cs.cout];
      ref_yb[i] += b;
      mag_yb[i] += std::fabs(b);
    }

    k::ConvDirectArgs<float> fwd{};
    fwd.ptr = w.ptr.data();
    fwd.plane = ix.plane.data();
    fwd.dy = ix.dy.data();
    fwd.slot = ix.slot.data();
    fwd.shift_w = ix.shift_w.data();
    fwd.slots = cs.kw;
    fwd.val = w.val.data();
    fwd.rows = cs.cout;
    fwd.src = x.data();
    fwd.src_image_stride = x_stride;
    fwd.sh = cs.h;
    fwd.sw = cs.w;
    fwd.out_image_stride = y_stride;
    fwd.oh = ho;
    fwd.ow = wo;
    fwd.images = images;
    // The values gradient: the same index and source, the output gradient g.
    k::ConvDirectArgs<float> dv_args = fwd;
    dv_args.grad = g.data();
    dv_args.grad_image_stride = y_stride;
    // The input gradient: the transposed index over g, values scattered from CSR order.
    std::vector<float> scratch(nnz);
    k::ConvDirectArgs<float> dx_args{};
    dx_args.ptr = ix.t_ptr.data();
    dx_args.plane = ix.t_plane.data();
    dx_args.dy = ix.t_dy.data();
    dx_args.slot = ix.t_slot.data();
    dx_args.shift_w = ix.t_shift_w.data();
    dx_args.slots = cs.kw;
    dx_args.val = w.val.data();
    dx_args.pos = ix.t_pos.data();
    dx_args.scratch = scratch.data();
    dx_args.rows = cs.cin;
    dx_args.src = g.data();
    dx_args.src_image_stride = y_stride;
    dx_args.sh = ho;
    dx_args.sw = wo;
    dx_args.out_image_stride = x_stride;
    dx_args.oh = cs.h;
    dx_args.ow = cs.w;
    dx_args.images = images;

    std::vector<float> first_y, first_dv, first_dx;
    for (int threads : {1, 3}) {
      const std::string what = name + ", threads " + std::to_string(threads);
      struct Out {
        std::vector<float> y, yb, dv, dx;
      };
      const auto run_all = [&](const st::KernelTable& t) {
        Out o{std::vector<float>(images * y_stride, kGap),
              std::vector<float>(images * y_stride, kGap), std::vector<float>(nnz, NAN),
              std::vector<float>(images * x_stride, kGap)};
        k::ConvDirectArgs<float> a = fwd;
        a.nthreads = threads;
        a.out = o.y.data();
        run::spmm_direct(t, a);
        a.out = o.yb.data();
        a.bias = bias.data();
        run::spmm_direct(t, a);
        k::ConvDirectArgs<float> v = dv_args;
        v.nthreads = threads;
        v.out = o.dv.data();
        run::sddmm_direct(t, v);
        k::ConvDirectArgs<float> d = dx_args;
        d.nthreads = threads;
        d.out = o.dx.data();
        run::spmm_direct(t, d);
        o.y = images_of(o.y, images, y_per, y_stride, "forward, " + what);
        o.yb = images_of(o.yb, images, y_per, y_stride, "forward with bias, " + what);
        o.dx = images_of(o.dx, images, x_per, x_stride, "input gradient, " + what);
        return o;
      };
      const Out o = run_all(table);
      const Out s = run_all(scalar);
      expect_near_ref(o.y, ref.y, ref.y_mag, 1e-5, "forward vs the convolution, " + what);
      expect_near_ref(o.yb, ref_yb, mag_yb, 1e-5, "forward with bias vs the convolution, " + what);
      expect_near_ref(o.dv, ref.dv, ref.dv_mag, 1e-5,
                      "values gradient vs the convolution, " + what);
      expect_near_ref(o.dx, ref.dx, ref.dx_mag, 1e-5, "input gradient vs the convolution, " + what);
      expect_near_ref(o.y, s.y, ref.y_mag, 2e-5, "forward vs scalar, " + what);
      expect_near_ref(o.yb, s.yb, mag_yb, 2e-5, "forward with bias vs scalar, " + what);
      expect_near_ref(o.dv, s.dv, ref.dv_mag, 2e-5, "values gradient vs scalar, " + what);
      expect_near_ref(o.dx, s.dx, ref.dx_mag, 2e-5, "input gradient vs scalar, " + what);
      // Each output is summed by one thread in a fixed order: the same bits for any count.
      if (threads == 1) {
        first_y = o.yb;
        first_dv = o.dv;
        first_dx = o.dx;
      } else {
        expect_bitwise(o.yb, first_y, "forward, thread counts differ, " + what);
        expect_bitwise(o.dv, first_dv, "values gradient, thread counts differ, " + what);
        expect_bitwise(o.dx, first_dx, "input gradient, thread counts differ, " + what);
      }
    }
  }
}

// The direct NCHW convolution: image strides of source and output and the source planes'
// starts beyond 2^31, forward (spmm) and values gradient (sddmm).
TEST_P(ConvDirect, StridesAndPlanesBeyond2To31) {
  ST_RESERVE_OR_SKIP(mem);
  const auto& table = st::kernel_table(GetParam());
  const int64_t sh = 5, sw = 19, oh = 5, ow = 19, images = 2, rows = 2;
  const std::vector<int64_t> ptr = {0, 2, 3};
  const std::vector<int64_t> plane = {kTwo31 + 3, 5 * kTwo31 / 2, 0};
  const std::vector<int32_t> dy = {-1, 0, 1};
  const std::vector<int32_t> slot = {0, 1, 2};
  const std::vector<int64_t> shift_w = {-1, 0, 1};
  const std::vector<float> values = {0.75f, -1.5f, 2.0f};
  const int64_t src_stride = kTwo32 + 77, out_stride = kTwo31 + 99;
  float* src = mem.at(0);
  for (int64_t n = 0; n < images; ++n)
    for (int64_t p : plane)
      for (int64_t i = 0; i < sh * sw; ++i)
        *(src + n * src_stride + p + i) = val_at(n * 13 + p % 97 + i);
  auto src_at = [&](int64_t n, int64_t p, int64_t y, int64_t x) {
    if (y < 0 || y >= sh || x < 0 || x >= sw) return 0.f;
    return val_at(n * 13 + p % 97 + y * sw + x);
  };
  float* out = mem.at(int64_t{3} << 33);
  k::ConvDirectArgs<float> a{};
  a.ptr = ptr.data();
  a.plane = plane.data();
  a.dy = dy.data();
  a.slot = slot.data();
  a.shift_w = shift_w.data();
  a.slots = 3;
  a.val = values.data();
  a.rows = rows;
  a.src = src;
  a.src_image_stride = src_stride;
  a.sh = sh;
  a.sw = sw;
  a.out = out;
  a.out_image_stride = out_stride;
  a.oh = oh;
  a.ow = ow;
  a.images = images;
  a.nthreads = 2;
  run::spmm_direct(table, a);
  auto ref_out = [&](int64_t n, int64_t r, int64_t y, int64_t x) {
    float s = 0.f;
    for (int64_t j = ptr[r]; j < ptr[r + 1]; ++j)
      s += values[j] * src_at(n, plane[j], y + dy[j], x + shift_w[slot[j]]);
    return s;
  };
  for (int64_t n = 0; n < images; ++n)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t x = 0; x < ow; ++x)
          ASSERT_NEAR(*(out + n * out_stride + r * oh * ow + y * ow + x), ref_out(n, r, y, x),
                      1e-5f)
              << "forward image " << n << " row " << r << " at " << y << "," << x;

  // Values gradient with the output above as the incoming gradient (its image stride too).
  std::vector<float> dv(3, NAN);
  a.out = dv.data();
  a.grad = out;
  a.grad_image_stride = out_stride;
  run::sddmm_direct(table, a);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = ptr[r]; j < ptr[r + 1]; ++j) {
      double ref = 0.0;
      for (int64_t n = 0; n < images; ++n)
        for (int64_t y = 0; y < oh; ++y)
          for (int64_t x = 0; x < ow; ++x)
            ref +=
                double(ref_out(n, r, y, x)) * src_at(n, plane[j], y + dy[j], x + shift_w[slot[j]]);
      ASSERT_NEAR(dv[j], ref, 1e-3) << "values gradient " << j;
    }
}

ST_TEST_EVERY_ISA(ConvDirect);

}  // namespace
}  // namespace st_test
