// Writing an offsets product straight into NCHW planes (PlanesOut, offsets_args.h): each row
// is computed chunk by chunk into a buffer, whose grid points then land at their plane
// positions (bias added, statistics summed as they are stored); with 16-image lanes through
// a 16 x 16 transpose, each lane into its own image's plane.
#pragma once

#include <cstdint>

#include "kernels/chunk_stats.h"
#include "kernels/offsets_args.h"
#include "kernels/row_copy.h"
#include "kernels/spans.h"
#include "kernels/vec.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// Calls f(k, row, col, n) for each run of grid points [p0, p0 + points) (p0 counted from
// t_base) that lands inside the plane_h x plane_w window at (row0, col0): points k .. k + n
// go to plane row `row`, columns col .. col + n. Runs end at grid row ends and at the window.
template <class T, class F>
inline void for_each_plane_run(const PlanesOut<T>& o, int64_t p0, int64_t points, const F& f) {
  for (int64_t k = 0; k < points;) {
    const int64_t p = p0 + k + o.t_base, gr = p / o.grid_w, gc = p - gr * o.grid_w;
    const int64_t run = points - k < o.grid_w - gc ? points - k : o.grid_w - gc;
    const int64_t row = gr - o.row0;
    if (row >= 0 && row < o.plane_h) {
      const int64_t lo = gc > o.col0 ? gc : o.col0;
      const int64_t hi = gc + run < o.col0 + o.plane_w ? gc + run : o.col0 + o.plane_w;
      if (lo < hi) f(k + (lo - gc), row, lo - o.col0, hi - lo);
    }
    k += run;
  }
}

// d[0:n] = s[0:n] (+ *bias), and, with cs, the stored values summed into cs.
inline void copy_run(const float* s, float* d, int64_t n, const float* bias, ChunkStats* cs) {
  if (cs == nullptr) {
    if (bias)
      copy_row_add(s, d, n, *bias);
    else
      copy_row(s, d, n);
    return;
  }
  constexpr int W = Vec::W;
  const Vec b = Vec::bcast(bias ? *bias : 0.0f);
  const auto value = [&](Vec v) { return bias ? add(v, b) : v; };
  int64_t k = 0;
  for (; k + 2 * W <= n; k += 2 * W) {
    const Vec v0 = value(Vec::load(s + k)), v1 = value(Vec::load(s + k + W));
    Vec::store(d + k, v0);
    Vec::store(d + k + W, v1);
    cs->add2(v0, v1);
  }
  if (k + W <= n) {
    const Vec v = value(Vec::load(s + k));
    Vec::store(d + k, v);
    cs->add1(v);
    k += W;
  }
  if (k < n) {
    const int m = static_cast<int>(n - k);
    const Vec v = value(Vec::load_n(s + k, m));
    Vec::store_n(d + k, v, m);
    // Only the stored lanes count: load_n zeroes the others, but a bias would fill them.
    cs->add1(bias ? Vec::load_n(d + k, m) : v);
  }
}

// Copies grid positions [t0, t1) of one row, computed into buf, to their plane positions
// (and sums what it wrote into st, if given).
template <class T>
inline void scatter_to_plane(const PlanesOut<T>& o, const float* buf, int64_t t0, int64_t t1,
                             float* plane, const float* bias, double* st) {
  ChunkStats cs;
  for_each_plane_run(o, t0, t1 - t0, [&](int64_t k, int64_t row, int64_t col, int64_t n) {
    copy_run(buf + k, plane + row * o.plane_w + col, n, bias, st ? &cs : nullptr);
  });
  if (st) cs.flush(st);
}

// The 16-image form: buf holds grid points [t0 / 16, t1 / 16) of one row, 16 images each.
// Transposed to image-major, each image's runs land in its own NCHW plane.
static_assert(kGridChunk == 256, "one 16-image chunk is a 16 x 16 transpose");
template <class T>
inline void scatter_to_planes16(const PlanesOut<T>& o, const float* buf, int64_t t0, int64_t t1,
                                float* plane0, int64_t images, const float* bias, double* st) {
  alignas(64) float tmp[16 * 16];  // tmp[m * 16 + k]: image m, grid point k
  transpose16(buf, 16, tmp, 16);
  ChunkStats cs;
  const auto copy = [&](int64_t k, int64_t row, int64_t col, int64_t n) {
    for (int64_t m = 0; m < images; ++m) {
      copy_run(tmp + m * 16 + k, plane0 + m * o.c_image_stride + row * o.plane_w + col, n, bias,
               st ? &cs : nullptr);
    }
  };
  for_each_plane_run(o, t0 / 16, (t1 - t0) / 16, copy);
  if (st) cs.flush(st);
}

// channels_last (o.px > 1): one pixel's values of nr rows (v, one per row) stored at d, bias
// added, and summed per row into ssum / ssq (16 floats each) when given.
inline void store_pixel(const float* v, float* d, int64_t nr, const float* bias, float* ssum,
                        float* ssq) {
  constexpr int64_t W = Vec::W;
  for (int64_t j = 0; j < nr; j += W) {
    const int m = nr - j < W ? static_cast<int>(nr - j) : static_cast<int>(W);
    Vec x = Vec::load_n(v + j, m);
    if (bias) x = add(x, Vec::load_n(bias + j, m));
    Vec::store_n(d + j, x, m);
    if (ssum) {
      Vec::store(ssum + j, add(Vec::load(ssum + j), x));
      Vec::store(ssq + j, fma(x, x, Vec::load(ssq + j)));
    }
  }
}

// channels_last: rows [rb, rb + nr) of grid positions [t0, t1), computed into bufs (row i at
// bufs + i * kGridChunk, rows past nr zero), into their pixels through 16 x 16 transposes
// (grid point x row; with 16-image lanes, image x row per grid point). c_rb: row rb's first
// element in the image (or the group's first image); st: row rb's statistics, or nullptr.
template <class T>
inline void rows_to_pixels(const PlanesOut<T>& o, const float* bufs, int64_t nr, int64_t t0,
                           int64_t t1, float* c_rb, int64_t unit, int64_t images,
                           const float* bias, double* st) {
  alignas(64) float tmp[16 * 16];
  alignas(64) float ssum[16] = {};
  alignas(64) float ssq[16] = {};
  float* const ss = st ? ssum : nullptr;
  float* const sq = st ? ssq : nullptr;
  if (unit == 1) {
    int64_t block = -1;  // the 16 grid points tmp holds, transposed (tmp[point][row])
    for_each_plane_run(o, t0, t1 - t0, [&](int64_t k, int64_t row, int64_t col, int64_t n) {
      float* d = c_rb + (row * o.plane_w + col) * o.px;
      for (int64_t i = k; i < k + n; ++i, d += o.px) {
        if (i / 16 != block) {
          block = i / 16;
          transpose16(bufs + block * 16, kGridChunk, tmp, 16);
        }
        store_pixel(tmp + (i % 16) * 16, d, nr, bias, ss, sq);
      }
    });
  } else {
    for_each_plane_run(o, t0 / 16, (t1 - t0) / 16,
                       [&](int64_t k, int64_t row, int64_t col, int64_t n) {
                         const int64_t at = (row * o.plane_w + col) * o.px;
                         for (int64_t i = 0; i < n; ++i) {
                           transpose16(bufs + (k + i) * 16, kGridChunk, tmp, 16);  // [image][row]
                           for (int64_t m = 0; m < images; ++m)
                             store_pixel(tmp + m * 16, c_rb + m * o.c_image_stride + at + i * o.px,
                                         nr, bias, ss, sq);
                         }
                       });
  }
  if (st) {
    for (int64_t i = 0; i < nr; ++i) {
      st[2 * i] += ssum[i];
      st[2 * i + 1] += ssq[i];
    }
  }
}

// rows_into_planes for channels_last planes: 16 rows of a chunk computed, then stored
// together, so that every pixel gets whole vectors of channels.
template <class T, class Product>
void rows_into_pixels(Spans spans, const PlanesOut<T>& o, int64_t unit, int64_t batch, int64_t n,
                      int64_t r0, int64_t r1, double* stats, const Product& product) {
  alignas(64) float bufs[16 * kGridChunk];
  const bool lanes = unit == 16;
  float* const first = o.c + n * (lanes ? 16 : 1) * o.c_image_stride;
  const int64_t images = lanes ? (batch - n * 16 < 16 ? batch - n * 16 : 16) : 1;
  for_each_span(spans, [&](int64_t s0, int64_t s1) {
    for (int64_t c0 = s0; c0 < s1; c0 += kGridChunk) {
      const int64_t c1 = c0 + kGridChunk < s1 ? c0 + kGridChunk : s1;
      for (int64_t rb = r0; rb < r1; rb += 16) {
        const int64_t nr = r1 - rb < 16 ? r1 - rb : 16;
        for (int64_t i = 0; i < nr; ++i) product(rb + i, c0, c1, bufs + i * kGridChunk);
        for (int64_t i = nr; i < 16; ++i) zero_row(bufs + i * kGridChunk, kGridChunk);
        rows_to_pixels(o, bufs, nr, c0, c1, first + rb * o.ldc, unit, images,
                       o.bias ? o.bias + rb : nullptr, stats ? stats + 2 * rb : nullptr);
      }
    }
  });
}

// Rows [r0, r1) of image n into its planes (unit 16: of group n, `batch` images in all),
// chunk by chunk: product(r, c0, c1, buf) computes positions [c0, c1) of row r into buf,
// which then land in their planes, bias added and statistics summed (stats: the image's,
// or nullptr) as they are stored. unit (1 or 16) is a run-time value on purpose: one body
// for both forms keeps the code of their chunk loop (and of the product inlined into it) the
// same in every form.
template <class T, class Product>
void rows_into_planes(Spans spans, const PlanesOut<T>& o, int64_t unit, int64_t batch, int64_t n,
                      int64_t r0, int64_t r1, double* stats, const Product& product) {
  if (o.px != 1) {
    rows_into_pixels(spans, o, unit, batch, n, r0, r1, stats, product);
    return;
  }
  alignas(64) float buf[kGridChunk];
  float* c = o.c + n * o.c_image_stride;
  const bool lanes = unit == 16;
  float* planes = lanes ? o.c + n * 16 * o.c_image_stride : c;
  const int64_t images = lanes ? (batch - n * 16 < 16 ? batch - n * 16 : 16) : 1;
  for_each_span(spans, [&](int64_t s0, int64_t s1) {
    for (int64_t c0 = s0; c0 < s1; c0 += kGridChunk) {
      const int64_t c1 = c0 + kGridChunk < s1 ? c0 + kGridChunk : s1;
      for (int64_t r = r0; r < r1; ++r) {
        product(r, c0, c1, buf);
        const float* bias = o.bias ? o.bias + r : nullptr;
        double* const st = stats ? stats + 2 * r : nullptr;
        if (lanes)
          scatter_to_planes16(o, buf, c0, c1, planes + r * o.ldc, images, bias, st);
        else
          scatter_to_plane(o, buf, c0, c1, c + r * o.ldc, bias, st);
      }
    }
  });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
