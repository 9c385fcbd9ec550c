// Layout changes between PyTorch's (batch, features) and the kernels' batch-major
// (features, padded batch). Cache-blocked transposes, parallel over features; the pad
// lanes are written as zeros so the sparse kernels can run full vectors over them.
#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {
constexpr int64_t kBlk = 16;
}

void f32_pack_bmajor(const PackArgs& a) {
  const int64_t nblk = (a.features + kBlk - 1) / kBlk;
  parallel_uniform(a.nthreads, nblk, kBlk * a.ld_dst / 4, [&](int64_t b0, int64_t b1) {
    for (int64_t kb = b0; kb < b1; ++kb) {
      const int64_t k0 = kb * kBlk;
      const int64_t k1 = k0 + kBlk < a.features ? k0 + kBlk : a.features;
      for (int64_t t0 = 0; t0 < a.ld_dst; t0 += kBlk) {
        const int64_t t1 = t0 + kBlk < a.batch ? t0 + kBlk : a.batch;
        for (int64_t k = k0; k < k1; ++k) {
          float* d = a.dst + k * a.ld_dst;
          int64_t t = t0;
          for (; t < t1; ++t) d[t] = a.src[t * a.ld_src + k];
          for (; t < t0 + kBlk; ++t) d[t] = 0.0f;
        }
      }
    }
  });
}

void f32_unpack_bmajor(const UnpackArgs& a) {
  const int64_t nblk = (a.batch + kBlk - 1) / kBlk;
  parallel_uniform(a.nthreads, nblk, kBlk * a.features / 4, [&](int64_t b0, int64_t b1) {
    for (int64_t tb = b0; tb < b1; ++tb) {
      const int64_t t0 = tb * kBlk;
      const int64_t t1 = t0 + kBlk < a.batch ? t0 + kBlk : a.batch;
      for (int64_t k0 = 0; k0 < a.features; k0 += kBlk) {
        const int64_t k1 = k0 + kBlk < a.features ? k0 + kBlk : a.features;
        for (int64_t t = t0; t < t1; ++t) {
          float* d = a.dst + t * a.ld_dst;
          if (a.bias) {
            for (int64_t k = k0; k < k1; ++k) d[k] = a.src[k * a.ld_src + t] + a.bias[k];
          } else {
            for (int64_t k = k0; k < k1; ++k) d[k] = a.src[k * a.ld_src + t];
          }
        }
      }
    }
  });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
