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

// Rows [r0, r1) of image n into its planes (unit 16: of group n, `batch` images in all),
// chunk by chunk: product(r, c0, c1, buf) computes positions [c0, c1) of row r into buf,
// which then land in their planes, bias added and statistics summed (stats: the image's,
// or nullptr) as they are stored. unit (1 or 16) is a run-time value on purpose: one body
// for both forms keeps the code of their chunk loop (and of the product inlined into it) the
// same in every form.
template <class T, class Product>
void rows_into_planes(Spans spans, const PlanesOut<T>& o, int64_t unit, int64_t batch, int64_t n,
                      int64_t r0, int64_t r1, double* stats, const Product& product) {
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
