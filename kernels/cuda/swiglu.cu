// SwiGLU on the fused gate|up projection on the GPU: out = silu(gate) * up, one thread per output
// element (grid-stride), with the same scalar functions as the CPU kernel (kernels/scalar_math.h).
// Each element's arithmetic is independent, so only exp's last-bit rounding can differ from the
// CPU (CUDA's expf and glibc's are both faithfully rounded, not always to the same neighbour).
#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/scalar_math.h"

namespace nexus::cuda {

namespace {

constexpr unsigned kThreads = 256;

template <typename T>
__global__ void swiglu_forward_kernel(T* __restrict__ out, const T* __restrict__ gate_up, idx N, idx F) {
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < N * F; i += idx(gridDim.x) * blockDim.x) {
    const idx n = i / F, f = i - n * F;
    using C = compute_t<T>;
    const T* gate = gate_up + n * 2 * F;  // [F], then up [F]
    out[i] = T(scalar::silu(C(gate[f])) * C(gate[F + f]));
  }
}

template <typename T>
__global__ void swiglu_backward_kernel(T* __restrict__ dgate_up, const T* __restrict__ dout,
                                       const T* __restrict__ gate_up, idx N, idx F) {
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < N * F; i += idx(gridDim.x) * blockDim.x) {
    const idx n = i / F, f = i - n * F;
    using C = compute_t<T>;
    const C g = C(gate_up[n * 2 * F + f]), up = C(gate_up[n * 2 * F + F + f]), go = C(dout[i]);
    dgate_up[n * 2 * F + f] = T(go * up * scalar::silu_grad(g));
    dgate_up[n * 2 * F + F + f] = T(go * scalar::silu(g));
  }
}

}  // namespace

template <typename T>
void swiglu_forward(const Exec& ex, T* out, const T* gate_up, idx N, idx F) {
  launch_over<kThreads>(ex, N * F, swiglu_forward_kernel<T>, out, gate_up, N, F);
}

template <typename T>
void swiglu_backward(const Exec& ex, T* dgate_up, const T* dout, const T* gate_up, idx N, idx F) {
  launch_over<kThreads>(ex, N * F, swiglu_backward_kernel<T>, dgate_up, dout, gate_up, N, F);
}

template void swiglu_forward<float>(const Exec&, float*, const float*, idx, idx);
template void swiglu_forward<double>(const Exec&, double*, const double*, idx, idx);
template void swiglu_backward<float>(const Exec&, float*, const float*, const float*, idx, idx);
template void swiglu_backward<double>(const Exec&, double*, const double*, const double*, idx, idx);
// bf16 storage, arithmetic in float (compute_t), one rounding per stored output.
template void swiglu_forward<bf16>(const Exec&, bf16*, const bf16*, idx, idx);
template void swiglu_backward<bf16>(const Exec&, bf16*, const bf16*, const bf16*, idx, idx);

}  // namespace nexus::cuda
