// Attention neighborhoods (DESIGN.md section 6): which earlier positions an attention layer lets
// position q read. Every rule works on GLOBAL positions (q, k >= 0), so it holds unchanged for a
// ring step's (query block, KV block) pair, for a sequence split into pieces and for decoding.
//
//   full          k <= q                                  (causal attention)
//   sliding:W     q - W < k <= q
//   dilated:W:D   k = q - i D for i = 0 .. W-1            (W positions spaced D apart)
//   log           k = q, q-1, q-2, q-4, q-8, ...          (distance 0 or a power of two)
//   block:C       k <= q and k / C == q / C               (clusters of C tokens, causal inside)
//   sink:K+rule   k < K (and k <= q), or k visible under rule
//
// A plain struct with no containers and no virtual calls, all of its functions callable from host
// and device code: a GPU kernel takes it by value and runs the same index arithmetic as the CPU
// one. Parsing and printing the `sliding:512` form lives in model/neighborhood_spec.h.
#pragma once

#include <cstdint>

#include "kernels/types.h"  // NEXUS_HOST_DEVICE

namespace nexus {

struct Neighborhood {
  enum Kind : std::int32_t { kFull = 0, kSliding = 1, kDilated = 2, kLog = 3, kBlock = 4 };
  Kind kind = kFull;
  std::int64_t width = 0;     // sliding: W; dilated: W (positions read); block: C; else unused
  std::int64_t dilation = 1;  // dilated: D; else unused
  std::int64_t sink = 0;      // the first `sink` positions are visible to every later query

  NEXUS_HOST_DEVICE bool is_full() const { return kind == kFull; }

  // Whether query position q reads key position k.
  NEXUS_HOST_DEVICE bool visible(std::int64_t q, std::int64_t k) const {
    if (k > q) return false;
    if (k < sink) return true;
    return rule_distance(q - k, q, k);
  }

  // A lower bound of the smallest key any query in [q0, q1] reads, exact for full, sliding and
  // block (and 0 whenever sink > 0): loops over keys start here. Keys above q1 are never read
  // (every rule includes distance 0, so q1 itself is the last visible key).
  NEXUS_HOST_DEVICE std::int64_t first_key(std::int64_t q0, std::int64_t q1) const {
    if (sink > 0 || q0 <= 0) return 0;
    switch (kind) {
      case kSliding: return clamp0(q0 - width + 1);
      case kDilated: return clamp0(q0 - (width - 1) * dilation);
      case kLog: return clamp0(q0 - floor_pow2(q1));
      case kBlock: return q0 / width * width;
      default: return 0;
    }
  }
  NEXUS_HOST_DEVICE std::int64_t last_key(std::int64_t /*q0*/, std::int64_t q1) const { return q1; }

  // Keys below this stay unread by every query at position >= q, except the sink: what a decoder
  // at position q may evict from its cache (0 when the rule reaches back arbitrarily far).
  NEXUS_HOST_DEVICE std::int64_t retained_from(std::int64_t q) const {
    switch (kind) {
      case kSliding: return clamp0(q - width + 1);
      case kDilated: return clamp0(q - (width - 1) * dilation);
      case kBlock: return q / width * width;
      default: return 0;
    }
  }

  // Whether some query in [q0, q1] reads some key in [k0, k1] (closed ranges): exact, so that a
  // tile for which it is false can be skipped without changing any result.
  NEXUS_HOST_DEVICE bool any_visible(std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
    if (q1 < q0 || k1 < k0 || k0 > q1) return false;
    if (k0 < sink) return true;  // key k0 is in the sink and k0 <= q1
    // The differences q - k over the two ranges are exactly the integers in [q0 - k1, q1 - k0].
    const std::int64_t dlo = q0 - k1 > 0 ? q0 - k1 : 0, dhi = q1 - k0;
    switch (kind) {
      case kSliding: return dlo < width;
      case kDilated: {
        const std::int64_t first = (dlo + dilation - 1) / dilation * dilation;  // smallest multiple >= dlo
        return first <= dhi && first / dilation < width;
      }
      case kLog: return dlo == 0 || floor_pow2(dhi) >= dlo;
      case kBlock: return any_visible_block(q0, q1, k0, k1);
      default: return true;
    }
  }

  // Whether every key in [k0, k1] is visible to every query in [q0, q1]: such a tile needs no mask.
  NEXUS_HOST_DEVICE bool all_visible(std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
    if (k1 > q0) return false;  // some pair has k > q
    if (k1 < sink) return true;
    switch (kind) {
      case kFull: return true;
      case kSliding: return q1 - k0 < width;
      case kBlock: return k0 / width == q1 / width;  // one cluster spans both ranges
      default: return q0 == q1 && k0 == k1 && visible(q0, k0);
    }
  }

  // The largest power of two <= x (x >= 1).
  NEXUS_HOST_DEVICE static std::int64_t floor_pow2(std::int64_t x) {
    std::int64_t p = 1;
    while (p <= x / 2) p *= 2;
    return p;
  }

 private:
  NEXUS_HOST_DEVICE static std::int64_t clamp0(std::int64_t x) { return x > 0 ? x : 0; }

  // The rule alone (no sink) for a pair at distance d = q - k >= 0.
  NEXUS_HOST_DEVICE bool rule_distance(std::int64_t d, std::int64_t q, std::int64_t k) const {
    switch (kind) {
      case kSliding: return d < width;
      case kDilated: return d % dilation == 0 && d / dilation < width;
      case kLog: return (d & (d - 1)) == 0;  // 0 or a power of two
      case kBlock: return q / width == k / width;
      default: return true;
    }
  }

  // block:C over [q0, q1] x [k0, k1]: a cluster holding keys and queries of both ranges with a key
  // at or before a query. Clusters strictly inside both ranges always qualify; the two end
  // clusters of the overlap are checked directly.
  NEXUS_HOST_DEVICE bool any_visible_block(std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
    const std::int64_t c_lo = (q0 > k0 ? q0 : k0) / width, c_hi = (q1 < k1 ? q1 : k1) / width;
    if (c_lo > c_hi) return false;
    if (c_hi - c_lo >= 2) return true;
    for (std::int64_t c = c_lo; c <= c_hi; ++c) {
      const std::int64_t start = c * width, end = start + width - 1;
      const std::int64_t key_min = k0 > start ? k0 : start, query_max = q1 < end ? q1 : end;
      if (key_min <= k1 && query_max >= q0 && key_min <= query_max) return true;
    }
    return false;
  }
};

}  // namespace nexus
