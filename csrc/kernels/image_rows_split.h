// How the offsets products split (image, row) pairs across threads when B is given packed.
#pragma once

#include <cstdint>

#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// Threads own disjoint (image, row) pairs, balanced by nonzero count (a row weighs its
// nonzeros + 1, times work_per_weight): body(n, r0, r1) for rows [r0, r1) of image n, images
// in order. ptr: the row pointer of the index (rows + 1).
template <class Body>
inline void split_image_rows(int nthreads, const int64_t* ptr, int64_t rows, int64_t images,
                             int64_t work_per_weight, const Body& body) {
  const int64_t base = ptr[0];
  const int64_t per_image = ptr[rows] - base + rows;
  parallel_balanced(
      nthreads, rows * images, work_per_weight,
      [&](int64_t i) {
        const int64_t n = i / rows, r = i - n * rows;
        return n * per_image + ptr[r] - base + r;
      },
      [&](int64_t i0, int64_t i1) {
        for (int64_t n = i0 / rows; n * rows < i1; ++n) {
          const int64_t r0 = i0 > n * rows ? i0 - n * rows : 0;
          const int64_t r1 = i1 < (n + 1) * rows ? i1 - n * rows : rows;
          body(n, r0, r1);
        }
      });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
