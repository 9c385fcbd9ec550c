#include "bindings/offsets_call.h"

#include "bindings/offsets_checks.h"

namespace sparsetrain {
namespace bindings {

namespace k = sparsetrain::kernels;

void prepare_spmm_offsets(SpmmOffsetsCall& call, const SpmmOffsetsParams& p) {
  const auto ix = offsets_index(as_array(p.ptr), as_array(p.offsets), p.len, p.images);
  check_segments(p.seg_len, p.seg_stride);
  const int64_t unit = p.unit, images = p.images, len = p.len, grid_w = p.grid_w;
  if (unit != 1 && unit != 16) bad("unit must be 1 or 16");
  const bool merging = p.merge.has_value();
  if (merging && p.stats) bad("stats: not with merge (an input gradient has no batch norm)");
  if (merging && (unit != 1 || grid_w > 0))
    bad("merge writes NCHW planes itself: unit 1 and no grid_w");
  const bool packing = p.pack.has_value(), gridding = p.pack_grid.has_value();
  if ((packing || gridding) && unit != 1) bad("pack: unit must be 1");
  if (packing && gridding) bad("pack and pack_grid: one of them at most");
  if (p.check_finite && !packing && !gridding)
    bad("check_finite needs pack or pack_grid (the kernel reads b itself)");
  if (unit == 16) {  // planes of a batch-innermost B: whole grid points of 16 floats
    if (grid_w <= 0) bad("unit 16 writes planes: grid_w must be set");
    if (len % 16 || p.seg_len % 16 || p.seg_stride % 16)
      bad("unit 16: len and segments must be whole grid points (multiples of 16)");
    if (p.batch <= mul(16, images - 1) || p.batch > mul(16, images))
      bad("unit 16: batch must fill the last group of 16 images");
  }
  const int64_t rows = ix.rows, nnz = ix.nnz;
  auto val = view<float>(as_array(p.values), "values", 1);
  auto b = view<float>(as_array(p.b), "b", 1);
  auto c = view<float>(as_array(p.c), "c", 1, true);
  if (val.size() != nnz) bad("values and offsets differ in length");
  const Scatter sc = scatter_args(p.pos, p.scratch, nnz);
  if (packing) {
    check_pack(*p.pack, images, b.size(), p.b_image_stride, ix.extent, nnz, len);
    call.pack = *p.pack;
  } else if (gridding) {
    check_pack_grid(*p.pack_grid, images, b.size(), p.b_image_stride, "b");
    call.grid = *p.pack_grid;
    check_within_packed(ix.extent, nnz, len, mul(call.grid.c, call.grid.per_channel),
                        "pack_grid");
  } else if (nnz > 0) {
    check_extent("b", b.size(), images, p.b_image_stride, ix.extent.max_off, len);
  }
  const float* bias = nullptr;
  if (grid_w > 0) {  // written into plane_h x plane_w planes, ldc apart
    if (p.t_base < 0 || p.row0 < 0 || p.col0 < 0 || p.plane_h < 0 || p.plane_w < 0)
      bad("negative plane mapping");
    sum(p.t_base, len), sum(p.row0, p.plane_h), sum(p.col0, p.plane_w);  // grid positions fit
    if (p.ldc < mul(p.plane_h, p.plane_w)) bad("ldc is smaller than a plane");
    if (rows > 0) {  // every image's planes inside c, images disjoint
      const int64_t planes = unit == 16 ? p.batch : images;
      const int64_t plane = p.plane_h * p.plane_w;
      check_extent("c", c.size(), planes, p.c_image_stride, mul(rows - 1, p.ldc), plane);
      check_disjoint("c", planes, p.c_image_stride, sum(mul(rows - 1, p.ldc), plane));
    }
    if (p.bias) {
      auto bv = view<float>(*p.bias, "bias", 1);
      if (bv.size() != rows) bad("bias length differs from the row count");
      bias = bv.data;
    }
  }
  if (merging) {
    check_merge(*p.merge, rows, images, p.t_base, len, c.size(), p.c_image_stride);
    call.merge = *p.merge;
  } else if (grid_w <= 0) {
    check_row_block("c", c.size(), images, p.c_image_stride, rows, p.ldc, len);
  }
  View<double> stats{};
  if (p.stats) {
    stats = view<double>(*p.stats, "stats", 1, true);
    if (stats.size() != mul(images, rows, 2)) bad("stats must hold images * rows * 2 values");
  }
  call.check_finite = p.check_finite;
  if (len == 0 || images == 0) {  // no kernel call: its sums are of nothing (it zeroes its own)
    for (int64_t i = 0; i < stats.size(); ++i) stats.data[i] = 0.0;
    call.empty = true;
    return;
  }
  call.finite.assign(p.check_finite ? images : 0, 1);
  call.args = k::SpmmOffsetsArgs{ix.ptr.data, ix.off.data, val.data, sc.pos, sc.scratch, rows,
                                 b.data, p.b_image_stride, c.data, p.ldc, p.c_image_stride, len,
                                 images, p.nthreads, grid_w, p.t_base, p.row0, p.col0, p.plane_h,
                                 p.plane_w, bias, p.seg_len, p.seg_stride, unit, p.batch,
                                 merging ? &call.merge : nullptr, packing ? &call.pack : nullptr,
                                 p.check_finite ? call.finite.data() : nullptr,
                                 gridding ? &call.grid : nullptr, stats.data};
}

void prepare_sddmm_offsets(SddmmOffsetsCall& call, const SddmmOffsetsParams& p) {
  const auto ix = offsets_index(as_array(p.ptr), as_array(p.offsets), p.len, p.images);
  check_segments(p.seg_len, p.seg_stride);
  auto a = view<float>(as_array(p.a), "a", 1);
  auto b = view<float>(as_array(p.b), "b", 1);
  auto out = view<float>(as_array(p.out), "out", 1, true);
  if (out.size() != ix.nnz) bad("out and offsets differ in length");
  const bool packing = p.pack.has_value();
  if (packing) {
    check_pack(*p.pack, p.images, b.size(), p.b_image_stride, ix.extent, ix.nnz, p.len);
    call.pack = *p.pack;
  } else if (ix.nnz > 0) {
    check_extent("b", b.size(), p.images, p.b_image_stride, ix.extent.max_off, p.len);
  }
  const bool gridding = p.pack_grid.has_value();
  if (gridding) {  // rows of len from the packed image's offset on, lda apart
    const k::ConvOutputLayout& grid = *p.pack_grid;
    check_pack_grid(grid, p.images, a.size(), p.a_image_stride, "a");
    call.grid = grid;
    if (ix.rows > 0 && p.len > 0) {
      if (p.lda < p.len) bad("lda is smaller than len");
      if (sum(grid.offset, mul(ix.rows - 1, p.lda), p.len) > mul(grid.c, grid.per_channel))
        bad("pack_grid: rows of a reach past a packed image");
    }
  } else {
    check_row_block("a", a.size(), p.images, p.a_image_stride, ix.rows, p.lda, p.len);
  }
  call.args = k::SddmmOffsetsArgs{ix.ptr.data, ix.off.data, ix.rows, a.data, p.lda,
                                  p.a_image_stride, b.data, p.b_image_stride, p.len, p.images,
                                  out.data, p.nthreads, p.seg_len, p.seg_stride,
                                  packing ? &call.pack : nullptr,
                                  gridding ? &call.grid : nullptr};
}

}  // namespace bindings
}  // namespace sparsetrain
