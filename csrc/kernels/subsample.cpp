// subsample: out = x[:, :, ::sh, ::sw] of NCHW planes; subsample_grad: its gradient,
// the sampled pixels taken from g and zeros everywhere else, written in one pass (where
// zero-filling and then copying into every sh-th row would write those rows twice).
// A strided 1x1 convolution is this subsampling followed by a stride-1 one.
#include "kernels/kernels.h"
#include "kernels/row_copy.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {

// d[0:n] = s[0:n * sw:sw] (s holds w floats). Stride 2 in whole vectors; a vector that
// would read past the row goes through a copy of just the floats it needs.
inline void gather_row(const float* s, float* d, int64_t n, int64_t sw, int64_t w) {
  constexpr int64_t W = Vec::W;
  if (sw == 1) {
    copy_row(s, d, n);
    return;
  }
  if (sw != 2) {
    for (int64_t q = 0; q < n; ++q) d[q] = s[q * sw];
    return;
  }
  int64_t q = 0;
  for (; q + W <= n && 2 * (q + W) <= w; q += W) Vec::store(d + q, load_even(s + 2 * q));
  alignas(64) float tmp[2 * W] = {};
  for (int64_t m; q < n; q += m) {
    m = n - q < W ? n - q : W;
    copy_row(s + 2 * q, tmp, 2 * m - 1);  // 2q + 2m - 2 < w: the last sampled column
    Vec::store_n(d + q, load_even(tmp), static_cast<int>(m));
  }
}

// d[0:w] = s[iw / sw] where iw % sw == 0, else 0 (s holds ceil(w / sw) floats). Stride 2
// interleaves whole vectors with zeros; the last, partial pair goes through a buffer.
inline void scatter_row(const float* s, float* d, int64_t w, int64_t sw) {
  constexpr int64_t W = Vec::W;
  if (sw == 1) {
    copy_row(s, d, w);
    return;
  }
  if (sw != 2) {
    zero_row(d, w);
    for (int64_t iw = 0; iw < w; iw += sw) d[iw] = s[iw / sw];
    return;
  }
  int64_t iw = 0;
  for (; iw + 2 * W <= w; iw += 2 * W)
    store_interleaved(d + iw, Vec::load(s + iw / 2), Vec::zero());
  if (iw < w) {
    alignas(64) float tmp[2 * W];
    const int64_t n = w - iw;
    store_interleaved(tmp, Vec::load_n(s + iw / 2, static_cast<int>((n + 1) / 2)), Vec::zero());
    copy_row(tmp, d + iw, n);
  }
}

template <class T>
void subsample_impl(const SubsampleArgs<T>& a) {
  const int64_t ho = (a.h + a.sh - 1) / a.sh, wo = (a.w + a.sw - 1) / a.sw;
  parallel_uniform(a.nthreads, a.planes, ho * wo, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const float* x = a.src + p * a.h * a.w;
      float* out = a.dst + p * ho * wo;
      for (int64_t oh = 0; oh < ho; ++oh)
        gather_row(x + oh * a.sh * a.w, out + oh * wo, wo, a.sw, a.w);
    }
  });
}

}  // namespace

template <class T>
void subsample(const SubsampleArgs<T>& a) {
  subsample_impl(a);
}

namespace {

template <class T>
void subsample_grad_impl(const SubsampleArgs<T>& a) {
  const int64_t ho = (a.h + a.sh - 1) / a.sh, wo = (a.w + a.sw - 1) / a.sw;
  parallel_uniform(a.nthreads, a.planes, a.h * a.w, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const float* g = a.src + p * ho * wo;
      float* dx = a.dst + p * a.h * a.w;
      for (int64_t ih = 0; ih < a.h; ++ih) {
        if (ih % a.sh == 0)
          scatter_row(g + (ih / a.sh) * wo, dx + ih * a.w, a.w, a.sw);
        else
          zero_row(dx + ih * a.w, a.w);
      }
    }
  });
}

}  // namespace

template <class T>
void subsample_grad(const SubsampleArgs<T>& a) {
  subsample_grad_impl(a);
}

template void subsample<f32>(const SubsampleArgs<f32>&);
template void subsample_grad<f32>(const SubsampleArgs<f32>&);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
