// The batch-major products' tiles for bf16 storage on CPUs with AVX512-BF16 (the avx512_bf16
// ISA): vdpbf16ps multiplies 32 bf16 pairs and adds each pair's two products into one float
// lane, so a 64-byte load of B feeds the multiply-adds of 32 batch elements with no
// conversion at all.
//
// - sddmm (sums over the batch): pairs of consecutive batch elements are exactly what a dot
//   product sums, so A's and B's rows go straight in; lanes are reduced at the end.
// - spmm (one output per batch element): the value v of a nonzero goes in as the pair (v, 0)
//   for the even batch elements and (0, v) for the odd ones, two accumulators per 32 outputs;
//   the store interleaves them back. 0 · x is NaN for x = ±Inf / NaN, so a non-finite element
//   of B makes its even/odd partner NaN as well: the layers recompute both (functional/linear.py).
// The instruction flushes subnormal inputs and results to zero, like the dense bf16 kernels
// that run on it.
#pragma once

#include <cstdint>

#include "kernels/tiling.h"

#if defined(ST_ISA_avx512_bf16)

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// 32 bf16 per vector of B; the first n < 32 only for a tail (the rest read as 0).
constexpr int kDotW = 32;
inline __m512i dot_load(const bf16* p) { return _mm512_loadu_si512(p); }
inline __m512i dot_load_n(const bf16* p, int n) {
  return _mm512_maskz_loadu_epi16(n >= 32 ? ~__mmask32{0} : (__mmask32{1} << n) - 1, p);
}
inline __m512 dot(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh>(a), reinterpret_cast<__m512bh>(b));
}
// The bf16 bits of two float vectors (even and odd batch elements), rounded as every bf16
// store rounds (Vec::round16), interleaved back into batch order.
inline __m512i interleave_round(__m512 even, __m512 odd) {
  return _mm512_or_si512(Vec::round16(Vec{even}), _mm512_slli_epi32(Vec::round16(Vec{odd}), 16));
}

// ---- spmm: c[t0, t0 + 32 NT) of one output row ---------------------------------------------

// The pair (0, v) in every lane: v's high half as a bf16 (the layers pass bf16-valued floats,
// whose low half is zero; any other float is truncated to bf16, never read as two numbers).
inline __m512i value_pair(float v) {
  return _mm512_and_si512(_mm512_castps_si512(_mm512_set1_ps(v)),
                          _mm512_set1_epi32(static_cast<int>(0xFFFF0000u)));
}

template <int NT, int U, class Src>
inline void spmm_dot_tile(int64_t begin, int64_t end, const Src& src, const float* val, int64_t t0,
                          bf16* c) {
  __m512 acc[U][2 * NT];
#pragma GCC unroll 16
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 16
    for (int t = 0; t < 2 * NT; ++t) acc[u][t] = _mm512_setzero_ps();
  auto step = [&](int u, int64_t j) {
    const bf16* brow = src(j) + t0;
    const __m512i odd = value_pair(val[j]);
    const __m512i even = _mm512_srli_epi32(odd, 16);  // the pair (v, 0)
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      const __m512i b = dot_load(brow + t * kDotW);
      acc[u][2 * t] = dot(acc[u][2 * t], even, b);
      acc[u][2 * t + 1] = dot(acc[u][2 * t + 1], odd, b);
    }
  };
  int64_t j = begin;
  for (; j + U <= end; j += U)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) step(u, j + u);
  for (; j < end; ++j) step(0, j);
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) {
    __m512 e = acc[0][2 * t], o = acc[0][2 * t + 1];
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) {
      e = _mm512_add_ps(e, acc[u][2 * t]);
      o = _mm512_add_ps(o, acc[u][2 * t + 1]);
    }
    _mm512_storeu_si512(c + t0 + t * kDotW, interleave_round(e, o));
  }
}

// The last n < 32 elements at t0 (masked loads and store).
template <class Src>
inline void spmm_dot_tail(int64_t begin, int64_t end, const Src& src, const float* val, int64_t t0,
                          int n, bf16* c) {
  __m512 e[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()}, o[2] = {e[0], e[1]};
  int64_t j = begin;
  for (; j < end; ++j) {
    const __m512i odd = value_pair(val[j]);
    const __m512i b = dot_load_n(src(j) + t0, n);
    const int u = static_cast<int>(j & 1);
    e[u] = dot(e[u], _mm512_srli_epi32(odd, 16), b);
    o[u] = dot(o[u], odd, b);
  }
  const __m512i out = interleave_round(_mm512_add_ps(e[0], e[1]), _mm512_add_ps(o[0], o[1]));
  _mm512_mask_storeu_epi16(c + t0, (__mmask32{1} << n) - 1, out);
}

template <int NT>
constexpr int spmm_dot_unroll() {
  constexpr int u = 8 / NT;
  return u < 1 ? 1 : (u > 4 ? 4 : u);
}

// Tiles of up to 8 vectors (256 elements, 16 accumulators), then a tail.
template <class Src>
inline void spmm_dot_span(int64_t begin, int64_t end, const Src& src, const float* val, int64_t t0,
                          int64_t t1, bf16* c) {
  constexpr int kMax = 8;
  for (; t0 + kDotW <= t1;) {
    const int64_t left = (t1 - t0) / kDotW;
    const int nt = left < kMax ? static_cast<int>(left) : kMax;
    with_tile<kMax>(nt, [&](auto NT) {
      spmm_dot_tile<NT(), spmm_dot_unroll<NT()>()>(begin, end, src, val, t0, c);
    });
    t0 += int64_t{nt} * kDotW;
  }
  if (t0 < t1) spmm_dot_tail(begin, end, src, val, t0, static_cast<int>(t1 - t0), c);
}

// ---- sddmm: out[j] (+)= <arow[t0, t1), src(j)[t0, t1)> -------------------------------------

template <int NT, class Src>
inline void sddmm_dot_tile(int64_t begin, int64_t end, const Src& src, const bf16* arow, int64_t t0,
                           int n_last, float* out, bool accumulate) {
  // NT vectors of A; the last holds n_last (1..32) elements.
  __m512i x[NT];
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t)
    x[t] =
        t == NT - 1 ? dot_load_n(arow + t0 + t * kDotW, n_last) : dot_load(arow + t0 + t * kDotW);
  auto b_at = [&](const bf16* brow, int t) {
    return t == NT - 1 ? dot_load_n(brow + t * kDotW, n_last) : dot_load(brow + t * kDotW);
  };
  constexpr int G = 8;
  int64_t j = begin;
  for (; j + G <= end; j += G) {
    __m512 acc[G];
    const bf16* brow[G];
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
      brow[g] = src(j + g) + t0;
      acc[g] = _mm512_setzero_ps();
    }
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t)
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) acc[g] = dot(acc[g], x[t], b_at(brow[g], t));
    float s[G];
    reduce4(Vec{acc[0]}, Vec{acc[1]}, Vec{acc[2]}, Vec{acc[3]}, s);
    reduce4(Vec{acc[4]}, Vec{acc[5]}, Vec{acc[6]}, Vec{acc[7]}, s + 4);
    for (int g = 0; g < G; ++g) out[j + g] = accumulate ? out[j + g] + s[g] : s[g];
  }
  for (; j < end; j += 4) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    const int m = end - j < 4 ? static_cast<int>(end - j) : 4;
    for (int g = 0; g < m; ++g) {
      const bf16* brow = src(j + g) + t0;
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) acc[g] = dot(acc[g], x[t], b_at(brow, t));
    }
    float s[4];
    reduce4(Vec{acc[0]}, Vec{acc[1]}, Vec{acc[2]}, Vec{acc[3]}, s);
    for (int g = 0; g < m; ++g) out[j + g] = accumulate ? out[j + g] + s[g] : s[g];
  }
}

template <class Src>
inline void sddmm_dot_span(int64_t begin, int64_t end, const Src& src, const bf16* arow, int64_t t0,
                           int64_t t1, float* out, bool accumulate) {
  constexpr int kMax = 8;
  while (t0 < t1) {
    const int64_t left = (t1 - t0 + kDotW - 1) / kDotW;
    const int nt = left < kMax ? static_cast<int>(left) : kMax;
    const int64_t span = t1 - t0 < int64_t{nt} * kDotW ? t1 - t0 : int64_t{nt} * kDotW;
    const int n_last = static_cast<int>(span - int64_t{nt - 1} * kDotW);
    with_tile<kMax>(nt, [&](auto NT) {
      sddmm_dot_tile<NT()>(begin, end, src, arow, t0, n_last, out, accumulate);
    });
    accumulate = true;  // later tiles add to what the first stored
    t0 += span;
  }
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain

#endif  // ST_ISA_avx512_bf16
