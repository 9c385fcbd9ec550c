// f32_spmm_csr_offsets: per image, C[r, 0:len] = sum_j val[j] * B[off[j] + 0:len].
// A convolution's forward pass (rows = output channels, off = where each nonzero's shifted
// input plane starts) and its input gradient (rows = input channel phase planes, off into
// the padded output gradient), vectorized along the flattened spatial grid.
// Threads own disjoint (image, row) pairs, balanced by nonzero count; or whole images when
// the kernel packs B itself (pack / pack_grid); or (image, channel) pairs of the phase merge.
#include "kernels/conv_pack.h"
#include "kernels/grads_tiles.h"
#include "kernels/offsets_image.h"
#include "kernels/kernels.h"
#include "kernels/phase_merge.h"
#include "kernels/row_copy.h"
#include "kernels/spmm_tiles.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {
// Calls f(k, row, col, n) for each run of grid points [p0, p0 + points) (p0 counted from
// t_base) that lands inside the plane_h x plane_w window at (row0, col0): points k .. k + n
// go to plane row `row`, columns col .. col + n. Runs end at grid row ends and at the window.
template <class F>
inline void for_each_plane_run(const SpmmOffsetsArgs& a, int64_t p0, int64_t points, const F& f) {
  for (int64_t k = 0; k < points;) {
    const int64_t p = p0 + k + a.t_base, gr = p / a.grid_w, gc = p - gr * a.grid_w;
    const int64_t run = points - k < a.grid_w - gc ? points - k : a.grid_w - gc;
    const int64_t row = gr - a.row0;
    if (row >= 0 && row < a.plane_h) {
      const int64_t lo = gc > a.col0 ? gc : a.col0;
      const int64_t hi = gc + run < a.col0 + a.plane_w ? gc + run : a.col0 + a.plane_w;
      if (lo < hi) f(k + (lo - gc), row, lo - a.col0, hi - lo);
    }
    k += run;
  }
}

// Output statistics (SpmmOffsetsArgs::stats): the values one chunk writes to a row, summed
// in float vectors as they are stored (two accumulator pairs, so consecutive vectors do not
// wait on each other's adds), then added to the row's double sums.
struct ChunkStats {
  Vec s0 = Vec::zero(), q0 = Vec::zero(), s1 = Vec::zero(), q1 = Vec::zero();
  void add2(Vec a, Vec b) {
    s0 = add(s0, a);
    q0 = fma(a, a, q0);
    s1 = add(s1, b);
    q1 = fma(b, b, q1);
  }
  void add1(Vec a) {  // alternates pairs: short runs (one vector per image) chain less
    const Vec s = add(s0, a), q = fma(a, a, q0);
    s0 = s1;
    q0 = q1;
    s1 = s;
    q1 = q;
  }
  void add_run(const float* d, int64_t n) {  // sums only
    constexpr int W = Vec::W;
    int64_t k = 0;
    for (; k + 2 * W <= n; k += 2 * W) add2(Vec::load(d + k), Vec::load(d + k + W));
    for (; k < n; k += W) add1(Vec::load_n(d + k, n - k < W ? static_cast<int>(n - k) : W));
  }
  void flush(double* st) const {
    alignas(64) float out[4];
    reduce4(add(s0, s1), add(q0, q1), Vec::zero(), Vec::zero(), out);
    st[0] += out[0];
    st[1] += out[1];
  }
};

// d[0:n] = s[0:n] (+ *bias), and, with cs, the stored values summed into cs.
inline void copy_run(const float* s, float* d, int64_t n, const float* bias, ChunkStats* cs) {
  if (cs == nullptr) {
    if (bias) copy_row_add(s, d, n, *bias); else copy_row(s, d, n);
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
inline void scatter_to_plane(const SpmmOffsetsArgs& a, const float* buf, int64_t t0, int64_t t1,
                             float* plane, const float* bias, double* st) {
  ChunkStats cs;
  for_each_plane_run(a, t0, t1 - t0, [&](int64_t k, int64_t row, int64_t col, int64_t n) {
    copy_run(buf + k, plane + row * a.plane_w + col, n, bias, st ? &cs : nullptr);
  });
  if (st) cs.flush(st);
}

// The unit-16 form: buf holds grid points [t0 / 16, t1 / 16) of one row, 16 images each.
// Transposed to image-major, each image's runs land in its own NCHW plane.
static_assert(kGridChunk == 256, "one unit-16 chunk is a 16 x 16 transpose");
inline void scatter_to_planes16(const SpmmOffsetsArgs& a, const float* buf, int64_t t0,
                                int64_t t1, float* plane0, int64_t images, const float* bias,
                                double* st) {
  alignas(64) float tmp[16 * 16];  // tmp[m * 16 + k]: image m, grid point k
  transpose16(buf, 16, tmp, 16);
  ChunkStats cs;
  const auto copy = [&](int64_t k, int64_t row, int64_t col, int64_t n) {
    for (int64_t m = 0; m < images; ++m) {
      copy_run(tmp + m * 16 + k, plane0 + m * a.c_image_stride + row * a.plane_w + col, n, bias,
               st ? &cs : nullptr);
    }
  };
  for_each_plane_run(a, t0 / 16, (t1 - t0) / 16, copy);
  if (st) cs.flush(st);
}

// The merge form (see SpmmOffsetsArgs::merge): channel ch of image n (b = B_n), its phase
// planes computed into `planes` (phases x plane, zero outside [t_base, t_base + len)) and
// interleaved straight into its NCHW plane.
void merge_channel(const SpmmOffsetsArgs& a, const float* values, int64_t n, int64_t ch,
                   const float* b, float* planes) {
  const ConvInputLayout& l = *a.merge;
  const int64_t phases = l.sh * l.sw, plane = l.hq * l.wq;
  float* const buf = planes + a.t_base;
  const auto src = [&](int64_t j) { return b + a.off[j]; };
  for_each_span(a.len, a.seg_len, a.seg_stride, [&](int64_t t0, int64_t t1) {
    for (int64_t p = 0; p < phases; ++p) {
      const int64_t r = ch * phases + p;
      spmm_span(a.ptr[r], a.ptr[r + 1], src, values, t0, t1, buf + p * plane);
    }
  });
  merge_phases(planes, l, a.c + n * a.c_image_stride + ch * l.h * l.w);
}

// The merge form over B as given: threads own (image, channel) pairs.
void spmm_merge_phases(const SpmmOffsetsArgs& a, const float* values) {
  const ConvInputLayout& l = *a.merge;
  const int64_t phases = l.sh * l.sw;
  const int64_t base = a.ptr[0], per_image = a.ptr[a.rows] - base + a.rows;
  // Zeroed once: the kernel only ever writes [t_base, t_base + len) of each plane.
  ThreadScratch planes(a.nthreads, phases * l.hq * l.wq);
  parallel_balanced(
      a.nthreads, l.c * a.images, phases * a.len,
      [&](int64_t i) {
        const int64_t n = i / l.c, ch = i - n * l.c;
        return n * per_image + a.ptr[ch * phases] - base + ch * phases;
      },
      [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t n = i / l.c, ch = i - n * l.c;
          merge_channel(a, values, n, ch, a.b + n * a.b_image_stride, planes.mine());
        }
      });
}

// The grid form (a.grid_w > 0) of rows [r0, r1) of image n, chunk by chunk:
// product(r, c0, c1, buf) computes positions [c0, c1) of row r into buf, which then land in
// their planes (NCHW, or with unit 16 each lane in its image's plane), bias added and
// statistics summed (stats: the image's, or nullptr) as they are stored.
template <class Product>
void grid_rows(const SpmmOffsetsArgs& a, int64_t n, int64_t r0, int64_t r1, double* stats,
               const Product& product) {
  alignas(64) float buf[kGridChunk];
  float* c = a.c + n * a.c_image_stride;
  const bool lanes = a.unit == 16;
  float* planes = lanes ? a.c + n * 16 * a.c_image_stride : c;
  const int64_t images = lanes ? (a.batch - n * 16 < 16 ? a.batch - n * 16 : 16) : 1;
  for_each_span(a.len, a.seg_len, a.seg_stride, [&](int64_t s0, int64_t s1) {
    for (int64_t c0 = s0; c0 < s1; c0 += kGridChunk) {
      const int64_t c1 = c0 + kGridChunk < s1 ? c0 + kGridChunk : s1;
      for (int64_t r = r0; r < r1; ++r) {
        product(r, c0, c1, buf);
        const float* bias = a.bias ? a.bias + r : nullptr;
        double* const st = stats ? stats + 2 * r : nullptr;
        if (lanes)
          scatter_to_planes16(a, buf, c0, c1, planes + r * a.ldc, images, bias, st);
        else
          scatter_to_plane(a, buf, c0, c1, c + r * a.ldc, bias, st);
      }
    }
  });
}

// Rows [r0, r1) of image n, with b = B_n.
void image_rows(const SpmmOffsetsArgs& a, const float* values, int64_t n, int64_t r0, int64_t r1,
                const float* b) {
  float* c = a.c + n * a.c_image_stride;
  const auto src = [&](int64_t j) { return b + a.off[j]; };
  double* const stats = a.stats ? a.stats + 2 * n * a.rows : nullptr;
  if (stats)
    for (int64_t r = r0; r < r1; ++r) stats[2 * r] = stats[2 * r + 1] = 0.0;
  if (a.grid_w <= 0) {
    for_each_span(a.len, a.seg_len, a.seg_stride, [&](int64_t t0, int64_t t1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* row = c + r * a.ldc;
        spmm_span(a.ptr[r], a.ptr[r + 1], src, values, t0, t1, row);
        if (stats) {
          ChunkStats cs;
          cs.add_run(row + t0, t1 - t0);
          cs.flush(stats + 2 * r);
        }
      }
    });
    return;
  }
  grid_rows(a, n, r0, r1, stats, [&](int64_t r, int64_t c0, int64_t c1, float* buf) {
    const auto src_chunk = [&](int64_t j) { return b + a.off[j] + c0; };
    spmm_span(a.ptr[r], a.ptr[r + 1], src_chunk, values, 0, c1 - c0, buf);
  });
}
}  // namespace

void spmm_offsets_image(const SpmmOffsetsArgs& a, const float* values, int64_t n, const float* b,
                        float* planes) {
  if (a.merge) {
    for (int64_t ch = 0; ch < a.merge->c; ++ch) merge_channel(a, values, n, ch, b, planes);
  } else {
    image_rows(a, values, n, 0, a.rows, b);
  }
}

void grads_offsets_image(const SpmmOffsetsArgs& a, const float* values, int64_t n, int64_t r0,
                         int64_t r1, const float* b, const float* x, int64_t x_plane,
                         float* dvt) {
  const float* x0 = x + a.t_base * a.unit;  // position 0 of each row
  grid_rows(a, n, r0, r1, nullptr, [&](int64_t r, int64_t c0, int64_t c1, float* buf) {
    const auto src_chunk = [&](int64_t j) { return b + a.off[j] + c0; };
    grads_span(a.ptr[r], a.ptr[r + 1], src_chunk, values, x0 + r * x_plane + c0, 0, c1 - c0, buf,
               dvt);
  });
}

void f32_spmm_csr_offsets(const SpmmOffsetsArgs& a) {
  if (a.rows <= 0 || a.images <= 0) return;
  const float* values = a.val;
  const int64_t nnz = a.ptr[a.rows] - a.ptr[0];
  if (a.pos != nullptr) values = scatter_values(a.val, a.pos, nnz, a.scratch, a.nthreads);
  if (a.pack != nullptr || a.pack_grid != nullptr) {
    // Threads own images, each packed just before its rows run.
    ThreadScratch packed(a.nthreads, a.pack ? packed_image_size(*a.pack)
                                                  : packed_grid_size(*a.pack_grid));
    ThreadScratch planes(a.merge ? a.nthreads : 0, merge_planes_size(a));
    parallel_uniform(a.nthreads, a.images, (nnz + a.rows) * a.len, [&](int64_t i0, int64_t i1) {
      float* const b = packed.mine();
      for (int64_t n = i0; n < i1; ++n) {
        const float* image = a.b + n * a.b_image_stride;
        unsigned char* const finite = a.finite ? a.finite + n : nullptr;
        if (a.pack)
          pack_image(*a.pack, image, b, finite);
        else
          pack_grid_image(*a.pack_grid, image, b, finite);
        spmm_offsets_image(a, values, n, b, planes.mine());
      }
    });
    return;
  }
  if (a.merge != nullptr) {
    spmm_merge_phases(a, values);
    return;
  }
  const int64_t base = a.ptr[0];
  const int64_t per_image = nnz + a.rows;
  parallel_balanced(
      a.nthreads, a.rows * a.images, a.len,
      [&](int64_t i) {
        const int64_t n = i / a.rows, r = i - n * a.rows;
        return n * per_image + a.ptr[r] - base + r;
      },
      [&](int64_t i0, int64_t i1) {
        for (int64_t n = i0 / a.rows; n * a.rows < i1; ++n) {
          const int64_t r0 = i0 > n * a.rows ? i0 - n * a.rows : 0;
          const int64_t r1 = i1 < (n + 1) * a.rows ? i1 - n * a.rows : a.rows;
          image_rows(a, values, n, r0, r1, a.b + n * a.b_image_stride);
        }
      });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
