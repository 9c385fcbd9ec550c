// The one list of kernels: a row per kernel and storage type. From it come the per-ISA
// declarations (kernels.h), the KernelTable members (dispatch/isa.h) and each ISA's table
// (dispatch/isa.cpp), member by name, so a table cannot pair a member with another kernel.
//
// X(name, Args, T): kernel `name` for storage type T, defined once in kernels/<name>.cpp (the
// families noted below share a file) as
//   template <class T> void name(const Args<T>& args);
// compiled once per ISA namespace, and reached as KernelTable::name_T (e.g. spmm_bmajor_f32).
// - A new form: a row here, its argument struct in the family's *_args.h (built from the
//   family's shared pieces), kernels/<name>.cpp (body and entry point as kernels.h says), and
//   the file in CMake's KERNEL_SOURCES.
// - A new storage type (bf16): a row per kernel that gets it, and the instantiation at the end
//   of that kernel's source (where its loads and stores widen to float).
#pragma once

#define SPARSETRAIN_KERNELS(X)                                                            \
  /* batch-major products (bmajor_args.h); pack_bmajor.cpp holds pack and unpack */       \
  X(spmm_bmajor, SpmmArgs, f32)                                                           \
  X(spmm_bmajor, SpmmArgs, bf16)                                                          \
  X(spmmt_bmajor, SpmmTArgs, f32)                                                         \
  X(sddmm_bmajor, SddmmArgs, f32)                                                         \
  X(sddmm_bmajor, SddmmArgs, bf16)                                                        \
  X(pack_bmajor, PackArgs, f32)                                                           \
  X(pack_bmajor, PackArgs, bf16)                                                          \
  X(unpack_bmajor, UnpackArgs, f32)                                                       \
  X(unpack_bmajor, UnpackArgs, bf16)                                                      \
  /* offsets products (offsets_args.h) */                                                 \
  X(spmm_offsets_rows, SpmmOffsetsRowsArgs, f32)                                          \
  X(spmm_offsets_planes, SpmmOffsetsPlanesArgs, f32)                                      \
  X(spmm_offsets_planes16, SpmmOffsetsPlanes16Args, f32)                                  \
  X(spmm_offsets_merge, SpmmOffsetsMergeArgs, f32)                                        \
  X(sddmm_offsets, SddmmOffsetsArgs, f32)                                                 \
  X(conv_grads_offsets_planes, ConvGradsPlanesArgs, f32)                                  \
  X(conv_grads_offsets_planes16, ConvGradsPlanes16Args, f32)                              \
  X(conv_grads_offsets_merge, ConvGradsMergeArgs, f32)                                    \
  /* conv layout changes (conv_layout_args.h), all in conv_layout.cpp */                  \
  X(conv_pack_input, ConvInputArgs, f32)                                                  \
  X(conv_unpack_grad_input, ConvInputArgs, f32)                                           \
  X(conv_pack_grad_output, ConvOutputArgs, f32)                                           \
  /* direct NCHW convolutions and subsampling (conv_direct_args.h); conv_direct.cpp holds \
     spmm_direct and sddmm_direct, subsample.cpp subsample and subsample_grad */          \
  X(spmm_direct, ConvDirectArgs, f32)                                                     \
  X(sddmm_direct, ConvDirectArgs, f32)                                                    \
  X(subsample, SubsampleArgs, f32)                                                        \
  X(subsample_grad, SubsampleArgs, f32)

// The kernels the avx512_bf16 ISA has its own versions of (bf16_dot_tiles.h); it takes every
// other kernel from avx512. Their sources are compiled for avx512_bf16 too (CMake's
// ISA_SOURCES_avx512_bf16).
#define SPARSETRAIN_BF16_DOT_KERNELS(X) \
  X(spmm_bmajor, SpmmArgs, bf16)        \
  X(sddmm_bmajor, SddmmArgs, bf16)
