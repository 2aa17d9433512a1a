// Device scratch the backend keeps per stream, one buffer per purpose: the reductions that return
// a value to the host (sum of squares, all finite, counting targets: per-block partial results and
// the final word) and cuBLASLt's workspace. Grown on demand and kept: after a run's first step
// nothing is allocated again.
#pragma once

#include <cstddef>

#include "kernels/types.h"

namespace nexus::cuda {

enum class Scratch { reduction, gemm_workspace };
void* stream_scratch(const Exec& ex, Scratch purpose, std::size_t bytes);
inline void* reduction_scratch(const Exec& ex, std::size_t bytes) { return stream_scratch(ex, Scratch::reduction, bytes); }

}  // namespace nexus::cuda
