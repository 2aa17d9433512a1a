// The vocabulary every package shares, with nothing else: the index type, the devices, the
// execution context every op takes, the bf16 storage type and the precision trait that says which
// buffers keep the compute type and which the accumulator type. Packages that only need `idx`
// include this header, not the op catalogue (kernels/ops.h).
#pragma once

#include <bit>
#include <cstdint>
#include <type_traits>

// Functions usable on both sides of a CUDA build; plain inline functions under g++.
#if defined(__CUDACC__)
#define NEXUS_HOST_DEVICE __host__ __device__
#else
#define NEXUS_HOST_DEVICE
#endif

namespace nexus {

using idx = std::int64_t;

enum class Device : std::uint8_t { cpu, cuda };

inline const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

// Where an op runs and, on a GPU, on which stream (a cudaStream_t, kept opaque so that nothing
// above kernels/ needs the CUDA headers; null is the default stream). The CPU ignores the stream.
// Every pointer an op receives must live on `device`.
struct Exec {
  Device device = Device::cpu;
  void* stream = nullptr;
};

// bfloat16 storage: the upper 16 bits of an IEEE float. Arithmetic happens in float (or the
// accumulator type); this type only converts. From float it rounds to nearest, ties to even, and
// keeps NaN a (quiet) NaN of the same sign; to float it is exact.
struct bf16 {
  std::uint16_t bits = 0;

  bf16() = default;
  NEXUS_HOST_DEVICE explicit bf16(float f) : bits(round_to_bits(f)) {}
  NEXUS_HOST_DEVICE explicit operator float() const {
    return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
  }
  NEXUS_HOST_DEVICE static bf16 from_bits(std::uint16_t b) {
    bf16 h;
    h.bits = b;
    return h;
  }

 private:
  NEXUS_HOST_DEVICE static std::uint16_t round_to_bits(float f) {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    // NaN: truncating could turn a NaN whose payload sits in the low bits into Inf; force the
    // quiet bit instead.
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
    // Round to nearest even: add 0x7fff plus the lowest kept bit, then truncate. A carry into the
    // exponent is correct rounding (up to the next binade, or to Inf past the largest finite).
    const std::uint32_t lsb = (u >> 16) & 1u;
    return static_cast<std::uint16_t>((u + 0x7fffu + lsb) >> 16);
  }
};
static_assert(sizeof(bf16) == 2 && std::is_trivially_copyable_v<bf16>);

// The accumulator type of a compute type: activations have the compute type T; statistics
// (rstd, lse), SSM states and carries, deltas, master weights and optimizer moments have
// accum_t<T>. fp32 for bf16; T itself for float and double, so the CPU builds (and every fp64
// gradient check) instantiate both the same.
template <typename T>
struct Accumulator {
  using type = T;
};
template <>
struct Accumulator<bf16> {
  using type = float;
};
template <typename T>
using accum_t = typename Accumulator<T>::type;

}  // namespace nexus
