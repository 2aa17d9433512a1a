// Routes device memory requests to the backend of their device, as kernels/ops.h routes ops.
#include "kernels/device_memory.h"

#include "kernels/cpu/backend.h"
#if NEXUS_HAS_CUDA
#include "kernels/cuda/backend.h"
#endif
#include "kernels/ops.h"

namespace nexus {

void* device_allocate(Device device, std::size_t bytes) {
  if (device == Device::cpu) return cpu::allocate_bytes(bytes);
#if NEXUS_HAS_CUDA
  return cuda::allocate_bytes(bytes);
#endif
  detail::no_backend("device_allocate", device);
}

void device_free(Device device, void* p) noexcept {
  // Only memory a backend handed out reaches here, so its device has a backend in this build.
  if (device == Device::cpu) return cpu::free_bytes(p);
#if NEXUS_HAS_CUDA
  cuda::free_bytes(p);
#endif
}

namespace {

enum class CopyDirection { to_device, to_host };

// Both copy directions route alike: the CPU's memory is host memory, so there both are one plain
// copy, and only CUDA has a call per direction.
void copy_routed(CopyDirection dir, const Exec& ex, void* dst, const void* src, std::size_t bytes) {
  if (ex.device == Device::cpu) return cpu::copy_bytes(ex, dst, src, bytes);
#if NEXUS_HAS_CUDA
  if (dir == CopyDirection::to_device) return cuda::copy_to_device(ex, dst, src, bytes);
  return cuda::copy_to_host(ex, dst, src, bytes);
#endif
  detail::no_backend(dir == CopyDirection::to_device ? "copy_to_device" : "copy_to_host", ex.device);
}

}  // namespace

void copy_to_device(const Exec& ex, void* device_dst, const void* host_src, std::size_t bytes) {
  copy_routed(CopyDirection::to_device, ex, device_dst, host_src, bytes);
}

void copy_to_host(const Exec& ex, void* host_dst, const void* device_src, std::size_t bytes) {
  copy_routed(CopyDirection::to_host, ex, host_dst, device_src, bytes);
}

void zero_device_bytes(const Exec& ex, void* device_dst, std::size_t bytes) {
  if (ex.device == Device::cpu) return cpu::zero_bytes(ex, device_dst, bytes);
#if NEXUS_HAS_CUDA
  return cuda::zero_bytes(ex, device_dst, bytes);
#endif
  detail::no_backend("zero_device_bytes", ex.device);
}

}  // namespace nexus
