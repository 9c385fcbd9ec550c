// The convolution layouts as checked values: _C.ConvInputLayout / _C.ConvOutputLayout are
// these structs, built only through the functions below, so a layout a binding receives has
// been validated when it was made.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace sparsetrain {
namespace bindings {

// n images of c channels of h x w in groups of `unit` (1 or 16), packed into sh x sw phase
// planes of hq x wq holding the input padded by pt rows on top and pl columns on the left;
// nhwc: the unpacked side is channels_last.
kernels::ConvInputLayout conv_input_layout(int64_t n, int64_t c, int64_t unit, int64_t h, int64_t w,
                                           int64_t sh, int64_t sw, int64_t pt, int64_t pl,
                                           int64_t hq, int64_t wq, bool nhwc = false);

// The output side: channel pixels on a grid of wq columns from `offset` on, per_channel apart.
kernels::ConvOutputLayout conv_output_layout(int64_t n, int64_t c, int64_t unit, int64_t ho,
                                             int64_t wo, int64_t wq, int64_t per_channel,
                                             int64_t offset, bool nhwc = false);

}  // namespace bindings
}  // namespace sparsetrain
