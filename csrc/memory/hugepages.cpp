// A training step allocates its large temporaries and outputs afresh every time, as PyTorch
// does. With 4 KiB pages the first touch of a fresh 27 MB buffer costs ~7 ms of page faults
// here (as much as a sparse convolution); backed by 2 MiB pages, ~1.5 ms. Asking for huge
// pages (rather than keeping freed buffers in a pool) keeps the step's peak memory at what
// is really in use.
#include "memory/hugepages.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace sparsetrain {
namespace memory {

bool advise_hugepages(std::uintptr_t address, std::size_t nbytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;
  if (nbytes > UINTPTR_MAX - address) return false;
  const std::uintptr_t begin = (address + kHuge - 1) & ~(kHuge - 1);
  const std::uintptr_t end = (address + nbytes) & ~(kHuge - 1);
  if (begin >= end) return false;
  return madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE) == 0;
#else
  (void)address;
  (void)nbytes;
  return false;
#endif
}

}  // namespace memory
}  // namespace sparsetrain
