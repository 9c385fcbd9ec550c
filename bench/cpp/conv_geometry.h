// The offsets index of a 3x3, padding-1 convolution of any stride, as the layers build it
// (python/sparsetrain/formats/conv.py: conv_shape and conv_index, for one group and no
// dilation), and the two layouts the offsets kernels run on (functional/conv_layouts.py):
// "plane" (unit 1, each image packed by the kernel that reads it) and "batch" (unit 16, packed
// beforehand by conv_pack_input / conv_pack_grad_output).
#pragma once

#include <numeric>

#include "conv_case.h"

namespace st_bench {

// Everything that depends on the input size; names as in formats/conv.py's ConvShape.
struct ConvGrid {
  int64_t s, ho, wo, hq, wq, phases, plane, grid_len, margin, dy_len, dx_start, dx_len;
};

inline ConvGrid conv_grid(const ConvShape& c) {
  const int64_t s = c.stride, hp = c.h + 2, wp = c.w + 2;
  ConvGrid g{};
  g.s = s;
  g.ho = (hp - 3) / s + 1;
  g.wo = (wp - 3) / s + 1;
  g.hq = (hp + s - 1) / s;
  g.wq = (wp + s - 1) / s;
  g.phases = s * s;
  g.plane = g.hq * g.wq;
  g.grid_len = (g.ho - 1) * g.wq + g.wo;
  g.margin = (2 / s) * g.wq + 2 / s;
  g.dy_len = g.margin + g.plane;
  g.dx_start = (1 / s) * g.wq + 1 / s;
  g.dx_len = (c.h / s) * g.wq + c.w / s + 1 - g.dx_start;
  return g;
}

// Forward: off[j] where nonzero j's run starts in one image's packed input. Input gradient:
// rows are (input channel, phase) planes; t_off[k] where its run starts in the bordered
// output gradient (from the plane's dx_start on), t_pos[j] nonzero j's place in that order.
struct ConvOffsets {
  std::vector<int64_t> off, t_ptr, t_off, t_pos;
};

inline ConvOffsets conv_offsets(const Csr& w, const ConvGrid& g, int64_t cin) {
  const int64_t nnz = w.nnz(), s = g.s;
  ConvOffsets x{std::vector<int64_t>(nnz), std::vector<int64_t>(cin * g.phases + 1, 0),
                std::vector<int64_t>(nnz), std::vector<int64_t>(nnz)};
  std::vector<int64_t> row_t(nnz), shift(nnz), co(nnz);
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t j = w.ptr[r]; j < w.ptr[r + 1]; ++j) {
      const int64_t c = w.idx[j], th = c / 3 % 3, tw = c % 3;
      shift[j] = (th / s) * g.wq + tw / s;
      row_t[j] = (c / 9) * g.phases + (th % s) * s + tw % s;
      co[j] = r;
      x.off[j] = row_t[j] * g.plane + shift[j];
      ++x.t_ptr[row_t[j] + 1];
    }
  std::partial_sum(x.t_ptr.begin(), x.t_ptr.end(), x.t_ptr.begin());
  std::vector<int64_t> next(x.t_ptr.begin(), x.t_ptr.end() - 1);
  for (int64_t j = 0; j < nnz; ++j) {  // stable: CSR order inside a plane
    const int64_t k = next[row_t[j]]++;
    x.t_pos[j] = k;
    x.t_off[k] = co[j] * g.dy_len + g.margin - shift[j] + g.dx_start;
  }
  return x;
}

// x's phase planes and dy's bordered grid for `unit` images per pixel.
inline k::ConvInputLayout input_layout(const ConvShape& c, const ConvGrid& g, int64_t unit) {
  return {c.images, c.cin, (c.images + unit - 1) / unit, unit, c.h, c.w, g.s, g.s, 1, 1,
          g.hq,     g.wq};
}
inline k::ConvOutputLayout output_layout(const ConvShape& c, const ConvGrid& g, int64_t unit) {
  return {c.images, c.cout,  (c.images + unit - 1) / unit, unit, g.ho, g.wo, g.wq,
          g.dy_len, g.margin};
}

}  // namespace st_bench
