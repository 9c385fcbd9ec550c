// The pieces the layout changes share (conv_layout.cpp for NCHW tensors,
// conv_layout_nhwc.cpp for channels_last ones): where a padded pixel lies in the phase
// planes, the staging of 16-row tiles, channel sums, and the output grid's rows and zeros.
#pragma once

#include <cstdint>

#include "kernels/conv_layout_args.h"
#include "kernels/row_copy.h"
#include "kernels/vec.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace layout_parts {

constexpr int64_t kU = 16;  // the only unit besides 1

inline int64_t group_pixels(const ConvInputLayout& l) { return l.c * l.sh * l.sw * l.hq * l.wq; }

// The pixels of one padded input row (channel c, padded row ihp) lie in sw phase-plane rows;
// padded column iwp is at pixel (iwp % sw) * plane + iwp / sw from `base`. Column walks keep
// (phase, column) counters instead of dividing per pixel.
struct PaddedRow {
  int64_t base;   // pixel offset of (phase 0, column 0) within the group block
  int64_t plane;  // pixels per phase plane
  int64_t sw;
  PaddedRow(const ConvInputLayout& l, int64_t c, int64_t ihp)
      : base(((c * l.sh + ihp % l.sh) * l.sw) * l.hq * l.wq + (ihp / l.sh) * l.wq),
        plane(l.hq * l.wq),
        sw(l.sw) {}
  int64_t at(int64_t iwp) const { return base + (iwp % sw) * plane + iwp / sw; }
};

// Calls f(iwp, pixel) for iwp in [from, to) of a padded row, without per-pixel division.
template <class F>
inline void walk_row(const PaddedRow& r, int64_t from, int64_t to, const F& f) {
  if (from >= to) return;
  int64_t pw = from % r.sw, qw = from / r.sw;
  for (int64_t iwp = from; iwp < to; ++iwp) {
    f(iwp, r.base + pw * r.plane + qw);
    if (++pw == r.sw) {
      pw = 0;
      ++qw;
    }
  }
}

// Unit 1, strided. Phase (ph, pw) of a channel is a plane of hq x wq pixels: its row qh is
// padded row qh * sh + ph, its column q padded column q * sw + pw. Real pixels fill the
// columns [q0, q1) of the rows that hold an input row; everything else is zero.
struct PhaseColumns {
  int64_t q0, q1;
  PhaseColumns(const ConvInputLayout& l, int64_t pw) {
    const int64_t a = l.pl - pw, b = l.pl + l.w - pw;  // real iff a <= q * sw < b
    q0 = a > 0 ? (a + l.sw - 1) / l.sw : 0;
    q1 = b > 0 ? (b + l.sw - 1) / l.sw : 0;
    if (q1 > l.wq) q1 = l.wq;
    if (q0 > q1) q0 = q1;
  }
};

// unit = 16 tiles are staged through a row buffer: 16 image rows of up to kSeg floats each,
// kStage apart. Transposing straight between 16 NCHW rows one channel*plane apart (often a
// multiple of 4 KiB) lands every row in the same L1 set and thrashes it; the staging copies
// are sequential and the transposes then run on a compact, conflict-free block.
constexpr int64_t kSeg = 256;
constexpr int64_t kStage = kSeg + 16;

// One pixel vector (16 floats). Float-typed on purpose: a memcpy counts as a char access that
// may alias anything, so the compiler reloaded every layout field after each copy.
inline void copy16(float* d, const float* s) {
  for (int64_t i = 0; i < kU; i += Vec::W) Vec::store(d + i, Vec::load(s + i));
}

// stage[m][0:k] = rows[m * ld + 0:k] for m < images, zeros for the other rows.
inline void stage_rows(const float* rows, int64_t ld, int64_t images, int64_t k, float* stage) {
  for (int64_t m = 0; m < kU; ++m) {
    if (m < images)
      copy_row(rows + m * ld, stage + m * kStage, k);
    else
      zero_row(stage + m * kStage, kSeg);
  }
}

// rows[m * ld + 0:k] = stage[m][0:k] (+ *bias) for m < images.
inline void unstage_rows(const float* stage, int64_t images, int64_t k, const float* bias,
                         float* rows, int64_t ld) {
  for (int64_t m = 0; m < images; ++m) {
    if (bias == nullptr)
      copy_row(stage + m * kStage, rows + m * ld, k);
    else
      copy_row_add(stage + m * kStage, rows + m * ld, k, *bias);
  }
}

// A channel's sum (the bias gradient) over short rows: float partial sums in the lanes of
// two vectors, moved into a double every kFlush floats, so no lane adds up more than 16
// floats (a tighter error bound than a float32 cascade sum) and short rows don't pay a
// horizontal reduction each.
class ChannelSum {
 public:
  void add_row(const float* p, int64_t n) {
    constexpr int64_t W = Vec::W;
    int64_t j = 0;
    for (; j + 2 * W <= n; j += 2 * W) {
      a_ = add(a_, Vec::load(p + j));
      b_ = add(b_, Vec::load(p + j + W));
    }
    for (; j < n; j += W) a_ = add(a_, Vec::load_n(p + j, n - j < W ? static_cast<int>(n - j) : W));
    if ((pending_ += n) >= kFlush) flush();
  }
  double total() {
    flush();
    return sum_;
  }

 private:
  static constexpr int64_t kFlush = 32 * Vec::W;
  void flush() {
    alignas(64) float lanes[2 * Vec::W];
    Vec::store(lanes, a_);
    Vec::store(lanes + Vec::W, b_);
    for (int k = 0; k < 2 * Vec::W; ++k) sum_ += lanes[k];
    a_ = b_ = Vec::zero();
    pending_ = 0;
  }
  Vec a_ = Vec::zero(), b_ = Vec::zero();
  int64_t pending_ = 0;
  double sum_ = 0.0;
};

// The output rows of one channel (unit 1) into its grid (out: the channel's first pixel),
// summed into *sum if given. The zeros between them are written by the caller.
inline void grid_rows(const ConvOutputLayout& l, const float* y, float* out, ChannelSum* sum) {
  for (int64_t oh = 0; oh < l.ho; ++oh) {
    copy_row(y + oh * l.wo, out + l.offset + oh * l.wq, l.wo);
    if (sum) sum->add_row(y + oh * l.wo, l.wo);
  }
}

// The zeros of one channel's grid: before, between and after the output rows.
inline void grid_zeros(const ConvOutputLayout& l, float* out, int64_t unit) {
  if (l.ho <= 0 || l.wo <= 0) {  // no output pixels: all zeros
    zero_row(out, l.per_channel * unit);
    return;
  }
  zero_row(out, l.offset * unit);
  for (int64_t oh = 0; oh + 1 < l.ho; ++oh)
    zero_row(out + (l.offset + oh * l.wq + l.wo) * unit, (l.wq - l.wo) * unit);
  const int64_t end = l.offset + (l.ho - 1) * l.wq + l.wo;
  zero_row(out + end * unit, (l.per_channel - end) * unit);
}

// Blocks of channels the channels_last layout changes move at a time (one transpose wide).
constexpr int64_t kChannelBlock = 16;

// The channels of the block at c0, of c.
inline int64_t block_of(int64_t c, int64_t c0) {
  return c - c0 < kChannelBlock ? c - c0 : kChannelBlock;
}

// dst[j * ldd + i] = src[i * lds + j] for j < cols and i < lanes, src rows i >= rows reading
// as zero (rows <= lanes <= 16, cols <= 16): a transpose16 for full blocks, through a
// zero-padded tile for partial ones (nothing outside the rows x cols block is read, nothing
// outside the cols x lanes block written).
inline void transpose_part(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst,
                           int64_t ldd, int64_t lanes) {
  if (rows == 16 && cols == 16 && lanes == 16) {
    transpose16(src, lds, dst, ldd);
    return;
  }
  alignas(64) float t[16 * 16];
  alignas(64) float u[16 * 16];
  for (int64_t i = 0; i < 16; ++i) {
    if (i < rows) {
      copy_row(src + i * lds, t + i * 16, cols);
      zero_row(t + i * 16 + cols, 16 - cols);
    } else {
      zero_row(t + i * 16, 16);
    }
  }
  transpose16(t, 16, u, 16);
  for (int64_t j = 0; j < cols; ++j) copy_row(u + j * 16, dst + j * ldd, lanes);
}

// planes[cc * ld + p] (cb <= 16 channel rows) -> x[p * c + cc] for p < pixels: channel rows
// into channels_last pixels, 16 pixels a transpose.
inline void rows_to_pixels(const float* planes, int64_t ld, int64_t cb, int64_t pixels, float* x,
                           int64_t c) {
  for (int64_t p0 = 0; p0 < pixels; p0 += 16) {
    const int64_t n = pixels - p0 < 16 ? pixels - p0 : 16;
    transpose_part(planes + p0, ld, cb, n, x + p0 * c, c, cb);
  }
}

// x[p * c + cc] -> planes[cc * ld + p] for p < pixels, cc < cb: the way back, each channel
// row written up to the next multiple of 16 pixels (ld >= that), with what the positions
// past `pixels` hold undefined. x's pixels up to `readable` may be read: whole 16 x 16
// blocks are transposed straight from x where they lie inside (a row's last block reads
// into the next row), through a zero-padded tile only at the end.
inline void pixels_to_rows(const float* x, int64_t c, int64_t cb, int64_t pixels, float* planes,
                           int64_t ld, int64_t readable) {
  for (int64_t p0 = 0; p0 < pixels; p0 += 16) {
    const int64_t n = pixels - p0 < 16 ? pixels - p0 : 16;
    if (cb == 16 && p0 + 16 <= readable)
      transpose16(x + p0 * c, c, planes + p0, ld);
    else
      transpose_part(x + p0 * c, c, n, cb, planes + p0, ld, 16);
  }
}

}  // namespace layout_parts
}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
