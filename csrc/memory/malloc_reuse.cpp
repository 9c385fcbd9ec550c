// A training step allocates every activation and gradient afresh and frees them by its end.
// glibc hands blocks above its mmap threshold (128 KiB, raised adaptively up to 32 MiB) to
// the kernel on free, and trims its heap top; the next step then page-faults the same memory
// in again, 4 KiB at a time: an add into a fresh 26 MB tensor takes 7.5 ms here, into an
// existing one 2 ms. PyTorch's CPU tuning guide suggests a caching malloc (jemalloc,
// tcmalloc) for this; glibc can do the same with two of its own settings.
#include "memory/malloc_reuse.h"

#include <climits>  // also defines __GLIBC__ where the C library is glibc

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace sparsetrain {
namespace memory {

bool set_malloc_reuse(bool keep) {
#if defined(__GLIBC__)
  if (keep) {
    // No block of its own mapping (all from the heap), and a heap that is never trimmed.
    return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
  }
  constexpr int kDefaultThreshold = 128 * 1024;  // glibc's DEFAULT_MMAP_THRESHOLD_MIN
  constexpr int kDefaultMmapMax = 65536;         // glibc's DEFAULT_MMAP_MAX
  const bool ok = mallopt(M_MMAP_MAX, kDefaultMmapMax) == 1 &&
                  mallopt(M_MMAP_THRESHOLD, kDefaultThreshold) == 1 &&
                  mallopt(M_TRIM_THRESHOLD, kDefaultThreshold) == 1;
  malloc_trim(0);
  return ok;
#else
  (void)keep;
  return false;
#endif
}

bool release_free_memory() {
#if defined(__GLIBC__)
  return malloc_trim(0) == 1;
#else
  return false;
#endif
}

}  // namespace memory
}  // namespace sparsetrain
