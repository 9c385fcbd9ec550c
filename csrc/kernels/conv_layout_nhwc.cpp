// Layout changes between channels_last (N, H, W, C) tensors and the convolution kernels'
// layout. A channel's pixels are C floats apart there, so each block of 16 channels moves
// through transposes: an image row's pixels into 16 channel rows (unit 1, then placed as the
// NCHW code places a row), or one pixel's 16 images x 16 channels into 16 pixel vectors
// (unit 16). Every padding position and every lane of a missing image is written as zero.
#include "kernels/conv_layout_nhwc.h"

#include "kernels/conv_layout_parts.h"
#include "kernels/row_copy.h"
#include "kernels/vec.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
using namespace layout_parts;
namespace {

inline int64_t channel_pixels(const ConvInputLayout& l) { return l.sh * l.sw * l.hq * l.wq; }

// Every position of one channel's phase planes (unit 1) that holds no input pixel = 0.
void zero_padding(const ConvInputLayout& l, float* planes) {
  const int64_t wq = l.wq, plane = l.hq * wq;
  for (int64_t ph = 0; ph < l.sh; ++ph) {
    for (int64_t pw = 0; pw < l.sw; ++pw) {
      const PhaseColumns cols(l, pw);
      float* r = planes + (ph * l.sw + pw) * plane;
      for (int64_t qh = 0, ih = ph - l.pt; qh < l.hq; ++qh, ih += l.sh, r += wq) {
        if (ih < 0 || ih >= l.h || cols.q0 == cols.q1) {
          zero_row(r, wq);
        } else {
          zero_row(r, cols.q0);
          zero_row(r + cols.q1, wq - cols.q1);
        }
      }
    }
  }
}

// The phase-plane row holding padded row ih + pt, at its phase (ph, 0) (unit 1).
inline float* phase_row(const ConvInputLayout& l, float* planes, int64_t ih) {
  const int64_t ihp = ih + l.pt;
  return planes + (ihp % l.sh) * l.sw * l.hq * l.wq + (ihp / l.sh) * l.wq;
}

// Pixels [iw0, iw0 + k) of input row ih of one channel: from src into its phase planes
// (to_planes), or out of them into src.
template <bool to_planes>
inline void move_row(const ConvInputLayout& l, float* planes, int64_t ih, int64_t iw0, float* src,
                     int64_t k) {
  float* row = phase_row(l, planes, ih);
  if (l.sw == 1) {
    if (to_planes)
      copy_row(src, row + l.pl + iw0, k);
    else
      copy_row(row + l.pl + iw0, src, k);
    return;
  }
  const int64_t plane = l.hq * l.wq, iwp = l.pl + iw0;
  if (to_planes && l.sw == 2) {  // each phase a stride-2 gather, whole vectors where they fit
    constexpr int64_t W = Vec::W;
    for (int64_t pw = 0; pw < 2; ++pw) {
      const int64_t i0 = (pw - iwp % 2 + 2) % 2;  // the first pixel of phase pw
      float* d = row + pw * plane + (iwp + i0) / 2;
      int64_t j = 0;
      for (; i0 + 2 * (j + W) <= k; j += W) Vec::store(d + j, load_even(src + i0 + 2 * j));
      for (; i0 + 2 * j < k; ++j) d[j] = src[i0 + 2 * j];
    }
    return;
  }
  for (int64_t i = 0, pw = iwp % l.sw, q = iwp / l.sw; i < k; ++i) {
    if (to_planes)
      row[pw * plane + q] = src[i];
    else
      src[i] = row[pw * plane + q];
    if (++pw == l.sw) {
      pw = 0;
      ++q;
    }
  }
}

// Pixels [0, k) of x (c apart, `readable` of them may be read) -> channel rows dst + cc * ld
// (cc < cb), exactly k floats each, 16 pixels a transpose (whole blocks straight into the
// rows); each row's floats also summed into sums[cc] if given. dst nullptr: the sums only.
inline void pixels_into_rows(const float* x, int64_t c, int64_t cb, int64_t k, int64_t readable,
                             float* dst, int64_t ld, ChannelSum* sums) {
  alignas(64) float tmp[16 * 16];
  for (int64_t p0 = 0; p0 < k; p0 += 16) {
    const int64_t n = k - p0 < 16 ? k - p0 : 16;
    const float* src = x + p0 * c;
    if (n == 16 && cb == 16 && dst) {
      transpose16(src, c, dst + p0, ld);
      if (sums)
        for (int64_t cc = 0; cc < cb; ++cc) sums[cc].add_row(dst + cc * ld + p0, 16);
      continue;
    }
    if (cb == 16 && p0 + 16 <= readable)
      transpose16(src, c, tmp, 16);
    else
      transpose_part(src, c, n, cb, tmp, 16, 16);
    for (int64_t cc = 0; cc < cb; ++cc) {
      if (dst) copy_row(tmp + cc * 16, dst + cc * ld + p0, n);
      if (sums) sums[cc].add_row(tmp + cc * 16, n);
    }
  }
}

// Unit 16: where input row ih of channels [c0, c0 + cb) starts in a group block (in pixel
// vectors), and (Columns, walked left to right without a division per pixel) where each
// column lies from there.
struct RowBases {
  int64_t base[kChannelBlock] = {};
  RowBases(const ConvInputLayout& l, int64_t c0, int64_t cb, int64_t ih) {
    for (int64_t cc = 0; cc < cb; ++cc) base[cc] = PaddedRow(l, c0 + cc, ih + l.pt).at(0);
  }
};
struct Columns {
  int64_t pw, q, sw, plane;
  explicit Columns(const ConvInputLayout& l)
      : pw(l.pl % l.sw), q(l.pl / l.sw), sw(l.sw), plane(l.hq * l.wq) {}
  int64_t at() const { return pw * plane + q; }
  void next() {
    if (++pw == sw) {
      pw = 0;
      ++q;
    }
  }
};

}  // namespace

void pack_image_nhwc(const ConvInputLayout& l, const float* x, float* out, int64_t c0,
                     int64_t c1) {
  const int64_t c = l.c, per_channel = channel_pixels(l);
  alignas(64) float stage[kChannelBlock * kStage];
  for (int64_t ch = c0; ch < c1; ++ch) zero_padding(l, out + ch * per_channel);
  // Row by row, every block of a row while the row (w x c floats) is in cache.
  for (int64_t ih = 0; ih < l.h; ++ih) {
    for (int64_t b = c0; b < c1; b += kChannelBlock) {
      const int64_t cb = c1 - b < kChannelBlock ? c1 - b : kChannelBlock;
      if (l.sh == 1 && l.sw == 1) {  // the row lands in one row of each channel's plane
        pixels_into_rows(x + ih * l.w * c + b, c, cb, l.w, (l.h - ih) * l.w,
                         out + b * per_channel + (ih + l.pt) * l.wq + l.pl, per_channel, nullptr);
        continue;
      }
      for (int64_t seg = 0; seg < l.w; seg += kSeg) {
        const int64_t k = l.w - seg < kSeg ? l.w - seg : kSeg;
        const int64_t at = ih * l.w + seg;
        pixels_to_rows(x + at * c + b, c, cb, k, stage, kStage, l.h * l.w - at);
        for (int64_t cc = 0; cc < cb; ++cc)
          move_row<true>(l, out + (b + cc) * per_channel, ih, seg, stage + cc * kStage, k);
      }
    }
  }
}

void unpack_image_nhwc(const ConvInputLayout& l, const float* in, float* x, int64_t c0) {
  const int64_t c = l.c, cb = block_of(c, c0), per_channel = channel_pixels(l);
  alignas(64) float stage[kChannelBlock * kStage];
  float* planes = const_cast<float*>(in);  // read only: move_row<false>
  for (int64_t ih = 0; ih < l.h; ++ih) {
    for (int64_t seg = 0; seg < l.w; seg += kSeg) {
      const int64_t k = l.w - seg < kSeg ? l.w - seg : kSeg;
      for (int64_t cc = 0; cc < cb; ++cc)
        move_row<false>(l, planes + (c0 + cc) * per_channel, ih, seg, stage + cc * kStage, k);
      rows_to_pixels(stage, kStage, cb, k, x + (ih * l.w + seg) * c + c0, c);
    }
  }
}

void pack_group_nhwc(const ConvInputLayout& l, const float* x, float* packed, int64_t g,
                     int64_t c0) {
  const int64_t c = l.c, cb = block_of(c, c0), hwc = l.h * l.w * c;
  const int64_t n0 = g * kU, images = l.n - n0 < kU ? l.n - n0 : kU;
  const int64_t hp = l.hq * l.sh, wp = l.wq * l.sw;
  float* out = packed + g * group_pixels(l) * kU;
  for (int64_t cc = 0; cc < cb; ++cc) {
    for (int64_t ihp = 0; ihp < hp; ++ihp) {
      const PaddedRow row(l, c0 + cc, ihp);
      const int64_t ih = ihp - l.pt;
      const auto zero = [&](int64_t, int64_t px) { zero_row(out + px * kU, kU); };
      if (ih < 0 || ih >= l.h) {
        walk_row(row, 0, wp, zero);
      } else {
        walk_row(row, 0, l.pl, zero);
        walk_row(row, l.pl + l.w, wp, zero);
      }
    }
  }
  alignas(64) float tmp[kU * kU];  // tmp[channel][image]
  const float* x0 = x + n0 * hwc + c0;
  for (int64_t ih = 0; ih < l.h; ++ih) {
    const RowBases row(l, c0, cb, ih);
    Columns col(l);
    for (int64_t iw = 0; iw < l.w; ++iw, col.next()) {
      transpose_part(x0 + (ih * l.w + iw) * c, hwc, images, cb, tmp, kU, kU);
      for (int64_t cc = 0; cc < cb; ++cc)
        copy16(out + (row.base[cc] + col.at()) * kU, tmp + cc * kU);
    }
  }
}

void unpack_group_nhwc(const ConvInputLayout& l, const float* packed, float* x, int64_t g,
                       int64_t c0) {
  const int64_t c = l.c, cb = block_of(c, c0), hwc = l.h * l.w * c;
  const int64_t n0 = g * kU, images = l.n - n0 < kU ? l.n - n0 : kU;
  const float* in = packed + g * group_pixels(l) * kU;
  alignas(64) float tmp[kU * kU];  // tmp[channel][image]
  for (int64_t ih = 0; ih < l.h; ++ih) {
    const RowBases row(l, c0, cb, ih);
    Columns col(l);
    for (int64_t iw = 0; iw < l.w; ++iw, col.next()) {
      for (int64_t cc = 0; cc < cb; ++cc)
        copy16(tmp + cc * kU, in + (row.base[cc] + col.at()) * kU);
      transpose_part(tmp, kU, cb, images, x + n0 * hwc + (ih * l.w + iw) * c + c0, hwc, cb);
    }
  }
}

void grid_image_nhwc(const ConvOutputLayout& o, const float* y, float* out, int64_t c0,
                     int64_t c1, double* sums) {
  const int64_t c = o.c;
  ChannelSum sum[kChannelBlock];
  if (out)
    for (int64_t ch = c0; ch < c1; ++ch) grid_zeros(o, out + ch * o.per_channel, 1);
  // Row by row, every block of a row while the row is in cache (as pack_image_nhwc).
  for (int64_t oh = 0; oh < o.ho; ++oh)
    for (int64_t b = c0; b < c1; b += kChannelBlock)
      pixels_into_rows(y + oh * o.wo * c + b, c, c1 - b < kChannelBlock ? c1 - b : kChannelBlock,
                       o.wo, (o.ho - oh) * o.wo,
                       out ? out + b * o.per_channel + o.offset + oh * o.wq : nullptr,
                       o.per_channel, sums ? sum + (b - c0) : nullptr);
  if (sums)
    for (int64_t ch = c0; ch < c1; ++ch) sums[ch - c0] = sum[ch - c0].total();
}

void grid_group_nhwc(const ConvOutputLayout& o, const float* y, float* grid, int64_t g,
                     int64_t c0, double* sums) {
  const int64_t c = o.c, cb = block_of(c, c0), chw = o.ho * o.wo * c;
  const int64_t n0 = g * kU, images = o.n - n0 < kU ? o.n - n0 : kU;
  float* out = grid + (g * c + c0) * o.per_channel * kU;  // channel c0's grid
  for (int64_t cc = 0; cc < cb; ++cc) grid_zeros(o, out + cc * o.per_channel * kU, kU);
  alignas(64) float tmp[kU * kU];  // tmp[channel][image]
  ChannelSum sum[kChannelBlock];
  for (int64_t oh = 0; oh < o.ho; ++oh) {
    for (int64_t ow = 0; ow < o.wo; ++ow) {
      transpose_part(y + n0 * chw + (oh * o.wo + ow) * c + c0, chw, images, cb, tmp, kU, kU);
      const int64_t px = o.offset + oh * o.wq + ow;
      for (int64_t cc = 0; cc < cb; ++cc) {
        copy16(out + (cc * o.per_channel + px) * kU, tmp + cc * kU);
        if (sums) sum[cc].add_row(tmp + cc * kU, kU);
      }
    }
  }
  if (sums)
    for (int64_t cc = 0; cc < cb; ++cc) sums[cc] = sum[cc].total();
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
