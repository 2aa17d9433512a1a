// Softmax cross-entropy on the GPU (contract: kernels/cpu/cross_entropy.cpp), one block per row.
//
// Forward: one pass over the row's V logits, each thread keeping an online (max, sum of exp(x -
// max)) over its strided share, rescaled when its max grows; the block then takes the row max and
// the sum of the threads' sums rescaled to it (block trees of kernels/cuda/reduce.cuh). Every
// exponential is of a value <= 0, so nothing overflows. Each row's -log p(target) goes to scratch
// and one block adds them in a fixed order: the returned loss is the same on every run.
// Backward: in place over the logits, dlogits = (exp(x - lse) - onehot) * scale, no other buffer.
#include <cmath>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/scratch.cuh"

namespace nexus::cuda {

namespace {

constexpr unsigned kThreads = 256;

template <typename T>
__global__ void cross_entropy_forward_kernel(accum_t<T>* __restrict__ lse, double* __restrict__ row_loss /*[N]*/,
                                             const T* __restrict__ logits, const std::int32_t* __restrict__ targets,
                                             idx N, idx V) {
  using C = compute_t<T>;
  using S = sum_t<T>;
  for (idx n = blockIdx.x; n < N; n += gridDim.x) {
    const T* row = logits + n * V;
    C mx = C(-INFINITY);
    S sum = S(0);  // sum of exp(x - mx) over this thread's logits so far
    for (idx v = threadIdx.x; v < V; v += kThreads) {
      const C x = C(row[v]);
      if (x > mx) {
        sum = sum * S(std::exp(mx - x)) + S(1);
        mx = x;
      } else {
        sum += S(std::exp(x - mx));
      }
    }
    const C row_max = block_max<kThreads>(mx);
    // A thread that saw no logit (V < kThreads) has mx = -inf and sum = 0: it adds nothing.
    const S total = block_sum<kThreads>(mx == C(-INFINITY) ? S(0) : sum * S(std::exp(mx - row_max)));
    if (threadIdx.x == 0) {
      const double row_lse = double(row_max) + std::log(double(total));
      lse[n] = C(row_lse);
      const std::int32_t target = targets[n];
      row_loss[n] = target >= 0 ? row_lse - double(C(row[target])) : 0.0;
    }
  }
}

template <typename T>
__global__ void cross_entropy_backward_kernel(T* __restrict__ logits_to_dlogits, const accum_t<T>* __restrict__ lse,
                                              const std::int32_t* __restrict__ targets, idx N, idx V, double scale) {
  using C = compute_t<T>;
  const C s = C(scale);
  for (idx n = blockIdx.x; n < N; n += gridDim.x) {
    T* row = logits_to_dlogits + n * V;
    const std::int32_t target = targets[n];
    if (target < 0) {
      for (idx v = threadIdx.x; v < V; v += kThreads) row[v] = T(C(0));
      continue;
    }
    const C row_lse = lse[n];
    for (idx v = threadIdx.x; v < V; v += kThreads) {
      const C p = std::exp(C(row[v]) - row_lse) * s;  // softmax * scale
      row[v] = T(v == target ? p - s : p);
    }
  }
}

}  // namespace

template <typename T>
double cross_entropy_forward(const Exec& ex, accum_t<T>* lse, const T* logits, const std::int32_t* targets, idx N,
                             idx V) {
  if (N <= 0) return 0.0;
  auto* row_loss = static_cast<double*>(reduction_scratch(ex, std::size_t(N + 1) * sizeof(double)));
  cross_entropy_forward_kernel<T><<<grid_for(N, 1), kThreads, 0, stream_of(ex)>>>(lse, row_loss, logits, targets, N,
                                                                                  V);
  NEXUS_CUDA_CHECK_LAUNCH();
  sum_fixed_order<kThreads><<<1, kThreads, 0, stream_of(ex)>>>(row_loss, N, row_loss + N);
  NEXUS_CUDA_CHECK_LAUNCH();
  double total = 0.0;
  copy_to_host(ex, &total, row_loss + N, sizeof total);
  return total;
}

template <typename T>
void cross_entropy_backward(const Exec& ex, T* logits_to_dlogits, const accum_t<T>* lse, const std::int32_t* targets,
                            idx N, idx V, double scale) {
  if (N <= 0) return;
  cross_entropy_backward_kernel<T><<<grid_for(N, 1), kThreads, 0, stream_of(ex)>>>(logits_to_dlogits, lse, targets, N,
                                                                                   V, scale);
  NEXUS_CUDA_CHECK_LAUNCH();
}

#define NEXUS_INSTANTIATE(T)                                                                                 \
  template double cross_entropy_forward<T>(const Exec&, accum_t<T>*, const T*, const std::int32_t*, idx, idx); \
  template void cross_entropy_backward<T>(const Exec&, T*, const accum_t<T>*, const std::int32_t*, idx, idx, double);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE

}  // namespace nexus::cuda
