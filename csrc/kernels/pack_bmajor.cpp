// Layout changes between PyTorch's (batch, features) and the kernels' batch-major
// (features, padded batch): W x W register transposes for the full blocks, plain loops for
// the edges. The pad lanes are written as zeros so the sparse kernels can run full vectors
// over them. Parallel over feature blocks (pack) or batch blocks (unpack): disjoint writes.
#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

namespace {

template <class T>
void pack_bmajor_impl(const PackArgs<T>& a) {
  constexpr int64_t W = Vec::W;
  const int64_t nblk = (a.features + W - 1) / W;
  const int64_t full_t = a.batch / W * W;
  parallel_uniform(a.nthreads, nblk, W * a.ld_dst / 2, [&](int64_t b0, int64_t b1) {
    for (int64_t kb = b0; kb < b1; ++kb) {
      const int64_t k0 = kb * W;
      const int64_t k1 = k0 + W < a.features ? k0 + W : a.features;
      if (k1 - k0 == W) {
        for (int64_t t0 = 0; t0 < full_t; t0 += W)
          transpose_block(a.src + t0 * a.ld_src + k0, a.ld_src, a.dst + k0 * a.ld_dst + t0,
                          a.ld_dst, nullptr);
      } else {
        for (int64_t k = k0; k < k1; ++k)
          for (int64_t t = 0; t < full_t; ++t) a.dst[k * a.ld_dst + t] = a.src[t * a.ld_src + k];
      }
      for (int64_t k = k0; k < k1; ++k) {
        float* d = a.dst + k * a.ld_dst;
        for (int64_t t = full_t; t < a.batch; ++t) d[t] = a.src[t * a.ld_src + k];
        for (int64_t t = a.batch; t < a.ld_dst; ++t) d[t] = 0.0f;
      }
    }
  });
}

}  // namespace

template <class T>
void pack_bmajor(const PackArgs<T>& a) {
  pack_bmajor_impl(a);
}

namespace {

template <class T>
void unpack_bmajor_impl(const UnpackArgs<T>& a) {
  constexpr int64_t W = Vec::W;
  const int64_t nblk = (a.batch + W - 1) / W;
  const int64_t full_k = a.features / W * W;
  parallel_uniform(a.nthreads, nblk, W * a.features / 2, [&](int64_t b0, int64_t b1) {
    for (int64_t tb = b0; tb < b1; ++tb) {
      const int64_t t0 = tb * W;
      const int64_t t1 = t0 + W < a.batch ? t0 + W : a.batch;
      if (t1 - t0 == W) {
        for (int64_t k0 = 0; k0 < full_k; k0 += W)
          transpose_block(a.src + k0 * a.ld_src + t0, a.ld_src, a.dst + t0 * a.ld_dst + k0,
                          a.ld_dst, a.bias ? a.bias + k0 : nullptr);
      } else {
        for (int64_t t = t0; t < t1; ++t)
          for (int64_t k = 0; k < full_k; ++k)
            a.dst[t * a.ld_dst + k] = a.src[k * a.ld_src + t] + (a.bias ? a.bias[k] : 0.0f);
      }
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t k = full_k; k < a.features; ++k)
          a.dst[t * a.ld_dst + k] = a.src[k * a.ld_src + t] + (a.bias ? a.bias[k] : 0.0f);
    }
  });
}

}  // namespace

template <class T>
void unpack_bmajor(const UnpackArgs<T>& a) {
  unpack_bmajor_impl(a);
}

template void pack_bmajor<f32>(const PackArgs<f32>&);
template void unpack_bmajor<f32>(const UnpackArgs<f32>&);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
