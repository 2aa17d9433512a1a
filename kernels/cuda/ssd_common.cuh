// Device helpers shared by the CUDA SSD kernels (ssd.cu, ssd_state.cu, ssd_step.cu).
#pragma once

#include <cmath>

#include "kernels/scalar_math.h"
#include "kernels/types.h"

namespace nexus::cuda {

// exp(x) for x <= 0, zero below the flush threshold of the CPU kernels (scalar::kDecayFlush).
template <typename A>
__device__ inline A flushed_exp(A x) {
  const A e = std::exp(x);
  return e < scalar::kDecayFlush<A> ? A(0) : e;
}

// a / b for flat indices below 2^32 (of a state, a tile, a (b, h) row): a 64-bit division is a
// call whose saved registers spill.
__device__ inline idx quotient(idx a, idx b) { return idx(unsigned(a) / unsigned(b)); }

}  // namespace nexus::cuda
