// Decode attention over a paged KV cache on the GPU: the function of
// kernels/cpu/attention_decode_paged.cpp (one query token per sequence against the cached keys its
// neighborhood shows it, GQA, scale 1/sqrt(head_dim), out = 0 for an empty cache), arithmetic in
// accum_t<T>.
//
// One block per (sequence, query head), kWarps warps splitting the candidate keys (the sink and
// the rule's range, kernels/cuda/attention_tiling.h) round robin: a warp scores a key with its
// lanes splitting head_dim (a shuffle sum), keeps its own online softmax (running max, sum and
// kDimsPerLane accumulators per lane), and the warps' partial results are merged at the end in
// warp order. Only keys the neighborhood shows are read, so only their cache blocks are touched.
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/cuda/attention_tiling.h"
#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/reduce.cuh"

namespace nexus::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kDimsPerLane = 8;  // head_dim <= 32 * 8
constexpr int kMaxHeadDim = 32 * kDimsPerLane;

// Minimum one block per SM stated: with the thread count alone ptxas held it to 64 registers and spilled.
template <typename T>
__global__ void __launch_bounds__(kWarps * 32, 1)
    attention_decode_paged_kernel(T* __restrict__ out, const T* __restrict__ q, const T* __restrict__ k_pool,
                                  const T* __restrict__ v_pool, const std::int32_t* __restrict__ block_table,
                                  const idx* __restrict__ kv_len, const PagedKvShape s) {
  using C = accum_t<T>;
  __shared__ C part_max[kWarps], part_sum[kWarps];  // each warp's running max and sum
  __shared__ C warp_acc[kWarps][kMaxHeadDim];
  const idx Hq = s.n_heads, Hkv = s.n_kv_heads, b = blockIdx.x / Hq, h = blockIdx.x % Hq, g = h / (Hq / Hkv);
  const int hd = int(s.head_dim), warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const idx row = Hkv * hd;  // elements per cached token
  const std::int32_t* table = block_table + b * s.max_blocks_per_seq;
  const C scale = C(1) / std::sqrt(C(hd));
  const Neighborhood nb = s.neighborhood;
  const bool full = nb.is_full();

  C qr[kDimsPerLane], acc[kDimsPerLane];
#pragma unroll
  for (int t = 0; t < kDimsPerLane; ++t) {
    const int d = lane + 32 * t;
    qr[t] = d < hd ? static_cast<C>(q[(b * Hq + h) * hd + d]) : C(0);
    acc[t] = C(0);
  }
  C m = -std::numeric_limits<C>::infinity(), l = C(0);
  const idx len = kv_len[b], qpos = len - 1;
  const tiling::DecodeKeys keys = tiling::decode_keys(nb, len);
  const idx candidates = tiling::decode_key_count(keys, len);
  for (idx n = warp; n < candidates; n += kWarps) {  // the same for every lane of the warp
    const idx j = tiling::decode_key_at(keys, n);
    if (!full && !nb.visible(qpos, j)) continue;
    const idx at = (idx(table[paged_slot(s, j / s.block_tokens)]) * s.block_tokens + j % s.block_tokens) * row + g * hd;
    C part = C(0);
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t)
      if (lane + 32 * t < hd) part += qr[t] * static_cast<C>(k_pool[at + lane + 32 * t]);
    const C score = warp_sum(part) * scale;
    const C m_new = score > m ? score : m;
    const C correction = std::exp(m - m_new);  // 0 on the warp's first key (m = -inf)
    const C p = std::exp(score - m_new);
    l = l * correction + p;
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t)
      if (lane + 32 * t < hd) acc[t] = acc[t] * correction + p * static_cast<C>(v_pool[at + lane + 32 * t]);
    m = m_new;
  }
  if (lane == 0) {
    part_max[warp] = m;
    part_sum[warp] = l;
  }
#pragma unroll
  for (int t = 0; t < kDimsPerLane; ++t)
    if (lane + 32 * t < hd) warp_acc[warp][lane + 32 * t] = acc[t];
  __syncthreads();
  // Merge in warp order: weights exp(m_w - M); a warp that saw no key has m_w = -inf, weight 0.
  C M = -std::numeric_limits<C>::infinity();
  for (int w = 0; w < kWarps; ++w) M = part_max[w] > M ? part_max[w] : M;
  C total = C(0), weight[kWarps];
  for (int w = 0; w < kWarps; ++w) {
    weight[w] = M == -std::numeric_limits<C>::infinity() ? C(0) : std::exp(part_max[w] - M);
    total += weight[w] * part_sum[w];
  }
  const C inv = total > C(0) ? C(1) / total : C(0);  // no key at all (empty cache): out = 0
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    C o = C(0);
    for (int w = 0; w < kWarps; ++w) o += weight[w] * warp_acc[w][d];
    out[(b * Hq + h) * hd + d] = T(o * inv);
  }
}

}  // namespace

template <typename T>
void attention_decode_paged(const Exec& ex, T* out, const T* q, const T* k_pool, const T* v_pool,
                            const std::int32_t* block_table, const idx* kv_len, const PagedKvShape& s) {
  const idx blocks = s.B * s.n_heads;
  if (blocks == 0 || s.head_dim == 0) return;
  if (s.head_dim > kMaxHeadDim)
    throw std::invalid_argument("attention_decode_paged: head_dim " + std::to_string(s.head_dim) +
                                " exceeds the CUDA kernel's " + std::to_string(kMaxHeadDim));
  if (blocks > 0x7fffffff) throw std::invalid_argument("attention_decode_paged: shape exceeds the CUDA grid");
  attention_decode_paged_kernel<T><<<unsigned(blocks), kWarps * 32, 0, stream_of(ex)>>>(out, q, k_pool, v_pool,
                                                                                        block_table, kv_len, s);
  NEXUS_CUDA_CHECK_LAUNCH();
}

#define NEXUS_INSTANTIATE(T)                                                                              \
  template void attention_decode_paged<T>(const Exec&, T*, const T*, const T*, const T*, const std::int32_t*, \
                                          const idx*, const PagedKvShape&);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE

}  // namespace nexus::cuda
