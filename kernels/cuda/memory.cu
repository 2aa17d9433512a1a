// The CUDA backend's device memory and device discovery.
#include <new>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"

namespace nexus::cuda {

void* allocate_bytes(std::size_t bytes) {
  void* p = nullptr;
  // A zero-byte request still gets a unique, valid pointer, as on the CPU.
  const cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear the sticky-free error so later calls do not report it
    throw std::bad_alloc();
  }
  NEXUS_CUDA_CHECK(e);
  return p;
}

void free_bytes(void* p) noexcept { cudaFree(p); }

void copy_to_device(const Exec& ex, void* dst, const void* src, std::size_t bytes) {
  if (!bytes) return;
  NEXUS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_of(ex)));
  NEXUS_CUDA_CHECK(cudaStreamSynchronize(stream_of(ex)));  // the host buffer may be reused at once
}

void copy_to_host(const Exec& ex, void* dst, const void* src, std::size_t bytes) {
  if (!bytes) return;
  NEXUS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_of(ex)));
  NEXUS_CUDA_CHECK(cudaStreamSynchronize(stream_of(ex)));
}

void zero_bytes(const Exec& ex, void* dst, std::size_t bytes) {
  if (bytes) NEXUS_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream_of(ex)));
}

int visible_devices(const char** why_none) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    if (why_none) *why_none = cudaGetErrorString(e);
    cudaGetLastError();
    return 0;
  }
  if (count == 0 && why_none) *why_none = "the CUDA runtime reports no devices";
  return count;
}

}  // namespace nexus::cuda
