// One token of the Mamba-2 recurrence per sequence on the GPU (recurrent inference; see
// kernels/cpu/ssd_step.cpp): S = exp(dt A) S + dt x B^T; y = S C + D x. One block per (b, h), one
// warp per state row p at a time, its lanes across n: the row is read and written coalesced and
// y[p] is the warp's sum (a fixed shuffle tree: deterministic).
#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ssd_common.cuh"
#include "kernels/scalar_math.h"

namespace nexus::cuda {

namespace {

constexpr unsigned kThreads = 128;

template <typename A>
__device__ inline A warp_sum(A v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    ssd_step_kernel(T* __restrict__ y, accum_t<T>* __restrict__ state, const T* __restrict__ x,
                    const T* __restrict__ Bm, const T* __restrict__ Cm, const T* __restrict__ dt_raw,
                    const T* __restrict__ dt_bias, const T* __restrict__ A_log, const T* __restrict__ D, SsdShape s,
                    SsdStrides ld) {
  using A = accum_t<T>;
  const idx bh = blockIdx.x, b = quotient(bh, s.H), h = bh - b * s.H, g = quotient(h, s.H / s.G);
  const idx P = s.P, N = s.N;
  const A dt = scalar::softplus(A(dt_raw[b * ld.ld_dt + h]) + A(dt_bias[h]));
  const A decay = std::exp(-dt * std::exp(A(A_log[h])));  // exp(dt A), A = -exp(A_log)
  const T* xr = x + b * ld.ld_x + h * P;
  const T* Br = Bm + b * ld.ld_bc + g * N;
  const T* Cr = Cm + b * ld.ld_bc + g * N;
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  for (idx p = warp; p < P; p += warps) {
    const A xp = A(xr[p]), u = dt * xp;
    A* Sp = state + (bh * P + p) * N;
    A acc = 0;
    for (idx n = lane; n < N; n += 32) {
      const A sn = decay * Sp[n] + u * A(Br[n]);
      Sp[n] = sn;
      acc += sn * A(Cr[n]);
    }
    acc = warp_sum(acc);
    if (lane == 0) y[bh * P + p] = T(acc + A(D[h]) * xp);
  }
}

}  // namespace

template <typename T>
void ssd_step(const Exec& ex, T* y, accum_t<T>* state, const T* x, const T* Bm, const T* Cm, const T* dt_raw,
              const T* dt_bias, const T* A_log, const T* D, const SsdShape& s, const SsdStrides& ld) {
  if (s.B * s.H <= 0) return;
  ssd_step_kernel<T>
      <<<unsigned(s.B * s.H), kThreads, 0, stream_of(ex)>>>(y, state, x, Bm, Cm, dt_raw, dt_bias, A_log, D, s, ld);
  NEXUS_CUDA_CHECK_LAUNCH();
}

#define NEXUS_INSTANTIATE(T)                                                                                          \
  template void ssd_step<T>(const Exec&, T*, accum_t<T>*, const T*, const T*, const T*, const T*, const T*, const T*, \
                            const T*, const SsdShape&, const SsdStrides&);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE

}  // namespace nexus::cuda
