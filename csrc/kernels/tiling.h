// Shared tiling constants and the compile-time tile dispatch used by the bmajor kernels.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels/vec.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// Vectors of the batch kept in registers per tile: 256 floats on AVX-512, 64 on AVX2.
constexpr int kTileMax = Vec::kRegs >= 24 ? 16 : 8;
// Independent accumulators we want in flight to hide FMA latency (≈ 2 ports × 4 cycles).
constexpr int kAccTarget = Vec::kRegs >= 24 ? 16 : 8;
// Batch floats processed per pass over all rows: keeps the gathered B rows of one pass
// (features × 1 KiB) in L2 when the batch is large.
constexpr int64_t kBatchChunk = 256;

// Calls f(std::integral_constant<int, NT>) for a runtime tile width 1 <= nt <= kTileMax.
template <int NT = kTileMax, class F>
inline void with_tile(int nt, const F& f) {
  if constexpr (NT >= 1) {
    if (nt == NT) {
      f(std::integral_constant<int, NT>{});
      return;
    }
    with_tile<NT - 1>(nt, f);
  }
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
