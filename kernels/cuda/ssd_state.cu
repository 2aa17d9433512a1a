// The initial-state terms of the SSD scan as separate ops on the GPU (context parallelism; see
// kernels/cpu/ssd_state.cpp): the output a segment's initial state adds, its adjoint, and one step
// of the cross-segment decayed scan. One block per (b, h) for the first two: tokens go in tiles of
// kTokens, whose cumulative decays e_t = exp(A sum_{s<=t} dt_s) come from a running fp64 sum of
// dt as on the CPU (one thread adds the tile in token order), and once e_t falls below the flush
// threshold the rest of the sequence is skipped, as the CPU kernel stops there.
#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ssd_common.cuh"
#include "kernels/scalar_math.h"

namespace nexus::cuda {

namespace {

constexpr unsigned kTokens = 256;  // tokens per tile, and threads per block

// The decays e[k] of tokens t0 + k, k < nt, of (b, h) into shared memory (zero once flushed);
// `carry` holds the sum of dt before t0 on entry and through the tile on exit. Returns whether
// any token of the tile survives (the same answer in every thread).
template <typename T>
__device__ bool tile_decays(accum_t<T>* e, double* cum, double* carry, const T* __restrict__ dt_raw, idx ld_dt,
                            const T* __restrict__ dt_bias, const T* __restrict__ A_log, idx b, idx h, idx Tn, idx t0,
                            idx nt) {
  using A = accum_t<T>;
  if (threadIdx.x < nt)
    cum[threadIdx.x] = double(scalar::softplus(A(dt_raw[(b * Tn + t0 + threadIdx.x) * ld_dt + h]) + A(dt_bias[h])));
  __syncthreads();
  if (threadIdx.x == 0) {
    double acc = *carry;
    for (idx k = 0; k < nt; ++k) cum[k] = acc += cum[k];
    *carry = acc;
  }
  __syncthreads();
  if (threadIdx.x < nt) {
    const double ev = std::exp(-std::exp(double(A(A_log[h]))) * cum[threadIdx.x]);
    e[threadIdx.x] = ev < double(scalar::kDecayFlush<A>) ? A(0) : A(ev);
  }
  __syncthreads();
  return e[0] != A(0);
}

template <typename T>
__global__ void __launch_bounds__(kTokens)
    state_output_forward_kernel(T* __restrict__ y, const accum_t<T>* __restrict__ state_in, const T* __restrict__ Cm,
                                const T* __restrict__ dt_raw, const T* __restrict__ dt_bias,
                                const T* __restrict__ A_log, SsdShape s, SsdStrides ld) {
  using A = accum_t<T>;
  __shared__ A e[kTokens];
  __shared__ double cum[kTokens];
  __shared__ double carry;
  const idx bh = blockIdx.x, b = quotient(bh, s.H), h = bh - b * s.H, g = quotient(h, s.H / s.G);
  const idx P = s.P, N = s.N;
  const A* S = state_in + bh * P * N;
  if (threadIdx.x == 0) carry = 0;
  for (idx t0 = 0; t0 < s.Tn; t0 += kTokens) {
    const idx nt = s.Tn - t0 < idx(kTokens) ? s.Tn - t0 : idx(kTokens);
    if (!tile_decays(e, cum, &carry, dt_raw, ld.ld_dt, dt_bias, A_log, b, h, s.Tn, t0, nt)) return;
    for (idx o = threadIdx.x; o < nt * P; o += blockDim.x) {
      const idx k = quotient(o, P), p = o - k * P, t = t0 + k;
      if (e[k] == A(0)) continue;
      const T* ct = Cm + (b * s.Tn + t) * ld.ld_bc + g * N;
      A q = 0;
      for (idx n = 0; n < N; ++n) q += S[p * N + n] * A(ct[n]);
      T* yt = y + ((b * s.Tn + t) * s.H + h) * P + p;
      *yt = T(A(*yt) + e[k] * q);
    }
    __syncthreads();  // e and cum are rewritten by the next tile
  }
}

template <typename T>
__global__ void __launch_bounds__(kTokens)
    state_output_backward_kernel(accum_t<T>* __restrict__ dstate, const T* __restrict__ dy, const T* __restrict__ Cm,
                                 const T* __restrict__ dt_raw, const T* __restrict__ dt_bias,
                                 const T* __restrict__ A_log, SsdShape s, SsdStrides ld) {
  using A = accum_t<T>;
  __shared__ A e[kTokens];
  __shared__ double cum[kTokens];
  __shared__ double carry;
  const idx bh = blockIdx.x, b = quotient(bh, s.H), h = bh - b * s.H, g = quotient(h, s.H / s.G);
  const idx P = s.P, N = s.N, HP = s.H * s.P;
  A* L = dstate + bh * P * N;
  for (idx o = threadIdx.x; o < P * N; o += blockDim.x) L[o] = 0;
  if (threadIdx.x == 0) carry = 0;
  for (idx t0 = 0; t0 < s.Tn; t0 += kTokens) {
    const idx nt = s.Tn - t0 < idx(kTokens) ? s.Tn - t0 : idx(kTokens);
    if (!tile_decays(e, cum, &carry, dt_raw, ld.ld_dt, dt_bias, A_log, b, h, s.Tn, t0, nt)) return;
    for (idx o = threadIdx.x; o < P * N; o += blockDim.x) {
      const idx p = quotient(o, N), n = o - p * N;
      A sum = L[o];
      for (idx k = 0; k < nt && e[k] != A(0); ++k) {
        const idx row = b * s.Tn + t0 + k;
        sum += e[k] * A(dy[row * HP + h * P + p]) * A(Cm[row * ld.ld_bc + g * N + n]);
      }
      L[o] = sum;
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void decayed_state_update_kernel(T* __restrict__ state, const T* __restrict__ decay,
                                            const T* __restrict__ add, idx B, idx H, idx width, idx ld_b) {
  for (idx bh = blockIdx.y; bh < B * H; bh += gridDim.y) {
    const idx b = quotient(bh, H), r = b * ld_b + (bh - b * H);
    const T dec = decay[r];
    T* sr = state + r * width;
    const T* ar = add + r * width;
    for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < width; i += idx(gridDim.x) * blockDim.x)
      sr[i] = dec * sr[i] + ar[i];
  }
}

}  // namespace

template <typename T>
void ssd_state_output_forward(const Exec& ex, T* y, const accum_t<T>* state_in, const T* Cm, const T* dt_raw,
                              const T* dt_bias, const T* A_log, const SsdShape& s, const SsdStrides& ld) {
  if (s.B * s.H <= 0 || s.Tn <= 0) return;
  state_output_forward_kernel<T>
      <<<unsigned(s.B * s.H), kTokens, 0, stream_of(ex)>>>(y, state_in, Cm, dt_raw, dt_bias, A_log, s, ld);
  NEXUS_CUDA_CHECK_LAUNCH();
}

template <typename T>
void ssd_state_output_backward(const Exec& ex, accum_t<T>* dstate, const T* dy, const T* Cm, const T* dt_raw,
                               const T* dt_bias, const T* A_log, const SsdShape& s, const SsdStrides& ld) {
  if (s.B * s.H <= 0) return;
  state_output_backward_kernel<T>
      <<<unsigned(s.B * s.H), kTokens, 0, stream_of(ex)>>>(dstate, dy, Cm, dt_raw, dt_bias, A_log, s, ld);
  NEXUS_CUDA_CHECK_LAUNCH();
}

template <typename T>
void decayed_state_update(const Exec& ex, T* state, const T* decay, const T* add, idx B, idx H, idx width, idx ld_b) {
  if (B * H <= 0 || width <= 0) return;
  constexpr unsigned threads = 256;
  const dim3 grid(grid_for(width, threads) < 64 ? grid_for(width, threads) : 64,
                  unsigned(B * H < 65535 ? B * H : 65535));
  decayed_state_update_kernel<T><<<grid, threads, 0, stream_of(ex)>>>(state, decay, add, B, H, width, ld_b);
  NEXUS_CUDA_CHECK_LAUNCH();
}

#define NEXUS_INSTANTIATE(T)                                                                                   \
  template void ssd_state_output_forward<T>(const Exec&, T*, const accum_t<T>*, const T*, const T*, const T*,  \
                                            const T*, const SsdShape&, const SsdStrides&);                     \
  template void ssd_state_output_backward<T>(const Exec&, accum_t<T>*, const T*, const T*, const T*, const T*, \
                                             const T*, const SsdShape&, const SsdStrides&);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE
template void decayed_state_update<float>(const Exec&, float*, const float*, const float*, idx, idx, idx, idx);
template void decayed_state_update<double>(const Exec&, double*, const double*, const double*, idx, idx, idx, idx);

}  // namespace nexus::cuda
