// What every kernel microbenchmark shares: the command line, random patterns and data, the
// timing loop (warm-up, then the median of N runs) and the one-line report of a case.
//
// A case reports the median time, the GFLOP/s of its nonzero work (2 flops per nonzero and
// batch element or position, zeros never counted) and the GB/s of a simple traffic model:
// every array the kernel must touch (values, indices, the dense rows it reads, the output
// it writes) counted once. Real traffic is higher (B rows are re-read across cache blocks),
// so GB/s is a lower bound that says how far a case is from the memory roofline.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "dispatch/isa.h"
#include "kernels/kernels.h"
#include "memory/hugepages.h"

namespace st_bench {

namespace st = sparsetrain;
namespace k = sparsetrain::kernels;

// ---- Command line ---------------------------------------------------------------------------

struct Options {
  std::vector<st::Isa> isas;  // default: every supported ISA
  int threads = 2;            // the OpenMP team size passed to each kernel as nthreads
  int repeats = 20;
  bool quick = false;  // tiny shapes, 3 repeats: a smoke run
};

inline void usage(const char* prog) {
  std::fprintf(
      stderr, "usage: %s [--isa scalar|avx2|avx512] [--threads N] [--repeats N] [--quick]\n", prog);
  std::exit(2);
}

inline Options parse_options(int argc, char** argv) {
  Options o;
  bool repeats_set = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--isa" && has_value) {
      const st::Isa isa = st::isa_from_name(argv[++i]);
      if (!st::isa_supported(isa)) {
        std::fprintf(stderr, "ISA %s is not supported here\n", st::isa_name(isa));
        std::exit(2);
      }
      o.isas.push_back(isa);
    } else if (a == "--threads" && has_value) {
      o.threads = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--repeats" && has_value) {
      o.repeats = std::max(1, std::atoi(argv[++i]));
      repeats_set = true;
    } else if (a == "--quick") {
      o.quick = true;
    } else {
      usage(argv[0]);
    }
  }
  if (o.isas.empty()) o.isas = st::supported_isas();
  if (o.quick && !repeats_set) o.repeats = 3;
  return o;
}

// ---- Buffers and random data ---------------------------------------------------------------

// Dense buffers on transparent huge pages, as the layers allocate theirs
// (python/sparsetrain/_workspace.py): with 4 KiB pages every gathered row is another page and
// the TLB, not the kernel, sets the time of the large cases.
template <class T>
struct HugeAlloc {
  using value_type = T;
  HugeAlloc() = default;
  template <class U>
  HugeAlloc(const HugeAlloc<U>&) {}
  T* allocate(size_t n) {
    constexpr size_t kHuge = size_t{2} << 20;
    const size_t bytes = (n * sizeof(T) + kHuge - 1) / kHuge * kHuge;
    void* p = std::aligned_alloc(kHuge, bytes == 0 ? kHuge : bytes);
    if (p == nullptr) throw std::bad_alloc();
    sparsetrain::memory::advise_hugepages(reinterpret_cast<std::uintptr_t>(p), bytes);
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <class U>
  bool operator==(const HugeAlloc<U>&) const {
    return true;
  }
  template <class U>
  bool operator!=(const HugeAlloc<U>&) const {
    return false;
  }
};
template <class T>
using Buffer = std::vector<T, HugeAlloc<T>>;

inline Buffer<float> random_vec(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> v(-1.f, 1.f);
  Buffer<float> out(n);
  for (auto& x : out) x = v(rng);
  return out;
}

// A CSR pattern, each entry present with probability 1 - sparsity (unstructured sparsity).
struct Csr {
  int64_t rows, cols;
  std::vector<int64_t> ptr;
  std::vector<int32_t> idx;
  std::vector<float> val;
  int64_t nnz() const { return static_cast<int64_t>(idx.size()); }
  double sparsity() const {
    return rows * cols > 0 ? 1.0 - static_cast<double>(nnz()) / (rows * cols) : 0.0;
  }
};

inline Csr random_csr(int64_t rows, int64_t cols, double sparsity, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::uniform_real_distribution<float> v(-1.f, 1.f);
  Csr a{rows, cols, {0}, {}, {}};
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c)
      if (u(rng) >= sparsity) {
        a.idx.push_back(static_cast<int32_t>(c));
        a.val.push_back(v(rng));
      }
    a.ptr.push_back(a.nnz());
  }
  return a;
}

// ---- Timing and the report ------------------------------------------------------------------

// One warm-up run (first-touch page faults, lazily built scratch), then the median of
// `repeats` timed runs: the median ignores the odd run another process disturbs.
template <class F>
double median_seconds(F&& run, int repeats) {
  run();
  std::vector<double> s;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    const auto t1 = std::chrono::steady_clock::now();
    s.push_back(std::chrono::duration<double>(t1 - t0).count());
  }
  std::nth_element(s.begin(), s.begin() + s.size() / 2, s.end());
  return s[s.size() / 2];
}

inline void print_header() {
  std::printf("%-28s %-11s %-34s %8s %7s %11s %9s %8s\n", "kernel", "isa", "shape", "sparsity",
              "threads", "median_ms", "GFLOP/s", "GB/s");
}

// flops: the nonzero work; bytes: the traffic model above.
inline void report(const char* kernel, st::Isa isa, const std::string& shape, double sparsity,
                   const Options& o, double seconds, double flops, double bytes) {
  std::printf("%-28s %-11s %-34s %7.1f%% %7d %11.3f %9.2f %8.2f\n", kernel, st::isa_name(isa),
              shape.c_str(), 100.0 * sparsity, o.threads, seconds * 1e3, flops / seconds * 1e-9,
              bytes / seconds * 1e-9);
  std::fflush(stdout);
}

}  // namespace st_bench
