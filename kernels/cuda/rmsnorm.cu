// RMSNorm fused with the residual add, on the GPU (contract and formulas: kernels/cpu/rmsnorm.cpp).
// One block per row: each thread strides the row, the row statistic (sum of h^2, sum of dy*w*h) is
// a fixed block tree (kernels/cuda/reduce.cuh) summed in double (fp32 for bf16), and the row is
// read again for the output (from L2: a row is a few KiB). dweight is a sum over every row: per-slab
// partial column sums in scratch, added slab by slab in order (add_column_sums), so it is
// deterministic, with no float atomics.
#include <cmath>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/reduce.cuh"

namespace nexus::cuda {

namespace {

constexpr unsigned kThreads = 256;

// h may alias x: each element is read and written by the same thread, so no restrict on them.
template <typename T>
__global__ void residual_rmsnorm_forward_kernel(T* h, T* __restrict__ y, accum_t<T>* __restrict__ rstd, const T* x,
                                                const T* __restrict__ branch, const T* __restrict__ weight, idx N,
                                                idx D, double eps) {
  using C = compute_t<T>;
  using S = sum_t<T>;
  for (idx n = blockIdx.x; n < N; n += gridDim.x) {
    T* hn = h + n * D;
    const T* xn = x + n * D;
    S ss = S(0);
    for (idx d = threadIdx.x; d < D; d += kThreads) {
      // The sum is taken of the stored h, which is what the backward reads.
      const T hd = branch ? T(C(xn[d]) + C(branch[n * D + d])) : xn[d];
      hn[d] = hd;
      ss += S(hd) * S(hd);
    }
    ss = block_sum<kThreads>(ss);
    const C r = C(1.0 / sqrt(double(ss) / double(D) + eps));
    if (threadIdx.x == 0) rstd[n] = r;
    for (idx d = threadIdx.x; d < D; d += kThreads) y[n * D + d] = T(C(hn[d]) * r * C(weight[d]));
  }
}

// dh += r w dy - (r^3 / D) (sum_j dy_j w_j h_j) h
template <typename T>
__global__ void rmsnorm_input_grad_kernel(T* __restrict__ dh, const T* __restrict__ dy, const T* __restrict__ h,
                                          const T* __restrict__ weight, const accum_t<T>* __restrict__ rstd, idx N,
                                          idx D) {
  using C = compute_t<T>;
  using S = sum_t<T>;
  for (idx n = blockIdx.x; n < N; n += gridDim.x) {
    const idx row = n * D;
    S dot = S(0);
    for (idx d = threadIdx.x; d < D; d += kThreads) dot += S(dy[row + d]) * S(weight[d]) * S(h[row + d]);
    dot = block_sum<kThreads>(dot);
    const C r = rstd[n];
    const C c = C(double(r) * double(r) * double(r) * double(dot) / double(D));
    for (idx d = threadIdx.x; d < D; d += kThreads)
      dh[row + d] = T(C(dh[row + d]) + (r * C(weight[d]) * C(dy[row + d]) - c * C(h[row + d])));
  }
}

// dweight[d] term of row n: dy h r, the product in the compute type as on the CPU.
template <typename T>
struct RmsnormWeightTerm {
  const T* dy;
  const T* h;
  const accum_t<T>* rstd;
  idx D;
  __device__ sum_t<T> operator()(idx n, idx d) const {
    using C = compute_t<T>;
    return sum_t<T>(C(dy[n * D + d]) * C(h[n * D + d]) * C(rstd[n]));
  }
};

}  // namespace

template <typename T>
void residual_rmsnorm_forward(const Exec& ex, T* h, T* y, accum_t<T>* rstd, const T* x, const T* branch,
                              const T* weight, idx N, idx D, double eps) {
  if (N <= 0 || D <= 0) return;
  residual_rmsnorm_forward_kernel<T><<<grid_for(N, 1), kThreads, 0, stream_of(ex)>>>(h, y, rstd, x, branch, weight, N,
                                                                                     D, eps);
  NEXUS_CUDA_CHECK_LAUNCH();
}

template <typename T>
void rmsnorm_backward(const Exec& ex, T* dh, accum_t<T>* dweight, const T* dy, const T* h, const T* weight,
                      const accum_t<T>* rstd, idx N, idx D) {
  if (N <= 0 || D <= 0) return;
  rmsnorm_input_grad_kernel<T><<<grid_for(N, 1), kThreads, 0, stream_of(ex)>>>(dh, dy, h, weight, rstd, N, D);
  NEXUS_CUDA_CHECK_LAUNCH();
  add_column_sums<sum_t<T>>(ex, dweight, N, D, RmsnormWeightTerm<T>{dy, h, rstd, D});
}

#define NEXUS_INSTANTIATE(T)                                                                                   \
  template void residual_rmsnorm_forward<T>(const Exec&, T*, T*, accum_t<T>*, const T*, const T*, const T*, idx, \
                                            idx, double);                                                      \
  template void rmsnorm_backward<T>(const Exec&, T*, accum_t<T>*, const T*, const T*, const T*, const accum_t<T>*, \
                                    idx, idx);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE

}  // namespace nexus::cuda
