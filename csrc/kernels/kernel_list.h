// The one list of kernels. Each row names a KernelTable member, the kernel function every ISA
// namespace defines, and its parameters; the per-ISA declarations (kernels.h), the table's
// members (dispatch/isa.h) and each ISA's table (dispatch/isa.cpp) are all expanded from it,
// member by name, so a table cannot pair a member with another kernel.
// A new kernel is one row here, its source file under kernels/ and a line in CMake's
// KERNEL_SOURCES.
#pragma once

// X(member, function, (parameters))
#define SPARSETRAIN_KERNELS(X)                                                              \
  X(spmm, f32_spmm_csr_bmajor, (const SpmmArgs&))                                          \
  X(spmmt, f32_spmmt_csr_bmajor, (const SpmmTArgs&))                                       \
  X(sddmm, f32_sddmm_csr_bmajor, (const SddmmArgs&))                                       \
  X(spmm_offsets, f32_spmm_csr_offsets, (const SpmmOffsetsArgs&))                          \
  X(sddmm_offsets, f32_sddmm_csr_offsets, (const SddmmOffsetsArgs&))                       \
  /* Both gradients of a convolution in the pack_grid forms, dy packed once per image. */   \
  X(conv_grads_offsets, f32_conv_grads_offsets,                                             \
    (const SpmmOffsetsArgs&, const SddmmOffsetsArgs&))                                      \
  X(pack, f32_pack_bmajor, (const PackArgs&))                                               \
  X(unpack, f32_unpack_bmajor, (const UnpackArgs&))                                         \
  X(conv_pack_input, f32_conv_pack_input, (const ConvInputArgs&))                           \
  X(conv_unpack_grad_input, f32_conv_unpack_grad_input, (const ConvInputArgs&))             \
  X(conv_pack_grad_output, f32_conv_pack_grad_output, (const ConvOutputArgs&))              \
  X(conv_direct_spmm, f32_conv_direct_spmm, (const ConvDirectArgs&))                        \
  X(conv_direct_sddmm, f32_conv_direct_sddmm, (const ConvDirectArgs&))                      \
  X(subsample, f32_subsample, (const SubsampleArgs&))                                       \
  X(subsample_grad, f32_subsample_grad, (const SubsampleArgs&))
