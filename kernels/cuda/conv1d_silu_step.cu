// Depthwise causal conv1d + SiLU for one new token per sequence on the GPU (contract:
// kernels/cpu/conv1d_silu_step.cpp): the halo of conv1d_silu_forward as a rolling state.
#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/scalar_math.h"

namespace nexus::cuda {

namespace {

constexpr unsigned kThreads = 256;

// One token per sequence: out = silu(bias + taps over [state ; x]), then the state shifts by one
// row. Thread (b, c) reads and writes only column c of sequence b's state.
template <typename T>
__global__ void conv1d_silu_step_kernel(T* __restrict__ out, T* __restrict__ state, const T* __restrict__ x, idx ld_x,
                                        const T* __restrict__ w, const T* __restrict__ bias, idx B, idx C, idx K) {
  using A = compute_t<T>;
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < B * C; i += idx(gridDim.x) * blockDim.x) {
    const idx b = i / C, c = i - b * C;
    T* st = state + b * (K - 1) * C + c;  // [K-1 rows, C apart], oldest first
    const T xc = x[b * ld_x + c];
    A pre = A(bias[c]);
    for (idx k = 0; k < K; ++k) pre += A(w[c * K + k]) * A(k < K - 1 ? st[k * C] : xc);
    out[i] = T(scalar::silu(pre));
    for (idx k = 0; k + 1 < K - 1; ++k) st[k * C] = st[(k + 1) * C];
    if (K > 1) st[(K - 2) * C] = xc;
  }
}

}  // namespace

template <typename T>
void conv1d_silu_step(const Exec& ex, T* out, T* state, const T* x, idx ld_x, const T* w, const T* bias, idx B, idx C,
                      idx K) {
  launch_over<kThreads>(ex, B * C, conv1d_silu_step_kernel<T>, out, state, x, ld_x, w, bias, B, C, K);
}

template void conv1d_silu_step<float>(const Exec&, float*, float*, const float*, idx, const float*, const float*, idx,
                                      idx, idx);
template void conv1d_silu_step<double>(const Exec&, double*, double*, const double*, idx, const double*, const double*,
                                       idx, idx, idx);
template void conv1d_silu_step<bf16>(const Exec&, bf16*, bf16*, const bf16*, idx, const bf16*, const bf16*, idx, idx,
                                     idx);

}  // namespace nexus::cuda
