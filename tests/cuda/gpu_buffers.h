// Moving test data to and from the GPU for the CUDA suites (default stream), and the bf16 rounding
// the bf16 suites compare through (the CPU fp32 kernel runs on the same bf16-rounded inputs).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/device_memory.h"
#include "support/check.h"

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

// x rounded to bf16, and those values back in fp32 (exact) for the CPU reference.
struct Bf16Rounded {
  std::vector<bf16> stored;
  std::vector<float> value;
};
inline Bf16Rounded round_to_bf16(const std::vector<float>& x) {
  Bf16Rounded r{std::vector<bf16>(x.size()), std::vector<float>(x.size())};
  for (std::size_t i = 0; i < x.size(); ++i) {
    r.stored[i] = bf16(x[i]);
    r.value[i] = float(r.stored[i]);
  }
  return r;
}
// Uniform values in [lo, hi) as T, bf16 rounded from fp32.
template <typename T>
std::vector<T> random_as(std::size_t n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  if constexpr (std::is_same_v<T, bf16>)
    return round_to_bf16(random_vector<float>(n, seed, lo, hi)).stored;
  else
    return random_vector<T>(n, seed, lo, hi);
}
inline std::vector<float> to_float(const std::vector<bf16>& x) {
  std::vector<float> f(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) f[i] = float(x[i]);
  return f;
}

// The worst |got - want| / (roundings 2^-9 |want| + floor max|want|): at most 1 when every value
// is within `roundings` bf16 roundings (relative 2^-9 each: the stored output's, and one for each
// bf16 intermediate the kernel stores or error it propagates) of the reference; `floor` absorbs
// entries that cancel to ~0, where fp32 differences in the terms show relative to the row's scale.
inline double bf16_error(const std::vector<float>& got, const std::vector<float>& want, double roundings = 2,
                         double floor = 1e-3) {
  double scale = 0.0, worst = 0.0;
  for (const float w : want) scale = std::max(scale, double(std::fabs(w)));
  for (std::size_t i = 0; i < want.size(); ++i)
    worst = std::max(worst, std::fabs(double(got[i]) - double(want[i])) /
                                (roundings * std::ldexp(std::fabs(double(want[i])), -9) + floor * scale + 1e-30));
  return worst;
}

// Same bits (what a deterministic reduction promises run after run).
template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// n elements at device pointer p (on ex.device) copied to the host.
template <typename T>
std::vector<T> host_copy(const Exec& ex, const T* p, idx n) {
  const HostMirror<const T> m(ex, p, n);
  return std::vector<T>(m.data(), m.data() + n);
}

// n token ids in [0, vocab), seeded.
inline std::vector<std::int32_t> random_tokens(idx n, idx vocab, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (auto& x : t) x = std::int32_t(rng() % std::uint64_t(vocab));
  return t;
}

}  // namespace nexus::test
