// Whether the C allocator keeps freed memory for reuse or gives it back to the system.
#pragma once

namespace sparsetrain {
namespace memory {

// keep = true: glibc malloc serves every block from its heap (no per-block mmap) and never
// trims the heap, so memory a training step frees is reused by the next step instead of
// being unmapped and page-faulted in again. keep = false: glibc's documented defaults again
// (128 KiB mmap and trim thresholds, fixed rather than adaptive) and the free heap trimmed.
// Returns false (and changes nothing) where the C library is not glibc.
bool set_malloc_reuse(bool keep);

// Gives the free memory of glibc's heap back to the system now (malloc_trim): for one-off
// temporaries a kept heap would otherwise hold for good. False where not glibc or nothing
// could be released.
bool release_free_memory();

}  // namespace memory
}  // namespace sparsetrain
