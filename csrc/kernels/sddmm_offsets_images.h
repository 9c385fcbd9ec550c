// The values gradient of the offsets products image by image: one image's rows, the fixed
// image slices threads own when the kernel packs x or dy itself, and the per-slice partial
// sums added in slice order. Shared by sddmm_offsets.cpp and the conv_grads_offsets forms.
#pragma once

#include <cstdint>

#include "kernels/image_pack.h"
#include "kernels/offsets_args.h"
#include "kernels/sddmm_tiles.h"
#include "kernels/spans.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// Adds (accumulate) or stores one image's products of rows [r0, r1) into out, with
// an = A_n and b = B_n.
template <class T>
inline void image_rows(const SddmmOffsetsArgs<T>& a, const float* an, int64_t r0, int64_t r1,
                       const float* b, float* out, bool accumulate) {
  const auto src = [&](int64_t j) { return b + a.off[j]; };
  for_each_span(a.spans, [&](int64_t c0, int64_t c1) {
    for (int64_t r = r0; r < r1; ++r)
      sddmm_span(a.ptr[r], a.ptr[r + 1], src, an + r * a.lda, c0, c1, out, accumulate || c0 > 0);
  });
}

// Threads own images: the batch in `parts` fixed slices, each packing its images (B, A or
// both) one at a time and summing into its own partial results; the partials are then added
// in slice order. The slices depend on the batch and the nonzero count only, so the result
// is the same for any thread count (as with threads owning rows).
constexpr int64_t kMaxParts = 16;                     // at most this many threads busy
constexpr int64_t kPartialBudget = int64_t{8} << 20;  // floats of partial sums (32 MiB)
template <class T>
inline int64_t image_slices(const SddmmOffsetsArgs<T>& a) {
  const int64_t end = a.ptr[a.rows];
  const int64_t parts = a.images < kMaxParts ? a.images : kMaxParts;
  const int64_t cap = 1 + kPartialBudget / (end > 0 ? end : 1);
  return parts > cap ? cap : parts;
}

// body(p, n, first, packed_a, an, b) for each image n of each slice p, in order within a
// slice: b = B_n (packed if a.pack_b), an = A_n (packed if a.pack_a: packed_a is then the
// start of the packed image, else nullptr); first: n is the slice's first image.
template <class T, class Body>
void for_each_packed_image(const SddmmOffsetsArgs<T>& a, int64_t parts, int64_t work_per_image,
                           unsigned char* a_finite, const Body& body) {
  ThreadScratch packed_b(a.pack_b ? a.nthreads : 0, a.pack_b ? packed_image_size(*a.pack_b) : 0);
  ThreadScratch packed_a(a.pack_a ? a.nthreads : 0, a.pack_a ? packed_grid_size(*a.pack_a) : 0);
  parallel_uniform(
      a.nthreads, parts, work_per_image * (a.images / parts + 1), [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t n0 = a.images * p / parts, n1 = a.images * (p + 1) / parts;
          for (int64_t n = n0; n < n1; ++n) {
            const float* b = a.b + n * a.b_image_stride;
            if (a.pack_b) {
              pack_image(*a.pack_b, b, packed_b.mine(), nullptr);
              b = packed_b.mine();
            }
            const float* an = a.a + n * a.a_image_stride;
            const float* packed = nullptr;
            if (a.pack_a) {
              pack_grid_image(*a.pack_a, an, packed_a.mine(), a_finite ? a_finite + n : nullptr);
              packed = packed_a.mine();
              an = packed + a.pack_a->offset;
            }
            body(p, n, n == n0, packed, an, b);
          }
        }
      });
}

// The products image by image (see for_each_packed_image), summed per slice in out's order.
// With_packed_a(n, packed) runs right after A_n is packed (packed: the start of the packed
// image), before the products: another kernel's use of the same packed A_n, while in cache.
template <class T, class WithPackedA>
void packed_by_image(const SddmmOffsetsArgs<T>& a, int64_t extra_work_per_image,
                     unsigned char* a_finite, const WithPackedA& with_packed_a) {
  const int64_t base = a.ptr[0], end = a.ptr[a.rows], nnz = end - base;
  const int64_t parts = image_slices(a);
  // Slice p's sums, indexed by nonzero number as out is (slice 0 sums into out itself).
  ZeroedFloats partial((parts - 1) * end);
  const auto part_out = [&](int64_t p) { return p == 0 ? a.out : partial.data() + (p - 1) * end; };
  for_each_packed_image(
      a, parts, (nnz + a.rows) * a.spans.len + extra_work_per_image, a_finite,
      [&](int64_t p, int64_t n, bool first, const float* packed, const float* an, const float* b) {
        if (packed) with_packed_a(n, packed);
        image_rows(a, an, 0, a.rows, b, part_out(p), !first);
      });
  for (int64_t p = 1; p < parts; ++p) {
    const float* q = part_out(p);
    for (int64_t j = base; j < end; ++j) a.out[j] += q[j];
  }
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
