// The batch-major sparse products: spmm (C = A B, the forward pass), spmmt (C = Aᵀ B from
// A's CSR index, the input gradient) and sddmm (A's nonzeros of G Bᵀ, the values gradient),
// for a linear layer's weight (out x in) against a batch of `nb` columns; then the bf16
// storage forms (spmm, the transposed spmm that runs the bf16 input gradient, sddmm), whose
// dense blocks move half the bytes. avx512_bf16 has its own bf16 kernels only, so its float
// rows (avx512's) are not repeated.
#include "harness.h"

#include "formats/csr.h"

namespace st_bench {
namespace {

struct Shape {
  int64_t out, in, batch;
  double sparsity;
};

std::string describe(const Shape& s) {
  return std::to_string(s.out) + "x" + std::to_string(s.in) + " batch " + std::to_string(s.batch);
}

void bench(const Shape& s, const Options& o) {
  std::mt19937 rng(7);
  const Csr a = random_csr(s.out, s.in, s.sparsity, rng);
  // The row length the layers use (functional/linear.py's _padded): whole vectors, and an odd
  // number of them beyond one kernel slice, so gathered rows spread over the cache sets.
  int64_t nb = k::padded_batch(s.batch);
  if (nb > k::kBatchChunk && (nb / k::kBatchAlign) % 2 == 0) nb += k::kBatchAlign;
  const int64_t nnz = a.nnz();
  std::vector<int64_t> col_ptr(s.in + 1), pos(nnz);
  std::vector<int32_t> t_idx(nnz);
  sparsetrain::formats::csr_transpose(a.ptr.data(), a.idx.data(), s.out, s.in, col_ptr.data(),
                                      t_idx.data(), pos.data());
  const Buffer<float> x = random_vec(s.in * nb, rng);   // in x nb
  const Buffer<float> g = random_vec(s.out * nb, rng);  // out x nb
  Buffer<float> y(s.out * nb), dx(s.in * nb), dv(nnz);
  const double flops = 2.0 * nnz * s.batch;
  // Values + column indices + the dense rows read + the rows written, once each.
  const double index_bytes = nnz * (4.0 + 4.0) + (s.out + 1) * 8.0;
  // bf16 copies: values rounded to bf16 (as the layers pass them), activations in bf16.
  std::vector<float> val16(a.val);  // (values: small, not a dense buffer)
  for (auto& v : val16) v = k::widen(k::narrow<k::bf16>(v));
  auto to16 = [](const Buffer<float>& v) {
    Buffer<k::bf16> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = k::narrow<k::bf16>(v[i]);
    return out;
  };
  const Buffer<k::bf16> x16 = to16(x), g16 = to16(g);
  Buffer<k::bf16> y16(s.out * nb), dx16(s.in * nb);
  Buffer<float> scratch(nnz);
  for (st::Isa isa : o.isas) {
    const auto& t = st::kernel_table(isa);
    const k::SpmmArgs<k::bf16> fwd16{a.ptr.data(), a.idx.data(), val16.data(), nullptr, nullptr,
                                     s.out,        s.in,         x16.data(),   nb,      y16.data(),
                                     nb,           nb,           o.threads};
    report("spmm_bmajor bf16", isa, describe(s), a.sparsity(), o,
           median_seconds([&] { t.spmm_bmajor_bf16(fwd16); }, o.repeats), flops,
           index_bytes + 2.0 * (s.in + s.out) * nb);
    const k::SpmmArgs<k::bf16> dx_csc16{col_ptr.data(),
                                        t_idx.data(),
                                        val16.data(),
                                        pos.data(),
                                        scratch.data(),
                                        s.in,
                                        s.out,
                                        g16.data(),
                                        nb,
                                        dx16.data(),
                                        nb,
                                        nb,
                                        o.threads};
    report("spmm_bmajor bf16 (pos)", isa, describe(s), a.sparsity(), o,
           median_seconds([&] { t.spmm_bmajor_bf16(dx_csc16); }, o.repeats), flops,
           index_bytes + 8.0 * nnz + 2.0 * (s.out + s.in) * nb);
    const k::SddmmArgs<k::bf16> dvals16{a.ptr.data(), a.idx.data(), s.out,      s.in,
                                        g16.data(),   nb,           x16.data(), nb,
                                        nb,           dv.data(),    o.threads};
    report("sddmm_bmajor bf16", isa, describe(s), a.sparsity(), o,
           median_seconds([&] { t.sddmm_bmajor_bf16(dvals16); }, o.repeats), flops,
           index_bytes + 2.0 * (s.out + s.in) * nb);
    if (isa == st::Isa::avx512_bf16) continue;  // its float kernels are avx512's
    const k::SpmmArgs<float> fwd{a.ptr.data(), a.idx.data(), a.val.data(), nullptr, nullptr,
                                 s.out,        s.in,         x.data(),     nb,      y.data(),
                                 nb,           nb,           o.threads};
    report("spmm_bmajor", isa, describe(s), a.sparsity(), o,
           median_seconds([&] { t.spmm_bmajor_f32(fwd); }, o.repeats), flops,
           index_bytes + 4.0 * (s.in + s.out) * nb);
    const k::SpmmTArgs<float> bwd{a.ptr.data(), a.idx.data(), a.val.data(), col_ptr.data(),
                                  s.out,        s.in,         g.data(),     nb,
                                  dx.data(),    nb,           nb,           o.threads};
    report("spmmt_bmajor", isa, describe(s), a.sparsity(), o,
           median_seconds([&] { t.spmmt_bmajor_f32(bwd); }, o.repeats), flops,
           index_bytes + (s.in + 1) * 8.0 + 4.0 * (s.out + s.in) * nb);
    const k::SddmmArgs<float> dvals{a.ptr.data(), a.idx.data(), s.out, s.in,      g.data(), nb,
                                    x.data(),     nb,           nb,    dv.data(), o.threads};
    // The index, both dense blocks read and the nonzero values written.
    report("sddmm_bmajor", isa, describe(s), a.sparsity(), o,
           median_seconds([&] { t.sddmm_bmajor_f32(dvals); }, o.repeats), flops,
           index_bytes + 4.0 * (s.out + s.in) * nb);
  }
}

}  // namespace
}  // namespace st_bench

int main(int argc, char** argv) {
  using namespace st_bench;
  const Options o = parse_options(argc, argv);
  // A transformer MLP weight (768 -> 3072) at 90%: a training batch and a sequence of tokens.
  const std::vector<Shape> shapes =
      o.quick ? std::vector<Shape>{{48, 96, 20, 0.9}}
              : std::vector<Shape>{{768, 3072, 256, 0.9}, {768, 3072, 2048, 0.9}};
  print_header();
  for (const Shape& s : shapes) bench(s, o);
  return 0;
}
