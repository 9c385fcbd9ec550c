// f32_sddmm_csr_offsets: out[j] = sum over images n and t < len of A_n[r, t] * B_n[off[j] + t].
// The gradient of a convolution's nonzero weights: A = output gradient on the grid, B = the
// packed input, summed over the batch. Threads own disjoint rows (output channels), or, when
// the kernel packs B or A itself image by image, disjoint images with partial sums of their own.
#include <cstddef>
#include <vector>

#include "kernels/conv_grads_form.h"
#include "kernels/conv_pack.h"
#include "kernels/kernels.h"
#include "kernels/offsets_image.h"
#include "kernels/spmm_tiles.h"
#include "kernels/sddmm_tiles.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {

// Adds (accumulate) or stores one image's products of rows [r0, r1) into out, with
// an = A_n and b = B_n.
void image_rows(const SddmmOffsetsArgs& a, const float* an, int64_t r0, int64_t r1,
                const float* b, float* out, bool accumulate) {
  const auto src = [&](int64_t j) { return b + a.off[j]; };
  for_each_span(a.len, a.seg_len, a.seg_stride, [&](int64_t c0, int64_t c1) {
    for (int64_t r = r0; r < r1; ++r)
      sddmm_span(a.ptr[r], a.ptr[r + 1], src, an + r * a.lda, c0, c1, out, accumulate || c0 > 0);
  });
}

// Threads own images: the batch in `parts` fixed slices, each packing its images (B, A or
// both) one at a time and summing into its own partial results; the partials are then added
// in slice order. The slices depend on the batch and the nonzero count only, so the result
// is the same for any thread count (as with threads owning rows).
constexpr int64_t kMaxParts = 16;                      // at most this many threads busy
constexpr int64_t kPartialBudget = int64_t{8} << 20;  // floats of partial sums (32 MiB)
int64_t image_slices(const SddmmOffsetsArgs& a) {
  const int64_t end = a.ptr[a.rows];
  const int64_t parts = a.images < kMaxParts ? a.images : kMaxParts;
  const int64_t cap = 1 + kPartialBudget / (end > 0 ? end : 1);
  return parts > cap ? cap : parts;
}

// body(p, n, first, packed_a, an, b) for each image n of each slice p, in order within a
// slice: b = B_n (packed if a.pack), an = A_n (packed if a.pack_grid: packed_a is then the
// start of the packed image, else nullptr); first: n is the slice's first image.
template <class Body>
void for_each_packed_image(const SddmmOffsetsArgs& a, int64_t parts, int64_t work_per_image,
                           unsigned char* a_finite, const Body& body) {
  ThreadScratch packed_b(a.pack ? a.nthreads : 0, a.pack ? packed_image_size(*a.pack) : 0);
  ThreadScratch packed_a(a.pack_grid ? a.nthreads : 0,
                         a.pack_grid ? packed_grid_size(*a.pack_grid) : 0);
  parallel_uniform(a.nthreads, parts, work_per_image * (a.images / parts + 1),
                   [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n0 = a.images * p / parts, n1 = a.images * (p + 1) / parts;
      for (int64_t n = n0; n < n1; ++n) {
        const float* b = a.b + n * a.b_image_stride;
        if (a.pack) {
          pack_image(*a.pack, b, packed_b.mine(), nullptr);
          b = packed_b.mine();
        }
        const float* an = a.a + n * a.a_image_stride;
        const float* packed = nullptr;
        if (a.pack_grid) {
          pack_grid_image(*a.pack_grid, an, packed_a.mine(), a_finite ? a_finite + n : nullptr);
          packed = packed_a.mine();
          an = packed + a.pack_grid->offset;
        }
        body(p, n, n == n0, packed, an, b);
      }
    }
  });
}

// The products image by image (see for_each_packed_image), summed per slice in out's order.
// With_packed_a(n, packed) runs right after A_n is packed (packed: the start of the packed
// image), before the products: another kernel's use of the same packed A_n, while in cache.
template <class WithPackedA>
void packed_by_image(const SddmmOffsetsArgs& a, int64_t extra_work_per_image,
                     unsigned char* a_finite, const WithPackedA& with_packed_a) {
  const int64_t base = a.ptr[0], end = a.ptr[a.rows], nnz = end - base;
  const int64_t parts = image_slices(a);
  // Slice p's sums, indexed by nonzero number as out is (slice 0 sums into out itself).
  std::vector<float> partial(static_cast<std::size_t>((parts - 1) * end));
  const auto part_out = [&](int64_t p) { return p == 0 ? a.out : partial.data() + (p - 1) * end; };
  for_each_packed_image(a, parts, (nnz + a.rows) * a.len + extra_work_per_image, a_finite,
                        [&](int64_t p, int64_t n, bool first, const float* packed,
                            const float* an, const float* b) {
    if (packed) with_packed_a(n, packed);
    image_rows(a, an, 0, a.rows, b, part_out(p), !first);
  });
  for (int64_t p = 1; p < parts; ++p) {
    const float* q = part_out(p);
    for (int64_t j = base; j < end; ++j) a.out[j] += q[j];
  }
}

// Both gradients in one pass (conv_grads_one_pass_plane), the values gradient summed in the
// transposed index's order and gathered into out (out[j] = entry pos[j]). The kernel packing
// x and dy: threads own the fixed image slices of for_each_packed_image, each summing its
// own copy. Packed beforehand: threads own (image, row) pairs, balanced by nonzeros (all of
// them busy even for one image group), each image summing into its own copy. Either way the
// copies are added in a fixed order: the same result for any thread count.
void grads_one_pass(const SpmmOffsetsArgs& dx, const float* values, const SddmmOffsetsArgs& dv,
                    int64_t x_plane) {
  const int64_t nnz = dv.ptr[dv.rows], rows = dx.rows;
  const bool packs = dv.pack != nullptr;
  const int64_t copies = packs ? image_slices(dv) : dv.images;
  std::vector<float> sums(static_cast<std::size_t>(copies * nnz), 0.0f);
  if (packs) {
    for_each_packed_image(dv, copies, 2 * (nnz + rows) * dx.len, dx.finite,
                          [&](int64_t p, int64_t n, bool, const float* packed, const float*,
                              const float* x) {
      grads_offsets_image(dx, values, n, 0, rows, packed, x, x_plane, sums.data() + p * nnz);
    });
  } else {
    const int64_t per_image = nnz + rows;
    parallel_balanced(
        dx.nthreads, rows * dv.images, 2 * dx.len,
        [&](int64_t i) {
          const int64_t n = i / rows, r = i - n * rows;
          return n * per_image + dx.ptr[r] + r;
        },
        [&](int64_t i0, int64_t i1) {
          for (int64_t n = i0 / rows; n * rows < i1; ++n) {
            const int64_t r0 = i0 > n * rows ? i0 - n * rows : 0;
            const int64_t r1 = i1 < (n + 1) * rows ? i1 - n * rows : rows;
            grads_offsets_image(dx, values, n, r0, r1, dx.b + n * dx.b_image_stride,
                                dv.b + n * dv.b_image_stride, x_plane, sums.data() + n * nnz);
          }
        });
  }
  for (int64_t j = 0; j < nnz; ++j) {
    const int64_t k = dx.pos[j];
    float s = sums[k];
    for (int64_t p = 1; p < copies; ++p) s += sums[p * nnz + k];
    dv.out[j] = s;
  }
}

}  // namespace

void f32_sddmm_csr_offsets(const SddmmOffsetsArgs& a) {
  if (a.rows <= 0) return;
  const int64_t base = a.ptr[0];
  if (a.len <= 0 || a.images <= 0) {  // empty sums
    for (int64_t j = base; j < a.ptr[a.rows]; ++j) a.out[j] = 0.0f;
    return;
  }
  if (a.pack != nullptr || a.pack_grid != nullptr) {
    packed_by_image(a, 0, nullptr, [](int64_t, const float*) {});
    return;
  }
  parallel_balanced(
      a.nthreads, a.rows, a.len * a.images, [&](int64_t r) { return a.ptr[r] - base + r; },
      [&](int64_t r0, int64_t r1) {
        for (int64_t n = 0; n < a.images; ++n)
          image_rows(a, a.a + n * a.a_image_stride, r0, r1, a.b + n * a.b_image_stride, a.out,
                     n > 0);
      });
}

void f32_conv_grads_offsets(const SpmmOffsetsArgs& dx, const SddmmOffsetsArgs& dv) {
  const int64_t x_plane = conv_grads_one_pass_plane(dx, dv);
  const bool shared = dx.pack_grid != nullptr && dv.pack_grid != nullptr && dx.b == dv.a &&
                      dx.b_image_stride == dv.a_image_stride && dx.images == dv.images &&
                      *dx.pack_grid == *dv.pack_grid;
  if (x_plane <= 0 && (!shared || dx.rows <= 0 || dx.len <= 0 || dv.rows <= 0 || dv.len <= 0 ||
                       dv.images <= 0)) {  // nothing to share: one after the other
    f32_spmm_csr_offsets(dx);
    f32_sddmm_csr_offsets(dv);
    return;
  }
  const int64_t nnz = dx.ptr[dx.rows] - dx.ptr[0];
  const float* values = dx.val;
  if (dx.pos != nullptr) values = scatter_values(dx.val, dx.pos, nnz, dx.scratch, dx.nthreads);
  if (x_plane > 0) {
    grads_one_pass(dx, values, dv, x_plane);
    return;
  }
  // Sized for the team packed_by_image starts (dv's), so no two threads share a buffer.
  ThreadScratch planes(dx.merge ? dv.nthreads : 0, merge_planes_size(dx));
  packed_by_image(dv, (nnz + dx.rows) * dx.len, dx.finite, [&](int64_t n, const float* packed) {
    spmm_offsets_image(dx, values, n, packed, planes.mine());
  });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
