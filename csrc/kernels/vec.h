// The small vector abstraction every kernel is written against. Each kernel source is
// compiled once per ISA with ST_ISA_<isa> defined (see CMakeLists.txt); this header then
// provides `Vec` for that ISA inside the namespace named by ST_ISA.
//
// Only what the kernels need: load/store, broadcast, fma, add, and a 4-way horizontal
// reduction. No masked tails: activations are stored batch-major with the batch padded to
// kBatchAlign floats, so every vector load is full and in bounds.
#pragma once

#include <cstdint>

#if defined(ST_ISA_avx512) || defined(ST_ISA_avx2)
#include <immintrin.h>
#endif

// Everything here has internal-to-ISA names: the same inline function compiled with
// -mavx512f in one object and without in another must never be merged by the linker.
namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

#if defined(ST_ISA_avx512)

struct Vec {
  static constexpr int W = 16;
  // Accumulator registers a kernel may keep live without spilling (32 zmm, some for loads).
  static constexpr int kRegs = 24;
  __m512 v;
  static inline Vec zero() { return {_mm512_setzero_ps()}; }
  static inline Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static inline Vec bcast(float x) { return {_mm512_set1_ps(x)}; }
  static inline void store(float* p, Vec a) { _mm512_storeu_ps(p, a.v); }
};
inline Vec fma(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
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

#elif defined(ST_ISA_avx2)

struct Vec {
  static constexpr int W = 8;
  static constexpr int kRegs = 12;  // 16 ymm in all
  __m256 v;
  static inline Vec zero() { return {_mm256_setzero_ps()}; }
  static inline Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static inline Vec bcast(float x) { return {_mm256_set1_ps(x)}; }
  static inline void store(float* p, Vec a) { _mm256_storeu_ps(p, a.v); }
};
inline Vec fma(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline Vec add(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
inline void reduce4(Vec a0, Vec a1, Vec a2, Vec a3, float* out) {
  __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0.v, a1.v), _mm256_hadd_ps(a2.v, a3.v));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
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
};
inline Vec fma(Vec a, Vec b, Vec c) { return {a.v * b.v + c.v}; }
inline Vec add(Vec a, Vec b) { return {a.v + b.v}; }
inline void reduce4(Vec a0, Vec a1, Vec a2, Vec a3, float* out) {
  out[0] = a0.v;
  out[1] = a1.v;
  out[2] = a2.v;
  out[3] = a3.v;
}

#else
#error "vec.h: compile with exactly one of ST_ISA_scalar, ST_ISA_avx2, ST_ISA_avx512"
#endif

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
