// The offsets values gradient: out[j] = sum_n sum_t A_n[r, t] * B_n[off[j] + t], over whole
// rows and over row segments.
#include "tester.h"

namespace st_test {
namespace {

class SddmmOffsets : public IsaTest {};

// Row lengths: masked tails on both vector widths (8 and 16 floats) and long rows.
const LenCase kLens[] = {
    {"one position", 1},         {"one vector and a tail", 9},
    {"one 16-float vector", 16}, {"several vectors and a tail", 45},
    {"long rows", 300},
};

TEST_P(SddmmOffsets, MatchesNaiveAndScalar) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(8);
  for (const LenCase& lc : kLens) {
    const int64_t len = lc.len;
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
    SddmmOffsetsArgs args{s.ptr.data(), s.off.data(), rows,   a.data(), lda,        a_image,
                          b.data(),     b_image,      images, {len},    out.data(), 2};
    run::sddmm_offsets(table, args);
    args.out = so.data();
    run::sddmm_offsets(scalar, args);
    expect_close(out, ref, 1e-4f, "sddmm_offsets vs naive, " + describe(lc));
    expect_close(out, so, 1e-4f, "sddmm_offsets vs scalar, " + describe(lc));
  }
}

// Row segments: only t with t % seg_stride < seg_len are summed; NaN at the other positions
// of A must not enter.
TEST_P(SddmmOffsets, SegmentsSumOnlyTheirPositions) {
  const auto& table = st::kernel_table(GetParam());
  const auto& scalar = st::kernel_table(st::Isa::scalar);
  std::mt19937 rng(9);
  for (const SegCase& g : kSegCases) {
    const int64_t rows = 6, images = 2, max_off = 90;
    OffsetCsr a = random_offsets(rows, 7, max_off, rng);
    const int64_t b_image = max_off + g.len + 3;
    std::vector<float> b = random_vec(images * b_image, rng);
    const auto in_seg = [&](int64_t t) { return t % g.seg_stride < g.seg_len; };
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
            if (in_seg(t))
              dref[j] += grad[n * a_image + r * lda + t] * b[n * b_image + a.off[j] + t];
    SddmmOffsetsArgs sargs{a.ptr.data(), a.off.data(),
                           rows,         grad.data(),
                           lda,          a_image,
                           b.data(),     b_image,
                           images,       {g.len, g.seg_len, g.seg_stride},
                           out.data(),   2};
    run::sddmm_offsets(table, sargs);
    sargs.out = so.data();
    run::sddmm_offsets(scalar, sargs);
    const std::string what = std::string(" ") + g.name;
    expect_close(out, dref, 1e-4f, "sddmm_offsets vs naive," + what);
    expect_close(out, so, 1e-4f, "sddmm_offsets vs scalar," + what);
  }
}

// out[j] = sum_n sum_t A_n[r, t] * B_n[off[j] + t] with every stride beyond 2^31.
TEST_P(SddmmOffsets, StridesAndOffsetsBeyond2To31) {
  ST_RESERVE_OR_SKIP(mem);
  const auto& table = st::kernel_table(GetParam());
  const int64_t len = 45, images = 2, rows = 2;
  const std::vector<int64_t> ptr = {0, 1, 3};
  const std::vector<int64_t> off = {kTwo32 + 3, 11, 2 * kTwo31 + kTwo31 / 2};
  const int64_t b_stride = kTwo32 + 4099, lda = kTwo31 + 5, a_stride = 2 * kTwo31 + 3;
  float* b = mem.at(0);
  float* a = mem.at(int64_t{3} << 33);
  for (int64_t n = 0; n < images; ++n) {
    for (int64_t o : off)
      for (int64_t t = 0; t < len; ++t) *(b + n * b_stride + o + t) = val_at(n * 7 + o % 991 + t);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t t = 0; t < len; ++t) *(a + n * a_stride + r * lda + t) = val_at(n + 3 * r + t);
  }
  std::vector<float> out(3, NAN);
  SddmmOffsetsArgs s{ptr.data(), off.data(), rows,   a,     lda,        a_stride,
                     b,          b_stride,   images, {len}, out.data(), 2};
  run::sddmm_offsets(table, s);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = ptr[r]; j < ptr[r + 1]; ++j) {
      double ref = 0.0;
      for (int64_t n = 0; n < images; ++n)
        for (int64_t t = 0; t < len; ++t)
          ref += double(val_at(n + 3 * r + t)) * val_at(n * 7 + off[j] % 991 + t);
      ASSERT_NEAR(out[j], ref, 1e-4) << "nonzero " << j;
    }
}

ST_TEST_EVERY_ISA(SddmmOffsets);

}  // namespace
}  // namespace st_test
