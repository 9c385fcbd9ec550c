// The offsets products of a convolution in their plain rows form: the input packed with its
// zero border as (h + 2) x (w + 2) planes per channel, nonzero (r, ci, ky, kx) reading
// B_n[ci * plane + ky * wp + kx + t] for grid position t of output row r. A row of the output
// covers h grid rows of wp (the two border columns of each are computed and unused).
//   spmm_offsets_rows: the forward pass; sddmm_offsets: the values gradient from an output
//   gradient on the same grid.
#include "conv_case.h"

namespace st_bench {
namespace {

void bench(const ConvShape& s, const Options& o) {
  std::mt19937 rng(11);
  const Csr w = random_csr(s.cout, s.cin * 9, s.sparsity, rng);
  const int64_t nnz = w.nnz(), wp = s.w + 2, plane = (s.h + 2) * wp, len = s.h * wp;
  std::vector<int64_t> off(nnz);
  for (int64_t j = 0; j < nnz; ++j) {
    const int64_t c = w.idx[j], ci = c / 9, ky = c / 3 % 3, kx = c % 3;
    off[j] = ci * plane + ky * wp + kx;
  }
  // The largest read is (cin - 1) * plane + 2 * wp + 2 + len - 1 = cin * plane + 1.
  const int64_t b_image = s.cin * plane + 2, c_image = s.cout * len;
  const Buffer<float> b = random_vec(b_image * s.images, rng);
  const Buffer<float> g = random_vec(c_image * s.images, rng);
  Buffer<float> c(c_image * s.images), dv(nnz);
  const double flops = 2.0 * nnz * len * s.images;  // grid positions, border columns included
  const double index_bytes = nnz * (4.0 + 8.0) + (s.cout + 1) * 8.0;
  const double dense_bytes = 4.0 * (b_image + c_image) * s.images;
  for (st::Isa isa : o.isas) {
    const auto& t = st::kernel_table(isa);
    const k::SpmmOffsetsRowsArgs<float> fwd{{w.ptr.data(),
                                             off.data(),
                                             w.val.data(),
                                             nullptr,
                                             nullptr,
                                             s.cout,
                                             b.data(),
                                             b_image,
                                             s.images,
                                             {len},
                                             o.threads},
                                            {c.data(), len, c_image}};
    report("spmm_offsets_rows", isa, describe(s), w.sparsity(), o,
           median_seconds([&] { t.spmm_offsets_rows_f32(fwd); }, o.repeats), flops,
           index_bytes + dense_bytes);
    const k::SddmmOffsetsArgs<float> dvals{w.ptr.data(), off.data(), s.cout,    g.data(),
                                           len,          c_image,    b.data(),  b_image,
                                           s.images,     {len},      dv.data(), o.threads};
    report("sddmm_offsets", isa, describe(s), w.sparsity(), o,
           median_seconds([&] { t.sddmm_offsets_f32(dvals); }, o.repeats), flops,
           index_bytes + dense_bytes);
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
