// The spans of a row an offsets product computes per pass over all rows (Spans,
// offsets_args.h).
#pragma once

#include <cstdint>

#include "kernels/offsets_args.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// Elements of a convolution's flattened grid per pass over all rows of an image: keeps the
// shifted windows of the input planes a pass touches in L2. (128 and 512 measured the same
// as 256 on ResNet-18's layers.)
constexpr int64_t kGridChunk = 256;

// Calls f(t0, t1) for the spans of [0, s.len) one pass over all rows covers: chunks of
// kGridChunk elements, or (s.seg_len > 0) the segments [k * seg_stride, k * seg_stride +
// seg_len) of a grid whose rows are seg_stride apart and hold seg_len real columns (the
// padding columns of a convolution's grid are skipped instead of computed and dropped: 13-29%
// of the work on 14- and 7-wide planes). s by value: its sizes stay in registers while f
// stores.
template <class F>
inline void for_each_span(Spans s, const F& f) {
  const int64_t len = s.len, seg_len = s.seg_len, seg_stride = s.seg_stride;
  if (seg_len > 0 && seg_stride > 0) {
    for (int64_t t0 = 0; t0 < len; t0 += seg_stride) f(t0, t0 + seg_len < len ? t0 + seg_len : len);
    return;
  }
  for (int64_t t0 = 0; t0 < len; t0 += kGridChunk)
    f(t0, t0 + kGridChunk < len ? t0 + kGridChunk : len);
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
