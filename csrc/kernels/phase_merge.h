// Stride phases back to NCHW: the input gradient of a strided convolution is computed on
// the phase planes of the padded input (one stride-1 product per phase) and interleaved into
// PyTorch's plane afterwards, by conv_unpack_grad_input over a whole packed tensor or by the
// offsets kernel one channel at a time while the planes are still in L1 (the fused form).
#pragma once

#include <cstdint>

#include "kernels/kernels.h"
#include "kernels/row_copy.h"
#include "kernels/vec.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// The inverse for the input gradient: the real pixels of a channel's phase planes (in) back
// into its NCHW plane (x). Stride 2 interleaves the two phases of a row a vector pair at a time.
inline void merge_phases(const float* in, const ConvInputLayout& l, float* x) {
  constexpr int64_t W = Vec::W;
  const int64_t wq = l.wq, plane = l.hq * wq, sw = l.sw;
  int64_t ph = l.pt % l.sh, qh = l.pt / l.sh;
  for (int64_t ih = 0; ih < l.h; ++ih, x += l.w) {
    const float* rows = in + ph * sw * plane + qh * wq;  // phase (ph, 0), row qh
    int64_t iw = 0;
    if (sw == 2) {
      // Column iw = 2k + e comes from phase pw_e = (e + pl) % 2 at q = k + (e + pl - pw_e) / 2.
      const int64_t pw0 = l.pl % 2, pw1 = (1 + l.pl) % 2;
      const float* s0 = rows + pw0 * plane + (l.pl - pw0) / 2;
      const float* s1 = rows + pw1 * plane + (1 + l.pl - pw1) / 2;
      for (; iw + 2 * W <= l.w; iw += 2 * W)
        store_interleaved(x + iw, Vec::load(s0 + iw / 2), Vec::load(s1 + iw / 2));
      if (iw < l.w) {  // the rest (short rows: all of it) through a buffer of 2W
        const int64_t n = l.w - iw;
        alignas(64) float tail[2 * W];
        store_interleaved(tail, Vec::load_n(s0 + iw / 2, static_cast<int>((n + 1) / 2)),
                          Vec::load_n(s1 + iw / 2, static_cast<int>(n / 2)));
        copy_row(tail, x + iw, n);
        iw = l.w;
      }
    }
    for (int64_t pw = (iw + l.pl) % sw, q = (iw + l.pl) / sw; iw < l.w; ++iw) {
      x[iw] = rows[pw * plane + q];
      if (++pw == sw) {
        pw = 0;
        ++q;
      }
    }
    if (++ph == l.sh) {
      ph = 0;
      ++qh;
    }
  }
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
