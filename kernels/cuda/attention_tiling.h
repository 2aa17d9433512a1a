// Tile arithmetic of the CUDA attention kernels (kernels/cuda/attention.cu), host and device: which
// key rows a query tile must visit, which query rows a key tile must visit, and how a (query tile,
// key tile) pair is masked. Plain functions of AttentionShape and the tile sizes, so the CPU test
// tests/kernels/test_attention_tiling.cpp can check against a brute-force enumeration that the
// tiles visited cover exactly the visible (query, key) pairs, each once.
//
// Rows are local to a sequence (query i at global position q_pos0 + i, key j at k_pos0 + j); a
// tile is rows [i0, i0 + m) or [j0, j0 + n) with m, n >= 1.
#pragma once

#include "kernels/shapes.h"

namespace nexus::cuda::tiling {

NEXUS_HOST_DEVICE inline idx clamp(idx x, idx lo, idx hi) { return x < lo ? lo : (x > hi ? hi : x); }

// Tiles of `tile` rows covering `rows` (the last one possibly short).
NEXUS_HOST_DEVICE inline idx tiles(idx rows, idx tile) { return (rows + tile - 1) / tile; }

// Whether query row i reads key row j.
NEXUS_HOST_DEVICE inline bool pair_visible(const AttentionShape& s, idx i, idx j) {
  return !s.causal || s.neighborhood.visible(s.q_pos0 + i, s.k_pos0 + j);
}

// Key rows [key_begin, key_end) hold every key visible to query rows [i0, i0 + m): a query reads
// no key after itself, and none before the neighborhood's first_key bound.
NEXUS_HOST_DEVICE inline idx key_begin(const AttentionShape& s, idx i0, idx m) {
  if (!s.causal) return 0;
  const idx q0 = s.q_pos0 + i0;
  return clamp(s.neighborhood.first_key(q0, q0 + m - 1) - s.k_pos0, 0, s.Tk);
}
NEXUS_HOST_DEVICE inline idx key_end(const AttentionShape& s, idx i0, idx m) {
  if (!s.causal) return s.Tk;
  return clamp(s.q_pos0 + i0 + m - s.k_pos0, 0, s.Tk);
}

// Query rows [query_begin, Tq) hold every query that reads key j0 or any later key.
NEXUS_HOST_DEVICE inline idx query_begin(const AttentionShape& s, idx j0) {
  if (!s.causal) return 0;
  return clamp(s.k_pos0 + j0 - s.q_pos0, 0, s.Tq);
}

// How the pair (query rows [i0, i0 + m), key rows [j0, j0 + n)) is masked; exact, from the
// neighborhood's any_visible / all_visible on the global position ranges.
enum class TileMask {
  kSkip,     // no query of the pair reads any of its keys: not computed at all
  kNone,     // every query reads every key
  kPerPair,  // pair_visible per element
};
NEXUS_HOST_DEVICE inline TileMask tile_mask(const AttentionShape& s, idx i0, idx m, idx j0, idx n) {
  if (!s.causal) return TileMask::kNone;
  const Neighborhood& nb = s.neighborhood;
  const idx q0 = s.q_pos0 + i0, q1 = q0 + m - 1, k0 = s.k_pos0 + j0, k1 = k0 + n - 1;
  if (!nb.any_visible(q0, q1, k0, k1)) return TileMask::kSkip;
  return nb.all_visible(q0, q1, k0, k1) ? TileMask::kNone : TileMask::kPerPair;
}

// Whether query i reads key j inside a pair masked `mask` whose rows are in range (i < Tq, j < Tk).
NEXUS_HOST_DEVICE inline bool reads(const AttentionShape& s, TileMask mask, idx i, idx j) {
  return mask == TileMask::kNone || (mask == TileMask::kPerPair && pair_visible(s, i, j));
}

// Decode (attention_decode_paged): the cached keys [0, len) a query at position len - 1 may read
// lie in [0, sink_end) (the sink) and [rule_begin, len) (the rule's own keys); the keys between are
// never read, nor their cache blocks.
struct DecodeKeys {
  idx sink_end, rule_begin;  // sink_end <= rule_begin <= len
};
NEXUS_HOST_DEVICE inline DecodeKeys decode_keys(const Neighborhood& nb, idx len) {
  Neighborhood rule = nb;  // without the sink: where the rule's own keys start
  rule.sink = 0;
  const idx sink_end = nb.sink < len ? nb.sink : len;
  const idx first = rule.first_key(len - 1, len - 1);
  const idx rule_begin = first < len ? first : len;
  return {sink_end, rule_begin > sink_end ? rule_begin : sink_end};
}
// The keys of decode_keys' two ranges, numbered in ascending order: how many, and the n-th.
NEXUS_HOST_DEVICE inline idx decode_key_count(const DecodeKeys& r, idx len) { return r.sink_end + len - r.rule_begin; }
NEXUS_HOST_DEVICE inline idx decode_key_at(const DecodeKeys& r, idx n) {
  return n < r.sink_end ? n : r.rule_begin + (n - r.sink_end);
}

// The head-dim capacity a kernel is compiled for: the smallest of 64, 128, 256 holding head_dim
// (0 when head_dim exceeds 256: unsupported).
NEXUS_HOST_DEVICE inline int max_head_dim_for(idx head_dim) {
  return head_dim <= 64 ? 64 : head_dim <= 128 ? 128 : head_dim <= 256 ? 256 : 0;
}

}  // namespace nexus::cuda::tiling
