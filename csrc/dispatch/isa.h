// Run-time ISA selection: one binary for every x86-64 CPU.
#pragma once

#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace sparsetrain {

enum class Isa { scalar = 0, avx2 = 1, avx512 = 2 };

struct KernelTable {
  Isa isa;
  void (*spmm)(const kernels::SpmmArgs&);
  void (*spmmt)(const kernels::SpmmTArgs&);
  void (*sddmm)(const kernels::SddmmArgs&);
  void (*spmm_offsets)(const kernels::SpmmOffsetsArgs&);
  void (*sddmm_offsets)(const kernels::SddmmOffsetsArgs&);
  // Both gradients of a convolution in the pack_grid forms, dy packed once per image.
  void (*conv_grads_offsets)(const kernels::SpmmOffsetsArgs&, const kernels::SddmmOffsetsArgs&);
  void (*pack)(const kernels::PackArgs&);
  void (*unpack)(const kernels::UnpackArgs&);
  void (*conv_pack_input)(const kernels::ConvInputArgs&);
  void (*conv_unpack_grad_input)(const kernels::ConvInputArgs&);
  void (*conv_pack_grad_output)(const kernels::ConvOutputArgs&);
  void (*conv_direct_spmm)(const kernels::ConvDirectArgs&);
  void (*conv_direct_sddmm)(const kernels::ConvDirectArgs&);
  void (*subsample)(const kernels::SubsampleArgs&);
  void (*subsample_grad)(const kernels::SubsampleArgs&);
};

const char* isa_name(Isa isa);
// Throws std::invalid_argument for an unknown name.
Isa isa_from_name(const std::string& name);
// Compiled into this build and supported by this CPU (and its OS), best last.
std::vector<Isa> supported_isas();
bool isa_supported(Isa isa);
// The best supported ISA, or the one named by SPARSETRAIN_ISA (std::runtime_error when
// that names an unknown or unsupported ISA).
Isa default_isa();

// The table in use; set_isa throws std::invalid_argument when the ISA is not supported.
const KernelTable& kernel_table();
const KernelTable& kernel_table(Isa isa);
void set_isa(Isa isa);
Isa current_isa();

}  // namespace sparsetrain
