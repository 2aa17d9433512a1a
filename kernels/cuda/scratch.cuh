// Device scratch for the reductions that return a value to the host (sum of squares, all finite,
// counting targets): their per-block partial results and the final word. One buffer per stream,
// grown on demand and kept: after a run's first step it is never allocated again.
#pragma once

#include <cstddef>

#include "kernels/types.h"

namespace nexus::cuda {

void* reduction_scratch(const Exec& ex, std::size_t bytes);

}  // namespace nexus::cuda
