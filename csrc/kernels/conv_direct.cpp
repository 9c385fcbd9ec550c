// Stride-1 convolutions straight on PyTorch's NCHW tensors: no layout change at all.
//
//   out_n[r, y, x] = sum over nonzeros j of row r:
//                    val[j] * src_n[plane[j] + (y + dy[j]) * sw + x + shift_w[slot[j]]]
//
// with every source position outside the sh x sw plane read as zero (that is the padding).
// The forward pass has rows = output channels and src = x; the input gradient has rows =
// input channels (the transposed index) and src = dy with the shifts negated. The values
// gradient is the sampled product of dy with the same shifted windows of x.
//
// A tile is R output rows x V vectors of one output row; masks (from the few distinct
// column shifts, one set per column block) clip each load to the source row, and a row
// range per nonzero skips source rows outside the plane.
#include "kernels/kernels.h"
#include "kernels/sddmm_tiles.h"
#include "kernels/spmm_tiles.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {

constexpr int kMaxSlots = 64;  // distinct column shifts (kernel width) handled by the tables
using Mask = Vec::Mask;

struct ColumnBlock {
  int64_t x0;                   // first output column
  Mask out_mask[4];             // output columns that exist
  Mask src_mask[kMaxSlots][4];  // source columns inside the row, per shift slot
  bool inner;                   // vectors 1 .. V-2 lie inside the source row for every slot
};

template <int V, class T>
inline void column_block(const ConvDirectArgs<T>& a, int64_t x0, ColumnBlock& cb) {
  constexpr int64_t W = Vec::W;
  cb.x0 = x0;
  for (int v = 0; v < V; ++v) cb.out_mask[v] = Vec::lanes(0, a.ow - x0 - v * W);
  cb.inner = true;
  for (int64_t s = 0; s < a.slots; ++s) {
    const int64_t ix = x0 + a.shift_w[s];
    for (int v = 0; v < V; ++v) {
      cb.src_mask[s][v] = Vec::lanes(-ix - v * W, a.sw - ix - v * W);
      if (v > 0 && v + 1 < V && (ix + v * W < 0 || ix + (v + 1) * W > a.sw)) cb.inner = false;
    }
  }
}

// Source vector v of one tile row: the first and last vectors are clipped to the source row
// by their masks; the ones between need none when the column block is interior (`inner`).
template <int V, bool Inner>
inline Vec load_src(const float* p, int v, Mask first, Mask last, const Mask* masks) {
  if (v == 0) return Vec::load_mask(p, first);
  if (v == V - 1) return Vec::load_mask(p, last);
  return Inner ? Vec::load(p) : Vec::load_mask(p, masks[v]);
}

// Tile rows r in [lo, hi) whose source row y0 + r + dy[j] lies inside the plane (and r < nr).
template <class T>
inline bool source_rows(const ConvDirectArgs<T>& a, int64_t j, int64_t y0, int64_t nr, int64_t& lo,
                        int64_t& hi) {
  const int64_t iy0 = y0 + a.dy[j];
  lo = iy0 < 0 ? -iy0 : 0;
  hi = a.sh - iy0 < nr ? a.sh - iy0 : nr;
  return lo < hi;
}

template <int R, int V, bool Inner, class T>
inline void direct_tile(const ConvDirectArgs<T>& a, const float* values, const float* src,
                        int64_t begin, int64_t end, const ColumnBlock& cb, int64_t y0, int64_t nr,
                        float bias, bool has_bias, float* out) {
  constexpr int64_t W = Vec::W;
  Vec acc[R][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = Vec::zero();
  for (int64_t j = begin; j < end; ++j) {
    int64_t r_lo, r_hi;
    if (!source_rows(a, j, y0, nr, r_lo, r_hi)) continue;
    const Vec w = Vec::bcast(values[j]);
    const int64_t slot = a.slot[j];
    const Mask* masks = cb.src_mask[slot];
    const Mask first = masks[0], last = masks[V - 1];
    const float* p = src + a.plane[j] + (y0 + a.dy[j]) * a.sw + cb.x0 + a.shift_w[slot];
    if (r_lo == 0 && r_hi == R) {  // the common case: every tile row has its source row
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v)
          acc[r][v] =
              fma(w, load_src<V, Inner>(p + r * a.sw + v * W, v, first, last, masks), acc[r][v]);
      continue;
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      if (r < r_lo || r >= r_hi) continue;
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v)
        acc[r][v] =
            fma(w, load_src<V, Inner>(p + r * a.sw + v * W, v, first, last, masks), acc[r][v]);
    }
  }
  const Vec b = Vec::bcast(bias);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    if (r >= nr) break;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      Vec::store_mask(out + (y0 + r) * a.ow + cb.x0 + v * W,
                      has_bias ? add(acc[r][v], b) : acc[r][v], cb.out_mask[v]);
  }
}

// Accumulators per tile: 16 on AVX-512, 8 otherwise. V vectors per output row (<= 4).
constexpr int kTileAcc = Vec::kRegs >= 24 ? 16 : 8;

template <class F>
inline void with_columns(int64_t ow, const F& f) {
  constexpr int64_t W = Vec::W;
  const int64_t vecs = (ow + W - 1) / W;
  if (vecs >= 4)
    f(std::integral_constant<int, 4>{});
  else if (vecs == 3)
    f(std::integral_constant<int, 3>{});
  else if (vecs == 2)
    f(std::integral_constant<int, 2>{});
  else
    f(std::integral_constant<int, 1>{});
}

template <class T>
void spmm_direct_impl(const ConvDirectArgs<T>& a) {
  if (a.rows <= 0 || a.images <= 0 || a.oh <= 0 || a.ow <= 0) return;
  const float* values = a.val;
  const int64_t nnz = a.ptr[a.rows] - a.ptr[0];
  if (a.pos != nullptr) values = scatter_values(a.val, a.pos, nnz, a.scratch, a.nthreads);
  const int64_t per_image = nnz + a.rows;
  const int64_t plane_out = a.oh * a.ow;
  with_columns(a.ow, [&](auto Vc) {
    constexpr int V = Vc();
    constexpr int R = kTileAcc / V;
    constexpr int64_t W = Vec::W;
    parallel_balanced(
        a.nthreads, a.rows * a.images, plane_out,
        [&](int64_t i) {
          const int64_t n = i / a.rows, r = i - n * a.rows;
          return n * per_image + a.ptr[r] - a.ptr[0] + r;
        },
        [&](int64_t i0, int64_t i1) {
          ColumnBlock cb;
          // Image by image, band of R output rows by band, all of this thread's rows in a
          // band: the source rows a band reads (R + kernel height - 1 of every plane) stay
          // in L2 while every output channel uses them.
          for (int64_t x0 = 0; x0 < a.ow; x0 += int64_t{V} * W) {
            column_block<V>(a, x0, cb);
            for (int64_t n = i0 / a.rows; n * a.rows < i1; ++n) {
              const int64_t r0 = i0 > n * a.rows ? i0 - n * a.rows : 0;
              const int64_t r1 = i1 < (n + 1) * a.rows ? i1 - n * a.rows : a.rows;
              const float* src = a.src + n * a.src_image_stride;
              for (int64_t y0 = 0; y0 < a.oh; y0 += R) {
                const int64_t nr = a.oh - y0 < R ? a.oh - y0 : R;
                for (int64_t r = r0; r < r1; ++r) {
                  float* out = a.out + n * a.out_image_stride + r * plane_out;
                  const float bias = a.bias ? a.bias[r] : 0.0f;
                  if (cb.inner)
                    direct_tile<R, V, true>(a, values, src, a.ptr[r], a.ptr[r + 1], cb, y0, nr,
                                            bias, a.bias != nullptr, out);
                  else
                    direct_tile<R, V, false>(a, values, src, a.ptr[r], a.ptr[r + 1], cb, y0, nr,
                                             bias, a.bias != nullptr, out);
                }
              }
            }
          }
        });
  });
}

}  // namespace

template <class T>
void spmm_direct(const ConvDirectArgs<T>& a) {
  spmm_direct_impl(a);
}

namespace {

// out[j] += sum over the tile of A[y, x] * src[plane[j] + (y + dy[j]) * sw + x + shift]
template <int R, int V, bool Inner, class T>
inline void direct_sddmm_tile(const ConvDirectArgs<T>& a, const float* arow, const float* src,
                              int64_t begin, int64_t end, const ColumnBlock& cb, int64_t y0,
                              int64_t nr, float* out) {
  constexpr int64_t W = Vec::W;
  Vec t[R][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      t[r][v] = r < nr ? Vec::load_mask(arow + (y0 + r) * a.ow + cb.x0 + v * W, cb.out_mask[v])
                       : Vec::zero();
  for (int64_t j0 = begin; j0 < end; j0 += 4) {
    Vec acc[4] = {Vec::zero(), Vec::zero(), Vec::zero(), Vec::zero()};
    const int m = end - j0 < 4 ? static_cast<int>(end - j0) : 4;
    for (int g = 0; g < m; ++g) {
      const int64_t j = j0 + g;
      int64_t r_lo, r_hi;
      if (!source_rows(a, j, y0, nr, r_lo, r_hi)) continue;
      const int64_t slot = a.slot[j];
      const Mask* masks = cb.src_mask[slot];
      const Mask first = masks[0], last = masks[V - 1];
      const float* p = src + a.plane[j] + (y0 + a.dy[j]) * a.sw + cb.x0 + a.shift_w[slot];
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        if (r < r_lo || r >= r_hi) continue;
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v)
          acc[g] =
              fma(t[r][v], load_src<V, Inner>(p + r * a.sw + v * W, v, first, last, masks), acc[g]);
      }
    }
    float s[4];
    reduce4(acc[0], acc[1], acc[2], acc[3], s);
    for (int g = 0; g < m; ++g) out[j0 + g] += s[g];
  }
}

template <class T>
void sddmm_direct_impl(const ConvDirectArgs<T>& a) {
  if (a.rows <= 0) return;
  const int64_t base = a.ptr[0];
  for (int64_t j = base; j < a.ptr[a.rows]; ++j) a.out[j] = 0.0f;  // accumulated below
  if (a.images <= 0 || a.oh <= 0 || a.ow <= 0) return;
  const int64_t plane_out = a.oh * a.ow;
  with_columns(a.ow, [&](auto Vc) {
    constexpr int V = Vc();
    constexpr int R = kTileAcc / V;
    constexpr int64_t W = Vec::W;
    parallel_balanced(
        a.nthreads, a.rows, plane_out * a.images, [&](int64_t r) { return a.ptr[r] - base + r; },
        [&](int64_t r0, int64_t r1) {
          ColumnBlock cb;
          for (int64_t x0 = 0; x0 < a.ow; x0 += int64_t{V} * W) {
            column_block<V>(a, x0, cb);
            for (int64_t n = 0; n < a.images; ++n) {
              const float* src = a.src + n * a.src_image_stride;
              const float* grad = a.grad + n * a.grad_image_stride;
              for (int64_t y0 = 0; y0 < a.oh; y0 += R)  // bands outside rows, as in spmm
                for (int64_t r = r0; r < r1; ++r) {
                  const int64_t nr = a.oh - y0 < R ? a.oh - y0 : R;
                  if (cb.inner)
                    direct_sddmm_tile<R, V, true>(a, grad + r * plane_out, src, a.ptr[r],
                                                  a.ptr[r + 1], cb, y0, nr, a.out);
                  else
                    direct_sddmm_tile<R, V, false>(a, grad + r * plane_out, src, a.ptr[r],
                                                   a.ptr[r + 1], cb, y0, nr, a.out);
                }
            }
          }
        });
  });
}

}  // namespace

template <class T>
void sddmm_direct(const ConvDirectArgs<T>& a) {
  sddmm_direct_impl(a);
}

template void spmm_direct<f32>(const ConvDirectArgs<f32>&);
template void sddmm_direct<f32>(const ConvDirectArgs<f32>&);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
