// Scalar activation functions shared by the kernels of both backends (host and device code),
// written once so every op, its backward and its CUDA twin agree on the same numerically safe form.
#pragma once

#include <cmath>

#include "kernels/types.h"

namespace nexus::scalar {

template <typename T>
NEXUS_HOST_DEVICE inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

template <typename T>
NEXUS_HOST_DEVICE inline T silu(T x) {
  return x * sigmoid(x);
}

// d silu(x) / dx = s (1 + x (1 - s)) with s = sigmoid(x)
template <typename T>
NEXUS_HOST_DEVICE inline T silu_grad(T x) {
  const T s = sigmoid(x);
  return s * (T(1) + x * (T(1) - s));
}

// log(1 + e^x) without overflow for large x or loss of precision for very negative x.
template <typename T>
NEXUS_HOST_DEVICE inline T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}

// Decay factors exp(sum of dt A) below this are flushed to zero by the SSD kernels: the product of
// two survivors is still a normal number (no denormal slowdown), and the terms dropped are < 1e-18
// (float) of the ones kept.
template <typename T>
inline constexpr T kDecayFlush = T(1e-18);
template <>
inline constexpr double kDecayFlush<double> = 1e-150;

}  // namespace nexus::scalar
