// Scratch memory for the per-ISA kernels, allocated and freed by plain functions compiled
// once, without ISA flags (scratch.cpp): the kernels' objects then hold no std container
// code, whose weak symbols the linker could take from an AVX-512 object for the scalar path.
#pragma once

#include <cstdint>

namespace sparsetrain {
namespace threading {

// `count` zeroed floats; throws std::bad_alloc (std::length_error for a negative count).
float* alloc_zeroed_floats(int64_t count);
// Frees what alloc_zeroed_floats returned; nullptr is ignored.
void free_floats(float* p) noexcept;

}  // namespace threading
}  // namespace sparsetrain
