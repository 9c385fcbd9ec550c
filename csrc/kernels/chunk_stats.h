// A batch norm's output statistics summed while the kernel stores the output (the offsets
// forms' `stats`, offsets_args.h).
#pragma once

#include "kernels/vec.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// The values one chunk writes to a row, summed in float vectors as they are stored (two
// accumulator pairs, so consecutive vectors do not wait on each other's adds), then added to
// the row's double sums.
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

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
