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

// unit = 16 tiles are staged through a row buffer: 16 image rows of up to kSeg floats each,
// kStage apart. Transposing straight between 16 NCHW rows one channel*plane apart (often a
// multiple of 4 KiB) lands every row in the same L1 set and thrashes it; the staging copies
// are sequential and the transposes then run on a compact, conflict-free block.
constexpr int64_t kSeg = 256;
constexpr int64_t kStage = kSeg + 16;

// stage[m][0:k] = rows[m * ld + 0:k] for m < images, zeros for the other rows.
inline void stage_rows(const float* rows, int64_t ld, int64_t images, int64_t k, float* stage) {
  for (int64_t m = 0; m < kU; ++m) {
    if (m < images)
      std::memcpy(stage + m * kStage, rows + m * ld, k * sizeof(float));
    else
      std::memset(stage + m * kStage, 0, kSeg * sizeof(float));
  }
}

// rows[m * ld + 0:k] = stage[m][0:k] (+ *bias) for m < images.
inline void unstage_rows(const float* stage, int64_t images, int64_t k, const float* bias,
                         float* rows, int64_t ld) {
  for (int64_t m = 0; m < images; ++m) {
    const float* s = stage + m * kStage;
    float* d = rows + m * ld;
    if (bias == nullptr) {
      std::memcpy(d, s, k * sizeof(float));
    } else {
      const float b = *bias;
      for (int64_t j = 0; j < k; ++j) d[j] = s[j] + b;
    }
  }
}

}  // namespace

void f32_conv_pack_input(const ConvInputArgs& a) {
  const ConvInputLayout& l = a.layout;
  const int64_t hw = l.h * l.w, chw = l.c * hw;
  const int64_t hp = l.hq * l.sh, wp = l.wq * l.sw;
  parallel_uniform(a.nthreads, l.groups * l.c, hp * wp * l.unit, [&](int64_t i0, int64_t i1) {
    alignas(64) float tmp[kU * kU];
    alignas(64) float stage[kU * kStage];
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
        for (int64_t seg = 0; seg < l.w; seg += kSeg) {
          const int64_t k = l.w - seg < kSeg ? l.w - seg : kSeg;
          stage_rows(x + ih * l.w + seg, chw, images, k, stage);
          for (int64_t j0 = 0; j0 < k; j0 += kU) {
            transpose16(stage + j0, kStage, tmp, kU);  // tmp[pixel][image]
            for (int64_t j = j0; j < j0 + kU && j < k; ++j)
              std::memcpy(out + pixel(l, c, ihp, seg + j + l.pl) * kU, tmp + (j - j0) * kU,
                          kU * sizeof(float));
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
    alignas(64) float stage[kU * kStage];
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
        for (int64_t seg = 0; seg < l.w; seg += kSeg) {
          const int64_t k = l.w - seg < kSeg ? l.w - seg : kSeg;
          for (int64_t j0 = 0; j0 < k; j0 += kU) {
            for (int64_t j = j0; j < j0 + kU; ++j)  // tmp[pixel][image]
              if (j < k)
                std::memcpy(tmp + (j - j0) * kU, in + pixel(l, c, ih + l.pt, seg + j + l.pl) * kU,
                            kU * sizeof(float));
            transpose16(tmp, kU, stage + j0, kStage);
          }
          unstage_rows(stage, images, k, nullptr, x + ih * l.w + seg, chw);
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
    alignas(64) float tmp[kU * kU];
    alignas(64) float stage[kU * kStage];
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
        for (int64_t seg = 0; seg < l.wo; seg += kSeg) {
          const int64_t k = l.wo - seg < kSeg ? l.wo - seg : kSeg;
          stage_rows(y + oh * l.wo + seg, chw, images, k, stage);
          for (int64_t j0 = 0; j0 < k; j0 += kU) {
            if (k - j0 >= kU) {
              transpose16(stage + j0, kStage, row + (seg + j0) * kU, kU);
            } else {  // the last pixels of the row: the next pixels are the zero gap
              transpose16(stage + j0, kStage, tmp, kU);
              std::memcpy(row + (seg + j0) * kU, tmp, (k - j0) * kU * sizeof(float));
            }
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
    alignas(64) float stage[kU * kStage];
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t g = i / l.c, c = i - g * l.c;
      const float* in = a.grid + (g * l.c + c) * l.per_channel * l.unit;
      if (l.unit == 1) {
        float* y = a.y + g * chw + c * hw;
        for (int64_t oh = 0; oh < l.ho; ++oh) {
          const float* s = in + l.offset + oh * l.wq;
          float* d = y + oh * l.wo;
          if (a.bias == nullptr) {
            std::memcpy(d, s, l.wo * sizeof(float));
          } else {
            const float b = a.bias[c];
            for (int64_t ow = 0; ow < l.wo; ++ow) d[ow] = s[ow] + b;
          }
        }
        continue;
      }
      const int64_t n0 = g * kU;
      const int64_t images = l.n - n0 < kU ? l.n - n0 : kU;
      float* y = a.y + n0 * chw + c * hw;
      for (int64_t oh = 0; oh < l.ho; ++oh) {
        const float* row = in + (l.offset + oh * l.wq) * kU;
        for (int64_t seg = 0; seg < l.wo; seg += kSeg) {
          const int64_t k = l.wo - seg < kSeg ? l.wo - seg : kSeg;
          for (int64_t j0 = 0; j0 < k; j0 += kU) {
            if (k - j0 >= kU) {
              transpose16(row + (seg + j0) * kU, kU, stage + j0, kStage);
            } else {  // past the row's last pixel lies the next row: read only what exists
              std::memset(tmp, 0, sizeof(tmp));
              std::memcpy(tmp, row + (seg + j0) * kU, (k - j0) * kU * sizeof(float));
              transpose16(tmp, kU, stage + j0, kStage);
            }
          }
          unstage_rows(stage, images, k, a.bias ? a.bias + c : nullptr, y + oh * l.wo + seg, chw);
        }
      }
    }
  });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
