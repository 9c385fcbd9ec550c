// The layout kernels: pack / unpack between PyTorch's (batch, features) and batch-major,
// and conv_pack_input (NCHW into bordered planes). No arithmetic: GFLOP/s is 0 and GB/s
// (the source read and the destination written, once each) is the figure to watch.
#include "conv_case.h"

namespace st_bench {
namespace {

void bench_pack(int64_t batch, int64_t features, const Options& o) {
  std::mt19937 rng(17);
  const int64_t nb = k::padded_batch(batch);
  const Buffer<float> src = random_vec(batch * features, rng);
  Buffer<float> packed(features * nb), back(batch * features);
  const std::string shape = "batch " + std::to_string(batch) + " x " + std::to_string(features);
  for (st::Isa isa : o.isas) {
    const auto& t = st::kernel_table(isa);
    const k::PackArgs<float> p{src.data(), batch, features, features, packed.data(), nb, o.threads};
    report("pack_bmajor", isa, shape, 0.0, o,
           median_seconds([&] { t.pack_bmajor_f32(p); }, o.repeats), 0.0,
           4.0 * (batch + nb) * features);
    const k::UnpackArgs<float> u{packed.data(), nb,       batch,   features,
                                 back.data(),   features, nullptr, o.threads};
    report("unpack_bmajor", isa, shape, 0.0, o,
           median_seconds([&] { t.unpack_bmajor_f32(u); }, o.repeats), 0.0,
           4.0 * (batch + nb) * features);
  }
}

void bench_conv_pack(const ConvShape& s, const Options& o) {
  std::mt19937 rng(19);
  // Unit 1, stride 1, a one-pixel zero border.
  const k::ConvInputLayout l{s.images, s.cin, s.images, 1, s.h, s.w, 1, 1, 1, 1, s.h + 2, s.w + 2};
  Buffer<float> x = random_vec(s.images * s.cin * s.h * s.w, rng);
  Buffer<float> packed(l.groups * l.c * l.hq * l.wq);
  for (st::Isa isa : o.isas) {
    const auto& t = st::kernel_table(isa);
    const k::ConvInputArgs<float> a{l, x.data(), packed.data(), o.threads};
    report("conv_pack_input", isa, describe(s), 0.0, o,
           median_seconds([&] { t.conv_pack_input_f32(a); }, o.repeats), 0.0,
           4.0 * (x.size() + packed.size()));
    report("conv_unpack_grad_input", isa, describe(s), 0.0, o,
           median_seconds([&] { t.conv_unpack_grad_input_f32(a); }, o.repeats), 0.0,
           4.0 * (x.size() + packed.size()));
  }
}

// The output gradient onto the bordered grid the offsets products read it on (a 3x3,
// stride-1, padding-1 layer: rows of w + 2, a margin of two rows and two pixels), with the
// channel sums (the bias gradient) in the same pass.
void bench_conv_pack_grad(const ConvShape& s, const Options& o) {
  std::mt19937 rng(20);
  const int64_t wq = s.w + 2, margin = 2 * wq + 2, plane = (s.h + 2) * wq;
  const k::ConvOutputLayout l{s.images, s.cout, s.images, 1, s.h, s.w, wq, margin + plane, margin};
  Buffer<float> y = random_vec(s.images * s.cout * s.h * s.w, rng);
  Buffer<float> grid(l.groups * l.c * l.per_channel);
  std::vector<double> sums(l.groups * l.c);
  for (st::Isa isa : o.isas) {
    const auto& t = st::kernel_table(isa);
    const k::ConvOutputArgs<float> a{l, y.data(), grid.data(), sums.data(), o.threads};
    report("conv_pack_grad_output", isa, describe(s), 0.0, o,
           median_seconds([&] { t.conv_pack_grad_output_f32(a); }, o.repeats), 0.0,
           4.0 * (y.size() + grid.size()));
  }
}

// A strided 1x1 convolution's subsampling (stride 2) of its input, and the gradient back.
void bench_subsample(const ConvShape& s, const Options& o) {
  std::mt19937 rng(21);
  const int64_t planes = s.images * s.cin, ho = (s.h + 1) / 2, wo = (s.w + 1) / 2;
  Buffer<float> x = random_vec(planes * s.h * s.w, rng);
  Buffer<float> sub(planes * ho * wo), back(planes * s.h * s.w);
  for (st::Isa isa : o.isas) {
    const auto& t = st::kernel_table(isa);
    const k::SubsampleArgs<float> fwd{x.data(), sub.data(), planes, s.h, s.w, 2, 2, o.threads};
    const k::SubsampleArgs<float> bwd{sub.data(), back.data(), planes, s.h, s.w, 2, 2, o.threads};
    report("subsample (stride 2)", isa, describe(s), 0.0, o,
           median_seconds([&] { t.subsample_f32(fwd); }, o.repeats), 0.0,
           4.0 * (x.size() + sub.size()));
    report("subsample_grad", isa, describe(s), 0.0, o,
           median_seconds([&] { t.subsample_grad_f32(bwd); }, o.repeats), 0.0,
           4.0 * (sub.size() + back.size()));
  }
}

}  // namespace
}  // namespace st_bench

int main(int argc, char** argv) {
  using namespace st_bench;
  const Options o = parse_options(argc, argv);
  print_header();
  if (o.quick) {
    bench_pack(20, 40, o);
  } else {
    bench_pack(256, 3072, o);
    bench_pack(2048, 768, o);
  }
  for (const ConvShape& s : conv_shapes(o)) {
    bench_conv_pack(s, o);
    bench_conv_pack_grad(s, o);
    bench_subsample(s, o);
  }
  return 0;
}
