// The index formats: validate_csr (the one full check of a pattern's contents) and
// csr_transpose (the transposed index of the input-gradient products).
#include <cstdint>

#include "bindings/checks.h"
#include "bindings/families.h"
#include "formats/csr.h"

namespace sparsetrain {
namespace bindings {
namespace {

void validate_csr(const py::array& ptr_a, const py::array& idx_a, int64_t rows, int64_t cols) {
  auto ptr = view<int64_t>(ptr_a, "row pointer", 1);
  auto idx = view<int32_t>(idx_a, "column indices", 1);
  if (ptr.size() < 1) bad("row pointer is empty");
  py::gil_scoped_release release;
  formats::validate_csr(ptr.data, ptr.size(), idx.data, idx.size(), rows, cols);
}

void csr_transpose(const py::array& ptr_a, const py::array& idx_a, int64_t cols,
                   const py::array& tptr_a, const py::array& tidx_a, const py::array& pos_a) {
  auto ptr = view<int64_t>(ptr_a, "row pointer", 1);
  auto idx = view<int32_t>(idx_a, "column indices", 1);
  auto tptr = view<int64_t>(tptr_a, "tptr", 1, true);
  auto tidx = view<int32_t>(tidx_a, "tidx", 1, true);
  auto pos = view<int64_t>(pos_a, "pos", 1, true);
  const int64_t rows = ptr.size() - 1;
  if (rows < 0) bad("row pointer is empty");
  if (rows > INT32_MAX) bad("more than 2^31-1 rows: the transposed index stores rows as int32");
  // Full validation first: the transpose indexes tptr by column.
  {
    py::gil_scoped_release release;
    formats::validate_csr(ptr.data, ptr.size(), idx.data, idx.size(), rows, cols);
  }
  if (tptr.size() != sum(cols, 1) || tidx.size() != idx.size() || pos.size() != idx.size())
    bad("transpose outputs have the wrong lengths");
  py::gil_scoped_release release;
  formats::csr_transpose(ptr.data, idx.data, rows, cols, tptr.data, tidx.data, pos.data);
}

}  // namespace

void register_formats(py::module_& m) {
  m.def("validate_csr", &validate_csr, py::kw_only(), py::arg("ptr"), py::arg("idx"),
        py::arg("rows"), py::arg("cols"),
        "ValueError unless ptr / idx are a valid rows x cols CSR index (sorted, in range).");
  m.def("csr_transpose", &csr_transpose, py::kw_only(), py::arg("ptr"), py::arg("idx"),
        py::arg("cols"), py::arg("tptr"), py::arg("tidx"), py::arg("pos"),
        "The transposed index (tptr, tidx) of a validated CSR index, pos its CSR positions.");
}

}  // namespace bindings
}  // namespace sparsetrain
