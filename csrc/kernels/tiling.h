// Shared tiling constants, the compile-time tile dispatch and the row-span tiling loop of the
// kernels' register-blocked products.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels/bmajor_args.h"
#include "kernels/vec.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// Vectors of the batch kept in registers per tile: 256 floats on AVX-512, 64 on AVX2.
constexpr int kTileMax = Vec::kRegs >= 24 ? 16 : 8;
// Independent accumulators we want in flight to hide FMA latency (≈ 2 ports × 4 cycles).
constexpr int kAccTarget = Vec::kRegs >= 24 ? 16 : 8;
// Batch floats processed per pass over all rows: at most 256, and few enough that the
// slice of every gathered B row one pass touches stays in L2 (~1 MiB budget; on L2-poorer
// cores the L3 catches the rest), else each pass streams B from L3. `elem`: bytes per element.
inline int64_t batch_chunk(int64_t b_rows, int64_t elem = sizeof(float)) {
  constexpr int64_t budget = int64_t{1} << 20;
  int64_t c = b_rows > 0 ? budget / (b_rows * elem) : kBatchChunk;
  c = c / 16 * 16;
  return c < 16 ? 16 : (c > kBatchChunk ? kBatchChunk : c);
}

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

// One row span [t0, t1) of a vectorized product: tile(t0, NT) for tiles of NT <= NTMax whole
// vectors (NT a std::integral_constant), then tail(t0, n) for a last partial vector of
// n < W floats. Tiles are NTMax wide until fewer vectors are left.
template <int NTMax, class Tile, class Tail>
inline void for_each_tile(int64_t t0, int64_t t1, const Tile& tile, const Tail& tail) {
  constexpr int W = Vec::W;
  for (; t0 + W <= t1; t0 += int64_t{NTMax} * W) {
    const int64_t left = (t1 - t0) / W;
    const int nt = left < NTMax ? static_cast<int>(left) : NTMax;
    with_tile<NTMax>(nt, [&](auto NT) { tile(t0, NT); });
    if (nt < NTMax) {
      t0 += int64_t{nt} * W;
      break;
    }
  }
  if (t0 < t1) tail(t0, static_cast<int>(t1 - t0));
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
