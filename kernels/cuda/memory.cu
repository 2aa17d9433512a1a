// The CUDA backend's device memory and device discovery.
#include <mutex>
#include <new>
#include <unordered_map>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"

namespace nexus::cuda {

namespace {

// What allocate_bytes handed out, by pointer (allocations happen at setup, so a map under a mutex
// costs nothing that matters).
struct Ledger {
  std::mutex mutex;
  std::unordered_map<void*, std::size_t> sizes;
  std::size_t now = 0, peak = 0;
};
Ledger& ledger() {
  static Ledger l;
  return l;
}

}  // namespace

void* allocate_bytes(std::size_t bytes) {
  void* p = nullptr;
  // A zero-byte request still gets a unique, valid pointer, as on the CPU.
  bytes = bytes ? bytes : 256;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear the sticky-free error so later calls do not report it
    throw std::bad_alloc();
  }
  NEXUS_CUDA_CHECK(e);
  Ledger& l = ledger();
  const std::lock_guard<std::mutex> lock(l.mutex);
  l.sizes[p] = bytes;
  l.now += bytes;
  if (l.now > l.peak) l.peak = l.now;
  return p;
}

void free_bytes(void* p) noexcept {
  if (!p) return;
  {
    Ledger& l = ledger();
    const std::lock_guard<std::mutex> lock(l.mutex);
    const auto it = l.sizes.find(p);
    if (it != l.sizes.end()) {
      l.now -= it->second;
      l.sizes.erase(it);
    }
  }
  cudaFree(p);
}

std::size_t allocated_bytes() {
  const std::lock_guard<std::mutex> lock(ledger().mutex);
  return ledger().now;
}

std::size_t peak_allocated_bytes() {
  const std::lock_guard<std::mutex> lock(ledger().mutex);
  return ledger().peak;
}

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

std::size_t free_device_bytes() {
  std::size_t free = 0, total = 0;
  NEXUS_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return free;
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
