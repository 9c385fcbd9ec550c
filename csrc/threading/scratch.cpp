#include "threading/scratch.h"

#include <cstddef>
#include <stdexcept>

namespace sparsetrain {
namespace threading {

float* alloc_zeroed_floats(int64_t count) {
  if (count < 0) throw std::length_error("alloc_zeroed_floats: negative count");
  return new float[static_cast<std::size_t>(count)]();
}

void free_floats(float* p) noexcept { delete[] p; }

}  // namespace threading
}  // namespace sparsetrain
