// Depthwise causal conv1d + SiLU on the GPU (contract: kernels/cpu/conv1d.cpp). Index arithmetic:
// kernels/cuda/conv1d_taps.h.
//
// Forward: one thread per output element, the pre-activation summed bias + tap 0 + ... + tap K-1
// as on the CPU; consecutive threads take consecutive channels, so every tap's row read coalesces.
// Backward without scratch tensors: the pre-activation gradient g = dout silu'(pre) is recomputed
// where it is needed rather than stored (K taps and one exponential each time; K is 4 in Mamba-2).
//  - dx, dhalo: one thread per xin element gathers g w over the K output tokens that read it, so
//    each element has one writer (no atomics) and is overwritten, as the contract says.
//  - dbias, dw: column sums over the B*Tn tokens (add_column_sums: per-slab partials, then added
//    in slab order), dbias of g and dw[c, k] of g times the xin value tap k read: deterministic.
#include <cmath>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/conv1d_taps.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/scalar_math.h"

namespace nexus::cuda {

namespace {

constexpr unsigned kThreads = 256;

// Channel 0 of xin row s of sequence b (or of its gradient, P non-const): in x (rows ld apart) or
// in the halo; null for a halo row when there is no halo (zeros forward, unwanted backward).
template <typename P>
__device__ inline P* xin_row(P* x, idx ld, P* halo, const conv1d::Geometry& g, idx b, idx s) {
  const conv1d::RowAt at = conv1d::xin_row(g, ld, b, s);
  if (!at.in_halo) return x + at.offset;
  return halo ? halo + at.offset : nullptr;
}

// What every kernel reads: the inputs of the convolution.
template <typename T>
struct ConvInputs {
  const T* x;
  idx ld_x;
  const T* halo;
  const T* w;
  const T* bias;
  conv1d::Geometry g;

  // bias[c] + sum_k w[c,k] xin[t - (K-1) + k, c], summed in the CPU's order.
  __device__ compute_t<T> preactivation(idx b, idx t, idx c) const {
    using C = compute_t<T>;
    C pre = C(bias[c]);
    for (idx k = 0; k < g.K; ++k)
      if (const T* src = xin_row(x, ld_x, halo, g, b, conv1d::tap_row(t, g.K, k))) pre += C(w[c * g.K + k]) * C(src[c]);
    return pre;
  }
  // The pre-activation gradient of output (b, t, c).
  __device__ compute_t<T> preactivation_grad(const T* dout, idx b, idx t, idx c) const {
    using C = compute_t<T>;
    return C(dout[(b * g.Tn + t) * g.C + c]) * scalar::silu_grad(preactivation(b, t, c));
  }
};

template <typename T>
__global__ void conv1d_silu_forward_kernel(T* __restrict__ out, ConvInputs<T> in, idx B) {
  const conv1d::Geometry& g = in.g;
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < B * g.Tn * g.C; i += idx(gridDim.x) * blockDim.x) {
    const idx c = i % g.C, bt = i / g.C;
    const idx b = bt / g.Tn, t = bt - b * g.Tn;
    out[i] = T(scalar::silu(in.preactivation(b, t, c)));
  }
}

// Element (b, s, c) of xin's gradient, s in [-(K-1), Tn), one thread each.
template <typename T>
__global__ void conv1d_silu_input_grad_kernel(T* __restrict__ dx, idx ld_dx, T* __restrict__ dhalo,
                                              const T* __restrict__ dout, ConvInputs<T> in, idx B) {
  using C = compute_t<T>;
  const conv1d::Geometry& g = in.g;
  const idx rows = g.Tn + g.K - 1;  // xin rows per sequence
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < B * rows * g.C; i += idx(gridDim.x) * blockDim.x) {
    const idx c = i % g.C, br = i / g.C;
    const idx b = br / rows, s = br - b * rows - (g.K - 1);
    T* dst = xin_row(dx, ld_dx, dhalo, g, b, s);
    if (dst == nullptr) continue;  // a halo row whose gradient is not wanted
    C acc = C(0);
    for (idx k = 0; k < g.K; ++k) {
      const idx t = conv1d::reading_token(s, g.K, k);
      if (t >= 0 && t < g.Tn) acc += in.preactivation_grad(dout, b, t, c) * C(in.w[c * g.K + k]);
    }
    dst[c] = T(acc);
  }
}

// dbias[c] term of token n = b*Tn + t: g.
template <typename T>
struct BiasTerm {
  ConvInputs<T> in;
  const T* dout;
  __device__ sum_t<T> operator()(idx n, idx c) const {
    const idx b = n / in.g.Tn;
    return sum_t<T>(in.preactivation_grad(dout, b, n - b * in.g.Tn, c));
  }
};

// dw[c, k] term (column c*K + k, dw's own layout) of token n = b*Tn + t: g times the xin value
// tap k of token t read (zero from an absent halo).
template <typename T>
struct WeightTerm {
  ConvInputs<T> in;
  const T* dout;
  __device__ sum_t<T> operator()(idx n, idx col) const {
    using C = compute_t<T>;
    const conv1d::Geometry& g = in.g;
    const idx c = col / g.K, k = col - c * g.K;
    const idx b = n / g.Tn, t = n - b * g.Tn;
    const T* src = xin_row(in.x, in.ld_x, in.halo, g, b, conv1d::tap_row(t, g.K, k));
    if (src == nullptr) return sum_t<T>(0);
    return sum_t<T>(in.preactivation_grad(dout, b, t, c) * C(src[c]));
  }
};

}  // namespace

template <typename T>
void conv1d_silu_forward(const Exec& ex, T* out, const T* x, idx ld_x, const T* halo, const T* w, const T* bias, idx B,
                         idx Tn, idx C, idx K) {
  const ConvInputs<T> in{x, ld_x, halo, w, bias, {Tn, C, K}};
  launch_over<kThreads>(ex, B * Tn * C, conv1d_silu_forward_kernel<T>, out, in, B);
}

template <typename T>
void conv1d_silu_backward(const Exec& ex, T* dx, idx ld_dx, T* dhalo, accum_t<T>* dw, accum_t<T>* dbias,
                          const T* dout, const T* x, idx ld_x, const T* halo, const T* w, const T* bias, idx B, idx Tn,
                          idx C, idx K) {
  const ConvInputs<T> in{x, ld_x, halo, w, bias, {Tn, C, K}};
  launch_over<kThreads>(ex, B * (Tn + K - 1) * C, conv1d_silu_input_grad_kernel<T>, dx, ld_dx, dhalo, dout, in, B);
  add_column_sums<sum_t<T>>(ex, dbias, B * Tn, C, BiasTerm<T>{in, dout});
  add_column_sums<sum_t<T>>(ex, dw, B * Tn, C * K, WeightTerm<T>{in, dout});
}

#define NEXUS_INSTANTIATE(T)                                                                                       \
  template void conv1d_silu_forward<T>(const Exec&, T*, const T*, idx, const T*, const T*, const T*, idx, idx, idx, \
                                       idx);                                                                        \
  template void conv1d_silu_backward<T>(const Exec&, T*, idx, T*, accum_t<T>*, accum_t<T>*, const T*, const T*, idx, \
                                        const T*, const T*, const T*, idx, idx, idx, idx);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE

}  // namespace nexus::cuda
