// Packing one image at a time, for the kernels that fuse the layout change into their own
// loop (the packed image is used from cache right after it is written, and the packed
// tensor never exists): ImagePack (offsets_args.h) and the loop in which threads own whole
// images, each packed by its thread right before it is used.
#pragma once

#include <cstdint>

#include "kernels/conv_layout_args.h"
#include "kernels/offsets_args.h"
#include "threading/parallel.h"

namespace sparsetrain {
namespace kernels {
namespace ST_ISA {

// out = the phase planes of image x (NCHW, l.c channels; unit 1), as conv_pack_input writes
// them for one image. With finite set, *finite = 1 iff every value of x is finite.
// Defined in conv_layout.cpp.
template <class T>
void pack_image(const ConvInputLayout& l, const T* x, T* out, unsigned char* finite);

// Elements of one packed image (unit 1).
inline int64_t packed_image_size(const ConvInputLayout& l) {
  return l.c * l.sh * l.sw * l.hq * l.wq;
}

// out = image y (NCHW, o.c channels of ho x wo) on the bordered grid, as conv_pack_grad_output
// writes one image (unit 1; zeros at every non-output position). With finite set, *finite = 1
// iff every value of y is finite. Defined in conv_layout.cpp.
template <class T>
void pack_grid_image(const ConvOutputLayout& o, const T* y, T* out, unsigned char* finite);

inline int64_t packed_grid_size(const ConvOutputLayout& o) { return o.c * o.per_channel; }

// Whether the kernel packs B itself.
inline bool packs(const ImagePack& pack) { return pack.input != nullptr || pack.grid != nullptr; }

// Threads own whole images (uniform work_per_image each): body(n, b) for every image n of
// p, b = B_n packed per `pack` (packs(pack)) into the calling thread's scratch right before,
// its finite flag set.
template <class T, class Body>
void for_each_own_image(const OffsetsProduct<T>& p, const ImagePack& pack, int64_t work_per_image,
                        const Body& body) {
  ThreadScratch packed(p.nthreads,
                       pack.input ? packed_image_size(*pack.input) : packed_grid_size(*pack.grid));
  parallel_uniform(p.nthreads, p.images, work_per_image, [&](int64_t i0, int64_t i1) {
    float* const b = packed.mine();
    for (int64_t n = i0; n < i1; ++n) {
      const T* image = p.b + n * p.b_image_stride;
      unsigned char* const finite = pack.finite ? pack.finite + n : nullptr;
      if (pack.input)
        pack_image(*pack.input, image, b, finite);
      else
        pack_grid_image(*pack.grid, image, b, finite);
      body(n, static_cast<const float*>(b));
    }
  });
}

}  // namespace ST_ISA
}  // namespace kernels
}  // namespace sparsetrain
