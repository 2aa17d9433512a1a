// Decode attention over a paged KV cache: one query token per sequence against the cached keys
// its neighborhood shows it (all of them under full), which sit in fixed-size blocks scattered
// through a pool (block table per sequence), so a cache grows a block at a time without copying
// and blocks return to a free list on reset, or, under a bounded neighborhood, once no later
// query reads them (model/inference.cpp).
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
  const Neighborhood& nb = s.neighborhood;
  const bool full = nb.is_full();  // every cached key is read
  Neighborhood rule = nb;          // without the sink: where the rule's own keys start
  rule.sink = 0;
  idx keys = 0;  // cached tokens over all sequences
  for (idx b = 0; b < s.B; ++b) keys += kv_len[b];
#pragma omp parallel for collapse(2) schedule(static) if (2 * keys * Hq * hd >= kParallelWork)
  for (idx b = 0; b < s.B; ++b) {
    for (idx h = 0; h < Hq; ++h) {
      const idx kvh = h / group;
      const std::int32_t* table = block_table + b * s.max_blocks_per_seq;
      // Token j's K (or V) row for this kv head.
      auto at = [&](const T* pool, idx j) {
        const idx slot = paged_slot(s, j / s.block_tokens);
        return pool + (idx(table[slot]) * s.block_tokens + j % s.block_tokens) * row + kvh * hd;
      };
      const T* __restrict qr = q + (b * Hq + h) * hd;  // [hd]
      T* __restrict acc = out + (b * Hq + h) * hd;     // [hd]: sum_j p_j v_j, normalised at the end
      std::fill_n(acc, hd, T(0));
      T m = -std::numeric_limits<T>::infinity();  // running max score
      T l = T(0);                                 // running sum of exp(score - m)
      const idx len = kv_len[b], qpos = len - 1;
      // Tiles of keys from the sink (if any) and from the rule's first key on; a tile's keys
      // outside the neighborhood are left out, and a tile with none of them is passed over.
      const idx rule_first = std::min(len, nb.sink);  // keys [0, rule_first) are the sink's
      const idx j_from = std::max(rule_first, std::min(len, rule.first_key(qpos, qpos)));
      for (idx j0 = 0; j0 < len; j0 += kKeyTile) {
        if (j0 >= rule_first && j0 + kKeyTile <= j_from) continue;  // between the sink and the rule's keys
        const idx n = std::min(kKeyTile, len - j0);
        T sc[kKeyTile];    // [used] scaled scores of this tile's visible keys
        idx key[kKeyTile];  // [used] their positions
        idx used = 0;
        T tile_max = -std::numeric_limits<T>::infinity();
        for (idx j = 0; j < n; ++j) {
          if (!full && !nb.visible(qpos, j0 + j)) continue;
          const T* __restrict kr = at(k_pool, j0 + j);
          key[used] = j0 + j;
          sc[used] = dot_lanes(qr, kr, hd) * scale;
          tile_max = std::max(tile_max, sc[used]);
          ++used;
        }
        if (used == 0) continue;
        const T m_new = std::max(m, tile_max);
        const T correction = std::exp(m - m_new);  // 0 on the first tile (m = -inf)
        l *= correction;
        for (idx d = 0; d < hd; ++d) acc[d] *= correction;
        for (idx j = 0; j < used; ++j) {
          const T p = std::exp(sc[j] - m_new);
          l += p;
          const T* __restrict vr = at(v_pool, key[j]);
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
