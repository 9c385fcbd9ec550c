// The batch-major family (linear layers): spmm, spmmt, sddmm and the pack / unpack between
// PyTorch's (batch, features) and the kernels' rows of padded batch. The activation buffers'
// dtype picks the kernel: float32, or uint16 for bf16 (a bfloat16 tensor's bits); values and
// value gradients are float32 either way.
#include <optional>
#include <type_traits>

#include "bindings/checks.h"
#include "bindings/families.h"
#include "dispatch/isa.h"
#include "kernels/kernels.h"

namespace sparsetrain {
namespace bindings {
namespace {

namespace k = sparsetrain::kernels;

// Calls the kernel table's `name` for storage type T (float or bf16).
#define ST_CALL(name, T, args)            \
  if constexpr (std::is_same_v<T, float>) \
    kernel_table().name##_f32(args);      \
  else                                    \
    kernel_table().name##_bf16(args)

template <class T>
void spmm_t(const py::array& ptr_a, const py::array& idx_a, const py::array& val_a,
            const std::optional<py::array>& pos_a, const std::optional<py::array>& scratch_a,
            const py::array& b_a, const py::array& c_a, int nthreads) {
  auto ptr = view<int64_t>(ptr_a, "ptr", 1);
  auto idx = view<int32_t>(idx_a, "idx", 1);
  auto val = view<float>(val_a, "values", 1);
  auto b = view<T>(b_a, "b", 2);
  auto c = view<T>(c_a, "c", 2, true);
  const int64_t nnz = check_csr_ends(ptr, c.rows, idx.size(), val.size());
  if (pos_a && (ptr.data[0] != 0 || val.size() != nnz))
    bad("spmm with pos needs a pointer from 0 and exactly nnz values");
  const Scatter sc = scatter_args(pos_a, scratch_a, nnz);
  if (b.cols != c.cols) bad("b and c have different padded batch sizes");
  check_batch_major(c.cols, "c");
  k::SpmmArgs<T> args{ptr.data, idx.data, val.data, sc.pos, sc.scratch, c.rows,  b.rows,
                      b.data,   b.cols,   c.data,   c.cols, c.cols,     nthreads};
  py::gil_scoped_release release;
  ST_CALL(spmm_bmajor, T, args);
}

void spmm(const py::array& ptr_a, const py::array& idx_a, const py::array& val_a,
          const std::optional<py::array>& pos_a, const std::optional<py::array>& scratch_a,
          const py::array& b_a, const py::array& c_a, int nthreads) {
  if (has_dtype<k::bf16>(b_a))
    spmm_t<k::bf16>(ptr_a, idx_a, val_a, pos_a, scratch_a, b_a, c_a, nthreads);
  else
    spmm_t<float>(ptr_a, idx_a, val_a, pos_a, scratch_a, b_a, c_a, nthreads);
}

void spmmt(const py::array& ptr_a, const py::array& idx_a, const py::array& val_a,
           const py::array& col_ptr_a, const py::array& b_a, const py::array& c_a, int nthreads) {
  auto ptr = view<int64_t>(ptr_a, "ptr", 1);
  auto idx = view<int32_t>(idx_a, "idx", 1);
  auto val = view<float>(val_a, "values", 1);
  auto col_ptr = view<int64_t>(col_ptr_a, "col_ptr", 1);
  auto b = view<float>(b_a, "b", 2);
  auto c = view<float>(c_a, "c", 2, true);
  const int64_t nnz = check_csr_ends(ptr, b.rows, idx.size(), val.size());
  if (col_ptr.size() != sum(c.rows, 1) || col_ptr.data[0] != 0 || col_ptr.data[c.rows] != nnz)
    bad("col_ptr must have one entry per row of c plus one, from 0 to nnz");
  if (b.cols != c.cols) bad("b and c have different padded batch sizes");
  check_batch_major(c.cols, "c");
  k::SpmmTArgs<float> args{ptr.data, idx.data, val.data, col_ptr.data, b.rows, c.rows,
                           b.data,   b.cols,   c.data,   c.cols,       c.cols, nthreads};
  py::gil_scoped_release release;
  kernel_table().spmmt_bmajor_f32(args);
}

template <class T>
void sddmm_t(const py::array& ptr_a, const py::array& idx_a, const py::array& a_a,
             const py::array& b_a, const py::array& out_a, int nthreads) {
  auto ptr = view<int64_t>(ptr_a, "ptr", 1);
  auto idx = view<int32_t>(idx_a, "idx", 1);
  auto a = view<T>(a_a, "a", 2);
  auto b = view<T>(b_a, "b", 2);
  auto out = view<float>(out_a, "out", 1, true);
  check_csr_ends(ptr, a.rows, idx.size(), out.size());
  if (b.cols != a.cols) bad("a and b have different padded batch sizes");
  check_batch_major(a.cols, "a");
  k::SddmmArgs<T> args{ptr.data, idx.data, a.rows, b.rows,   a.data,  a.cols,
                       b.data,   b.cols,   a.cols, out.data, nthreads};
  py::gil_scoped_release release;
  ST_CALL(sddmm_bmajor, T, args);
}

void sddmm(const py::array& ptr_a, const py::array& idx_a, const py::array& a_a,
           const py::array& b_a, const py::array& out_a, int nthreads) {
  if (has_dtype<k::bf16>(a_a))
    sddmm_t<k::bf16>(ptr_a, idx_a, a_a, b_a, out_a, nthreads);
  else
    sddmm_t<float>(ptr_a, idx_a, a_a, b_a, out_a, nthreads);
}

template <class T>
void pack_t(const py::array& src_a, const py::array& dst_a, int nthreads,
            const std::optional<py::array>& sums_a) {
  auto src = view<T>(src_a, "src", 2);
  auto dst = view<T>(dst_a, "dst", 2, true);
  if (dst.rows != src.cols) bad("dst must have one row per feature of src");
  if (dst.cols < src.rows) bad("dst is narrower than the batch");
  check_batch_major(dst.cols, "dst");
  float* sums = nullptr;
  if (sums_a) {
    auto sv = view<float>(*sums_a, "sums", 1, true);
    if (sv.size() != src.cols) bad("sums length differs from the feature count");
    sums = sv.data;
  }
  k::PackArgs<T> args{src.data, src.rows, src.cols, src.cols, dst.data, dst.cols, nthreads, sums};
  py::gil_scoped_release release;
  ST_CALL(pack_bmajor, T, args);
}

void pack(const py::array& src_a, const py::array& dst_a, int nthreads,
          const std::optional<py::array>& sums_a) {
  if (has_dtype<k::bf16>(src_a))
    pack_t<k::bf16>(src_a, dst_a, nthreads, sums_a);
  else
    pack_t<float>(src_a, dst_a, nthreads, sums_a);
}

template <class T>
void unpack_t(const py::array& src_a, const py::array& dst_a,
              const std::optional<py::array>& bias_a, int nthreads) {
  auto src = view<T>(src_a, "src", 2);
  auto dst = view<T>(dst_a, "dst", 2, true);
  if (src.rows != dst.cols) bad("src must have one row per feature of dst");
  if (src.cols < dst.rows) bad("src is narrower than the batch");
  const T* bias = nullptr;
  if (bias_a) {
    auto bv = view<T>(*bias_a, "bias", 1);
    if (bv.size() != dst.cols) bad("bias length differs from the feature count");
    bias = bv.data;
  }
  k::UnpackArgs<T> args{src.data, src.cols, dst.rows, dst.cols, dst.data, dst.cols, bias, nthreads};
  py::gil_scoped_release release;
  ST_CALL(unpack_bmajor, T, args);
}

void unpack(const py::array& src_a, const py::array& dst_a, const std::optional<py::array>& bias_a,
            int nthreads) {
  if (has_dtype<k::bf16>(src_a))
    unpack_t<k::bf16>(src_a, dst_a, bias_a, nthreads);
  else
    unpack_t<float>(src_a, dst_a, bias_a, nthreads);
}

#undef ST_CALL

}  // namespace

void register_bmajor(py::module_& m) {
  m.def("spmm", &spmm, py::kw_only(), py::arg("ptr"), py::arg("idx"), py::arg("values"),
        py::arg("pos"), py::arg("scratch"), py::arg("b"), py::arg("c"), py::arg("nthreads"),
        "C = A B for the CSR matrix A (or, with pos, its transpose) and batch-major B, C "
        "(float32, or bf16 bits as uint16).");
  m.def("spmmt", &spmmt, py::kw_only(), py::arg("ptr"), py::arg("idx"), py::arg("values"),
        py::arg("col_ptr"), py::arg("b"), py::arg("c"), py::arg("nthreads"),
        "C = A^T B from A's CSR index (col_ptr: its column counts, to balance threads).");
  m.def("sddmm", &sddmm, py::kw_only(), py::arg("ptr"), py::arg("idx"), py::arg("a"), py::arg("b"),
        py::arg("out"), py::arg("nthreads"),
        "out[j] = <A[r], B[idx[j]]> for every nonzero j of row r: the values' gradient "
        "(float32 out; A, B float32 or bf16 bits as uint16).");
  m.def("pack", &pack, py::kw_only(), py::arg("src"), py::arg("dst"), py::arg("nthreads"),
        py::arg("sums") = py::none(),
        "(batch, features) src -> batch-major dst (rows of padded batch, zero padding); "
        "sums, if given (float32, one per feature), gets each feature's sum over the batch.");
  m.def("unpack", &unpack, py::kw_only(), py::arg("src"), py::arg("dst"), py::arg("bias"),
        py::arg("nthreads"), "Batch-major src -> (batch, features) dst, plus bias if given.");
}

}  // namespace bindings
}  // namespace sparsetrain
