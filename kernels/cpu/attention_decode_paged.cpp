// Decode attention over a paged KV cache: one query token per sequence against all of its cached
// keys, which sit in fixed-size blocks scattered through a pool (block table per sequence), so a
// cache grows a block at a time without copying and blocks return to a free list on reset.
//
// Work items are (sequence, query head); each runs the online softmax over its keys in tiles of
// kKeyTile (scores on the stack) and accumulates the weighted values in its own output row, so
// nothing is allocated and no head_dim bound exists.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/backend.h"

namespace nexus::cpu {

namespace {

constexpr idx kKeyTile = 64;  // keys scored per online-softmax rescale
constexpr idx kLanes = 8;     // partial sums of a dot product
// Below this many multiply-adds a call runs on one thread (short caches of a small model).
constexpr idx kParallelWork = idx(1) << 16;

// <a, b> over n elements in kLanes interleaved partial sums: without -ffast-math GCC keeps a single
// running sum scalar (the order is fixed), while independent lanes vectorise.
template <typename T>
T dot_lanes(const T* __restrict a, const T* __restrict b, idx n) {
  T part[kLanes] = {};
  const idx n_full = n - n % kLanes;
  for (idx d = 0; d < n_full; d += kLanes)
    for (idx l = 0; l < kLanes; ++l) part[l] += a[d + l] * b[d + l];
  T sum = T(0);
  for (idx l = 0; l < kLanes; ++l) sum += part[l];
  for (idx d = n_full; d < n; ++d) sum += a[d] * b[d];
  return sum;
}

}  // namespace

template <typename T>
void attention_decode_paged(const Exec&, T* out, const T* q, const T* k_pool, const T* v_pool,
                            const std::int32_t* block_table, const idx* kv_len, const PagedKvShape& s) {
  const idx hd = s.head_dim, Hq = s.n_heads, Hkv = s.n_kv_heads, group = Hq / Hkv;
  const idx row = Hkv * hd;  // elements per cached token
  const T scale = T(1) / std::sqrt(T(hd));
  idx keys = 0;  // cached tokens over all sequences
  for (idx b = 0; b < s.B; ++b) keys += kv_len[b];
#pragma omp parallel for collapse(2) schedule(static) if (2 * keys * Hq * hd >= kParallelWork)
  for (idx b = 0; b < s.B; ++b) {
    for (idx h = 0; h < Hq; ++h) {
      const idx kvh = h / group;
      const std::int32_t* table = block_table + b * s.max_blocks_per_seq;
      // Token j's K (or V) row for this kv head.
      auto at = [&](const T* pool, idx j) {
        return pool + (idx(table[j / s.block_tokens]) * s.block_tokens + j % s.block_tokens) * row + kvh * hd;
      };
      const T* __restrict qr = q + (b * Hq + h) * hd;  // [hd]
      T* __restrict acc = out + (b * Hq + h) * hd;     // [hd]: sum_j p_j v_j, normalised at the end
      std::fill_n(acc, hd, T(0));
      T m = -std::numeric_limits<T>::infinity();  // running max score
      T l = T(0);                                 // running sum of exp(score - m)
      const idx len = kv_len[b];
      for (idx j0 = 0; j0 < len; j0 += kKeyTile) {
        const idx n = std::min(kKeyTile, len - j0);
        T sc[kKeyTile];  // [n] scaled scores of this tile
        T tile_max = -std::numeric_limits<T>::infinity();
        for (idx j = 0; j < n; ++j) {
          const T* __restrict kr = at(k_pool, j0 + j);
          sc[j] = dot_lanes(qr, kr, hd) * scale;
          tile_max = std::max(tile_max, sc[j]);
        }
        const T m_new = std::max(m, tile_max);
        const T correction = std::exp(m - m_new);  // 0 on the first tile (m = -inf)
        l *= correction;
        for (idx d = 0; d < hd; ++d) acc[d] *= correction;
        for (idx j = 0; j < n; ++j) {
          const T p = std::exp(sc[j] - m_new);
          l += p;
          const T* __restrict vr = at(v_pool, j0 + j);
          for (idx d = 0; d < hd; ++d) acc[d] += p * vr[d];
        }
        m = m_new;
      }
      if (len > 0)
        for (idx d = 0; d < hd; ++d) acc[d] /= l;
    }
  }
}

template void attention_decode_paged<float>(const Exec&, float*, const float*, const float*, const float*,
                                            const std::int32_t*, const idx*, const PagedKvShape&);
template void attention_decode_paged<double>(const Exec&, double*, const double*, const double*, const double*,
                                             const std::int32_t*, const idx*, const PagedKvShape&);

}  // namespace nexus::cpu
