// Moving test data to and from the GPU for the CUDA suites (default stream).
#pragma once

#include <vector>

#include "kernels/device_memory.h"

namespace nexus::test {

inline const Exec kGpu{Device::cuda, nullptr};
inline const Exec kCpu{};

template <typename T>
DeviceBuffer<T> on_gpu(const std::vector<T>& host) {
  DeviceBuffer<T> b(kGpu, idx(host.size()));
  copy_to_device(kGpu, b.data(), host.data(), b.bytes());
  return b;
}

template <typename T>
std::vector<T> on_host(const DeviceBuffer<T>& b) {
  std::vector<T> host(std::size_t(b.size()));
  copy_to_host(kGpu, host.data(), b.data(), b.bytes());
  return host;
}

}  // namespace nexus::test
