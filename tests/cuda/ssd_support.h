// Shared by the CUDA SSD suites: the token-row layout the model passes the SSD ops (x, B, C, dt as
// column slices of one in_proj output row) and buffers of any element type on either device,
// filled from and read back as doubles.
#pragma once

#include <string>
#include <type_traits>
#include <vector>

#include "kernels/device_memory.h"
#include "kernels/shapes.h"

namespace nexus::test {

// The token rows the model passes the SSD ops: x | B | C are column slices of one row (stride ld),
// dt_raw a column slice of another, wider or narrower (stride ldt). Both live in one buffer here,
// the dt rows after the x | B | C rows.
struct Case {
  idx B, Tn, H, P, G, N, Q;
  idx HP() const { return H * P; }
  idx GN() const { return G * N; }
  idx ox() const { return 3; }
  idx ob() const { return ox() + HP(); }
  idx oc() const { return ob() + GN(); }
  idx ld() const { return oc() + GN() + 2; }
  idx odt() const { return B * Tn * ld() + 1; }
  idx ldt() const { return H + 3; }
  SsdShape shape() const { return {B, Tn, H, P, G, N, Q}; }
  SsdStrides strides() const { return {ld(), ld(), ldt()}; }
  std::size_t rows() const { return std::size_t(B * Tn * (ld() + ldt())); }
  std::size_t state() const { return std::size_t(B * H * P * N); }
};

inline std::string describe(const Case& c) {
  return "B=" + std::to_string(c.B) + " Tn=" + std::to_string(c.Tn) + " H=" + std::to_string(c.H) +
         " P=" + std::to_string(c.P) + " G=" + std::to_string(c.G) + " N=" + std::to_string(c.N) +
         " Q=" + std::to_string(c.Q);
}

inline double round_to_bf16(double x) { return double(float(bf16(float(x)))); }

template <typename T>
T from_double(double v) {
  if constexpr (std::is_same_v<T, bf16>)
    return bf16(float(v));
  else
    return T(v);
}
template <typename T>
double as_double(T v) {
  if constexpr (std::is_same_v<T, bf16>)
    return double(float(v));
  else
    return double(v);
}

// A buffer on the device ex runs on, filled from doubles and read back as doubles.
template <typename T>
struct Buffer {
  DeviceBuffer<T> mem;
  Buffer(const Exec& ex, const std::vector<double>& init) : mem(ex, idx(init.size())) {
    std::vector<T> host(init.size());
    for (std::size_t i = 0; i < init.size(); ++i) host[i] = from_double<T>(init[i]);
    copy_to_device(ex, mem.data(), host.data(), mem.bytes());
  }
  Buffer(const Exec& ex, std::size_t n) : Buffer(ex, std::vector<double>(n, 0.0)) {}
  T* data() { return mem.data(); }
  std::vector<double> read() {
    std::vector<T> host(std::size_t(mem.size()));
    copy_to_host(mem.exec(), host.data(), mem.data(), mem.bytes());
    std::vector<double> out(host.size());
    for (std::size_t i = 0; i < host.size(); ++i) out[i] = as_double(host[i]);
    return out;
  }
};

}  // namespace nexus::test

// Calls nexus::op for float and double and nexus::cuda::op for bf16: the CPU has no bf16 kernels,
// and the route would instantiate its CPU branch too. Used inside namespace nexus.
#define NEXUS_SSD_TEST_CALL(T, op, ...)    \
  do {                                     \
    if constexpr (std::is_same_v<T, bf16>) \
      cuda::op(__VA_ARGS__);               \
    else                                   \
      op(__VA_ARGS__);                     \
  } while (0)
