// Log-sum-exp merge of partial attention results on the GPU (contract:
// kernels/cpu/attention_merge.cpp). One warp per row: every lane reads the row's two lse values,
// merges its share of the head_dim outputs, and lane 0 writes the merged lse once the whole warp
// has read the old one.
#include <cmath>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/reduce.cuh"

namespace nexus::cuda {

namespace {

constexpr unsigned kThreads = 256;
constexpr unsigned kRowsPerBlock = kThreads / kWarp;

template <typename T>
__global__ void attention_merge_kernel(T* __restrict__ out, accum_t<T>* __restrict__ lse, const T* __restrict__ out_b,
                                       const accum_t<T>* __restrict__ lse_b, idx rows, idx head_dim) {
  using C = compute_t<T>;
  const unsigned lane = threadIdx.x % kWarp;
  // r is the same for the whole warp, and so is every branch below.
  for (idx r = blockIdx.x * idx(kRowsPerBlock) + threadIdx.x / kWarp; r < rows; r += idx(gridDim.x) * kRowsPerBlock) {
    const C la = lse[r], lb = lse_b[r];
    if (lb == C(-INFINITY)) continue;  // the other block saw no key for this row
    T* o = out + r * head_dim;
    const T* ob = out_b + r * head_dim;
    C merged = lb;
    if (la == C(-INFINITY)) {
      for (idx d = lane; d < head_dim; d += kWarp) o[d] = ob[d];
    } else {
      // Subtracting the max keeps both exponentials <= 1.
      const C m = la > lb ? la : lb;
      merged = m + std::log(std::exp(la - m) + std::exp(lb - m));
      const C wa = std::exp(la - merged), wb = std::exp(lb - merged);
      for (idx d = lane; d < head_dim; d += kWarp) o[d] = T(wa * C(o[d]) + wb * C(ob[d]));
    }
    __syncwarp();  // every lane has read lse[r]
    if (lane == 0) lse[r] = merged;
  }
}

}  // namespace

template <typename T>
void attention_merge(const Exec& ex, T* out, accum_t<T>* lse, const T* out_b, const accum_t<T>* lse_b, idx rows,
                     idx head_dim) {
  if (rows <= 0) return;
  attention_merge_kernel<T><<<grid_for(rows, kRowsPerBlock), kThreads, 0, stream_of(ex)>>>(out, lse, out_b, lse_b,
                                                                                           rows, head_dim);
  NEXUS_CUDA_CHECK_LAUNCH();
}

template void attention_merge<float>(const Exec&, float*, float*, const float*, const float*, idx, idx);
template void attention_merge<double>(const Exec&, double*, double*, const double*, const double*, idx, idx);
template void attention_merge<bf16>(const Exec&, bf16*, float*, const bf16*, const float*, idx, idx);

}  // namespace nexus::cuda
