// Rotary position embedding on the GPU (contract: kernels/cpu/rope.cpp), in place. One thread per
// (token, rotary pair): it computes the angle as the CPU does, in double (inv_freq =
// theta^(-2i/r), a = sign * pos * inv_freq: thousands of radians, where float would lose ~1e-4 of
// the angle), rounds cos and sin to the compute type, and rotates that pair in every sequence and
// head. Consecutive threads take consecutive pairs, so each head's accesses coalesce.
#include <cmath>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/reduce.cuh"

namespace nexus::cuda {

namespace {

constexpr unsigned kThreads = 256;

struct RopeDims {
  idx B, Tn, H, head_dim, rotary_dim, pos0;
};

template <typename T>
__global__ void rope_rotate_kernel(T* x, RopeDims g, double theta, double sign) {
  using C = compute_t<T>;
  const idx half = g.rotary_dim / 2, row = g.H * g.head_dim;
  for (idx j = blockIdx.x * idx(blockDim.x) + threadIdx.x; j < g.Tn * half; j += idx(gridDim.x) * blockDim.x) {
    const idx t = j / half, i = j - t * half;
    const double inv_freq = pow(theta, -double(2 * i) / double(g.rotary_dim));
    const double a = sign * double(g.pos0 + t) * inv_freq;
    double sin_a, cos_a;
    sincos(a, &sin_a, &cos_a);
    const C c = C(cos_a), s = C(sin_a);
    for (idx b = 0; b < g.B; ++b)
      for (idx h = 0; h < g.H; ++h) {
        T* lo = x + (b * g.Tn + t) * row + h * g.head_dim + i;  // x[i]; x[i + r/2] is half further
        const C x1 = C(lo[0]), x2 = C(lo[half]);
        lo[0] = T(x1 * c - x2 * s);
        lo[half] = T(x2 * c + x1 * s);
      }
  }
}

template <typename T>
void rope_rotate(const Exec& ex, T* x, const RopeDims& g, double theta, double sign) {
  launch_over<kThreads>(ex, g.Tn * (g.rotary_dim / 2), rope_rotate_kernel<T>, x, g, theta, sign);
}

}  // namespace

template <typename T>
void rope_forward(const Exec& ex, T* x, idx B, idx Tn, idx H, idx head_dim, idx rotary_dim, idx pos0, double theta) {
  rope_rotate(ex, x, RopeDims{B, Tn, H, head_dim, rotary_dim, pos0}, theta, 1.0);
}

template <typename T>
void rope_backward(const Exec& ex, T* dx, idx B, idx Tn, idx H, idx head_dim, idx rotary_dim, idx pos0,
                   double theta) {
  rope_rotate(ex, dx, RopeDims{B, Tn, H, head_dim, rotary_dim, pos0}, theta, -1.0);
}

#define NEXUS_INSTANTIATE(T)                                                                  \
  template void rope_forward<T>(const Exec&, T*, idx, idx, idx, idx, idx, idx, double); \
  template void rope_backward<T>(const Exec&, T*, idx, idx, idx, idx, idx, idx, double);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE

}  // namespace nexus::cuda
