// The kernel interface: plain structs of raw pointers and sizes, no Python, no allocation.
//
// - One entry point per form (op x layout), named for both (spmm_offsets_planes,
//   sddmm_bmajor, ...), in its own source kernels/<name>.cpp; kernel_list.h lists them all.
// - The element type is a template parameter: every argument struct holding element buffers
//   is a template on their storage type T, every kernel a template instantiated per storage
//   type it supports (f32; bf16 for the linear layers' family). Accumulation is always float,
//   whatever T stores.
// - Every kernel exists once per ISA: namespaces scalar / avx2 / avx512, one source compiled
//   with different flags against the vector abstraction of vec.h; dispatch/isa.h picks one at
//   run time. avx512_bf16 (avx512 + AVX512-BF16) has its own versions of the kernels listed
//   in SPARSETRAIN_BF16_DOT_KERNELS and shares avx512's for the rest.
// - A kernel's body is a template in its source's anonymous namespace (name_impl), the entry
//   point a one-line call of it: everything the body instantiates (its lambdas, the tiles they
//   run through) then has internal linkage, so it is inlined as for a local function and is
//   never a weak symbol (threading/parallel.h says why that matters).
// - Argument structs live in one header per family (below); the building blocks forms share
//   (tiles, spans, packing, thread splits) in headers named for what they hold.
#pragma once

#include <cstdint>

#include "kernels/bf16.h"
#include "kernels/bmajor_args.h"
#include "kernels/conv_direct_args.h"
#include "kernels/conv_layout_args.h"
#include "kernels/kernel_list.h"
#include "kernels/offsets_args.h"

namespace sparsetrain {
namespace kernels {

// The storage types of kernel_list.h's rows (bf16: kernels/bf16.h).
using f32 = float;

// Every kernel of kernel_list.h, declared once per ISA namespace.
#define ST_DECLARE_KERNEL(name, Args, T) \
  template <class U>                     \
  void name(const Args<U>& args);
namespace scalar {
SPARSETRAIN_KERNELS(ST_DECLARE_KERNEL)
}
namespace avx2 {
SPARSETRAIN_KERNELS(ST_DECLARE_KERNEL)
}
namespace avx512 {
SPARSETRAIN_KERNELS(ST_DECLARE_KERNEL)
}
namespace avx512_bf16 {
SPARSETRAIN_BF16_DOT_KERNELS(ST_DECLARE_KERNEL)
}
#undef ST_DECLARE_KERNEL

}  // namespace kernels
}  // namespace sparsetrain
