// The CPU backend's device memory: aligned host memory.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "kernels/cpu/backend.h"
#include "kernels/device_memory.h"

namespace nexus::cpu {

void* allocate_bytes(std::size_t bytes) {
  // aligned_alloc wants a multiple of the alignment, and a zero-byte buffer still gets a unique
  // pointer (a model with an empty tensor table is legal).
  if (bytes > SIZE_MAX - kDeviceAlign) throw std::bad_alloc();
  const std::size_t rounded = std::max(kDeviceAlign, (bytes + kDeviceAlign - 1) / kDeviceAlign * kDeviceAlign);
  void* p = std::aligned_alloc(kDeviceAlign, rounded);
  if (!p) throw std::bad_alloc();
  return p;
}

void free_bytes(void* p) noexcept { std::free(p); }

void copy_bytes(const Exec&, void* dst, const void* src, std::size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}

void zero_bytes(const Exec&, void* dst, std::size_t bytes) {
  if (bytes) std::memset(dst, 0, bytes);
}

}  // namespace nexus::cpu
