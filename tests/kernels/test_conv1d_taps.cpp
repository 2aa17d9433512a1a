// The GPU conv1d's index arithmetic (kernels/cuda/conv1d_taps.h), checked on the CPU: the
// backward's gather visits exactly the (token, tap) pairs the forward reads, and xin rows map onto
// x and the halo without overlap, in the halo layout [B, K-1, C] oldest first.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <utility>

#include "kernels/cuda/conv1d_taps.h"

namespace nexus::conv1d {
namespace {

TEST(Conv1dTaps, TheGatherVisitsExactlyTheForwardsReads) {
  for (const idx K : {idx(1), idx(2), idx(4), idx(7)})
    for (const idx Tn : {idx(1), idx(2), idx(5), idx(37)}) {
      std::set<std::pair<idx, idx>> read;  // (token, tap) pairs of the forward, by the row read
      std::map<idx, int> reads_of_row;
      for (idx t = 0; t < Tn; ++t)
        for (idx k = 0; k < K; ++k) {
          const idx s = tap_row(t, K, k);
          EXPECT_GE(s, -(K - 1));
          EXPECT_LT(s, Tn);
          read.insert({t, k});
          ++reads_of_row[s];
        }
      std::set<std::pair<idx, idx>> gathered;
      for (idx s = -(K - 1); s < Tn; ++s) {
        int here = 0;
        for (idx k = 0; k < K; ++k) {
          const idx t = reading_token(s, K, k);
          if (t < 0 || t >= Tn) continue;
          EXPECT_EQ(tap_row(t, K, k), s);
          EXPECT_TRUE(gathered.insert({t, k}).second);
          ++here;
        }
        EXPECT_EQ(here, reads_of_row[s]) << "row " << s;
      }
      EXPECT_EQ(gathered, read) << "K=" << K << " Tn=" << Tn;
    }
}

TEST(Conv1dTaps, RowsMapOntoXAndTheHaloWithoutOverlap) {
  const Geometry g{5, 3, 4};
  const idx B = 2, ld = 7;
  std::set<idx> halo_offsets, x_offsets;
  for (idx b = 0; b < B; ++b)
    for (idx s = -(g.K - 1); s < g.Tn; ++s) {
      const RowAt at = xin_row(g, ld, b, s);
      EXPECT_EQ(at.in_halo, s < 0);
      if (at.in_halo) {
        EXPECT_EQ(at.offset % g.C, 0);
        EXPECT_TRUE(halo_offsets.insert(at.offset).second);
      } else {
        EXPECT_EQ(at.offset, (b * g.Tn + s) * ld);
        EXPECT_TRUE(x_offsets.insert(at.offset).second);
      }
    }
  // The halo rows fill [B, K-1, C] exactly; the newest (s = -1) is the last row of its sequence.
  EXPECT_EQ(idx(halo_offsets.size()), B * (g.K - 1));
  EXPECT_EQ(*halo_offsets.rbegin(), (B * (g.K - 1) - 1) * g.C);
  EXPECT_EQ(xin_row(g, ld, 1, -1).offset, (1 * (g.K - 1) + g.K - 2) * g.C);
  EXPECT_EQ(xin_row(g, ld, 0, -(g.K - 1)).offset, 0);
}

}  // namespace
}  // namespace nexus::conv1d
