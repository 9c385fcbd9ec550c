// A 3x3, padding-1 convolution cin -> cout on h x w images (stride 1 unless said), and its
// random weight pattern over (cout, cin * 9): the shapes the convolution benchmarks share.
#pragma once

#include "harness.h"

namespace st_bench {

struct ConvShape {
  int64_t cin, cout, h, w, images;
  double sparsity;
  int64_t stride = 1;
  int64_t ho() const { return (h - 1) / stride + 1; }
  int64_t wo() const { return (w - 1) / stride + 1; }
};

inline std::string describe(const ConvShape& s) {
  const std::string stride = s.stride == 1 ? "" : "/" + std::to_string(s.stride);
  return std::to_string(s.cin) + "->" + std::to_string(s.cout) + " 3x3" + stride + " @" +
         std::to_string(s.h) + "x" + std::to_string(s.w) + " n" + std::to_string(s.images);
}

// Output pixels of every image: the batch the nonzero work is counted over.
inline double conv_flops(int64_t nnz, const ConvShape& s) {
  return 2.0 * nnz * s.ho() * s.wo() * s.images;
}

// A ResNet's 3x3 layers at 95%: an early, wide-plane stage and a late, many-channel one.
inline std::vector<ConvShape> conv_shapes(const Options& o) {
  if (o.quick) return {{4, 6, 9, 11, 2, 0.5}};
  return {{64, 64, 56, 56, 32, 0.95}, {256, 256, 14, 14, 32, 0.95}};
}

// ... and a downsampling one (stride 2) of the same network.
inline std::vector<ConvShape> strided_conv_shapes(const Options& o) {
  if (o.quick) return {{4, 6, 9, 11, 2, 0.5, 2}};
  return {{64, 128, 56, 56, 32, 0.95, 2}};
}

}  // namespace st_bench
