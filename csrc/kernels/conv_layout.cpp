// Layout changes between PyTorch's NCHW and the convolution kernels' layout
// (groups, channels, stride phases, Hq, Wq, unit): the batch in groups of `unit` images
// (1 or 16), each pixel a vector of `unit` floats. unit = 16 needs a transpose of 16 images
// x 16 pixels per tile (W x W register transposes); unit = 1 is row copies.
// Every padding position and every lane of a missing image is written as zero. Parallel
// over (group, channel) pairs: disjoint writes.
#include <cstring>

#include "kernels/conv_layout_nhwc.h"
#include "kernels/conv_layout_parts.h"
#include "kernels/image_pack.h"
#include "kernels/kernels.h"
#include "kernels/phase_merge.h"
#include "kernels/row_copy.h"
#include "kernels/vec.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
using namespace layout_parts;
namespace {

// Every phase plane of one channel (x: its NCHW plane, out: its first phase plane), written
// in order. Stride 2 gathers whole vectors (load_even reads 2W floats, so only where all of
// them lie inside the input row); other strides and the ends go element by element.
inline void pack_phases(const float* x, const ConvInputLayout& l, float* out) {
  constexpr int64_t W = Vec::W;
  alignas(64) float tail[2 * W] = {};
  const int64_t wq = l.wq, plane = l.hq * wq, sw = l.sw;
  for (int64_t ph = 0; ph < l.sh; ++ph) {
    for (int64_t pw = 0; pw < sw; ++pw) {
      const PhaseColumns cols(l, pw);
      float* r = out + (ph * sw + pw) * plane;
      for (int64_t qh = 0, ih = ph - l.pt; qh < l.hq; ++qh, ih += l.sh, r += wq) {
        if (ih < 0 || ih >= l.h || cols.q0 == cols.q1) {
          zero_row(r, wq);
          continue;
        }
        zero_row(r, cols.q0);
        zero_row(r + cols.q1, wq - cols.q1);
        const float* s = x + ih * l.w + pw - l.pl;  // s[q * sw]: column q
        int64_t q = cols.q0;
        if (sw == 2) {  // the last float a vector reads, s[2q + 2W - 1], must be in the row
          for (; q + W <= cols.q1 && 2 * (q + W) - 1 + pw - l.pl < l.w; q += W)
            Vec::store(r + q, load_even(s + 2 * q));
          // The rest (short rows: all of it) through a copy of just the floats it needs.
          for (int64_t m; q < cols.q1; q += m) {
            m = cols.q1 - q < W ? cols.q1 - q : W;
            copy_row(s + 2 * q, tail, 2 * m - 1);
            Vec::store_n(r + q, load_even(tail), static_cast<int>(m));
          }
        }
        for (; q < cols.q1; ++q) r[q] = s[q * sw];
      }
    }
  }
}

// Packs channel i % c of group i / c (every position of its phase planes is written).
template <class T>
inline void pack_channel(const ConvInputArgs<T>& a, int64_t i, float* tmp, float* stage) {
  // Locals, not references: vector stores may alias anything, so every value reached through
  // a reference would be reloaded after each store.
  const ConvInputLayout l = a.layout;
  const int64_t hw = l.h * l.w, chw = l.c * hw;
  const int64_t hp = l.hq * l.sh, wp = l.wq * l.sw;
  const int64_t u = l.unit, pt = l.pt, pl = l.pl, wq = l.wq;
  const int64_t g = i / l.c, c = i - g * l.c;
  float* out = a.packed + g * group_pixels(l) * u;
  const int64_t n0 = g * u;
  const int64_t images = l.n - n0 < u ? l.n - n0 : u;
  const float* x = a.x + n0 * chw + c * hw;
  if (u == kU && l.sh == 1 && l.sw == 1) {
    // Stride 1: zero the border, then move the contiguous NCHW plane in flat segments
    // (short rows no longer pay a per-row overhead).
    float* plane = out + c * l.hq * l.wq * kU;
    for (int64_t ihp = 0; ihp < hp; ++ihp) {
      float* r = plane + ihp * l.wq * kU;
      if (ihp < pt || ihp >= pt + l.h) {
        zero_row(r, wp * kU);
      } else {
        zero_row(r, pl * kU);
        zero_row(r + (pl + l.w) * kU, (wp - pl - l.w) * kU);
      }
    }
    for (int64_t seg = 0; seg < hw; seg += kSeg) {
      const int64_t k = hw - seg < kSeg ? hw - seg : kSeg;
      stage_rows(x + seg, chw, images, k, stage);
      int64_t ih = seg / l.w, iw = seg - ih * l.w;
      for (int64_t j0 = 0; j0 < k; j0 += kU) {
        transpose16(stage + j0, kStage, tmp, kU);  // tmp[pixel][image]
        const int64_t n = k - j0 < kU ? k - j0 : kU;
        for (int64_t j = 0; j < n; ++j) {
          copy16(plane + ((ih + pt) * wq + iw + pl) * kU, tmp + j * kU);
          if (++iw == l.w) {
            iw = 0;
            ++ih;
          }
        }
      }
    }
    return;
  }
  if (u == 1 && l.sh == 1 && l.sw == 1) {  // rows with zero borders, inline copies
    float* r = out + c * l.hq * wq;
    for (int64_t ihp = 0; ihp < hp; ++ihp, r += wq) {
      const int64_t ih = ihp - pt;
      if (ih < 0 || ih >= l.h) {
        zero_row(r, wp);
        continue;
      }
      zero_row(r, pl);
      copy_row(x + ih * l.w, r + pl, l.w);
      zero_row(r + pl + l.w, wp - pl - l.w);
    }
    return;
  }
  if (u == 1) {  // strided (stride 1 is above)
    pack_phases(x, l, out + c * l.sh * l.sw * l.hq * wq);
    return;
  }
  for (int64_t ihp = 0; ihp < hp; ++ihp) {
    const PaddedRow row(l, c, ihp);
    const int64_t ih = ihp - l.pt;
    const auto zero = [&](int64_t, int64_t px) { zero_row(out + px * u, u); };
    if (ih < 0 || ih >= l.h) {
      walk_row(row, 0, wp, zero);
      continue;
    }
    walk_row(row, 0, l.pl, zero);
    walk_row(row, l.pl + l.w, wp, zero);
    const float* xrow = x + ih * l.w;
    for (int64_t seg = 0; seg < l.w; seg += kSeg) {
      const int64_t k = l.w - seg < kSeg ? l.w - seg : kSeg;
      stage_rows(xrow + seg, chw, images, k, stage);
      for (int64_t j0 = 0; j0 < k; j0 += kU) {
        const int64_t iwp0 = l.pl + seg + j0, n = k - j0 < kU ? k - j0 : kU;
        if (l.sw == 1 && n == kU) {  // 16 consecutive pixels: transpose straight in place
          transpose16(stage + j0, kStage, out + row.at(iwp0) * kU, kU);
          continue;
        }
        transpose16(stage + j0, kStage, tmp, kU);  // tmp[pixel][image]
        walk_row(row, iwp0, iwp0 + n,
                 [&](int64_t iwp, int64_t px) { copy16(out + px * kU, tmp + (iwp - iwp0) * kU); });
      }
    }
  }
}

inline int64_t channel_blocks(int64_t c) { return (c + kChannelBlock - 1) / kChannelBlock; }

// channels_last: parallel over (group, block of 16 channels).
template <class T>
void conv_pack_input_nhwc(const ConvInputArgs<T>& a) {
  const ConvInputLayout& la = a.layout;
  const int64_t work = la.hq * la.sh * la.wq * la.sw * la.unit, blocks = channel_blocks(la.c);
  parallel_uniform(a.nthreads, la.groups * blocks, work * kChannelBlock,
                   [&](int64_t i0, int64_t i1) {
                     const ConvInputLayout l = la;
                     for (int64_t i = i0; i < i1; ++i) {
                       const int64_t g = i / blocks, c0 = (i - g * blocks) * kChannelBlock;
                       if (l.unit == 1)
                         pack_image_nhwc(l, a.x + g * l.h * l.w * l.c, a.packed + g * l.c * work,
                                         c0, c0 + block_of(l.c, c0));
                       else
                         pack_group_nhwc(l, a.x, a.packed, g, c0);
                       if (a.finite)
                         for (int64_t ch = c0; ch < l.c && ch < c0 + kChannelBlock; ++ch)
                           a.finite[g * l.c + ch] =
                               finite_row(a.packed + (g * l.c + ch) * work, work);
                     }
                   });
}

template <class T>
void conv_pack_input_impl(const ConvInputArgs<T>& a) {
  const ConvInputLayout& la = a.layout;
  if (la.nhwc) {
    conv_pack_input_nhwc(a);
    return;
  }
  const int64_t work = la.hq * la.sh * la.wq * la.sw * la.unit;
  parallel_uniform(a.nthreads, la.groups * la.c, work, [&](int64_t i0, int64_t i1) {
    alignas(64) float tmp[kU * kU];
    alignas(64) float stage[kU * kStage];
    for (int64_t i = i0; i < i1; ++i) {
      pack_channel(a, i, tmp, stage);
      if (a.finite) a.finite[i] = finite_row(a.packed + i * work, work);
    }
  });
}

}  // namespace

template <class T>
void conv_pack_input(const ConvInputArgs<T>& a) {
  conv_pack_input_impl(a);
}

template <class T>
void pack_image(const ConvInputLayout& l, const T* x, T* out, unsigned char* finite) {
  ConvInputLayout one = l;
  one.n = one.groups = one.unit = 1;
  const ConvInputArgs<T> a{one, const_cast<T*>(x), out, 1};  // read only: packing
  alignas(64) float tmp[kU * kU];
  alignas(64) float stage[kU * kStage];
  const int64_t work = one.sh * one.sw * one.hq * one.wq;
  bool all = true;
  if (one.nhwc) pack_image_nhwc(one, x, out, 0, one.c);
  for (int64_t c = 0; c < one.c; ++c) {
    if (!one.nhwc) pack_channel(a, c, tmp, stage);
    if (finite) all = finite_row(out + c * work, work) && all;
  }
  if (finite) *finite = all ? 1 : 0;
}

namespace {

template <class T>
void conv_unpack_grad_input_nhwc(const ConvInputArgs<T>& a) {
  const ConvInputLayout& la = a.layout;
  const int64_t blocks = channel_blocks(la.c);
  parallel_uniform(a.nthreads, la.groups * blocks, la.h * la.w * la.unit * kChannelBlock,
                   [&](int64_t i0, int64_t i1) {
                     const ConvInputLayout l = la;
                     for (int64_t i = i0; i < i1; ++i) {
                       const int64_t g = i / blocks, c0 = (i - g * blocks) * kChannelBlock;
                       if (l.unit == 1)
                         unpack_image_nhwc(l, a.packed + g * group_pixels(l),
                                           a.x + g * l.h * l.w * l.c, c0);
                       else
                         unpack_group_nhwc(l, a.packed, a.x, g, c0);
                     }
                   });
}

template <class T>
void conv_unpack_grad_input_impl(const ConvInputArgs<T>& a) {
  const ConvInputLayout& la = a.layout;
  if (la.nhwc) {
    conv_unpack_grad_input_nhwc(a);
    return;
  }
  parallel_uniform(
      a.nthreads, la.groups * la.c, la.h * la.w * la.unit, [&](int64_t i0, int64_t i1) {
        const ConvInputLayout l = la;  // locals, as in pack
        const int64_t hw = l.h * l.w, chw = l.c * hw;
        const int64_t u = l.unit, pt = l.pt, pl = l.pl, wq = l.wq;
        alignas(64) float tmp[kU * kU];
        alignas(64) float stage[kU * kStage];
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t g = i / l.c, c = i - g * l.c;
          const float* in = a.packed + g * group_pixels(l) * u;
          const int64_t n0 = g * u;
          const int64_t images = l.n - n0 < u ? l.n - n0 : u;
          float* x = a.x + n0 * chw + c * hw;
          if (u == kU && l.sh == 1 && l.sw == 1) {  // flat segments, as in pack
            const float* plane = in + c * l.hq * l.wq * kU;
            for (int64_t seg = 0; seg < hw; seg += kSeg) {
              const int64_t k = hw - seg < kSeg ? hw - seg : kSeg;
              int64_t ih = seg / l.w, iw = seg - ih * l.w;
              for (int64_t j0 = 0; j0 < k; j0 += kU) {
                const int64_t n = k - j0 < kU ? k - j0 : kU;
                for (int64_t j = 0; j < n; ++j) {  // tmp[pixel][image]
                  copy16(tmp + j * kU, plane + ((ih + pt) * wq + iw + pl) * kU);
                  if (++iw == l.w) {
                    iw = 0;
                    ++ih;
                  }
                }
                transpose16(tmp, kU, stage + j0, kStage);
              }
              unstage_rows(stage, images, k, nullptr, x + seg, chw);
            }
            continue;
          }
          if (u == 1) {
            const float* planes = in + c * l.sh * l.sw * l.hq * wq;
            if (l.sh == 1 && l.sw == 1) {
              for (int64_t ih = 0; ih < l.h; ++ih)
                copy_row(planes + (ih + pt) * wq + pl, x + ih * l.w, l.w);
            } else {
              merge_phases(planes, l, x);
            }
            continue;
          }
          for (int64_t ih = 0; ih < l.h; ++ih) {
            const PaddedRow row(l, c, ih + l.pt);
            float* xrow = x + ih * l.w;
            for (int64_t seg = 0; seg < l.w; seg += kSeg) {
              const int64_t k = l.w - seg < kSeg ? l.w - seg : kSeg;
              for (int64_t j0 = 0; j0 < k; j0 += kU) {
                const int64_t iwp0 = l.pl + seg + j0, n = k - j0 < kU ? k - j0 : kU;
                if (l.sw == 1 && n == kU) {
                  transpose16(in + row.at(iwp0) * kU, kU, stage + j0, kStage);
                  continue;
                }
                walk_row(row, iwp0, iwp0 + n, [&](int64_t iwp, int64_t px) {  // tmp[pixel][image]
                  copy16(tmp + (iwp - iwp0) * kU, in + px * kU);
                });
                transpose16(tmp, kU, stage + j0, kStage);
              }
              unstage_rows(stage, images, k, nullptr, xrow + seg, chw);
            }
          }
        }
      });
}

}  // namespace

template <class T>
void conv_unpack_grad_input(const ConvInputArgs<T>& a) {
  conv_unpack_grad_input_impl(a);
}

template <class T>
void pack_grid_image(const ConvOutputLayout& o, const T* y, T* out, unsigned char* finite) {
  const ConvOutputLayout l = o;  // locals: stores may alias anything
  bool all = true;
  if (l.nhwc) grid_image_nhwc(l, y, out, 0, l.c, nullptr);
  for (int64_t c = 0; c < l.c; ++c) {
    float* grid = out + c * l.per_channel;
    if (!l.nhwc) {
      grid_zeros(l, grid, 1);
      grid_rows(l, y + c * l.ho * l.wo, grid, nullptr);
    }
    // Read back while in cache: the zeros between the rows are finite, so this is y's check.
    if (finite) all = finite_row(grid, l.per_channel) && all;
  }
  if (finite) *finite = all ? 1 : 0;
}

// A contiguous plane is summed in pieces of this many floats (ChannelSum's rows).
constexpr int64_t kSumRow = 32 * Vec::W;

// Output side: channel c of group g holds `per_channel` pixels; output pixel (oh, ow) sits at
// offset + oh * wq + ow; every other pixel of the channel is zero (pack) or ignored (unpack).
namespace {

template <class T>
void conv_pack_grad_output_nhwc(const ConvOutputArgs<T>& a) {
  const ConvOutputLayout& la = a.layout;
  const int64_t blocks = channel_blocks(la.c);
  parallel_uniform(a.nthreads, la.groups * blocks, la.per_channel * la.unit * kChannelBlock,
                   [&](int64_t i0, int64_t i1) {
                     const ConvOutputLayout l = la;
                     for (int64_t i = i0; i < i1; ++i) {
                       const int64_t g = i / blocks, c0 = (i - g * blocks) * kChannelBlock;
                       double* sums = a.channel_sums ? a.channel_sums + g * l.c + c0 : nullptr;
                       if (l.unit == 1)
                         grid_image_nhwc(l, a.y + g * l.ho * l.wo * l.c,
                                         a.grid ? a.grid + g * l.c * l.per_channel : nullptr, c0,
                                         c0 + block_of(l.c, c0), sums);
                       else
                         grid_group_nhwc(l, a.y, a.grid, g, c0, sums);
                     }
                   });
}

template <class T>
void conv_pack_grad_output_impl(const ConvOutputArgs<T>& a) {
  const ConvOutputLayout& la = a.layout;
  if (la.nhwc) {
    conv_pack_grad_output_nhwc(a);
    return;
  }
  parallel_uniform(a.nthreads, la.groups * la.c, la.per_channel * la.unit,
                   [&](int64_t i0, int64_t i1) {
                     const ConvOutputLayout l = la;  // locals, as in pack_input
                     const int64_t hw = l.ho * l.wo, chw = l.c * hw, offset = l.offset, wq = l.wq;
                     double* const channel_sums = a.channel_sums;
                     alignas(64) float tmp[kU * kU];
                     alignas(64) float stage[kU * kStage];
                     for (int64_t i = i0; i < i1; ++i) {
                       const int64_t g = i / l.c, c = i - g * l.c;
                       ChannelSum sum;
                       if (a.grid == nullptr) {  // sums only (unit 1)
                         const float* y = a.y + g * chw + c * hw;
                         for (int64_t k = 0; k < hw; k += kSumRow)
                           sum.add_row(y + k, hw - k < kSumRow ? hw - k : kSumRow);
                         if (channel_sums) channel_sums[i] = sum.total();
                         continue;
                       }
                       float* out = a.grid + (g * l.c + c) * l.per_channel * l.unit;
                       grid_zeros(l, out, l.unit);  // zeros everywhere but the output pixels
                       if (l.unit == 1) {
                         grid_rows(l, a.y + g * chw + c * hw, out, channel_sums ? &sum : nullptr);
                         if (channel_sums) channel_sums[i] = sum.total();
                         continue;
                       }
                       const int64_t n0 = g * kU;
                       const int64_t images = l.n - n0 < kU ? l.n - n0 : kU;
                       const float* y = a.y + n0 * chw + c * hw;
                       // The NCHW plane is contiguous: take it in flat segments (cheap for short
                       // rows too) and place each pixel vector at its grid position.
                       for (int64_t seg = 0; seg < hw; seg += kSeg) {
                         const int64_t k = hw - seg < kSeg ? hw - seg : kSeg;
                         stage_rows(y + seg, chw, images, k, stage);
                         if (channel_sums)
                           for (int64_t m = 0; m < images; ++m) sum.add_row(stage + m * kStage, k);
                         int64_t oh = seg / l.wo, ow = seg - oh * l.wo;
                         for (int64_t j0 = 0; j0 < k; j0 += kU) {
                           transpose16(stage + j0, kStage, tmp, kU);  // tmp[pixel][image]
                           const int64_t n = k - j0 < kU ? k - j0 : kU;
                           for (int64_t j = 0; j < n; ++j) {
                             copy16(out + (offset + oh * wq + ow) * kU, tmp + j * kU);
                             if (++ow == l.wo) {
                               ow = 0;
                               ++oh;
                             }
                           }
                         }
                       }
                       if (channel_sums) channel_sums[i] = sum.total();
                     }
                   });
}

}  // namespace

template <class T>
void conv_pack_grad_output(const ConvOutputArgs<T>& a) {
  conv_pack_grad_output_impl(a);
}

template void conv_pack_input<f32>(const ConvInputArgs<f32>&);
template void conv_unpack_grad_input<f32>(const ConvInputArgs<f32>&);
template void conv_pack_grad_output<f32>(const ConvOutputArgs<f32>&);
template void pack_image<f32>(const ConvInputLayout&, const f32*, f32*, unsigned char*);
template void pack_grid_image<f32>(const ConvOutputLayout&, const f32*, f32*, unsigned char*);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
