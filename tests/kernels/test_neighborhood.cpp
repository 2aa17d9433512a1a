// The neighborhood index arithmetic (kernels/neighborhood.h) against the rules written out by
// enumeration (support/naive_neighborhood.h): visible() pair by pair, and the range functions the
// kernels use to skip tiles and bound loops against brute force over every pair of the ranges.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/neighborhood.h"
#include "support/naive_neighborhood.h"

namespace nexus {
namespace {

using i64 = std::int64_t;

using test::make_neighborhood;

std::string name(const Neighborhood& n) {
  return std::to_string(int(n.kind)) + ":" + std::to_string(n.width) + ":" + std::to_string(n.dilation) +
         " sink " + std::to_string(n.sink);
}

const std::vector<Neighborhood>& cases() {
  static const std::vector<Neighborhood> all = {
      make_neighborhood(Neighborhood::kFull),        make_neighborhood(Neighborhood::kSliding, 1),     make_neighborhood(Neighborhood::kSliding, 7),
      make_neighborhood(Neighborhood::kSliding, 64), make_neighborhood(Neighborhood::kDilated, 4, 3),  make_neighborhood(Neighborhood::kDilated, 1, 5),
      make_neighborhood(Neighborhood::kDilated, 6, 1), make_neighborhood(Neighborhood::kLog),          make_neighborhood(Neighborhood::kBlock, 1),
      make_neighborhood(Neighborhood::kBlock, 10),   make_neighborhood(Neighborhood::kSliding, 5, 1, 3), make_neighborhood(Neighborhood::kLog, 0, 1, 2),
      make_neighborhood(Neighborhood::kBlock, 16, 1, 4), make_neighborhood(Neighborhood::kDilated, 3, 4, 1), make_neighborhood(Neighborhood::kFull, 0, 1, 5)};
  return all;
}

constexpr i64 kPositions = 160;

TEST(Neighborhood, VisibleMatchesTheEnumeratedRule) {
  for (const Neighborhood& n : cases())
    for (i64 q = 0; q < kPositions; ++q)
      for (i64 k = 0; k < kPositions; ++k)
        ASSERT_EQ(n.visible(q, k), test::naive_visible(n, q, k)) << name(n) << " q=" << q << " k=" << k;
}

// Random closed ranges [q0, q1] x [k0, k1] (lengths 1..40, so some are one position wide and many
// straddle cluster and window edges), checked against every pair inside them.
TEST(Neighborhood, RangeFunctionsAgreeWithEveryPair) {
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<i64> pos(0, kPositions - 1), len(1, 40);
  for (const Neighborhood& n : cases())
    for (int trial = 0; trial < 3000; ++trial) {
      const i64 q0 = pos(rng), q1 = q0 + len(rng) - 1, k0 = pos(rng), k1 = k0 + len(rng) - 1;
      bool any = false, all = true;
      i64 min_key = -1;
      for (i64 q = q0; q <= q1; ++q)
        for (i64 k = k0; k <= k1; ++k) {
          const bool v = test::naive_visible(n, q, k);
          any = any || v;
          all = all && v;
        }
      for (i64 k = 0; k <= q1 && min_key < 0; ++k)
        for (i64 q = q0; q <= q1; ++q)
          if (test::naive_visible(n, q, k)) {
            min_key = k;
            break;
          }
      const std::string at = name(n) + " q [" + std::to_string(q0) + "," + std::to_string(q1) + "] k [" +
                             std::to_string(k0) + "," + std::to_string(k1) + "]";
      ASSERT_EQ(n.any_visible(q0, q1, k0, k1), any) << at;  // exact: a skipped tile must be empty
      if (n.all_visible(q0, q1, k0, k1)) {
        ASSERT_TRUE(all) << at;  // sound: an unmasked tile must be full
      }
      const bool interval_rule = n.sink == 0 && (n.kind == Neighborhood::kFull || n.kind == Neighborhood::kSliding ||
                                                 n.kind == Neighborhood::kBlock);
      if (interval_rule) {
        ASSERT_EQ(n.all_visible(q0, q1, k0, k1), all) << at;
      }
      // first_key bounds the keys from below (exactly for the interval rules); last_key is q1.
      ASSERT_LE(n.first_key(q0, q1), min_key) << at;
      if (interval_rule) {
        ASSERT_EQ(n.first_key(q0, q1), min_key) << at;
      }
      ASSERT_TRUE(test::naive_visible(n, q1, n.last_key(q0, q1))) << at;
    }
}

// Everything a decoder evicts at position q (keys in [sink, retained_from(q))) stays unread by
// every later query; for sliding and block, the key just at the bound is still read by q itself.
TEST(Neighborhood, RetainedFromNeverEvictsAKeyALaterQueryReads) {
  for (const Neighborhood& n : cases())
    for (i64 q = 0; q < kPositions; ++q) {
      const i64 bound = n.retained_from(q);
      ASSERT_LE(bound, q) << name(n);
      for (i64 later = q; later < kPositions + 64; ++later)
        for (i64 k = n.sink; k < bound; ++k)
          ASSERT_FALSE(test::naive_visible(n, later, k)) << name(n) << " q=" << q << " later=" << later << " k=" << k;
      if (n.kind == Neighborhood::kSliding || n.kind == Neighborhood::kBlock) {
        ASSERT_TRUE(test::naive_visible(n, q, bound)) << name(n) << " q=" << q;
      }
    }
}

TEST(Neighborhood, FloorPow2) {
  EXPECT_EQ(Neighborhood::floor_pow2(1), 1);
  EXPECT_EQ(Neighborhood::floor_pow2(2), 2);
  EXPECT_EQ(Neighborhood::floor_pow2(3), 2);
  EXPECT_EQ(Neighborhood::floor_pow2(1023), 512);
  EXPECT_EQ(Neighborhood::floor_pow2(i64(1) << 40), i64(1) << 40);
}

}  // namespace
}  // namespace nexus
