// Token embedding on the GPU (contract: kernels/cpu/embedding.cpp): a row gather forward, a row
// scatter-add backward.
//
// The backward is deterministic by ownership, as the CPU's: thread d owns column d of every row of
// dtable and walks the tokens in order (kernels/cuda/embedding_walk.h), so no two threads ever add
// into the same address and each entry receives its additions in token order (the CPU's order too:
// fp32 and fp64 results equal the CPU's bit for bit). The cost is parallelism: only D threads,
// each walking all N tokens with read-add-writes into dtable whose next read may depend on the
// last write (the next token may name the same row). The walk reads kBatch (8) rows at once, so
// it waits about N/8 memory round trips, ~0.1 ms per thousand tokens however wide the GPU (about
// 1 ms at N = 16k, against ~N*D/bandwidth for atomics, which would add in arrival order). Sorting
// the tokens (stable, by id) would restore both speed and order; it is the upgrade if this ever
// shows in a profile.
#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/embedding_walk.h"

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
  for (idx d = blockIdx.x * idx(blockDim.x) + threadIdx.x; d < D; d += idx(gridDim.x) * blockDim.x)
    embedding::add_column_in_token_order(dtable, tokens, dout, N, D, d);
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
