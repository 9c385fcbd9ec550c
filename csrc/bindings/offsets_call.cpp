#include "bindings/offsets_call.h"

#include "bindings/offsets_checks.h"

namespace sparsetrain {
namespace bindings {

namespace k = sparsetrain::kernels;

namespace {

// The product's index, values and B buffer, checked (B's extent by check_source).
struct CheckedProduct {
  OffsetsIndex ix;
  View<float> val, b;
  Scatter sc;
};

CheckedProduct check_product(const ProductParams& p) {
  CheckedProduct cp{
      offsets_index(as_array(p.ptr), as_array(p.offsets), p.len, p.images), {}, {}, {}};
  check_segments(p.seg_len, p.seg_stride);
  cp.val = view<float>(as_array(p.values), "values", 1);
  cp.b = view<float>(as_array(p.b), "b", 1);
  if (cp.val.size() != cp.ix.nnz) bad("values and offsets differ in length");
  cp.sc = scatter_args(p.pos, p.scratch, cp.ix.nnz);
  return cp;
}

void check_pack_choice(const PackParams& pack) {
  if (pack.pack && pack.pack_grid) bad("pack and pack_grid: one of them at most");
  if (pack.check_finite && !pack.pack && !pack.pack_grid)
    bad("check_finite needs pack or pack_grid (the kernel reads b itself)");
}

// Every B_n[off[j] + t] the kernel reads inside b: packed by the kernel per `pack` (the
// layouts then kept in call), or b as given.
template <class Args>
void check_source(SpmmCall<Args>& call, const CheckedProduct& cp, const ProductParams& p,
                  const PackParams& pack) {
  const int64_t nnz = cp.ix.nnz;
  if (pack.pack) {
    check_pack(*pack.pack, p.images, cp.b.size(), p.b_image_stride, cp.ix.extent, nnz, p.len);
    call.pack = *pack.pack;
  } else if (pack.pack_grid) {
    check_pack_grid(*pack.pack_grid, p.images, cp.b.size(), p.b_image_stride, "b");
    call.grid = *pack.pack_grid;
    check_within_packed(cp.ix.extent, nnz, p.len, mul(call.grid.c, call.grid.per_channel),
                        "pack_grid");
  } else if (nnz > 0) {
    check_extent("b", cp.b.size(), p.images, p.b_image_stride, cp.ix.extent.max_off, p.len);
  }
}

// The plane window: positions that fit int64, planes (`planes` images of rows planes, ldc
// apart) inside c and disjoint; the bias, one per row.
struct CheckedPlanes {
  View<float> c;
  const float* bias = nullptr;
};

CheckedPlanes check_planes(const PlanesParams& o, int64_t rows, int64_t len, int64_t planes) {
  CheckedPlanes out{view<float>(as_array(o.c), "c", 1, true)};
  if (o.grid_w <= 0) bad("planes: grid_w must be set (the grid's row length)");
  if (o.t_base < 0 || o.row0 < 0 || o.col0 < 0 || o.plane_h < 0 || o.plane_w < 0)
    bad("negative plane mapping");
  sum(o.t_base, len), sum(o.row0, o.plane_h), sum(o.col0, o.plane_w);  // grid positions fit
  const int64_t plane = mul(o.plane_h, o.plane_w);
  if (o.px < 1) bad("pixel_stride must be at least 1");
  if (o.px == 1 && o.ldc < plane) bad("ldc is smaller than a plane");
  if (o.px > 1 && (o.ldc != 1 || o.px < rows))
    bad("pixel_stride > 1 (channels_last) needs ldc 1 and at least `rows` channels per pixel");
  if (rows > 0 && plane > 0) {  // every image's planes inside c, images disjoint
    // The last element of an image's planes, plus one.
    const int64_t extent = o.px == 1 ? sum(mul(rows - 1, o.ldc), plane)
                                     : sum(mul(plane - 1, o.px), rows);
    check_extent("c", out.c.size(), planes, o.c_image_stride, 0, extent);
    check_disjoint("c", planes, o.c_image_stride, extent);
  }
  if (o.bias) {
    auto bv = view<float>(*o.bias, "bias", 1);
    if (bv.size() != rows) bad("bias length differs from the row count");
    out.bias = bv.data;
  }
  return out;
}

View<double> check_stats(const OptArray& stats_a, int64_t images, int64_t rows) {
  View<double> stats{};
  if (stats_a) {
    stats = view<double>(*stats_a, "stats", 1, true);
    if (stats.size() != mul(images, rows, 2)) bad("stats must hold images * rows * 2 values");
  }
  return stats;
}

// With no positions or no images there is no kernel call: its sums are of nothing (a kernel
// zeroes its own). Else the finite flags the kernel will set.
template <class Args>
bool no_call(SpmmCall<Args>& call, const ProductParams& p, const PackParams& pack,
             const View<double>& stats) {
  call.check_finite = pack.check_finite;
  if (p.len == 0 || p.images == 0) {
    for (int64_t i = 0; i < stats.size(); ++i) stats.data[i] = 0.0;
    call.empty = true;
    return true;
  }
  call.finite.assign(pack.check_finite ? p.images : 0, 1);
  return false;
}

k::OffsetsProduct<float> product_args(const CheckedProduct& cp, const ProductParams& p) {
  return {
      cp.ix.ptr.data, cp.ix.off.data, cp.val.data,      cp.sc.pos, cp.sc.scratch,
      cp.ix.rows,     cp.b.data,      p.b_image_stride, p.images,  {p.len, p.seg_len, p.seg_stride},
      p.nthreads};
}

template <class Args>
k::ImagePack pack_args(SpmmCall<Args>& call, const PackParams& pack) {
  return {pack.pack ? &call.pack : nullptr, pack.pack_grid ? &call.grid : nullptr,
          pack.check_finite ? call.finite.data() : nullptr};
}

k::PlanesOut<float> planes_args(const CheckedPlanes& c, const PlanesParams& o) {
  return {c.c.data, o.ldc,  o.c_image_stride, o.grid_w,  o.t_base,
          o.row0,   o.col0, o.plane_h,        o.plane_w, c.bias, o.px};
}

}  // namespace

void prepare(SpmmRowsCall& call, const SpmmRowsParams& p) {
  const CheckedProduct cp = check_product(p.p);
  check_pack_choice(p.pack);
  auto c = view<float>(as_array(p.c), "c", 1, true);
  check_source(call, cp, p.p, p.pack);
  check_row_block("c", c.size(), p.p.images, p.c_image_stride, cp.ix.rows, p.ldc, p.p.len);
  const View<double> stats = check_stats(p.stats, p.p.images, cp.ix.rows);
  if (no_call(call, p.p, p.pack, stats)) return;
  call.args = {product_args(cp, p.p),
               {c.data, p.ldc, p.c_image_stride},
               pack_args(call, p.pack),
               stats.data};
}

void prepare(SpmmPlanesCall& call, const SpmmPlanesParams& p) {
  const CheckedProduct cp = check_product(p.p);
  check_pack_choice(p.pack);
  check_source(call, cp, p.p, p.pack);
  const CheckedPlanes c = check_planes(p.out, cp.ix.rows, p.p.len, p.p.images);
  const View<double> stats = check_stats(p.stats, p.p.images, cp.ix.rows);
  if (no_call(call, p.p, p.pack, stats)) return;
  call.args = {product_args(cp, p.p), planes_args(c, p.out), pack_args(call, p.pack), stats.data};
}

void prepare(SpmmPlanes16Call& call, const SpmmPlanes16Params& p) {
  const CheckedProduct cp = check_product(p.p);
  const int64_t images = p.p.images;
  // Planes of a batch-innermost B: whole grid points of 16 elements.
  if (p.p.len % 16 || p.p.seg_len % 16 || p.p.seg_stride % 16)
    bad("planes16: len and segments must be whole grid points (multiples of 16)");
  if (p.batch <= mul(16, images - 1) || p.batch > mul(16, images))
    bad("planes16: batch must fill the last group of 16 images");
  check_source(call, cp, p.p, PackParams{});
  const CheckedPlanes c = check_planes(p.out, cp.ix.rows, p.p.len, p.batch);
  const View<double> stats = check_stats(p.stats, images, cp.ix.rows);
  if (no_call(call, p.p, PackParams{}, stats)) return;
  call.args = {product_args(cp, p.p), planes_args(c, p.out), p.batch, stats.data};
}

void prepare(SpmmMergeCall& call, const SpmmMergeParams& p) {
  const CheckedProduct cp = check_product(p.p);
  check_pack_choice(p.pack);
  auto c = view<float>(as_array(p.c), "c", 1, true);
  check_source(call, cp, p.p, p.pack);
  check_merge(p.merge, cp.ix.rows, p.p.images, p.t_base, p.p.len, c.size(), p.c_image_stride);
  call.merge = p.merge;
  if (no_call(call, p.p, p.pack, View<double>{})) return;
  call.args = {product_args(cp, p.p),
               {c.data, p.c_image_stride, &call.merge, p.t_base},
               pack_args(call, p.pack)};
}

void prepare(SddmmOffsetsCall& call, const SddmmOffsetsParams& p) {
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
  call.args = k::SddmmOffsetsArgs<float>{ix.ptr.data,
                                         ix.off.data,
                                         ix.rows,
                                         a.data,
                                         p.lda,
                                         p.a_image_stride,
                                         b.data,
                                         p.b_image_stride,
                                         p.images,
                                         {p.len, p.seg_len, p.seg_stride},
                                         out.data,
                                         p.nthreads,
                                         packing ? &call.pack : nullptr,
                                         gridding ? &call.grid : nullptr};
}

}  // namespace bindings
}  // namespace sparsetrain
