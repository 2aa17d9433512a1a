// Device scratch the backend keeps per stream, one buffer per purpose: the reductions that return
// a value to the host (sum of squares, all finite, counting targets, the cross-entropy loss:
// per-block partial results and the final word), cuBLASLt's workspace, the per-slab partial
// column sums of the parameter gradients (kernels/cuda/reduce.cuh), the attention backward's
// per-row dot products, and cuDNN attention's workspace with its staging buffers
// (kernels/cuda/attention_cudnn.cpp). Grown on demand and kept: after a run's first step nothing
// is allocated again.
#pragma once

#include <cstddef>

#include "kernels/types.h"

namespace nexus::cuda {

enum class Scratch { reduction, gemm_workspace, column_partials, attention, cudnn_attention };
inline constexpr int kScratchPurposes = 5;
void* stream_scratch(const Exec& ex, Scratch purpose, std::size_t bytes);
inline void* reduction_scratch(const Exec& ex, std::size_t bytes) { return stream_scratch(ex, Scratch::reduction, bytes); }

}  // namespace nexus::cuda
