// The run-time settings: the kernels' ISA, malloc's reuse of freed memory, transparent huge
// pages, and OpenMP's thread count.
#include <pybind11/stl.h>

#include <omp.h>

#include <string>
#include <vector>

#include "bindings/families.h"
#include "dispatch/isa.h"
#include "memory/hugepages.h"
#include "memory/malloc_reuse.h"

namespace sparsetrain {
namespace bindings {

namespace py = pybind11;

void register_runtime(py::module_& m) {
  m.def(
      "get_isa", [] { return std::string(isa_name(current_isa())); },
      "The ISA whose kernels run (scalar, avx2 or avx512).");
  m.def(
      "set_isa", [](const std::string& name) { set_isa(isa_from_name(name)); }, py::kw_only(),
      py::arg("name"),
      "Run the kernels of this ISA (ValueError if unknown or not supported here).");
  m.def(
      "supported_isas",
      [] {
        std::vector<std::string> out;
        for (Isa isa : sparsetrain::supported_isas()) out.emplace_back(isa_name(isa));
        return out;
      },
      "The ISAs this build and this CPU support, best last.");
  m.def("advise_hugepages", &memory::advise_hugepages, py::kw_only(), py::arg("address"),
        py::arg("nbytes"), "Ask for transparent huge pages on a range; whether it was granted.");
  m.def("set_malloc_reuse", &memory::set_malloc_reuse, py::kw_only(), py::arg("keep"),
        "Whether malloc keeps freed memory for reuse; whether the setting took.");
  m.def("release_free_memory", &memory::release_free_memory,
        "Hand malloc's free memory back to the system; whether it could.");
  m.def(
      "openmp_max_threads", [] { return omp_get_max_threads(); },
      "OpenMP's thread count for the next parallel region.");
}

}  // namespace bindings
}  // namespace sparsetrain
