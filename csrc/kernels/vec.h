// The small vector abstraction every kernel is written against. Each kernel source is
// compiled once per ISA with ST_ISA_<isa> defined (see CMakeLists.txt); this header then
// provides `Vec` for that ISA inside the namespace named by ST_ISA.
//
// Only what the kernels need: load/store, broadcast, fma, add, a 4-way horizontal
// reduction, a W x W block transpose, stride-2 (de)interleaving, and masked partial vectors
// (load_n / store_n) for the tails of lengths that are not a multiple of W (NCHW planes read
// in place). Loads and stores also take bf16 buffers: a load widens W bf16 to floats, a store
// narrows them with bf16.h's rounding, so one kernel template serves both storage types.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/bf16.h"

#if defined(ST_ISA_avx512) || defined(ST_ISA_avx512_bf16) || defined(ST_ISA_avx2)
#include <immintrin.h>
#endif

// Everything here has internal-to-ISA names: the same inline function compiled with
// -mavx512f in one object and without in another must never be merged by the linker.
namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// avx512_bf16 is avx512 plus AVX512-BF16 (bf16_dot_tiles.h): the same Vec.
#if defined(ST_ISA_avx512) || defined(ST_ISA_avx512_bf16)

struct Vec {
  static constexpr int W = 16;
  // Accumulator registers a kernel may keep live without spilling (32 zmm, some for loads).
  static constexpr int kRegs = 24;
  __m512 v;
  static inline Vec zero() { return {_mm512_setzero_ps()}; }
  static inline Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static inline Vec bcast(float x) { return {_mm512_set1_ps(x)}; }
  static inline void store(float* p, Vec a) { _mm512_storeu_ps(p, a.v); }
  // First n < W lanes only; the others read as 0 and are never touched in memory.
  static inline Vec load_n(const float* p, int n) {
    return {_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p)};
  }
  static inline void store_n(float* p, Vec a, int n) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), a.v);
  }
  // Lanes lo <= l < hi (clamped to [0, W]); masked-off lanes are never touched in memory,
  // so p may point partly outside its buffer.
  using Mask = __mmask16;
  static inline Mask lanes(int64_t lo, int64_t hi) {
    lo = lo < 0 ? 0 : (lo > W ? W : lo);
    hi = hi < 0 ? 0 : (hi > W ? W : hi);
    return hi <= lo ? 0 : static_cast<Mask>(((1u << hi) - 1) & ~((1u << lo) - 1));
  }
  static inline Vec load_mask(const float* p, Mask m) { return {_mm512_maskz_loadu_ps(m, p)}; }
  static inline void store_mask(float* p, Vec a, Mask m) { _mm512_mask_storeu_ps(p, m, a.v); }

  static inline Vec bcast(bf16 x) { return bcast(widen(x)); }
  static inline Vec widen16(__m256i h) {
    return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))};
  }
  // The bf16 bits of each lane, rounded to nearest even (NaN to 0x7FC0) as bf16.h's scalar
  // bf16_bits, in the low half of its 32 bits.
  static inline __m512i round16(Vec a) {
    const __m512i u = _mm512_castps_si512(a.v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
    r = _mm512_srli_epi32(r, 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q);
    return _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7FC0));
  }
  static inline __m256i narrow16(Vec a) { return _mm512_cvtepi32_epi16(round16(a)); }
  static inline Vec load(const bf16* p) { return widen16(_mm256_loadu_si256((const __m256i*)p)); }
  static inline void store(bf16* p, Vec a) { _mm256_storeu_si256((__m256i*)p, narrow16(a)); }
  // Floats known to be bf16 values (widened ones, moved): their high halves, no rounding.
  static inline void store_exact(bf16* p, Vec a) {
    const __m512i hi = _mm512_srli_epi32(_mm512_castps_si512(a.v), 16);
    _mm256_storeu_si256((__m256i*)p, _mm512_cvtepi32_epi16(hi));
  }
  static inline void store_exact(float* p, Vec a) { store(p, a); }
  static inline Vec load_n(const bf16* p, int n) {
    return widen16(_mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << n) - 1), p));
  }
  static inline void store_n(bf16* p, Vec a, int n) {
    _mm256_mask_storeu_epi16(p, static_cast<__mmask16>((1u << n) - 1), narrow16(a));
  }
};
inline Vec fma(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
// a, pinned in a register: the compiler may not fold its load into each instruction that
// uses it (two uses would then load it twice).
inline Vec in_register(Vec a) {
  __asm__("" : "+v"(a.v));
  return a;
}
inline Vec add(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
// out[k] = horizontal sum of a_k.
inline void reduce4(Vec a0, Vec a1, Vec a2, Vec a3, float* out) {
  auto half = [](Vec a) {
    return _mm256_add_ps(_mm512_castps512_ps256(a.v),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a.v), 1)));
  };
  __m256 h01 = _mm256_hadd_ps(half(a0), half(a1));
  __m256 h23 = _mm256_hadd_ps(half(a2), half(a3));
  __m256 h = _mm256_hadd_ps(h01, h23);
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}
// dst[j * ldd + i] = src[i * lds + j] (+ add[i]) for a W x W block: add, if given, is a
// W-vector added to every output row (the bias, when unpacking).
// T float or bf16: bf16 rows are widened as loaded and narrowed as stored, rounding only
// after an add (without one the values are bf16 already).
template <class T>
inline void transpose_block(const T* src, int64_t lds, T* dst, int64_t ldd,
                            const std::common_type_t<T>* add) {  // (add: T not deduced from it)
  __m512 r[16], c[16];
  for (int i = 0; i < 16; ++i) r[i] = Vec::load(src + i * lds).v;
  // Per 128-bit lane, 4x4 transposes of each group of four rows: c[4g + m] lane L then holds
  // column 4L + m of rows 4g .. 4g + 3.
  for (int g = 0; g < 4; ++g) {
    const __m512 t0 = _mm512_unpacklo_ps(r[4 * g], r[4 * g + 1]);
    const __m512 t1 = _mm512_unpackhi_ps(r[4 * g], r[4 * g + 1]);
    const __m512 t2 = _mm512_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]);
    const __m512 t3 = _mm512_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
    auto lo = [](__m512 a, __m512 b) {
      return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
    };
    auto hi = [](__m512 a, __m512 b) {
      return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
    };
    c[4 * g + 0] = lo(t0, t2);
    c[4 * g + 1] = hi(t0, t2);
    c[4 * g + 2] = lo(t1, t3);
    c[4 * g + 3] = hi(t1, t3);
  }
  // Output row 4L + m collects lane L of c[m], c[4 + m], c[8 + m], c[12 + m].
  for (int m = 0; m < 4; ++m) {
    const __m512 p0 = _mm512_shuffle_f32x4(c[m], c[4 + m], 0x44);
    const __m512 p1 = _mm512_shuffle_f32x4(c[m], c[4 + m], 0xEE);
    const __m512 q0 = _mm512_shuffle_f32x4(c[8 + m], c[12 + m], 0x44);
    const __m512 q1 = _mm512_shuffle_f32x4(c[8 + m], c[12 + m], 0xEE);
    __m512 o[4] = {_mm512_shuffle_f32x4(p0, q0, 0x88), _mm512_shuffle_f32x4(p0, q0, 0xDD),
                   _mm512_shuffle_f32x4(p1, q1, 0x88), _mm512_shuffle_f32x4(p1, q1, 0xDD)};
    for (int L = 0; L < 4; ++L) {
      const int row = 4 * L + m;
      if (add)
        Vec::store(dst + row * ldd, Vec{_mm512_add_ps(o[L], Vec::load(add).v)});
      else
        Vec::store_exact(dst + row * ldd, Vec{o[L]});
    }
  }
}

// p[0], p[2], ..., p[2W - 2] (reads p[0 .. 2W - 1]): one stride-2 phase of a row.
inline Vec load_even(const float* p) {
  const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  return {_mm512_permutex2var_ps(_mm512_loadu_ps(p), idx, _mm512_loadu_ps(p + 16))};
}
// p[2i] = a[i], p[2i + 1] = b[i] for i < W: two stride-2 phases back into one row.
inline void store_interleaved(float* p, Vec a, Vec b) {
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi =
      _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  _mm512_storeu_ps(p, _mm512_permutex2var_ps(a.v, lo, b.v));
  _mm512_storeu_ps(p + 16, _mm512_permutex2var_ps(a.v, hi, b.v));
}

#elif defined(ST_ISA_avx2)

struct Vec {
  static constexpr int W = 8;
  static constexpr int kRegs = 12;  // 16 ymm in all
  __m256 v;
  static inline Vec zero() { return {_mm256_setzero_ps()}; }
  static inline Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static inline Vec bcast(float x) { return {_mm256_set1_ps(x)}; }
  static inline void store(float* p, Vec a) { _mm256_storeu_ps(p, a.v); }
  static inline __m256i mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static inline Vec load_n(const float* p, int n) { return {_mm256_maskload_ps(p, mask(n))}; }
  static inline void store_n(float* p, Vec a, int n) { _mm256_maskstore_ps(p, mask(n), a.v); }
  using Mask = __m256i;
  static inline Mask lanes(int64_t lo, int64_t hi) {
    lo = lo < 0 ? 0 : (lo > W ? W : lo);
    hi = hi < 0 ? 0 : (hi > W ? W : hi);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(lo)), iota),
                               _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(hi)), iota));
  }
  static inline Vec load_mask(const float* p, Mask m) { return {_mm256_maskload_ps(p, m)}; }
  static inline void store_mask(float* p, Vec a, Mask m) { _mm256_maskstore_ps(p, m, a.v); }

  static inline Vec bcast(bf16 x) { return bcast(widen(x)); }
  static inline Vec widen16(__m128i h) {
    return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))};
  }
  static inline __m128i narrow16(Vec a) {  // as the AVX-512 Vec's
    const __m256i u = _mm256_castps_si256(a.v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF)));
    r = _mm256_srli_epi32(r, 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan);
    // 16-bit halves of lanes 0-3 and 4-7 end up in 64-bit pieces 0 and 2.
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08));
  }
  static inline Vec load(const bf16* p) { return widen16(_mm_loadu_si128((const __m128i*)p)); }
  static inline void store(bf16* p, Vec a) { _mm_storeu_si128((__m128i*)p, narrow16(a)); }
  static inline void store_exact(bf16* p, Vec a) {  // as the AVX-512 Vec's
    const __m256i hi = _mm256_srli_epi32(_mm256_castps_si256(a.v), 16);
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(hi, hi), 0x08);
    _mm_storeu_si128((__m128i*)p, _mm256_castsi256_si128(packed));
  }
  static inline void store_exact(float* p, Vec a) { store(p, a); }
  // AVX2 has no 16-bit masked moves: the n elements go through a zeroed register image.
  static inline Vec load_n(const bf16* p, int n) {
    uint16_t tmp[W] = {};
    std::memcpy(tmp, p, sizeof(uint16_t) * (n < 0 ? 0 : n));
    return widen16(_mm_loadu_si128((const __m128i*)tmp));
  }
  static inline void store_n(bf16* p, Vec a, int n) {
    uint16_t tmp[W];
    _mm_storeu_si128((__m128i*)tmp, narrow16(a));
    std::memcpy(p, tmp, sizeof(uint16_t) * (n < 0 ? 0 : n));
  }
};
inline Vec fma(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline Vec in_register(Vec a) {  // as in the AVX-512 Vec
  __asm__("" : "+x"(a.v));
  return a;
}
inline Vec add(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
inline void reduce4(Vec a0, Vec a1, Vec a2, Vec a3, float* out) {
  __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0.v, a1.v), _mm256_hadd_ps(a2.v, a3.v));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}
template <class T>
inline void transpose_block(const T* src, int64_t lds, T* dst, int64_t ldd,
                            const std::common_type_t<T>* add) {  // (add: T not deduced from it)
  __m256 r[8], c[8];
  for (int i = 0; i < 8; ++i) r[i] = Vec::load(src + i * lds).v;
  for (int g = 0; g < 2; ++g) {  // as in the AVX-512 version, per 128-bit lane
    const __m256 t0 = _mm256_unpacklo_ps(r[4 * g], r[4 * g + 1]);
    const __m256 t1 = _mm256_unpackhi_ps(r[4 * g], r[4 * g + 1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]);
    const __m256 t3 = _mm256_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
    c[4 * g + 0] = _mm256_shuffle_ps(t0, t2, 0x44);
    c[4 * g + 1] = _mm256_shuffle_ps(t0, t2, 0xEE);
    c[4 * g + 2] = _mm256_shuffle_ps(t1, t3, 0x44);
    c[4 * g + 3] = _mm256_shuffle_ps(t1, t3, 0xEE);
  }
  for (int m = 0; m < 4; ++m) {
    __m256 o[2] = {_mm256_permute2f128_ps(c[m], c[4 + m], 0x20),
                   _mm256_permute2f128_ps(c[m], c[4 + m], 0x31)};
    for (int L = 0; L < 2; ++L) {
      const int row = 4 * L + m;
      if (add)
        Vec::store(dst + row * ldd, Vec{_mm256_add_ps(o[L], Vec::load(add).v)});
      else
        Vec::store_exact(dst + row * ldd, Vec{o[L]});
    }
  }
}

inline Vec load_even(const float* p) {
  const __m256 t = _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), 0x88);
  return {_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), 0xD8))};
}
inline void store_interleaved(float* p, Vec a, Vec b) {
  const __m256 lo = _mm256_unpacklo_ps(a.v, b.v), hi = _mm256_unpackhi_ps(a.v, b.v);
  _mm256_storeu_ps(p, _mm256_permute2f128_ps(lo, hi, 0x20));
  _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}

#elif defined(ST_ISA_scalar)

// The reference: one float per "vector". Same kernel templates, plain arithmetic.
struct Vec {
  static constexpr int W = 1;
  static constexpr int kRegs = 16;
  float v;
  static inline Vec zero() { return {0.0f}; }
  static inline Vec load(const float* p) { return {*p}; }
  static inline Vec bcast(float x) { return {x}; }
  static inline void store(float* p, Vec a) { *p = a.v; }
  static inline Vec load_n(const float* p, int n) { return {n > 0 ? *p : 0.0f}; }
  static inline void store_n(float* p, Vec a, int n) {
    if (n > 0) *p = a.v;
  }
  using Mask = bool;
  static inline Mask lanes(int64_t lo, int64_t hi) { return lo <= 0 && hi > 0; }
  static inline Vec load_mask(const float* p, Mask m) { return {m ? *p : 0.0f}; }
  static inline void store_mask(float* p, Vec a, Mask m) {
    if (m) *p = a.v;
  }

  static inline Vec bcast(bf16 x) { return {widen(x)}; }
  static inline Vec load(const bf16* p) { return {widen(*p)}; }
  static inline void store(bf16* p, Vec a) { *p = narrow<bf16>(a.v); }
  static inline void store_exact(bf16* p, Vec a) { store(p, a); }
  static inline void store_exact(float* p, Vec a) { store(p, a); }
  static inline Vec load_n(const bf16* p, int n) { return {n > 0 ? widen(*p) : 0.0f}; }
  static inline void store_n(bf16* p, Vec a, int n) {
    if (n > 0) *p = narrow<bf16>(a.v);
  }
};
inline Vec fma(Vec a, Vec b, Vec c) { return {a.v * b.v + c.v}; }
inline Vec in_register(Vec a) { return a; }
inline Vec add(Vec a, Vec b) { return {a.v + b.v}; }
inline void reduce4(Vec a0, Vec a1, Vec a2, Vec a3, float* out) {
  out[0] = a0.v;
  out[1] = a1.v;
  out[2] = a2.v;
  out[3] = a3.v;
}
template <class T>
inline void transpose_block(const T* src, int64_t, T* dst, int64_t,
                            const std::common_type_t<T>* add) {
  *dst = narrow<T>(add ? widen(*src) + widen(*add) : widen(*src));
}

inline Vec load_even(const float* p) { return {*p}; }
inline void store_interleaved(float* p, Vec a, Vec b) {
  p[0] = a.v;
  p[1] = b.v;
}

#else
#error "vec.h: compile with exactly one of ST_ISA_scalar, ST_ISA_avx2, ST_ISA_avx512(_bf16)"
#endif

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
