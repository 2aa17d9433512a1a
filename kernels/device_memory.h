// Memory that lives on a device, owned. Everything a model trains with -- parameters, deltas, the
// activation arena, the AdamW moments -- is a DeviceBuffer on the device of the run's execution
// context; code above kernels/ never assumes it can read that memory. What needs the bytes on the
// host (checkpoints, exports, broadcasting a restored checkpoint) goes through a HostMirror: the
// memory itself where it already is host memory (the CPU backend: no copy, no extra bytes), a host
// copy where it is not.
//
// Allocation and copies route by device like the ops (kernels/ops.h): the CPU backend hands out
// 64-byte-aligned host memory; a build without a backend for the device throws, naming it.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/types.h"

namespace nexus {

// Raw memory on `device`: `bytes` (0 allowed: a valid, unique pointer), aligned to kDeviceAlign.
// Throws std::bad_alloc when the device has no room.
inline constexpr std::size_t kDeviceAlign = 64;  // a cache line and the widest vector load (cudaMalloc gives 256)
void* device_allocate(Device device, std::size_t bytes);
void device_free(Device device, void* p) noexcept;

// Copies between host memory and memory on ex.device (ordered on ex's stream and finished when
// the call returns, so the host side may be reused at once).
void copy_to_device(const Exec& ex, void* device_dst, const void* host_src, std::size_t bytes);
void copy_to_host(const Exec& ex, void* host_dst, const void* device_src, std::size_t bytes);
// Sets `bytes` bytes on ex.device to zero (all-zero bits are 0.0 for every float type).
void zero_device_bytes(const Exec& ex, void* device_dst, std::size_t bytes);

// `count` elements of T on one device, allocated once; moves, never copies.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const Exec& ex, idx count)
      : ex_(ex), count_(count), data_(static_cast<T*>(device_allocate(ex.device, bytes_of(count)))) {}
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : ex_(o.ex_), count_(std::exchange(o.count_, 0)), data_(std::exchange(o.data_, nullptr)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      ex_ = o.ex_;
      count_ = std::exchange(o.count_, 0);
      data_ = std::exchange(o.data_, nullptr);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { release(); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  idx size() const { return count_; }
  std::size_t bytes() const { return bytes_of(count_); }
  const Exec& exec() const { return ex_; }

  void zero() { zero_device_bytes(ex_, data_, bytes()); }

 private:
  static std::size_t bytes_of(idx count) { return static_cast<std::size_t>(count) * sizeof(T); }
  void release() {
    if (data_) device_free(ex_.device, data_);
    data_ = nullptr;
  }
  Exec ex_{};
  idx count_ = 0;
  T* data_ = nullptr;
};

// `count` elements at `device_ptr` (memory on ex.device) readable (and, for a non-const T,
// writable) on the host: the memory itself when ex is the CPU, a host copy otherwise (taken at
// construction unless `fetch` is false, for memory about to be overwritten). store() writes the
// host's changes back to the device.
template <typename T>
class HostMirror {
 public:
  HostMirror(const Exec& ex, T* device_ptr, idx count, bool fetch = true)
      : ex_(ex), device_(device_ptr), count_(count) {
    if (ex_.device == Device::cpu) {
      host_ = device_ptr;
      return;
    }
    copy_.resize(static_cast<std::size_t>(count));
    host_ = copy_.data();
    if (fetch) copy_to_host(ex_, copy_.data(), device_, bytes());
  }
  T* data() { return host_; }
  const T* data() const { return host_; }
  idx size() const { return count_; }
  void store()
    requires(!std::is_const_v<T>)
  {
    if (host_ != device_) copy_to_device(ex_, device_, host_, bytes());
  }

 private:
  std::size_t bytes() const { return static_cast<std::size_t>(count_) * sizeof(T); }
  Exec ex_;
  T* device_;
  idx count_;
  T* host_ = nullptr;
  std::vector<std::remove_const_t<T>> copy_;  // [count] only when the device is not the host
};

}  // namespace nexus
