// CUDA events for kernels/stream_timer.h: the interval a stream spent between two recorded points.
#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"

namespace nexus::cuda {

void* timing_event_create() {
  cudaEvent_t e = nullptr;
  NEXUS_CUDA_CHECK(cudaEventCreate(&e));  // with timing (the default flags)
  return e;
}

void timing_event_destroy(void* event) noexcept { cudaEventDestroy(static_cast<cudaEvent_t>(event)); }

void timing_event_record(const Exec& ex, void* event) {
  NEXUS_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), stream_of(ex)));
}

double timing_event_seconds(void* start, void* stop) {
  NEXUS_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop)));
  float ms = 0;
  NEXUS_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(stop)));
  return 1e-3 * double(ms);
}

}  // namespace nexus::cuda
