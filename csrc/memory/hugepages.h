// Transparent huge pages for large, freshly allocated buffers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sparsetrain {
namespace memory {

// Asks the kernel to back the whole 2 MiB pages inside [address, address + nbytes) with huge
// pages when they are first touched. Only advice: returns false (and changes nothing) where
// the range holds no whole huge page, the system has no transparent huge pages, or the OS is
// not Linux. Never touches the memory itself.
bool advise_hugepages(std::uintptr_t address, std::size_t nbytes);

}  // namespace memory
}  // namespace sparsetrain
