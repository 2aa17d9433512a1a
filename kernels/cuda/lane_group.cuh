// Reductions across an aligned group of `kWidth` lanes of a warp (kWidth a power of two <= 32), by
// xor shuffles: every lane of the group ends with the result, and the order of the additions is
// fixed by the lane pattern alone, so the result is deterministic. Every lane of the warp must
// call them (full mask).
#pragma once

#include <cuda_runtime.h>

namespace nexus::cuda {

template <int kWidth, typename C>
__device__ inline C group_sum(C x) {
  static_assert(kWidth >= 1 && kWidth <= 32 && (kWidth & (kWidth - 1)) == 0);
  for (int offset = kWidth / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset, kWidth);
  return x;
}

template <int kWidth, typename C>
__device__ inline C group_max(C x) {
  static_assert(kWidth >= 1 && kWidth <= 32 && (kWidth & (kWidth - 1)) == 0);
  for (int offset = kWidth / 2; offset > 0; offset /= 2) {
    const C y = __shfl_xor_sync(0xffffffffu, x, offset, kWidth);
    x = y > x ? y : x;
  }
  return x;
}

}  // namespace nexus::cuda
