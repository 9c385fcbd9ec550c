// One registration function per kernel family, each in its own source; module.cpp calls
// them. Every binding takes keyword arguments only (py::kw_only), so a call names each
// buffer and size and two of them cannot be swapped by position.
#pragma once

#include <pybind11/pybind11.h>

namespace sparsetrain {
namespace bindings {

// The conv layout classes first: the signatures of the families after them name the classes.
void register_conv_layout(pybind11::module_& m);  // layouts, conv_pack_input and its kin
void register_bmajor(pybind11::module_& m);       // spmm, spmmt, sddmm, pack, unpack
void register_offsets(pybind11::module_& m);  // spmm_offsets_<form>, sddmm_offsets, conv_grads_*
void register_conv_direct(pybind11::module_& m);  // conv_direct_spmm, conv_direct_sddmm
void register_subsample(pybind11::module_& m);    // subsample
void register_formats(pybind11::module_& m);      // validate_csr, csr_transpose
void register_runtime(pybind11::module_& m);      // ISA, malloc, huge pages, OpenMP

}  // namespace bindings
}  // namespace sparsetrain
