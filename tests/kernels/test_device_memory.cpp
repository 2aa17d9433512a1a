// The device-memory owner and host mirrors (kernels/device_memory.h) on the CPU backend: aligned,
// zeroed on request, moved without copying, mirrored without a copy; and refused, naming the
// request, for a device this build has no backend for.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/device_memory.h"

namespace nexus {
namespace {

TEST(DeviceMemory, BuffersAreAlignedZeroedAndMovedWithoutCopying) {
  for (idx n : {idx(0), idx(1), idx(63), idx(100003)}) {
    DeviceBuffer<float> b(Exec{}, n);
    ASSERT_NE(b.data(), nullptr) << n;  // even an empty buffer has a unique address
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.data()) % kDeviceAlign, 0u) << n;
    EXPECT_EQ(b.size(), n);
    EXPECT_EQ(b.bytes(), std::size_t(n) * sizeof(float));
    for (idx i = 0; i < n; ++i) b.data()[i] = float(i) + 0.5f;
    b.zero();
    for (idx i = 0; i < n; ++i) ASSERT_EQ(b.data()[i], 0.0f) << i;
    float* const memory = b.data();
    DeviceBuffer<float> moved(std::move(b));
    EXPECT_EQ(moved.data(), memory);
    EXPECT_EQ(moved.size(), n);
    EXPECT_EQ(b.data(), nullptr);
    EXPECT_EQ(b.size(), 0);
    DeviceBuffer<float> assigned;
    assigned = std::move(moved);
    EXPECT_EQ(assigned.data(), memory);
  }
}

TEST(DeviceMemory, CopiesBetweenHostAndDeviceAreExact) {
  const std::vector<double> host = {1.0, -2.25, 3e300, -0.0};
  DeviceBuffer<double> b(Exec{}, idx(host.size()));
  copy_to_device(b.exec(), b.data(), host.data(), b.bytes());
  std::vector<double> back(host.size(), 9.0);
  copy_to_host(b.exec(), back.data(), b.data(), b.bytes());
  EXPECT_EQ(std::memcmp(back.data(), host.data(), b.bytes()), 0);
}

TEST(DeviceMemory, AHostMirrorOfCpuMemoryIsTheMemoryItself) {
  DeviceBuffer<float> b(Exec{}, 8);
  b.zero();
  HostMirror<float> mirror(b.exec(), b.data(), b.size(), /*fetch=*/false);
  EXPECT_EQ(mirror.data(), b.data());  // no copy, no extra bytes: the 28 GB weights of a 7B model stay single
  EXPECT_EQ(mirror.size(), 8);
  mirror.data()[3] = 4.0f;
  mirror.store();
  EXPECT_EQ(b.data()[3], 4.0f);
  const HostMirror<const float> reader(b.exec(), b.data(), b.size());
  EXPECT_EQ(reader.data(), b.data());
  EXPECT_EQ(reader.data()[3], 4.0f);
}

TEST(DeviceMemory, ADeviceWithoutABackendIsRefusedNamingTheRequest) {
  const Exec cuda{Device::cuda, nullptr};
  try {
    DeviceBuffer<float> b(cuda, 16);
    FAIL() << "a CUDA buffer was allocated by a build without CUDA";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "device_allocate: this build has no CUDA backend");
  }
  float x = 0;
  EXPECT_THROW(copy_to_host(cuda, &x, &x, sizeof x), std::runtime_error);
  EXPECT_THROW(copy_to_device(cuda, &x, &x, sizeof x), std::runtime_error);
  EXPECT_THROW(zero_device_bytes(cuda, &x, sizeof x), std::runtime_error);
  EXPECT_THROW((HostMirror<float>(cuda, &x, 1)), std::runtime_error);
}

}  // namespace
}  // namespace nexus
