// Token embedding on the GPU (contract: kernels/cpu/embedding.cpp): a row gather forward, a row
// scatter-add backward.
//
// The backward is deterministic by ownership, as the CPU's: thread d owns column d of every row of
// dtable and walks the tokens in order, so no two threads ever add into the same address and each
// entry receives its additions in token order (the CPU's order too: fp32 and fp64 results equal
// the CPU's bit for bit). The cost is parallelism: only D threads, each making N dependent
// read-add-writes into dtable (the next token may name the same row), about one L2 round trip
// each, so the op takes ~N x 0.5 us however wide the GPU (a few ms at N = 16k). Atomics would run
// in ~N*D/bandwidth but add in arrival order; sorting the tokens (stable, by id) would restore
// both speed and order and is the upgrade if this shows in a profile.
#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"

namespace nexus::cuda {

namespace {

constexpr unsigned kThreads = 256;
// Threads per block of the backward: small blocks spread the few (D) threads over more SMs.
constexpr unsigned kColumnThreads = 64;

template <typename T>
__global__ void embedding_forward_kernel(T* __restrict__ out, const std::int32_t* __restrict__ tokens,
                                         const T* __restrict__ table, idx N, idx D) {
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < N * D; i += idx(gridDim.x) * blockDim.x) {
    const idx n = i / D, d = i - n * D;
    out[i] = table[idx(tokens[n]) * D + d];
  }
}

template <typename T>
__global__ void embedding_backward_kernel(accum_t<T>* __restrict__ dtable, const std::int32_t* __restrict__ tokens,
                                          const T* __restrict__ dout, idx N, idx D) {
  using A = accum_t<T>;
  for (idx d = blockIdx.x * idx(blockDim.x) + threadIdx.x; d < D; d += idx(gridDim.x) * blockDim.x)
    for (idx n = 0; n < N; ++n) {
      A& dst = dtable[idx(tokens[n]) * D + d];
      dst = dst + A(dout[n * D + d]);
    }
}

}  // namespace

template <typename T>
void embedding_forward(const Exec& ex, T* out, const std::int32_t* tokens, const T* table, idx N, idx D) {
  launch_over<kThreads>(ex, N * D, embedding_forward_kernel<T>, out, tokens, table, N, D);
}

template <typename T>
void embedding_backward(const Exec& ex, accum_t<T>* dtable, const std::int32_t* tokens, const T* dout, idx N, idx D) {
  if (N <= 0) return;
  launch_over<kColumnThreads>(ex, D, embedding_backward_kernel<T>, dtable, tokens, dout, N, D);
}

#define NEXUS_INSTANTIATE(T)                                                                          \
  template void embedding_forward<T>(const Exec&, T*, const std::int32_t*, const T*, idx, idx); \
  template void embedding_backward<T>(const Exec&, accum_t<T>*, const std::int32_t*, const T*, idx, idx);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE

}  // namespace nexus::cuda
