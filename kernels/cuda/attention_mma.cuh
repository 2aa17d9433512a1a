// The bf16 tensor-core forward of attention_forward (kernels/cuda/attention_mma.cu), which
// attention_forward uses for the shapes it supports; the CUDA-core kernels cover every other.
#pragma once

#include "kernels/shapes.h"

namespace nexus::cuda {

inline bool attention_forward_mma_supports(const AttentionShape& s) { return s.head_dim == 64 || s.head_dim == 128; }

void attention_forward_mma(const Exec& ex, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                           const AttentionShape& s);

}  // namespace nexus::cuda
