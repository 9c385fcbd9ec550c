// Work splitting for kernels. Threads come from the OpenMP runtime that PyTorch already
// loaded (torch ships libgomp.so.1 and imports it first, so our references bind to the same
// runtime): a sparse layer right after a dense op reuses torch's warm worker threads instead
// of a second pool competing with torch's spinning workers for the same cores.
//
// Included only by kernel sources, inside their per-ISA namespace build. Everything such a
// source defines with vague linkage (inline and template functions, class members) must lie
// inside its ISA's namespace: the linker keeps one copy of each weak symbol for the whole
// library, so a std template instantiated in an AVX-512 object could be the copy the scalar
// path runs. Hence no std containers or algorithms here: scratch memory comes from
// threading/scratch.cpp, compiled without ISA flags. The ctest isa_weak_symbols checks it.
#pragma once

#include <cstdint>

#include <omp.h>

#include "threading/scratch.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// Below this much work (≈ multiply-adds) a parallel region costs more than it saves.
constexpr int64_t kMinWorkPerThread = 1 << 15;

// First i in [0, n] with weight(i) >= target, for a non-decreasing weight.
template <class Weight>
inline int64_t first_at_least(int64_t n, int64_t target, const Weight& weight) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (weight(mid) < target)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// Runs body(begin, end) over [0, n) split into contiguous chunks of equal weight, one per
// thread. cum(i) is the cumulative weight of items [0, i) (non-decreasing, cum(0) == 0),
// e.g. the CSR row pointer plus a per-row constant. Each index is owned by one thread.
template <class Cum, class Body>
inline void parallel_balanced(int nthreads, int64_t n, int64_t work_per_weight, const Cum& cum,
                              const Body& body) {
  if (n <= 0) return;
  const int64_t total = cum(n);
  int64_t work;  // saturating: only sizes the team
  if (__builtin_mul_overflow(total, work_per_weight, &work)) work = INT64_MAX;
  int64_t max_threads = work / kMinWorkPerThread;
  int nt = nthreads < 1 ? 1 : nthreads;
  if (max_threads < nt) nt = max_threads < 1 ? 1 : static_cast<int>(max_threads);
  if (nt > n) nt = static_cast<int>(n);
  if (nt == 1) {
    body(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num();
    const int team = omp_get_num_threads();
    const int64_t b = t == 0 ? 0 : first_at_least(n, total * t / team, cum);
    const int64_t e = t == team - 1 ? n : first_at_least(n, total * (t + 1) / team, cum);
    if (b < e) body(b, e);
  }
}

// `count` zeroed floats, freed when this goes out of scope.
class ZeroedFloats {
 public:
  explicit ZeroedFloats(int64_t count) : data_(threading::alloc_zeroed_floats(count)) {}
  ~ZeroedFloats() { threading::free_floats(data_); }
  ZeroedFloats(const ZeroedFloats&) = delete;
  ZeroedFloats& operator=(const ZeroedFloats&) = delete;
  float* data() const { return data_; }
  float& operator[](int64_t i) const { return data_[i]; }

 private:
  float* data_;
};

// Per-thread scratch: `size` zeroed floats for each thread a parallel_* call with `nthreads`
// may start, allocated by the calling thread before the region (an allocation failure then
// reaches the caller as an exception instead of ending the process inside the region).
// Inside a body, mine() is the calling thread's slice.
class ThreadScratch {
 public:
  ThreadScratch(int nthreads, int64_t size)
      : size_(size), count_(nthreads < 1 ? 1 : nthreads), data_(count_ * size) {}
  // A thread number past the slots can only be the caller's own in an enclosing OpenMP team
  // (a one-thread call runs the body on the caller): then no other thread shares this scratch.
  float* mine() {
    const int t = omp_get_thread_num();
    return data_.data() + (t < count_ ? t : 0) * size_;
  }

 private:
  int64_t size_;
  int64_t count_;
  ZeroedFloats data_;
};

// Uniform-weight convenience.
template <class Body>
inline void parallel_uniform(int nthreads, int64_t n, int64_t work_per_item, const Body& body) {
  parallel_balanced(
      nthreads, n, work_per_item, [](int64_t i) { return i; }, body);
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
