// Every form of the offsets family on a ResNet's 3x3 layers, with the arguments the layers
// pass (functional/conv_layouts.py), in the two layouts:
//   plane (one image per vector; each kernel packs the NCHW images it reads itself):
//     forward spmm_offsets_planes; input gradient spmm_offsets_planes (stride 1) or
//     spmm_offsets_merge (strided); values gradient sddmm_offsets; both gradients at once
//     conv_grads_offsets_planes / _merge.
//   batch (16 images per vector, packed beforehand by the layout kernels, not timed here):
//     forward spmm_offsets_planes16; input gradient spmm_offsets_planes16 (stride 1) or
//     spmm_offsets_rows into the packed planes (strided); sddmm_offsets;
//     conv_grads_offsets_planes16 (stride 1).
// A gradient at once against the sum of its two gradients alone says what one pass saves.
// Every form's result is checked against a plain loop over the nonzeros first, so a case
// cannot time arguments that compute something else.
#include <cmath>

#include "conv_geometry.h"

namespace st_bench {
namespace {

constexpr int64_t kLanes = 16;  // images per vector of the batch layout

struct Case {
  ConvShape s;
  ConvGrid g;
  Csr w;
  ConvOffsets x;
  double flops, index_bytes;      // one product's nonzero work; the pattern's index and values
  Buffer<float> in, dout;         // NCHW x and dy
  std::vector<double> y, dx, dv;  // their products by the plain loop
};

Case make_case(const ConvShape& s, std::mt19937& rng) {
  Case c;
  c.s = s;
  c.g = conv_grid(s);
  c.w = random_csr(s.cout, s.cin * 9, s.sparsity, rng);
  c.x = conv_offsets(c.w, c.g, s.cin);
  c.flops = conv_flops(c.w.nnz(), s);
  c.index_bytes = c.w.nnz() * (4.0 + 8.0) + (s.cout + 1) * 8.0;
  const int64_t ho = c.g.ho, wo = c.g.wo, hw = s.h * s.w;
  c.in = random_vec(s.images * s.cin * hw, rng);
  c.dout = random_vec(s.images * s.cout * ho * wo, rng);
  c.y.assign(c.dout.size(), 0.0);
  c.dx.assign(c.in.size(), 0.0);
  c.dv.assign(c.w.nnz(), 0.0);
  for (int64_t n = 0; n < s.images; ++n)
    for (int64_t r = 0; r < s.cout; ++r)
      for (int64_t j = c.w.ptr[r]; j < c.w.ptr[r + 1]; ++j) {
        const int64_t col = c.w.idx[j], ci = col / 9, ky = col / 3 % 3, kx = col % 3;
        for (int64_t oh = 0; oh < ho; ++oh)
          for (int64_t ow = 0; ow < wo; ++ow) {
            const int64_t ih = oh * s.stride + ky - 1, iw = ow * s.stride + kx - 1;
            if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
            const int64_t xi = (n * s.cin + ci) * hw + ih * s.w + iw;
            const int64_t yi = ((n * s.cout + r) * ho + oh) * wo + ow;
            c.y[yi] += double{c.w.val[j]} * c.in[xi];
            c.dx[xi] += double{c.w.val[j]} * c.dout[yi];
            c.dv[j] += double{c.dout[yi]} * c.in[xi];
          }
      }
  return c;
}

// Exits when a form's result is not the plain loop's (to float rounding of its sums).
template <class Got>
void check(const char* what, const Case& c, const Got& got, const std::vector<double>& ref) {
  double scale = 0.0, err = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    scale = std::max(scale, std::fabs(ref[i]));
    err = std::max(err, std::fabs(got[i] - ref[i]));
  }
  if (!(err <= 1e-4 * std::max(scale, 1.0))) {
    std::fprintf(stderr, "%s on %s: off by %g (largest value %g)\n", what, describe(c.s).c_str(),
                 err, scale);
    std::exit(1);
  }
}

// One form: its outputs set to NaN, one run checked against the plain loop, then timed.
// `products` of nonzero work; the traffic model's index (transposed: with pos) and dense
// arrays.
template <class F, class Check>
void time_form(const char* kernel, st::Isa isa, const Case& c, const char* layout, const Options& o,
               std::initializer_list<Buffer<float>*> outs, F&& run, Check&& check_outputs,
               double products, double index_bytes, double dense_floats) {
  for (Buffer<float>* b : outs) std::fill(b->begin(), b->end(), NAN);
  run();
  check_outputs();
  report(kernel, isa, describe(c.s) + " " + layout, c.w.sparsity(), o,
         median_seconds(run, o.repeats), products * c.flops, index_bytes + 4.0 * dense_floats);
}

void check_grads(const Case& c, const Buffer<float>& dx, const Buffer<float>& dv) {
  check("dx", c, dx, c.dx);
  check("dv", c, dv, c.dv);
}

void bench_plane(const Case& c, const Options& o) {
  const ConvShape& s = c.s;
  const ConvGrid& g = c.g;
  const int64_t n = s.images, x_image = s.cin * s.h * s.w, y_image = s.cout * g.ho * g.wo;
  const Buffer<float>&x = c.in, &dy = c.dout;
  Buffer<float> y(n * y_image), dx(n * x_image), scratch(c.w.nnz()), dv(c.w.nnz());
  const k::ConvInputLayout xl = input_layout(s, g, 1);
  const k::ConvOutputLayout dyl = output_layout(s, g, 1);
  const double t_index = c.index_bytes + c.w.nnz() * 8.0, xs = n * x_image, ys = n * y_image;
  const int64_t t_rows = s.cin * g.phases;
  for (st::Isa isa : o.isas) {
    const auto& t = st::kernel_table(isa);
    const k::SpmmOffsetsPlanesArgs<float> fwd{
        {c.w.ptr.data(),
         c.x.off.data(),
         c.w.val.data(),
         nullptr,
         nullptr,
         s.cout,
         x.data(),
         x_image,
         n,
         {g.grid_len},
         o.threads},
        {y.data(), g.ho * g.wo, y_image, g.wq, 0, 0, 0, g.ho, g.wo, nullptr},
        {&xl, nullptr, nullptr}};
    time_form(
        "spmm_offsets_planes", isa, c, "plane", o, {&y}, [&] { t.spmm_offsets_planes_f32(fwd); },
        [&] { check("y", c, y, c.y); }, 1, c.index_bytes, xs + ys);
    const k::OffsetsProduct<float> dxp{c.x.t_ptr.data(), c.x.t_off.data(), c.w.val.data(),
                                       c.x.t_pos.data(), scratch.data(),   t_rows,
                                       dy.data(),        y_image,          n,
                                       {g.dx_len},       o.threads};
    const k::SddmmOffsetsArgs<float> dvs{
        c.w.ptr.data(), c.x.off.data(), s.cout,  dy.data(), g.dy_len,
        y_image,        x.data(),       x_image, n,         {g.grid_len},
        dv.data(),      o.threads,      &xl,     &dyl};
    const k::ImagePack dy_pack{nullptr, &dyl, nullptr};
    if (s.stride == 1) {
      const k::SpmmOffsetsPlanesArgs<float> dxs{
          dxp, {dx.data(), s.h * s.w, x_image, g.wq, g.dx_start, 1, 1, s.h, s.w, nullptr}, dy_pack};
      time_form(
          "spmm_offsets_planes (dx)", isa, c, "plane", o, {&dx},
          [&] { t.spmm_offsets_planes_f32(dxs); }, [&] { check("dx", c, dx, c.dx); }, 1, t_index,
          xs + ys);
      time_form(
          "sddmm_offsets", isa, c, "plane", o, {&dv}, [&] { t.sddmm_offsets_f32(dvs); },
          [&] { check("dv", c, dv, c.dv); }, 1, c.index_bytes, xs + ys);
      const k::ConvGradsPlanesArgs<float> both{dxs, dvs};
      time_form(
          "conv_grads_offsets_planes", isa, c, "plane", o, {&dx, &dv},
          [&] { t.conv_grads_offsets_planes_f32(both); }, [&] { check_grads(c, dx, dv); }, 2,
          t_index, 2 * xs + ys);
    } else {
      const k::SpmmOffsetsMergeArgs<float> dxs{dxp, {dx.data(), x_image, &xl, g.dx_start}, dy_pack};
      time_form(
          "spmm_offsets_merge (dx)", isa, c, "plane", o, {&dx},
          [&] { t.spmm_offsets_merge_f32(dxs); }, [&] { check("dx", c, dx, c.dx); }, 1, t_index,
          xs + ys);
      time_form(
          "sddmm_offsets", isa, c, "plane", o, {&dv}, [&] { t.sddmm_offsets_f32(dvs); },
          [&] { check("dv", c, dv, c.dv); }, 1, c.index_bytes, xs + ys);
      const k::ConvGradsMergeArgs<float> both{dxs, dvs};
      time_form(
          "conv_grads_offsets_merge", isa, c, "plane", o, {&dx, &dv},
          [&] { t.conv_grads_offsets_merge_f32(both); }, [&] { check_grads(c, dx, dv); }, 2,
          t_index, 2 * xs + ys);
    }
  }
}

void bench_batch(const Case& c, const Options& o) {
  const ConvShape& s = c.s;
  const ConvGrid& g = c.g;
  const int64_t n = s.images, groups = (n + kLanes - 1) / kLanes;
  const int64_t x_image = s.cin * s.h * s.w, y_image = s.cout * g.ho * g.wo;
  const int64_t xq_image = s.cin * g.phases * g.plane * kLanes,
                dyq_image = s.cout * g.dy_len * kLanes;
  const k::ConvInputLayout xl = input_layout(s, g, kLanes);
  const k::ConvOutputLayout dyl = output_layout(s, g, kLanes);
  // The packed x and dy the layer's layout kernels make before the products.
  Buffer<float> xq(groups * xq_image), dyq(groups * dyq_image);
  {
    Buffer<float> x = c.in;  // conv_pack_input's x is not const (the unpack writes it)
    const auto& t = st::kernel_table(o.isas.front());
    t.conv_pack_input_f32({xl, x.data(), xq.data(), o.threads});
    t.conv_pack_grad_output_f32({dyl, c.dout.data(), dyq.data(), nullptr, o.threads});
  }
  std::vector<int64_t> off(c.x.off), t_off(c.x.t_off);  // offsets in floats: x 16 lanes
  for (auto& v : off) v *= kLanes;
  for (auto& v : t_off) v *= kLanes;
  Buffer<float> y(n * y_image), dx(n * x_image), dxq(groups * xq_image), scratch(c.w.nnz()),
      dv(c.w.nnz());
  const double t_index = c.index_bytes + c.w.nnz() * 8.0, xqs = groups * xq_image,
               dyqs = groups * dyq_image;
  const int64_t t_rows = s.cin * g.phases;
  const k::Spans out_spans{g.grid_len * kLanes, g.wo * kLanes, g.wq * kLanes};
  for (st::Isa isa : o.isas) {
    const auto& t = st::kernel_table(isa);
    const k::SpmmOffsetsPlanes16Args<float> fwd{
        {c.w.ptr.data(), off.data(), c.w.val.data(), nullptr, nullptr, s.cout, xq.data(), xq_image,
         groups, out_spans, o.threads},
        {y.data(), g.ho * g.wo, y_image, g.wq, 0, 0, 0, g.ho, g.wo, nullptr},
        n};
    time_form(
        "spmm_offsets_planes16", isa, c, "batch", o, {&y},
        [&] { t.spmm_offsets_planes16_f32(fwd); }, [&] { check("y", c, y, c.y); }, 1, c.index_bytes,
        xqs + n * y_image);
    const k::SddmmOffsetsArgs<float> dvs{c.w.ptr.data(),
                                         off.data(),
                                         s.cout,
                                         dyq.data() + g.margin * kLanes,
                                         g.dy_len * kLanes,
                                         dyq_image,
                                         xq.data(),
                                         xq_image,
                                         groups,
                                         out_spans,
                                         dv.data(),
                                         o.threads};
    const k::OffsetsProduct<float> dxp{
        c.x.t_ptr.data(), t_off.data(), c.w.val.data(), c.x.t_pos.data(),    scratch.data(), t_rows,
        dyq.data(),       dyq_image,    groups,         {g.dx_len * kLanes}, o.threads};
    if (s.stride == 1) {
      k::SpmmOffsetsPlanes16Args<float> dxs{
          dxp, {dx.data(), s.h * s.w, x_image, g.wq, g.dx_start, 1, 1, s.h, s.w, nullptr}, n};
      dxs.product.spans = {g.dx_len * kLanes, s.w * kLanes, g.wq * kLanes};
      time_form(
          "spmm_offsets_planes16 (dx)", isa, c, "batch", o, {&dx},
          [&] { t.spmm_offsets_planes16_f32(dxs); }, [&] { check("dx", c, dx, c.dx); }, 1, t_index,
          dyqs + n * x_image);
      time_form(
          "sddmm_offsets", isa, c, "batch", o, {&dv}, [&] { t.sddmm_offsets_f32(dvs); },
          [&] { check("dv", c, dv, c.dv); }, 1, c.index_bytes, xqs + dyqs);
      const k::ConvGradsPlanes16Args<float> both{dxs, dvs};
      time_form(
          "conv_grads_offsets_planes16", isa, c, "batch", o, {&dx, &dv},
          [&] { t.conv_grads_offsets_planes16_f32(both); }, [&] { check_grads(c, dx, dv); }, 2,
          t_index, xqs + dyqs + n * x_image);
    } else {
      const k::SpmmOffsetsRowsArgs<float> dxs{
          dxp, {dxq.data() + g.dx_start * kLanes, g.plane * kLanes, xq_image}};
      time_form(
          "spmm_offsets_rows (dx)", isa, c, "batch", o, {&dxq},
          [&] { t.spmm_offsets_rows_f32(dxs); },
          [&] {
            t.conv_unpack_grad_input_f32({xl, dx.data(), dxq.data(), o.threads});
            check("dx", c, dx, c.dx);
          },
          1, t_index, dyqs + xqs);
      time_form(
          "sddmm_offsets", isa, c, "batch", o, {&dv}, [&] { t.sddmm_offsets_f32(dvs); },
          [&] { check("dv", c, dv, c.dv); }, 1, c.index_bytes, xqs + dyqs);
    }
  }
}

}  // namespace
}  // namespace st_bench

int main(int argc, char** argv) {
  using namespace st_bench;
  const Options o = parse_options(argc, argv);
  print_header();
  std::mt19937 rng(10);
  std::vector<ConvShape> shapes = conv_shapes(o);
  for (const ConvShape& s : strided_conv_shapes(o)) shapes.push_back(s);
  for (const ConvShape& s : shapes) {
    const Case c = make_case(s, rng);
    bench_plane(c, o);
    bench_batch(c, o);
  }
  return 0;
}
