// 64-bit offset arithmetic: every kernel whose addressing takes strides or offsets is run with
// strides, leading dimensions and element offsets beyond 2^31 (and beyond 2^32), on a few real
// elements placed inside a large *reserved but untouched* virtual region (mmap with
// MAP_NORESERVE: only the pages a kernel touches get memory, a few MiB in all). Any index
// computed in 32 bits would read or write the wrong element (or fault) and fail the test.
//
// Not covered here: the layout kernels (conv_pack_input & co.) touch every element of their
// NCHW tensors, so beyond-2^31 sizes there would need > 8 GB of real memory; their index
// arithmetic is int64 throughout by inspection.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "dispatch/isa.h"
#include "kernels/kernels.h"

namespace st = sparsetrain;
namespace k = sparsetrain::kernels;

namespace {

constexpr int64_t kTwo31 = int64_t{1} << 31;
constexpr int64_t kTwo32 = int64_t{1} << 32;

// 2^35 floats (128 GiB) of address space, zero-filled on first touch, never backed unless used.
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
  float* at(int64_t i) const { return base_ + i; }
  bool ok() const { return base_ != nullptr; }

 private:
  float* base_;
};

float val(int64_t i) { return static_cast<float>((i * 37) % 101) / 50.0f - 1.0f; }

class Offsets : public ::testing::TestWithParam<st::Isa> {
 protected:
  void SetUp() override {
    if (!mem_.ok()) GTEST_SKIP() << "cannot reserve 128 GiB of address space (overcommit off?)";
  }
  Reserved mem_;
};

// C_n[r, 0:len] = sum_j val[j] * B_n[off[j] + 0:len], with B's image stride, the offsets, C's
// image stride and C's row stride all beyond 2^31.
TEST_P(Offsets, SpmmOffsetsBeyond2To31) {
  const auto& table = st::kernel_table(GetParam());
  const int64_t len = 37, images = 2, rows = 2;
  const std::vector<int64_t> ptr = {0, 2, 3};
  const std::vector<int64_t> off = {kTwo31 + 5, 3 * kTwo31 + 1, 7};  // one small, two huge
  const std::vector<float> values = {0.5f, -2.0f, 1.25f};
  const int64_t b_stride = kTwo32 + 4099;  // image runs far apart: no overlaps
  float* b = mem_.at(0);
  for (int64_t n = 0; n < images; ++n)
    for (int64_t o : off)
      for (int64_t t = 0; t < len; ++t) *(b + n * b_stride + o + t) = val(n * 1000 + o % 1000 + t);
  const int64_t ldc = kTwo31 + 64, c_stride = 2 * kTwo31 + 128;
  float* c = mem_.at(int64_t{3} << 33);  // 2^34.6: past everything B uses
  for (int threads : {1, 2}) {
    k::SpmmOffsetsArgs a{ptr.data(), off.data(), values.data(), nullptr, nullptr, rows, b,
                         b_stride, c, ldc, c_stride, len, images, threads};
    table.spmm_offsets(a);
    for (int64_t n = 0; n < images; ++n)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t t = 0; t < len; ++t) {
          float ref = 0.f;
          for (int64_t j = ptr[r]; j < ptr[r + 1]; ++j)
            ref += values[j] * val(n * 1000 + off[j] % 1000 + t);
          ASSERT_NEAR(*(c + n * c_stride + r * ldc + t), ref, 1e-5f)
              << "image " << n << " row " << r << " t " << t << " threads " << threads;
        }
  }
}

// out[j] = sum_n sum_t A_n[r, t] * B_n[off[j] + t] with every stride beyond 2^31.
TEST_P(Offsets, SddmmOffsetsBeyond2To31) {
  const auto& table = st::kernel_table(GetParam());
  const int64_t len = 45, images = 2, rows = 2;
  const std::vector<int64_t> ptr = {0, 1, 3};
  const std::vector<int64_t> off = {kTwo32 + 3, 11, 2 * kTwo31 + kTwo31 / 2};
  const int64_t b_stride = kTwo32 + 4099, lda = kTwo31 + 5, a_stride = 2 * kTwo31 + 3;
  float* b = mem_.at(0);
  float* a = mem_.at(int64_t{3} << 33);
  for (int64_t n = 0; n < images; ++n) {
    for (int64_t o : off)
      for (int64_t t = 0; t < len; ++t) *(b + n * b_stride + o + t) = val(n * 7 + o % 991 + t);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t t = 0; t < len; ++t) *(a + n * a_stride + r * lda + t) = val(n + 3 * r + t);
  }
  std::vector<float> out(3, NAN);
  k::SddmmOffsetsArgs s{ptr.data(), off.data(), rows, a, lda, a_stride, b, b_stride, len,
                        images, out.data(), 2};
  table.sddmm_offsets(s);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = ptr[r]; j < ptr[r + 1]; ++j) {
      double ref = 0.0;
      for (int64_t n = 0; n < images; ++n)
        for (int64_t t = 0; t < len; ++t) ref += double(val(n + 3 * r + t)) * val(n * 7 + off[j] % 991 + t);
      ASSERT_NEAR(out[j], ref, 1e-4) << "nonzero " << j;
    }
}

// The batch-major products: B's and C's row strides beyond 2^31, so idx * ldb and r * ldc
// (and k * ldc in the transposed product) are beyond 2^32.
TEST_P(Offsets, BatchMajorProductsBeyond2To31) {
  const auto& table = st::kernel_table(GetParam());
  const int64_t nb = 32, rows = 2, cols = 4;
  const std::vector<int64_t> ptr = {0, 2, 4};
  const std::vector<int32_t> idx = {1, 3, 0, 3};
  const std::vector<float> values = {1.5f, -0.5f, 2.0f, 0.25f};
  const std::vector<int64_t> col_ptr = {0, 1, 2, 2, 4};  // nonzeros per column, cumulative
  const int64_t ld = kTwo31 + 48;  // a multiple of 16: B, C rows stay aligned like the real ones
  float* b = mem_.at(0);                   // cols rows of ld
  float* c = mem_.at(int64_t{5} << 31);    // rows (or cols) rows of ld
  for (int64_t q = 0; q < cols; ++q)
    for (int64_t t = 0; t < nb; ++t) *(b + q * ld + t) = val(q * 100 + t);
  auto b_at = [&](int64_t q, int64_t t) { return val(q * 100 + t); };

  for (int threads : {1, 2}) {
    table.spmm({ptr.data(), idx.data(), values.data(), nullptr, nullptr, rows, cols, b, ld, c,
                ld, nb, threads});
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t t = 0; t < nb; ++t) {
        float ref = 0.f;
        for (int64_t j = ptr[r]; j < ptr[r + 1]; ++j) ref += values[j] * b_at(idx[j], t);
        ASSERT_NEAR(*(c + r * ld + t), ref, 1e-5f) << "spmm row " << r << " t " << t;
      }
    // C = Aᵀ B with B = the rows x nb block at b (rows of ld) and C (cols rows of ld).
    table.spmmt({ptr.data(), idx.data(), values.data(), col_ptr.data(), rows, cols, b, ld, c, ld,
                 nb, threads});
    for (int64_t q = 0; q < cols; ++q)
      for (int64_t t = 0; t < nb; ++t) {
        float ref = 0.f;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = ptr[r]; j < ptr[r + 1]; ++j)
            if (idx[j] == q) ref += values[j] * b_at(r, t);
        ASSERT_NEAR(*(c + q * ld + t), ref, 1e-5f) << "spmmt column " << q << " t " << t;
      }
    // out[j] = <A[r, :], B[idx[j], :]> with A = the first rows rows of C (as written by spmmt).
    std::vector<float> out(4, NAN);
    table.sddmm({ptr.data(), idx.data(), rows, cols, c, ld, b, ld, nb, out.data(), threads});
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = ptr[r]; j < ptr[r + 1]; ++j) {
        double ref = 0.0;
        for (int64_t t = 0; t < nb; ++t) ref += double(*(c + r * ld + t)) * b_at(idx[j], t);
        ASSERT_NEAR(out[j], ref, 1e-4) << "sddmm nonzero " << j;
      }
  }
}

// pack / unpack between PyTorch's (batch, features), rows far enough apart that t * ld_src
// passes 2^32, and the batch-major layout (and back).
TEST_P(Offsets, PackUnpackBeyond2To31) {
  const auto& table = st::kernel_table(GetParam());
  const int64_t batch = 35, features = 21, ld_src = (int64_t{1} << 27) + 8, ld_dst = 48;
  float* src = mem_.at(0);
  for (int64_t t = 0; t < batch; ++t)
    for (int64_t q = 0; q < features; ++q) *(src + t * ld_src + q) = val(t * 31 + q);
  std::vector<float> packed(features * ld_dst, NAN);
  table.pack({src, batch, features, ld_src, packed.data(), ld_dst, 2});
  for (int64_t q = 0; q < features; ++q)
    for (int64_t t = 0; t < ld_dst; ++t)
      ASSERT_EQ(packed[q * ld_dst + t], t < batch ? val(t * 31 + q) : 0.f) << q << "," << t;
  float* dst = mem_.at(int64_t{1} << 34);
  table.unpack({packed.data(), ld_dst, batch, features, dst, ld_src, nullptr, 2});
  for (int64_t t = 0; t < batch; ++t)
    for (int64_t q = 0; q < features; ++q)
      ASSERT_EQ(*(dst + t * ld_src + q), val(t * 31 + q)) << t << "," << q;
}

// The direct NCHW convolution: image strides of source and output and the source planes'
// starts beyond 2^31, forward (spmm) and values gradient (sddmm).
TEST_P(Offsets, ConvDirectBeyond2To31) {
  const auto& table = st::kernel_table(GetParam());
  const int64_t sh = 5, sw = 19, oh = 5, ow = 19, images = 2, rows = 2;
  const std::vector<int64_t> ptr = {0, 2, 3};
  const std::vector<int64_t> plane = {kTwo31 + 3, 5 * kTwo31 / 2, 0};
  const std::vector<int32_t> dy = {-1, 0, 1};
  const std::vector<int32_t> slot = {0, 1, 2};
  const std::vector<int64_t> shift_w = {-1, 0, 1};
  const std::vector<float> values = {0.75f, -1.5f, 2.0f};
  const int64_t src_stride = kTwo32 + 77, out_stride = kTwo31 + 99;
  float* src = mem_.at(0);
  for (int64_t n = 0; n < images; ++n)
    for (int64_t p : plane)
      for (int64_t i = 0; i < sh * sw; ++i) *(src + n * src_stride + p + i) = val(n * 13 + p % 97 + i);
  auto src_at = [&](int64_t n, int64_t p, int64_t y, int64_t x) {
    if (y < 0 || y >= sh || x < 0 || x >= sw) return 0.f;
    return val(n * 13 + p % 97 + y * sw + x);
  };
  float* out = mem_.at(int64_t{3} << 33);
  k::ConvDirectArgs a{};
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
  table.conv_direct_spmm(a);
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
          ASSERT_NEAR(*(out + n * out_stride + r * oh * ow + y * ow + x), ref_out(n, r, y, x), 1e-5f)
              << "forward image " << n << " row " << r << " at " << y << "," << x;

  // Values gradient with the output above as the incoming gradient (its image stride too).
  std::vector<float> dv(3, NAN);
  a.out = dv.data();
  a.grad = out;
  a.grad_image_stride = out_stride;
  table.conv_direct_sddmm(a);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = ptr[r]; j < ptr[r + 1]; ++j) {
      double ref = 0.0;
      for (int64_t n = 0; n < images; ++n)
        for (int64_t y = 0; y < oh; ++y)
          for (int64_t x = 0; x < ow; ++x)
            ref += double(ref_out(n, r, y, x)) * src_at(n, plane[j], y + dy[j], x + shift_w[slot[j]]);
      ASSERT_NEAR(dv[j], ref, 1e-3) << "values gradient " << j;
    }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, Offsets, ::testing::ValuesIn(st::supported_isas()),
                         [](const ::testing::TestParamInfo<st::Isa>& info) {
                           return std::string(st::isa_name(info.param));
                         });

}  // namespace
