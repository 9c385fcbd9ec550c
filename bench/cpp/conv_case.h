// A 3x3, stride-1, padding-1 convolution cin -> cout on h x w images, and its random weight
// pattern over (cout, cin * 9): the shapes the convolution benchmarks share.
#pragma once

#include "harness.h"

namespace st_bench {

struct ConvShape {
  int64_t cin, cout, h, w, images;
  double sparsity;
};

inline std::string describe(const ConvShape& s) {
  return std::to_string(s.cin) + "->" + std::to_string(s.cout) + " 3x3 @" + std::to_string(s.h) +
         "x" + std::to_string(s.w) + " n" + std::to_string(s.images);
}

// Output pixels of every image: the batch the nonzero work is counted over.
inline double conv_flops(int64_t nnz, const ConvShape& s) {
  return 2.0 * nnz * s.h * s.w * s.images;
}

// A ResNet's 3x3 layers at 95%: an early, wide-plane stage and a late, many-channel one.
inline std::vector<ConvShape> conv_shapes(const Options& o) {
  if (o.quick) return {{4, 6, 9, 11, 2, 0.5}};
  return {{64, 64, 56, 56, 32, 0.95}, {256, 256, 14, 14, 32, 0.95}};
}

}  // namespace st_bench
