// Layout changes between PyTorch's (batch, features) and the kernels' batch-major
// (features, padded batch): W x W register transposes for the full blocks, plain loops for
// the edges. The pad lanes are written as zeros so the sparse kernels can run full vectors
// over them. Parallel over feature blocks (pack) or batch blocks (unpack): disjoint writes.
// bf16 blocks are widened to floats as loaded and narrowed as stored (exact, but for the bias
// added when unpacking, which rounds once).
#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

namespace {

// Features per block of work and batch rows per inner block: a kBlock x kBlock tile of both
// buffers (16 KiB each) stays in L1 while it is transposed, so every line of src and dst is
// read or written whole, once. Walking one feature block down the whole batch instead reads
// W floats per src row, half a line at a large stride.
constexpr int64_t kBlock = 64;

template <class T>
inline T plus_bias(T x, const T* bias, int64_t k) {
  return narrow<T>(widen(x) + (bias ? widen(bias[k]) : 0.0f));
}

template <class T>
void pack_bmajor_impl(const PackArgs<T>& a) {
  constexpr int64_t W = Vec::W;
  const int64_t nblk = (a.features + kBlock - 1) / kBlock;
  const int64_t full_t = a.batch / W * W;
  parallel_uniform(a.nthreads, nblk, kBlock * a.ld_dst / 2, [&](int64_t b0, int64_t b1) {
    for (int64_t kb = b0; kb < b1; ++kb) {
      const int64_t kb0 = kb * kBlock;
      const int64_t kb1 = kb0 + kBlock < a.features ? kb0 + kBlock : a.features;
      const int64_t full_k = kb0 + (kb1 - kb0) / W * W;
      float acc[kBlock] = {};  // the block's feature sums, in token order (a.sums)
      for (int64_t tb = 0; tb < full_t; tb += kBlock) {
        const int64_t tb1 = tb + kBlock < full_t ? tb + kBlock : full_t;
        for (int64_t k0 = kb0; k0 < full_k; k0 += W)
          for (int64_t t0 = tb; t0 < tb1; t0 += W)
            transpose_block(a.src + t0 * a.ld_src + k0, a.ld_src, a.dst + k0 * a.ld_dst + t0,
                            a.ld_dst, nullptr);
        if (a.sums) {  // the rows just transposed, still in L1; a register chain per vector
          constexpr int64_t NV = kBlock / W;
          const int64_t nv = (full_k - kb0) / W;
          if (nv == NV) {
            Vec s[NV];
#pragma GCC unroll 64
            for (int64_t v = 0; v < NV; ++v) s[v] = Vec::load(acc + v * W);
            for (int64_t t = tb; t < tb1; ++t) {
              const T* row = a.src + t * a.ld_src + kb0;
#pragma GCC unroll 64
              for (int64_t v = 0; v < NV; ++v) s[v] = add(s[v], Vec::load(row + v * W));
            }
#pragma GCC unroll 64
            for (int64_t v = 0; v < NV; ++v) Vec::store(acc + v * W, s[v]);
          } else {  // the last, partial block of features
            for (int64_t v = 0; v < nv; ++v) {
              Vec sv = Vec::load(acc + v * W);
              for (int64_t t = tb; t < tb1; ++t)
                sv = add(sv, Vec::load(a.src + t * a.ld_src + kb0 + v * W));
              Vec::store(acc + v * W, sv);
            }
          }
        }
      }
      for (int64_t k = full_k; k < kb1; ++k)
        for (int64_t t = 0; t < full_t; ++t) {
          a.dst[k * a.ld_dst + t] = a.src[t * a.ld_src + k];
          acc[k - kb0] += widen(a.src[t * a.ld_src + k]);
        }
      for (int64_t k = kb0; k < kb1; ++k) {
        T* d = a.dst + k * a.ld_dst;
        for (int64_t t = full_t; t < a.batch; ++t) {
          d[t] = a.src[t * a.ld_src + k];
          acc[k - kb0] += widen(a.src[t * a.ld_src + k]);
        }
        for (int64_t t = a.batch; t < a.ld_dst; ++t) d[t] = T{};  // +0
        if (a.sums) a.sums[k] = acc[k - kb0];
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
  const int64_t nblk = (a.batch + kBlock - 1) / kBlock;
  const int64_t full_k = a.features / W * W;
  parallel_uniform(a.nthreads, nblk, kBlock * a.features / 2, [&](int64_t b0, int64_t b1) {
    for (int64_t tb = b0; tb < b1; ++tb) {
      const int64_t tb0 = tb * kBlock;
      const int64_t tb1 = tb0 + kBlock < a.batch ? tb0 + kBlock : a.batch;
      const int64_t full_t = tb0 + (tb1 - tb0) / W * W;
      for (int64_t kb = 0; kb < full_k; kb += kBlock) {
        const int64_t kb1 = kb + kBlock < full_k ? kb + kBlock : full_k;
        for (int64_t t0 = tb0; t0 < full_t; t0 += W)
          for (int64_t k0 = kb; k0 < kb1; k0 += W)
            transpose_block(a.src + k0 * a.ld_src + t0, a.ld_src, a.dst + t0 * a.ld_dst + k0,
                            a.ld_dst, a.bias ? a.bias + k0 : nullptr);
      }
      for (int64_t t = full_t; t < tb1; ++t)
        for (int64_t k = 0; k < full_k; ++k)
          a.dst[t * a.ld_dst + k] = plus_bias(a.src[k * a.ld_src + t], a.bias, k);
      for (int64_t t = tb0; t < tb1; ++t)
        for (int64_t k = full_k; k < a.features; ++k)
          a.dst[t * a.ld_dst + k] = plus_bias(a.src[k * a.ld_src + t], a.bias, k);
    }
  });
}

}  // namespace

template <class T>
void unpack_bmajor(const UnpackArgs<T>& a) {
  unpack_bmajor_impl(a);
}

template void pack_bmajor<f32>(const PackArgs<f32>&);
template void pack_bmajor<bf16>(const PackArgs<bf16>&);
template void unpack_bmajor<f32>(const UnpackArgs<f32>&);
template void unpack_bmajor<bf16>(const UnpackArgs<bf16>&);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
