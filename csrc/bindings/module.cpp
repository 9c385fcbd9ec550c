// pybind11 bindings: NumPy buffers in, buffers out (PyTorch tensors cross as zero-copy NumPy
// views), keyword arguments only; kernels run with the GIL released. Each kernel family
// registers its functions (families.h); the shared argument checks are in checks.h.
#include <pybind11/pybind11.h>

#include "bindings/families.h"
#include "dispatch/isa.h"
#include "kernels/kernels.h"

#ifndef SPARSETRAIN_VERSION
#define SPARSETRAIN_VERSION "0.0.0"
#endif

namespace b = sparsetrain::bindings;

PYBIND11_MODULE(_C, m) {
  m.doc() = "sparsetrain native kernels (internal; use the sparsetrain package)";
  m.attr("__version__") = SPARSETRAIN_VERSION;
  m.attr("BATCH_ALIGN") = sparsetrain::kernels::kBatchAlign;
  m.attr("BATCH_CHUNK") = sparsetrain::kernels::kBatchChunk;

  // Resolve the ISA now so a bad SPARSETRAIN_ISA fails at import with its message.
  sparsetrain::current_isa();

  b::register_conv_layout(m);
  b::register_bmajor(m);
  b::register_offsets(m);
  b::register_conv_direct(m);
  b::register_subsample(m);
  b::register_formats(m);
  b::register_runtime(m);
}
