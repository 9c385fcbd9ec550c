// The direct NCHW convolutions of a stride-1 3x3 layer (padding 1, no layout change):
// conv_direct_spmm (the forward pass) and conv_direct_sddmm (the values gradient).
#include "conv_case.h"

namespace st_bench {
namespace {

void bench(const ConvShape& s, const Options& o) {
  std::mt19937 rng(13);
  const Csr w = random_csr(s.cout, s.cin * 9, s.sparsity, rng);
  const int64_t nnz = w.nnz(), x_image = s.cin * s.h * s.w, y_image = s.cout * s.h * s.w;
  // Nonzero (r, ci, ky, kx) reads plane ci shifted by ky - 1 rows and kx - 1 columns.
  std::vector<int64_t> plane(nnz), shift_w = {-1, 0, 1};
  std::vector<int32_t> dy(nnz), slot(nnz);
  for (int64_t j = 0; j < nnz; ++j) {
    const int64_t c = w.idx[j];
    plane[j] = c / 9 * s.h * s.w;
    dy[j] = static_cast<int32_t>(c / 3 % 3 - 1);
    slot[j] = static_cast<int32_t>(c % 3);
  }
  const Buffer<float> x = random_vec(x_image * s.images, rng);
  const Buffer<float> g = random_vec(y_image * s.images, rng);
  Buffer<float> y(y_image * s.images), dv(nnz);
  const double flops = conv_flops(nnz, s);
  const double bytes =
      nnz * (4.0 + 8.0 + 4.0 + 4.0) + (s.cout + 1) * 8.0 + 4.0 * (x_image + y_image) * s.images;
  for (st::Isa isa : o.isas) {
    const auto& t = st::kernel_table(isa);
    k::ConvDirectArgs<float> a{};
    a.ptr = w.ptr.data();
    a.plane = plane.data();
    a.dy = dy.data();
    a.slot = slot.data();
    a.shift_w = shift_w.data();
    a.slots = 3;
    a.val = w.val.data();
    a.rows = s.cout;
    a.src = x.data();
    a.src_image_stride = x_image;
    a.sh = s.h;
    a.sw = s.w;
    a.out = y.data();
    a.out_image_stride = y_image;
    a.oh = s.h;
    a.ow = s.w;
    a.images = s.images;
    a.nthreads = o.threads;
    report("conv_direct_spmm", isa, describe(s), w.sparsity(), o,
           median_seconds([&] { t.spmm_direct_f32(a); }, o.repeats), flops, bytes);
    k::ConvDirectArgs<float> v = a;
    v.out = dv.data();
    v.grad = g.data();
    v.grad_image_stride = y_image;
    report("conv_direct_sddmm", isa, describe(s), w.sparsity(), o,
           median_seconds([&] { t.sddmm_direct_f32(v); }, o.repeats), flops, bytes);
  }
}

}  // namespace
}  // namespace st_bench

int main(int argc, char** argv) {
  using namespace st_bench;
  const Options o = parse_options(argc, argv);
  print_header();
  for (const ConvShape& s : conv_shapes(o)) bench(s, o);
  return 0;
}
