// spmm_offsets_merge: the input gradient of a strided convolution straight into NCHW
// (MergeOut): per image and channel, the products of its stride-phase rows computed into a
// per-thread buffer of phase planes, interleaved into the channel's plane while in L1.
// Threads own disjoint (image, channel) pairs balanced by nonzero count, or whole images when
// the kernel packs B (the output gradient) itself.
#include "kernels/conv_layout_parts.h"
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

// Channel ch's phase planes computed into `planes` (phases x plane, zero outside
// [t_base, t_base + len)), b = B_n.
template <class T>
void channel_phases(const SpmmOffsetsMergeArgs<T>& a, const float* values, int64_t ch,
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
}

// Channel ch of image n: its phase planes, interleaved straight into its NCHW plane; or
// (channels_last) channels [ch, ch + 16), each interleaved into an NCHW plane of the buffer,
// then transposed into the image's pixels.
template <class T>
void merge_channel(const SpmmOffsetsMergeArgs<T>& a, const float* values, int64_t n, int64_t ch,
                   const float* b, float* planes) {
  const ConvInputLayout& l = *a.out.layout;
  float* const image = a.out.c + n * a.out.c_image_stride;
  if (!l.nhwc) {
    channel_phases(a, values, ch, b, planes);
    merge_phases(planes, l, image + ch * l.h * l.w);
    return;
  }
  const int64_t per_channel = l.sh * l.sw * l.hq * l.wq, hw = l.h * l.w;
  const int64_t cb = l.c - ch < 16 ? l.c - ch : 16;
  float* const nchw = planes + 16 * per_channel;
  for (int64_t cc = 0; cc < cb; ++cc) {
    channel_phases(a, values, ch + cc, b, planes + cc * per_channel);
    merge_phases(planes + cc * per_channel, l, nchw + cc * hw);
  }
  layout_parts::rows_to_pixels(nchw, hw, cb, hw, image + ch, l.c);
}

// The channels merge_channel starts at: every one, or every 16th (channels_last).
inline int64_t channel_step(const ConvInputLayout& l) { return l.nhwc ? 16 : 1; }

}  // namespace

template <class T>
void spmm_offsets_merge_image(const SpmmOffsetsMergeArgs<T>& a, const float* values, int64_t n,
                              const float* b, float* planes) {
  const int64_t step = channel_step(*a.out.layout);
  for (int64_t ch = 0; ch < a.out.layout->c; ch += step) merge_channel(a, values, n, ch, b, planes);
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
  // Items: (image, first channel) pairs, balanced by nonzero count.
  const int64_t phases = l.sh * l.sw, step = channel_step(l), items = (l.c + step - 1) / step;
  const int64_t base = p.ptr[0], per_image = p.ptr[p.rows] - base + p.rows;
  parallel_balanced(
      p.nthreads, items * p.images, phases * p.spans.len,
      [&](int64_t i) {
        const int64_t n = i / items, ch = (i - n * items) * step;
        return n * per_image + p.ptr[ch * phases] - base + ch * phases;
      },
      [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t n = i / items, ch = (i - n * items) * step;
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
