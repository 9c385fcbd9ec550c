// What every kernel test shares: the ISA loop, the one place each kernel is called from,
// random patterns and data, plain reference loops, comparisons, and the named edge cases of
// each kernel family (in the spirit of XNNPACK's testers: a case says which edge it covers).
//
// Every kernel runs on every ISA this CPU supports and is compared with a plain loop and
// with the scalar kernel (the reference for the fast ones).
#pragma once

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "dispatch/isa.h"
#include "formats/csr.h"
#include "kernels/conv_grads_form.h"
#include "kernels/kernels.h"

namespace st_test {

namespace st = sparsetrain;
namespace k = sparsetrain::kernels;

// ---- The ISA loop ---------------------------------------------------------------------------

// A test over every supported ISA: TEST_P(Suite, Name) with `class Suite : public IsaTest {}`
// and ST_TEST_EVERY_ISA(Suite); GetParam() is the ISA.
class IsaTest : public ::testing::TestWithParam<st::Isa> {};

struct IsaParamName {
  std::string operator()(const ::testing::TestParamInfo<st::Isa>& info) const {
    return st::isa_name(info.param);
  }
};

#define ST_TEST_EVERY_ISA(Suite)                                                                 \
  INSTANTIATE_TEST_SUITE_P(AllIsas, Suite, ::testing::ValuesIn(::sparsetrain::supported_isas()), \
                           ::st_test::IsaParamName())

// ---- The kernel calls: every test reaches each kernel through its one function here --------

namespace run {
inline void spmm_bmajor(const st::KernelTable& t, const k::SpmmArgs<float>& a) {
  t.spmm_bmajor_f32(a);
}
inline void spmmt_bmajor(const st::KernelTable& t, const k::SpmmTArgs<float>& a) {
  t.spmmt_bmajor_f32(a);
}
inline void sddmm_bmajor(const st::KernelTable& t, const k::SddmmArgs<float>& a) {
  t.sddmm_bmajor_f32(a);
}
inline void pack_bmajor(const st::KernelTable& t, const k::PackArgs<float>& a) {
  t.pack_bmajor_f32(a);
}
inline void unpack_bmajor(const st::KernelTable& t, const k::UnpackArgs<float>& a) {
  t.unpack_bmajor_f32(a);
}
inline void spmm_bmajor_bf16(const st::KernelTable& t, const k::SpmmArgs<k::bf16>& a) {
  t.spmm_bmajor_bf16(a);
}
inline void sddmm_bmajor_bf16(const st::KernelTable& t, const k::SddmmArgs<k::bf16>& a) {
  t.sddmm_bmajor_bf16(a);
}
inline void pack_bmajor_bf16(const st::KernelTable& t, const k::PackArgs<k::bf16>& a) {
  t.pack_bmajor_bf16(a);
}
inline void unpack_bmajor_bf16(const st::KernelTable& t, const k::UnpackArgs<k::bf16>& a) {
  t.unpack_bmajor_bf16(a);
}
// The spmm forms of the offsets family, one overload per form's arguments.
inline void spmm_offsets(const st::KernelTable& t, const k::SpmmOffsetsRowsArgs<float>& a) {
  t.spmm_offsets_rows_f32(a);
}
inline void spmm_offsets(const st::KernelTable& t, const k::SpmmOffsetsPlanesArgs<float>& a) {
  t.spmm_offsets_planes_f32(a);
}
inline void spmm_offsets(const st::KernelTable& t, const k::SpmmOffsetsPlanes16Args<float>& a) {
  t.spmm_offsets_planes16_f32(a);
}
inline void spmm_offsets(const st::KernelTable& t, const k::SpmmOffsetsMergeArgs<float>& a) {
  t.spmm_offsets_merge_f32(a);
}
inline void sddmm_offsets(const st::KernelTable& t, const k::SddmmOffsetsArgs<float>& a) {
  t.sddmm_offsets_f32(a);
}
inline void conv_grads_offsets(const st::KernelTable& t, const k::ConvGradsPlanesArgs<float>& a) {
  t.conv_grads_offsets_planes_f32(a);
}
inline void conv_grads_offsets(const st::KernelTable& t, const k::ConvGradsPlanes16Args<float>& a) {
  t.conv_grads_offsets_planes16_f32(a);
}
inline void conv_grads_offsets(const st::KernelTable& t, const k::ConvGradsMergeArgs<float>& a) {
  t.conv_grads_offsets_merge_f32(a);
}
// Not a kernel: the plane length at which conv_grads_offsets takes its one-pass form (0: none).
inline int64_t conv_grads_one_pass_plane(const k::ConvGradsPlanesArgs<float>& a) {
  return k::conv_grads_one_pass_plane(a);
}
inline int64_t conv_grads_one_pass_plane(const k::ConvGradsPlanes16Args<float>& a) {
  return k::conv_grads_one_pass_plane(a);
}
inline void conv_pack_input(const st::KernelTable& t, const k::ConvInputArgs<float>& a) {
  t.conv_pack_input_f32(a);
}
inline void conv_unpack_grad_input(const st::KernelTable& t, const k::ConvInputArgs<float>& a) {
  t.conv_unpack_grad_input_f32(a);
}
inline void conv_pack_grad_output(const st::KernelTable& t, const k::ConvOutputArgs<float>& a) {
  t.conv_pack_grad_output_f32(a);
}
inline void spmm_direct(const st::KernelTable& t, const k::ConvDirectArgs<float>& a) {
  t.spmm_direct_f32(a);
}
inline void sddmm_direct(const st::KernelTable& t, const k::ConvDirectArgs<float>& a) {
  t.sddmm_direct_f32(a);
}
inline void subsample(const st::KernelTable& t, const k::SubsampleArgs<float>& a) {
  t.subsample_f32(a);
}
inline void subsample_grad(const st::KernelTable& t, const k::SubsampleArgs<float>& a) {
  t.subsample_grad_f32(a);
}
}  // namespace run

// The offsets forms' arguments for float storage, as the tests build them.
using RowsArgs = k::SpmmOffsetsRowsArgs<float>;
using PlanesArgs = k::SpmmOffsetsPlanesArgs<float>;
using Planes16Args = k::SpmmOffsetsPlanes16Args<float>;
using MergeArgs = k::SpmmOffsetsMergeArgs<float>;
using SddmmOffsetsArgs = k::SddmmOffsetsArgs<float>;
using Product = k::OffsetsProduct<float>;

// Both gradients' arguments from the input gradient form's and the values gradient's.
template <template <class> class Dx>
k::ConvGradsArgs<float, Dx> grads(const Dx<float>& dx, const k::SddmmOffsetsArgs<float>& dv) {
  return {dx, dv};
}

// The product of `images` images of B (b_image apart) by the offsets pattern a (rows rows),
// over [0, len): the piece every spmm form starts from.
template <class Csr>
Product product(const Csr& a, int64_t rows, const float* b, int64_t b_image, int64_t len,
                int64_t images, int nthreads) {
  return {a.ptr.data(), a.off.data(), a.val.data(), nullptr, nullptr, rows, b,
          b_image,      images,       {len},        nthreads};
}

// ---- Random data ----------------------------------------------------------------------------

inline std::vector<float> random_vec(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> v(-1.f, 1.f);
  std::vector<float> out(n);
  for (auto& x : out) x = v(rng);
  return out;
}

// A CSR pattern with column indices (the batch-major products).
struct Csr {
  int64_t rows, cols;
  std::vector<int64_t> ptr;
  std::vector<int32_t> idx;
  std::vector<float> val;
};

// Each column present with probability `density`; every row r with r % 7 == 3 is empty.
inline Csr random_csr(int64_t rows, int64_t cols, double density, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(0.f, 1.f), v(-1.f, 1.f);
  Csr a{rows, cols, {0}, {}, {}};
  for (int64_t r = 0; r < rows; ++r) {
    const bool empty_row = r % 7 == 3;
    for (int64_t c = 0; c < cols; ++c)
      if (!empty_row && u(rng) < density) {
        a.idx.push_back(static_cast<int32_t>(c));
        a.val.push_back(v(rng));
      }
    a.ptr.push_back(static_cast<int64_t>(a.idx.size()));
  }
  return a;
}

// A CSR pattern whose nonzeros carry element offsets in [0, max_off] (the offsets products):
// up to per_row nonzeros a row, every row r with r % 5 == 2 empty.
struct OffsetCsr {
  std::vector<int64_t> ptr{0}, off;
  std::vector<float> val;
};

inline OffsetCsr random_offsets(int64_t rows, int64_t per_row, int64_t max_off, std::mt19937& rng) {
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

// ---- Comparisons ----------------------------------------------------------------------------

// |a - b| <= tol * (1 + |b|) element by element.
inline void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tol,
                         const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], tol * (1.f + std::fabs(b[i]))) << what << " at " << i;
}

// Against a reference (double, or another kernel's floats): |a - ref| <= tol * mag + 1e-6, mag
// the sum of the absolute products behind each element (rounding grows with it, not |ref|).
template <class Ref>
void expect_near_ref(const std::vector<float>& a, const std::vector<Ref>& ref,
                     const std::vector<double>& mag, double tol, const std::string& what) {
  ASSERT_EQ(a.size(), ref.size()) << what;
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], ref[i], tol * mag[i] + 1e-6) << what << " at " << i;
}

inline void expect_bitwise(const std::vector<float>& a, const std::vector<float>& b,
                           const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << what << " at " << i;
}

// ---- Batch-major products (spmm_bmajor / spmmt_bmajor / sddmm_bmajor) -----------------------

// Named edge cases of a rows x cols pattern times a batch-major block of `batch` columns
// (padded to kBatchAlign). Rows r % 7 == 3 are empty in every case (random_csr).
struct CsrCase {
  const char* name;
  int64_t rows, cols, batch;
  double density;
};

const CsrCase kCsrCases[] = {
    {"one element", 1, 1, 1, 1.0},
    {"small odd sizes", 3, 5, 7, 0.5},
    {"batch not a multiple of 16", 17, 33, 31, 0.3},
    {"sparse, batch of whole vectors", 64, 48, 64, 0.1},
    {"dense long rows", 100, 7, 129, 0.9},
    {"very sparse wide pattern", 9, 200, 257, 0.05},
    {"nnz 0", 20, 20, 16, 0.0},
    {"full density, long batch", 5, 6, 300, 1.0},
    {"one row", 1, 70, 40, 0.6},
    {"long rows", 4, 1500, 24, 0.7},
};

inline std::string describe(const CsrCase& cs) {
  return std::string(cs.name) + " (" + std::to_string(cs.rows) + "x" + std::to_string(cs.cols) +
         ", batch " + std::to_string(cs.batch) + ")";
}

// C = A B: C[r, t] = sum_j val[j] B[idx[j], t], B and C batch-major with row stride nb.
inline std::vector<float> ref_spmm_bmajor(const Csr& a, const std::vector<float>& b, int64_t nb) {
  std::vector<float> c(a.rows * nb, 0.f);
  for (int64_t r = 0; r < a.rows; ++r)
    for (int64_t j = a.ptr[r]; j < a.ptr[r + 1]; ++j)
      for (int64_t t = 0; t < nb; ++t) c[r * nb + t] += a.val[j] * b[a.idx[j] * nb + t];
  return c;
}

// C = Aᵀ B: C[idx[j], t] += val[j] B[r, t].
inline std::vector<float> ref_spmmt_bmajor(const Csr& a, const std::vector<float>& b, int64_t nb) {
  std::vector<float> c(a.cols * nb, 0.f);
  for (int64_t r = 0; r < a.rows; ++r)
    for (int64_t j = a.ptr[r]; j < a.ptr[r + 1]; ++j)
      for (int64_t t = 0; t < nb; ++t) c[a.idx[j] * nb + t] += a.val[j] * b[r * nb + t];
  return c;
}

// out[j] = sum_t A[r, t] B[idx[j], t] for nonzero j of row r.
inline std::vector<float> ref_sddmm_bmajor(const Csr& s, const std::vector<float>& a,
                                           const std::vector<float>& b, int64_t nb) {
  std::vector<float> out(s.idx.size(), 0.f);
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t j = s.ptr[r]; j < s.ptr[r + 1]; ++j)
      for (int64_t t = 0; t < nb; ++t) out[j] += a[r * nb + t] * b[s.idx[j] * nb + t];
  return out;
}

// The transposed index of `a` (formats::csr_transpose).
struct Transposed {
  std::vector<int64_t> ptr, pos;
  std::vector<int32_t> idx;
};

inline Transposed transpose(const Csr& a) {
  const int64_t nnz = static_cast<int64_t>(a.idx.size());
  Transposed t{std::vector<int64_t>(a.cols + 1), std::vector<int64_t>(nnz),
               std::vector<int32_t>(nnz)};
  st::formats::csr_transpose(a.ptr.data(), a.idx.data(), a.rows, a.cols, t.ptr.data(), t.idx.data(),
                             t.pos.data());
  return t;
}

// ---- Offsets products (spmm_offsets_<form> / sddmm_offsets) ---------------------------------

// Named row lengths `len` of the offsets products (positions per row, masked tails).
struct LenCase {
  const char* name;
  int64_t len;
};

inline std::string describe(const LenCase& lc) {
  return std::string(lc.name) + " (len " + std::to_string(lc.len) + ")";
}

// Row segments: only the positions t with t % seg_stride < seg_len (a grid's real columns)
// are computed; strides that are and are not multiples of the vector width.
struct SegCase {
  const char* name;
  int64_t len, seg_len, seg_stride;
};

const SegCase kSegCases[] = {
    {"segments of 7 vectors every 9", 9 * 16 * 6 + 7 * 16, 7 * 16, 9 * 16},
    {"segments of 14 vectors every 16", 16 * 16 * 13 + 14 * 16, 14 * 16, 16 * 16},
    {"short odd segments", 37, 5, 11},
    {"segments filling their stride", 100, 10, 10},
    {"one segment, shorter than its stride", 33, 33, 40},
};

// C_n[r, t] = sum_j val[j] B_n[off[j] + t] for t < len: C rows ldc apart, images c_image
// apart, B images b_image apart.
inline std::vector<float> ref_spmm_offsets(const OffsetCsr& a, int64_t rows,
                                           const std::vector<float>& b, int64_t b_image,
                                           int64_t len, int64_t images, int64_t ldc,
                                           int64_t c_image) {
  std::vector<float> c(images * c_image, 0.f);
  for (int64_t n = 0; n < images; ++n)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = a.ptr[r]; j < a.ptr[r + 1]; ++j)
        for (int64_t t = 0; t < len; ++t)
          c[n * c_image + r * ldc + t] += a.val[j] * b[n * b_image + a.off[j] + t];
  return c;
}

// out[j] = sum_n sum_{t < len} A_n[r, t] B_n[off[j] + t].
inline std::vector<float> ref_sddmm_offsets(const OffsetCsr& s, int64_t rows,
                                            const std::vector<float>& a, int64_t lda,
                                            int64_t a_image, const std::vector<float>& b,
                                            int64_t b_image, int64_t len, int64_t images) {
  std::vector<float> out(s.off.size(), 0.f);
  for (int64_t n = 0; n < images; ++n)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = s.ptr[r]; j < s.ptr[r + 1]; ++j)
        for (int64_t t = 0; t < len; ++t)
          out[j] += a[n * a_image + r * lda + t] * b[n * b_image + s.off[j] + t];
  return out;
}

// Plane output of the offsets products: planes ldc apart in c, images c_image apart; grid rows
// of grid_w, a ph x pw window at (row0, col0), bias.
inline k::PlanesOut<float> planes_out(float* c, int64_t ldc, int64_t c_image, int64_t grid_w,
                                      int64_t t_base, int64_t row0, int64_t col0, int64_t ph,
                                      int64_t pw, const float* bias) {
  return {c, ldc, c_image, grid_w, t_base, row0, col0, ph, pw, bias};
}

// The batch-norm statistics an spmm_offsets form sums (offsets_args.h, stats): against exact
// double sums of what it should write (exp: sum, sum of squares, sum of |v| per image x row),
// and the same bits for 1 and 3 threads.
template <class Args>
void expect_output_stats(const st::KernelTable& table, Args args, const std::vector<double>& exp,
                         const std::string& what) {
  const size_t n = exp.size() / 3 * 2;
  std::vector<double> one(n, NAN), three(n, NAN);
  args.stats = one.data();
  args.product.nthreads = 1;
  run::spmm_offsets(table, args);
  args.stats = three.data();
  args.product.nthreads = 3;
  run::spmm_offsets(table, args);
  for (size_t i = 0; i < n / 2; ++i) {
    const double sum = exp[3 * i], sq = exp[3 * i + 1], mag = exp[3 * i + 2];
    EXPECT_NEAR(one[2 * i], sum, 1e-5 * mag + 1e-6) << what << ": sum of image x row " << i;
    EXPECT_NEAR(one[2 * i + 1], sq, 1e-5 * sq + 1e-6) << what << ": squares of image x row " << i;
    ASSERT_EQ(one[2 * i], three[2 * i]) << what << ": thread count changed the sum " << i;
    ASSERT_EQ(one[2 * i + 1], three[2 * i + 1])
        << what << ": thread count changed the squares " << i;
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

// ---- Direct NCHW convolutions (conv_direct spmm / sddmm) ------------------------------------

// Named edge cases of a stride-1 convolution cin -> cout of `images` h x w planes: a kh x kw
// kernel with dilation (dh, dw), padding top / bottom / left / right, density of the weights.
struct ConvDirectCase {
  const char* name;
  int64_t cin, cout, h, w, kh, kw, dh, dw, pt, pb, pl, pr;
  double density;
  int64_t images;
  int64_t ho() const { return h + pt + pb - dh * (kh - 1); }
  int64_t wo() const { return w + pl + pr - dw * (kw - 1); }
};

const ConvDirectCase kConvDirectCases[] = {
    {"1x1 kernel, unpadded", 3, 4, 5, 7, 1, 1, 1, 1, 0, 0, 0, 0, 0.7, 2},
    {"3x3, padding 1", 3, 5, 9, 21, 3, 3, 1, 1, 1, 1, 1, 1, 0.5, 2},
    {"3x3 unpadded: output smaller than the input", 2, 3, 8, 19, 3, 3, 1, 1, 0, 0, 0, 0, 0.6, 2},
    {"5x5, padding 2, rows of one 16-float vector", 2, 3, 7, 16, 5, 5, 1, 1, 2, 2, 2, 2, 0.4, 2},
    {"7x7, padding 3, rows of 4 vectors and a tail", 2, 2, 6, 70, 7, 7, 1, 1, 3, 3, 3, 3, 0.3, 1},
    {"rows past four vectors: several column blocks", 1, 2, 3, 150, 3, 3, 1, 1, 1, 1, 1, 1, 0.5, 1},
    {"asymmetric padding", 2, 3, 6, 13, 3, 3, 1, 1, 0, 2, 1, 0, 0.6, 2},
    {"1x3 kernel", 3, 2, 5, 33, 1, 3, 1, 1, 0, 0, 1, 1, 0.7, 2},
    {"3x1 kernel", 3, 2, 10, 9, 3, 1, 1, 1, 1, 1, 0, 0, 0.7, 2},
    {"kernel larger than the plane", 2, 2, 2, 3, 5, 5, 1, 1, 2, 2, 2, 2, 0.8, 2},
    {"padding past the kernel: zero border outputs", 2, 2, 4, 6, 3, 3, 1, 1, 3, 3, 3, 3, 0.8, 2},
    {"one-pixel planes", 2, 3, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, 3},
    {"dilation 2", 2, 3, 8, 20, 3, 3, 2, 2, 2, 2, 2, 2, 0.5, 2},
    {"tall planes: a partial last band of rows", 1, 2, 40, 5, 3, 3, 1, 1, 1, 1, 1, 1, 0.5, 1},
    {"many output channels, empty rows", 4, 12, 6, 10, 3, 3, 1, 1, 1, 1, 1, 1, 0.3, 2},
    {"nnz 0", 2, 3, 4, 5, 3, 3, 1, 1, 1, 1, 1, 1, 0.0, 2},
};

inline std::string describe(const ConvDirectCase& cs) {
  return std::string(cs.name) + " (" + std::to_string(cs.cin) + "->" + std::to_string(cs.cout) +
         ", " + std::to_string(cs.kh) + "x" + std::to_string(cs.kw) + " on " +
         std::to_string(cs.h) + "x" + std::to_string(cs.w) + ")";
}

// A random weight pattern over (cout, cin * kh * kw) and the direct kernels' index of it, as
// formats/conv.py's direct_index builds it. Forward: rows = output channels, nonzero j reads
// input plane `plane[j]` shifted by dy[j] rows and shift_w[slot[j]] columns. Input gradient
// (t_*): rows = input channels reading the output gradient with the shifts negated; t_pos[j]
// is the position of CSR nonzero j in that order.
struct ConvDirectIndex {
  Csr weights;
  std::vector<int64_t> plane, shift_w, t_ptr, t_plane, t_shift_w, t_pos;
  std::vector<int32_t> dy, slot, t_dy, t_slot;
};

inline ConvDirectIndex conv_direct_index(const ConvDirectCase& cs, std::mt19937& rng) {
  ConvDirectIndex ix;
  ix.weights = random_csr(cs.cout, cs.cin * cs.kh * cs.kw, cs.density, rng);
  const Csr& w = ix.weights;
  const int64_t nnz = static_cast<int64_t>(w.idx.size());
  for (int64_t s = 0; s < cs.kw; ++s) {
    ix.shift_w.push_back(s * cs.dw - cs.pl);
    ix.t_shift_w.push_back(cs.pl - s * cs.dw);
  }
  ix.t_ptr.assign(cs.cin + 1, 0);
  for (int64_t j = 0; j < nnz; ++j) ++ix.t_ptr[w.idx[j] / (cs.kh * cs.kw) + 1];
  for (int64_t c = 0; c < cs.cin; ++c) ix.t_ptr[c + 1] += ix.t_ptr[c];
  std::vector<int64_t> fill(ix.t_ptr.begin(), ix.t_ptr.end() - 1);
  ix.t_plane.resize(nnz);
  ix.t_pos.resize(nnz);
  ix.t_dy.resize(nnz);
  ix.t_slot.resize(nnz);
  for (int64_t r = 0; r < cs.cout; ++r)
    for (int64_t j = w.ptr[r]; j < w.ptr[r + 1]; ++j) {
      const int64_t c = w.idx[j], ci = c / (cs.kh * cs.kw), th = c / cs.kw % cs.kh, tw = c % cs.kw;
      ix.plane.push_back(ci * cs.h * cs.w);
      ix.dy.push_back(static_cast<int32_t>(th * cs.dh - cs.pt));
      ix.slot.push_back(static_cast<int32_t>(tw));
      const int64_t q = fill[ci]++;  // CSR order within an input channel
      ix.t_pos[j] = q;
      ix.t_plane[q] = r * cs.ho() * cs.wo();
      ix.t_dy[q] = static_cast<int32_t>(cs.pt - th * cs.dh);
      ix.t_slot[q] = static_cast<int32_t>(tw);
    }
  return ix;
}

// The convolution by its definition, in double, with the sums of absolute products (for the
// tolerances): y (no bias) from x, and from an output gradient g the input gradient dx and the
// values gradient dv. Images are x_stride, g_stride apart in x and g; y and dx are dense
// (images x cout x ho x wo, images x cin x h x w).
struct ConvDirectRef {
  std::vector<double> y, y_mag, dx, dx_mag, dv, dv_mag;
};

inline ConvDirectRef ref_conv_direct(const ConvDirectCase& cs, const Csr& w,
                                     const std::vector<float>& x, int64_t x_stride,
                                     const std::vector<float>& g, int64_t g_stride) {
  const int64_t ho = cs.ho(), wo = cs.wo();
  ConvDirectRef ref;
  ref.y.assign(cs.images * cs.cout * ho * wo, 0.0);
  ref.y_mag = ref.y;
  ref.dx.assign(cs.images * cs.cin * cs.h * cs.w, 0.0);
  ref.dx_mag = ref.dx;
  ref.dv.assign(w.idx.size(), 0.0);
  ref.dv_mag = ref.dv;
  for (int64_t n = 0; n < cs.images; ++n)
    for (int64_t r = 0; r < cs.cout; ++r)
      for (int64_t j = w.ptr[r]; j < w.ptr[r + 1]; ++j) {
        const int64_t c = w.idx[j], ci = c / (cs.kh * cs.kw);
        const int64_t th = c / cs.kw % cs.kh, tw = c % cs.kw;
        for (int64_t oy = 0; oy < ho; ++oy)
          for (int64_t ox = 0; ox < wo; ++ox) {
            const int64_t iy = oy + th * cs.dh - cs.pt, ix = ox + tw * cs.dw - cs.pl;
            if (iy < 0 || iy >= cs.h || ix < 0 || ix >= cs.w) continue;  // padding
            const double xv = x[n * x_stride + (ci * cs.h + iy) * cs.w + ix];
            const double gv = g[n * g_stride + (r * ho + oy) * wo + ox];
            const int64_t yi = ((n * cs.cout + r) * ho + oy) * wo + ox;
            const int64_t xi = ((n * cs.cin + ci) * cs.h + iy) * cs.w + ix;
            ref.y[yi] += w.val[j] * xv;
            ref.y_mag[yi] += std::fabs(w.val[j] * xv);
            ref.dx[xi] += w.val[j] * gv;
            ref.dx_mag[xi] += std::fabs(w.val[j] * gv);
            ref.dv[j] += gv * xv;
            ref.dv_mag[j] += std::fabs(gv * xv);
          }
      }
  return ref;
}

// ---- Large offsets ---------------------------------------------------------------------------

constexpr int64_t kTwo31 = int64_t{1} << 31;
constexpr int64_t kTwo32 = int64_t{1} << 32;

// Every kernel whose addressing takes strides or offsets also runs with strides, leading
// dimensions and element offsets beyond 2^31 (and 2^32), on a few real elements inside a
// large reserved but untouched region: an index computed in 32 bits reads or writes the
// wrong element (or faults). Not covered: the layout kernels (conv_pack_input & co.) touch
// every element of their NCHW tensors, so such sizes would need > 8 GB of real memory; their
// index arithmetic is int64 throughout by inspection.

// 2^35 floats (128 GiB) of address space, zero-filled on first touch, never backed unless
// used (MAP_NORESERVE): only the pages a kernel touches get memory, a few MiB in all.
class Reserved {
 public:
  static constexpr int64_t kFloats = int64_t{1} << 35;
  Reserved() {
    void* p = mmap(nullptr, kFloats * sizeof(float), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    base_ = p == MAP_FAILED ? nullptr : static_cast<float*>(p);
  }
  ~Reserved() {
    if (base_) munmap(base_, kFloats * sizeof(float));
  }
  Reserved(const Reserved&) = delete;
  Reserved& operator=(const Reserved&) = delete;
  float* at(int64_t i) const { return base_ + i; }
  bool ok() const { return base_ != nullptr; }

 private:
  float* base_;
};

// In a test body: skips the test where the address space cannot be reserved.
#define ST_RESERVE_OR_SKIP(mem) \
  ::st_test::Reserved mem;      \
  if (!mem.ok()) GTEST_SKIP() << "cannot reserve 128 GiB of address space (overcommit off?)"

// A deterministic value per element index, for data placed in reserved memory.
inline float val_at(int64_t i) { return static_cast<float>((i * 37) % 101) / 50.0f - 1.0f; }

}  // namespace st_test
