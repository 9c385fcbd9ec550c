// Which form conv_grads_offsets_planes / _planes16 run in. Compiled once (not per ISA): the
// checks are scalar bookkeeping, and every ISA's kernel must take the same decision.
#pragma once

#include <cstdint>

#include "kernels/offsets_args.h"

namespace sparsetrain {
namespace kernels {

// The elements of one packed input plane when both gradients can come from one load of each
// window of dy (a stride-1 convolution whose input gradient is written into NCHW planes from
// its transposed index, dx's index listing exactly dv's nonzeros), with x and dy packed by
// the kernel image by image (one image per vector) or beforehand; else 0.
template <class T>
int64_t conv_grads_one_pass_plane(const ConvGradsPlanesArgs<T>& a);
template <class T>
int64_t conv_grads_one_pass_plane(const ConvGradsPlanes16Args<T>& a);

}  // namespace kernels
}  // namespace sparsetrain
