// Routes device memory requests to the backend of their device, as kernels/ops.h routes ops.
#include "kernels/device_memory.h"

#include "kernels/cpu/backend.h"
#include "kernels/ops.h"

namespace nexus {

void* device_allocate(Device device, std::size_t bytes) {
  if (device == Device::cpu) return cpu::allocate_bytes(bytes);
  detail::no_backend("device_allocate", device);
}

void device_free(Device device, void* p) noexcept {
  // Only memory a backend handed out reaches here, so its device has a backend in this build.
  if (device == Device::cpu) cpu::free_bytes(p);
}

void copy_to_device(const Exec& ex, void* device_dst, const void* host_src, std::size_t bytes) {
  if (ex.device == Device::cpu) return cpu::copy_bytes(ex, device_dst, host_src, bytes);
  detail::no_backend("copy_to_device", ex.device);
}

void copy_to_host(const Exec& ex, void* host_dst, const void* device_src, std::size_t bytes) {
  if (ex.device == Device::cpu) return cpu::copy_bytes(ex, host_dst, device_src, bytes);
  detail::no_backend("copy_to_host", ex.device);
}

void zero_device_bytes(const Exec& ex, void* device_dst, std::size_t bytes) {
  if (ex.device == Device::cpu) return cpu::zero_bytes(ex, device_dst, bytes);
  detail::no_backend("zero_device_bytes", ex.device);
}

}  // namespace nexus
