// CUDA error checking for the backend: every runtime call and every launch is checked, and a
// failure throws std::runtime_error naming the call, where it was made and CUDA's reason.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <utility>

#include "kernels/types.h"

namespace nexus::cuda {

[[noreturn]] inline void fail(cudaError_t e, const char* call, const char* file, int line) {
  throw std::runtime_error(std::string("CUDA error in ") + call + " at " + file + ":" + std::to_string(line) + ": " +
                           cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

inline cudaStream_t stream_of(const Exec& ex) { return static_cast<cudaStream_t>(ex.stream); }

// Blocks of `threads` covering n elements with a grid-stride loop, capped so a huge n does not
// ask for more blocks than the hardware schedules at once anyway.
inline unsigned grid_for(idx n, unsigned threads) {
  const idx blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

}  // namespace nexus::cuda

#define NEXUS_CUDA_CHECK(call)                                               \
  do {                                                                       \
    const cudaError_t nexus_cuda_status_ = (call);                           \
    if (nexus_cuda_status_ != cudaSuccess)                                   \
      ::nexus::cuda::fail(nexus_cuda_status_, #call, __FILE__, __LINE__);    \
  } while (0)

// After a <<<...>>> launch: a bad configuration is reported by cudaGetLastError.
#define NEXUS_CUDA_CHECK_LAUNCH() NEXUS_CUDA_CHECK(cudaGetLastError())

namespace nexus::cuda {

// A grid-stride kernel over n elements on ex's stream, `threads` per block, checked; nothing for
// n <= 0.
template <unsigned threads, typename... Params, typename... Args>
void launch_over(const Exec& ex, idx n, void (*kernel)(Params...), Args&&... args) {
  if (n <= 0) return;
  kernel<<<grid_for(n, threads), threads, 0, stream_of(ex)>>>(std::forward<Args>(args)...);
  NEXUS_CUDA_CHECK_LAUNCH();
}

}  // namespace nexus::cuda
