// Which form f32_conv_grads_offsets can run in. Compiled once (not per ISA): the checks are
// scalar bookkeeping, and every ISA's kernel must take the same decision.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace sparsetrain {
namespace kernels {

// The floats of one packed input plane when both gradients can come from one load of each
// window of dy (a stride-1 convolution whose input gradient is written into NCHW planes from
// its transposed index, dx's index listing exactly dv's nonzeros), with x and dy packed by
// the kernel image by image (unit 1) or beforehand (unit 1 or 16); else 0.
int64_t conv_grads_one_pass_plane(const SpmmOffsetsArgs& dx, const SddmmOffsetsArgs& dv);

}  // namespace kernels
}  // namespace sparsetrain
