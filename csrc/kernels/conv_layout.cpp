// Layout changes between PyTorch's NCHW and the convolution kernels' layout
// (groups, channels, stride phases, Hq, Wq, unit): the batch in groups of `unit` images
// (1 or 16), each pixel a vector of `unit` floats. unit = 16 needs a transpose of 16 images
// x 16 pixels per tile (W x W register transposes); unit = 1 is row copies.
// Every padding position and every lane of a missing image is written as zero. Parallel
// over (group, channel) pairs: disjoint writes.
#include <cstring>

#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {

constexpr int64_t kU = 16;  // the only unit besides 1

// 16 x 16 transpose: dst[j * ldd + i] = src[i * lds + j], from W x W register transposes.
inline void transpose16(const float* src, int64_t lds, float* dst, int64_t ldd) {
  constexpr int64_t W = Vec::W;
  for (int64_t i = 0; i < kU; i += W)
    for (int64_t j = 0; j < kU; j += W)
      transpose_block(src + i * lds + j, lds, dst + j * ldd + i, ldd, nullptr);
}

// Offset (in pixels) of padded input position (ihp, iwp) of channel c in its group's block.
inline int64_t pixel(const ConvInputLayout& l, int64_t c, int64_t ihp, int64_t iwp) {
  const int64_t plane = l.hq * l.wq;
  return ((c * l.sh + ihp % l.sh) * l.sw + iwp % l.sw) * plane + (ihp / l.sh) * l.wq + iwp / l.sw;
}

inline int64_t group_pixels(const ConvInputLayout& l) {
  return l.c * l.sh * l.sw * l.hq * l.wq;
}

}  // namespace

void f32_conv_pack_input(const ConvInputArgs& a) {
  const ConvInputLayout& l = a.layout;
  const int64_t hw = l.h * l.w, chw = l.c * hw;
  const int64_t hp = l.hq * l.sh, wp = l.wq * l.sw;
  parallel_uniform(a.nthreads, l.groups * l.c, hp * wp * l.unit, [&](int64_t i0, int64_t i1) {
    alignas(64) float tmp[kU * kU];
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t g = i / l.c, c = i - g * l.c;
      float* out = a.packed + g * group_pixels(l) * l.unit;
      if (l.unit == 1 && l.sh == 1 && l.sw == 1) {  // rows with zero borders
        const float* x = a.x + g * chw + c * hw;
        float* d = out + pixel(l, c, 0, 0);
        for (int64_t ihp = 0; ihp < hp; ++ihp, d += wp) {
          const int64_t ih = ihp - l.pt;
          if (ih < 0 || ih >= l.h) {
            std::memset(d, 0, wp * sizeof(float));
            continue;
          }
          std::memset(d, 0, l.pl * sizeof(float));
          std::memcpy(d + l.pl, x + ih * l.w, l.w * sizeof(float));
          std::memset(d + l.pl + l.w, 0, (wp - l.pl - l.w) * sizeof(float));
        }
        continue;
      }
      if (l.unit == 1) {
        const float* x = a.x + g * chw + c * hw;
        for (int64_t ihp = 0; ihp < hp; ++ihp) {
          const int64_t ih = ihp - l.pt;
          for (int64_t iwp = 0; iwp < wp; ++iwp) {
            const int64_t iw = iwp - l.pl;
            const bool inside = ih >= 0 && ih < l.h && iw >= 0 && iw < l.w;
            out[pixel(l, c, ihp, iwp)] = inside ? x[ih * l.w + iw] : 0.0f;
          }
        }
        continue;
      }
      const int64_t n0 = g * kU;
      const int64_t images = l.n - n0 < kU ? l.n - n0 : kU;
      const float* x = a.x + n0 * chw + c * hw;
      for (int64_t ihp = 0; ihp < hp; ++ihp) {
        const int64_t ih = ihp - l.pt;
        const bool row_inside = ih >= 0 && ih < l.h;
        for (int64_t iwp = 0; iwp < wp; ++iwp) {
          const int64_t iw = iwp - l.pl;
          if (!row_inside || iw < 0 || iw >= l.w)
            std::memset(out + pixel(l, c, ihp, iwp) * kU, 0, kU * sizeof(float));
        }
        if (!row_inside) continue;
        for (int64_t iw0 = 0; iw0 < l.w; iw0 += kU) {
          const int64_t k = l.w - iw0 < kU ? l.w - iw0 : kU;
          if (k == kU && images == kU) {
            transpose16(x + ih * l.w + iw0, chw, tmp, kU);  // tmp[pixel][image]
            for (int64_t j = 0; j < kU; ++j)
              std::memcpy(out + pixel(l, c, ihp, iw0 + j + l.pl) * kU, tmp + j * kU,
                          kU * sizeof(float));
          } else {
            for (int64_t j = 0; j < k; ++j) {
              float* d = out + pixel(l, c, ihp, iw0 + j + l.pl) * kU;
              for (int64_t m = 0; m < kU; ++m)
                d[m] = m < images ? x[m * chw + ih * l.w + iw0 + j] : 0.0f;
            }
          }
        }
      }
    }
  });
}

void f32_conv_unpack_grad_input(const ConvInputArgs& a) {
  const ConvInputLayout& l = a.layout;
  const int64_t hw = l.h * l.w, chw = l.c * hw;
  parallel_uniform(a.nthreads, l.groups * l.c, hw * l.unit, [&](int64_t i0, int64_t i1) {
    alignas(64) float tmp[kU * kU];
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t g = i / l.c, c = i - g * l.c;
      const float* in = a.packed + g * group_pixels(l) * l.unit;
      if (l.unit == 1 && l.sh == 1 && l.sw == 1) {
        float* x = a.x + g * chw + c * hw;
        for (int64_t ih = 0; ih < l.h; ++ih)
          std::memcpy(x + ih * l.w, in + pixel(l, c, ih + l.pt, l.pl), l.w * sizeof(float));
        continue;
      }
      if (l.unit == 1) {
        float* x = a.x + g * chw + c * hw;
        for (int64_t ih = 0; ih < l.h; ++ih)
          for (int64_t iw = 0; iw < l.w; ++iw)
            x[ih * l.w + iw] = in[pixel(l, c, ih + l.pt, iw + l.pl)];
        continue;
      }
      const int64_t n0 = g * kU;
      const int64_t images = l.n - n0 < kU ? l.n - n0 : kU;
      float* x = a.x + n0 * chw + c * hw;
      for (int64_t ih = 0; ih < l.h; ++ih) {
        for (int64_t iw0 = 0; iw0 < l.w; iw0 += kU) {
          const int64_t k = l.w - iw0 < kU ? l.w - iw0 : kU;
          if (k == kU && images == kU) {
            for (int64_t j = 0; j < kU; ++j)  // tmp[pixel][image]
              std::memcpy(tmp + j * kU, in + pixel(l, c, ih + l.pt, iw0 + j + l.pl) * kU,
                          kU * sizeof(float));
            transpose16(tmp, kU, x + ih * l.w + iw0, chw);
          } else {
            for (int64_t j = 0; j < k; ++j) {
              const float* s = in + pixel(l, c, ih + l.pt, iw0 + j + l.pl) * kU;
              for (int64_t m = 0; m < images; ++m) x[m * chw + ih * l.w + iw0 + j] = s[m];
            }
          }
        }
      }
    }
  });
}

// Output side: channel c of group g holds `per_channel` pixels; output pixel (oh, ow) sits at
// offset + oh * wq + ow; every other pixel of the channel is zero (pack) or ignored (unpack).
void f32_conv_pack_grad_output(const ConvOutputArgs& a) {
  const ConvOutputLayout& l = a.layout;
  const int64_t hw = l.ho * l.wo, chw = l.c * hw;
  parallel_uniform(a.nthreads, l.groups * l.c, l.per_channel * l.unit, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t g = i / l.c, c = i - g * l.c;
      float* out = a.grid + (g * l.c + c) * l.per_channel * l.unit;
      // Zeros everywhere but the output pixels: before, between rows, after.
      std::memset(out, 0, l.offset * l.unit * sizeof(float));
      for (int64_t oh = 0; oh < l.ho; ++oh)
        std::memset(out + (l.offset + oh * l.wq + l.wo) * l.unit, 0,
                    (oh + 1 < l.ho ? l.wq - l.wo : 0) * l.unit * sizeof(float));
      const int64_t end = l.offset + (l.ho - 1) * l.wq + l.wo;
      std::memset(out + end * l.unit, 0, (l.per_channel - end) * l.unit * sizeof(float));
      if (l.unit == 1) {
        const float* y = a.y + g * chw + c * hw;
        for (int64_t oh = 0; oh < l.ho; ++oh)
          std::memcpy(out + l.offset + oh * l.wq, y + oh * l.wo, l.wo * sizeof(float));
        continue;
      }
      const int64_t n0 = g * kU;
      const int64_t images = l.n - n0 < kU ? l.n - n0 : kU;
      const float* y = a.y + n0 * chw + c * hw;
      for (int64_t oh = 0; oh < l.ho; ++oh) {
        float* row = out + (l.offset + oh * l.wq) * kU;
        for (int64_t ow0 = 0; ow0 < l.wo; ow0 += kU) {
          const int64_t k = l.wo - ow0 < kU ? l.wo - ow0 : kU;
          if (k == kU && images == kU) {
            transpose16(y + oh * l.wo + ow0, chw, row + ow0 * kU, kU);
          } else {
            for (int64_t j = 0; j < k; ++j)
              for (int64_t m = 0; m < kU; ++m)
                row[(ow0 + j) * kU + m] = m < images ? y[m * chw + oh * l.wo + ow0 + j] : 0.0f;
          }
        }
      }
    }
  });
}

void f32_conv_unpack_output(const ConvOutputArgs& a) {
  const ConvOutputLayout& l = a.layout;
  const int64_t hw = l.ho * l.wo, chw = l.c * hw;
  parallel_uniform(a.nthreads, l.groups * l.c, hw * l.unit, [&](int64_t i0, int64_t i1) {
    alignas(64) float tmp[kU * kU];
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t g = i / l.c, c = i - g * l.c;
      const float* in = a.grid + (g * l.c + c) * l.per_channel * l.unit;
      const float b = a.bias ? a.bias[c] : 0.0f;
      if (l.unit == 1) {
        float* y = a.y + g * chw + c * hw;
        for (int64_t oh = 0; oh < l.ho; ++oh) {
          const float* s = in + l.offset + oh * l.wq;
          float* d = y + oh * l.wo;
          for (int64_t ow = 0; ow < l.wo; ++ow) d[ow] = s[ow] + b;
        }
        continue;
      }
      const int64_t n0 = g * kU;
      const int64_t images = l.n - n0 < kU ? l.n - n0 : kU;
      float* y = a.y + n0 * chw + c * hw;
      for (int64_t oh = 0; oh < l.ho; ++oh) {
        const float* row = in + (l.offset + oh * l.wq) * kU;
        for (int64_t ow0 = 0; ow0 < l.wo; ow0 += kU) {
          const int64_t k = l.wo - ow0 < kU ? l.wo - ow0 : kU;
          if (k == kU && images == kU) {
            transpose16(row + ow0 * kU, kU, tmp, kU);  // tmp[image][pixel]
            for (int64_t m = 0; m < kU; ++m) {
              float* d = y + m * chw + oh * l.wo + ow0;
              for (int64_t j = 0; j < kU; ++j) d[j] = tmp[m * kU + j] + b;
            }
          } else {
            for (int64_t m = 0; m < images; ++m)
              for (int64_t j = 0; j < k; ++j)
                y[m * chw + oh * l.wo + ow0 + j] = row[(ow0 + j) * kU + m] + b;
          }
        }
      }
    }
  });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
