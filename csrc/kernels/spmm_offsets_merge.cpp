// spmm_offsets_merge: the input gradient of a strided convolution straight into NCHW
// (MergeOut): per image and channel, the products of its stride-phase rows computed into a
// per-thread buffer of phase planes, interleaved into the channel's plane while in L1.
// Threads own disjoint (image, channel) pairs balanced by nonzero count, or whole images when
// the kernel packs B (the output gradient) itself.
#include "kernels/image_pack.h"
#include "kernels/kernels.h"
#include "kernels/offsets_image.h"
#include "kernels/phase_merge.h"
#include "kernels/spans.h"
#include "kernels/spmm_tiles.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {
namespace {

// Channel ch of image n (b = B_n): its phase planes computed into `planes` (phases x plane,
// zero outside [t_base, t_base + len)) and interleaved straight into its NCHW plane.
template <class T>
void merge_channel(const SpmmOffsetsMergeArgs<T>& a, const float* values, int64_t n, int64_t ch,
                   const float* b, float* planes) {
  const OffsetsProduct<T>& p = a.product;
  const ConvInputLayout& l = *a.out.layout;
  const int64_t phases = l.sh * l.sw, plane = l.hq * l.wq;
  float* const buf = planes + a.out.t_base;
  const auto src = [&](int64_t j) { return b + p.off[j]; };
  for_each_span(p.spans, [&](int64_t t0, int64_t t1) {
    for (int64_t ph = 0; ph < phases; ++ph) {
      const int64_t r = ch * phases + ph;
      spmm_span(p.ptr[r], p.ptr[r + 1], src, values, t0, t1, buf + ph * plane);
    }
  });
  merge_phases(planes, l, a.out.c + n * a.out.c_image_stride + ch * l.h * l.w);
}

}  // namespace

template <class T>
void spmm_offsets_merge_image(const SpmmOffsetsMergeArgs<T>& a, const float* values, int64_t n,
                              const float* b, float* planes) {
  for (int64_t ch = 0; ch < a.out.layout->c; ++ch) merge_channel(a, values, n, ch, b, planes);
}

namespace {

template <class T>
void spmm_offsets_merge_impl(const SpmmOffsetsMergeArgs<T>& a) {
  const OffsetsProduct<T>& p = a.product;
  if (p.rows <= 0 || p.images <= 0) return;
  const float* values = index_values(p);
  const ConvInputLayout& l = *a.out.layout;
  // Zeroed once: the kernel only ever writes [t_base, t_base + len) of each plane.
  ThreadScratch planes(p.nthreads, merge_planes_size(l));
  if (packs(a.pack)) {
    const int64_t nnz = p.ptr[p.rows] - p.ptr[0];
    for_each_own_image(p, a.pack, (nnz + p.rows) * p.spans.len, [&](int64_t n, const float* b) {
      spmm_offsets_merge_image(a, values, n, b, planes.mine());
    });
    return;
  }
  const int64_t phases = l.sh * l.sw;
  const int64_t base = p.ptr[0], per_image = p.ptr[p.rows] - base + p.rows;
  parallel_balanced(
      p.nthreads, l.c * p.images, phases * p.spans.len,
      [&](int64_t i) {
        const int64_t n = i / l.c, ch = i - n * l.c;
        return n * per_image + p.ptr[ch * phases] - base + ch * phases;
      },
      [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t n = i / l.c, ch = i - n * l.c;
          merge_channel(a, values, n, ch, p.b + n * p.b_image_stride, planes.mine());
        }
      });
}

}  // namespace

template <class T>
void spmm_offsets_merge(const SpmmOffsetsMergeArgs<T>& a) {
  spmm_offsets_merge_impl(a);
}

template void spmm_offsets_merge<f32>(const SpmmOffsetsMergeArgs<f32>&);
template void spmm_offsets_merge_image<f32>(const SpmmOffsetsMergeArgs<f32>&, const float*, int64_t,
                                            const float*, float*);

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
