// The CUDA attention kernels' tile arithmetic (kernels/cuda/attention_tiling.h), on the CPU: the
// tiles each kernel visits, masked as tile_mask and reads() say, must cover exactly the visible
// (query, key) pairs, each once, against a brute-force enumeration with the neighborhood rule
// written out independently (support/naive_neighborhood.h). Checked for the forward / dq traversal
// (query tiles over key tiles from key_begin to key_end) and the dk/dv traversal (key tiles over
// query tiles from query_begin), for every neighborhood kind, with and without a sink, causal or
// not, at the offsets ring attention uses (keys before, overlapping and after the queries: the
// last a fully masked block), tile sizes 16 and 32 and lengths that are not multiples of them; and
// that the decode kernel's candidate keys include every key its query sees.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/cuda/attention_tiling.h"
#include "support/naive_neighborhood.h"

namespace nexus {
namespace {

using cuda::tiling::TileMask;
using test::make_neighborhood;

struct Named {
  std::string name;
  Neighborhood n;
};

const Named kNeighborhoods[] = {
    {"full", make_neighborhood(Neighborhood::kFull)},
    {"sliding:1", make_neighborhood(Neighborhood::kSliding, 1)},
    {"sliding:20", make_neighborhood(Neighborhood::kSliding, 20)},
    {"sliding:45", make_neighborhood(Neighborhood::kSliding, 45)},
    {"dilated:4:7", make_neighborhood(Neighborhood::kDilated, 4, 7)},
    {"dilated:3:32", make_neighborhood(Neighborhood::kDilated, 3, 32)},
    {"log", make_neighborhood(Neighborhood::kLog)},
    {"block:16", make_neighborhood(Neighborhood::kBlock, 16)},
    {"block:23", make_neighborhood(Neighborhood::kBlock, 23)},
    {"sink:3+sliding:10", make_neighborhood(Neighborhood::kSliding, 10, 1, 3)},
    {"sink:40+log", make_neighborhood(Neighborhood::kLog, 0, 1, 40)},
    {"sink:2+full", make_neighborhood(Neighborhood::kFull, 0, 1, 2)},
};

bool brute_visible(const AttentionShape& s, idx i, idx j) {
  return !s.causal || test::naive_visible(s.neighborhood, s.q_pos0 + i, s.k_pos0 + j);
}

// How often each pair (i, j) was read by the traversal, [Tq * Tk].
using Counts = std::vector<int>;

// Records the pairs of one visited tile, checking that kSkip and kNone are exact.
void visit(const AttentionShape& s, idx i0, idx m, idx j0, idx n, Counts& counts, const std::string& where) {
  const TileMask mask = cuda::tiling::tile_mask(s, i0, m, j0, n);
  for (idx i = i0; i < i0 + m; ++i)
    for (idx j = j0; j < j0 + n; ++j) {
      const bool visible = brute_visible(s, i, j);
      if (mask == TileMask::kSkip) {
        ASSERT_FALSE(visible) << where << " skipped tile holds (" << i << "," << j << ")";
      }
      if (mask == TileMask::kNone) {
        ASSERT_TRUE(visible) << where << " unmasked tile holds (" << i << "," << j << ")";
      }
      counts[std::size_t(i * s.Tk + j)] += cuda::tiling::reads(s, mask, i, j);
    }
}

void expect_exact_cover(const AttentionShape& s, const Counts& counts, const std::string& where) {
  for (idx i = 0; i < s.Tq; ++i)
    for (idx j = 0; j < s.Tk; ++j)
      ASSERT_EQ(counts[std::size_t(i * s.Tk + j)], brute_visible(s, i, j) ? 1 : 0)
          << where << " pair (" << i << "," << j << ")";
}

// attention_forward_kernel and attention_dq_kernel: a block per query tile.
void check_query_tile_traversal(const AttentionShape& s, idx tile, const std::string& where) {
  Counts counts(std::size_t(s.Tq * s.Tk), 0);
  for (idx i0 = 0; i0 < cuda::tiling::tiles(s.Tq, tile) * tile; i0 += tile) {
    const idx m = std::min(tile, s.Tq - i0), j_end = cuda::tiling::key_end(s, i0, m);
    // The range bounds themselves: no visible key outside [key_begin, key_end).
    for (idx i = i0; i < i0 + m; ++i)
      for (idx j = 0; j < s.Tk; ++j)
        if (j < cuda::tiling::key_begin(s, i0, m) || j >= j_end) {
          ASSERT_FALSE(brute_visible(s, i, j)) << where << " key range misses (" << i << "," << j << ")";
        }
    for (idx j0 = cuda::tiling::key_begin(s, i0, m); j0 < j_end; j0 += tile)
      visit(s, i0, m, j0, std::min(tile, j_end - j0), counts, where);
  }
  expect_exact_cover(s, counts, where + " (query tiles)");
}

// attention_dkdv_kernel: a block per key tile.
void check_key_tile_traversal(const AttentionShape& s, idx tile, const std::string& where) {
  Counts counts(std::size_t(s.Tq * s.Tk), 0);
  for (idx j0 = 0; j0 < cuda::tiling::tiles(s.Tk, tile) * tile; j0 += tile) {
    const idx n = std::min(tile, s.Tk - j0), first = cuda::tiling::query_begin(s, j0);
    for (idx i = 0; i < first; ++i)
      for (idx j = j0; j < j0 + n; ++j)
        ASSERT_FALSE(brute_visible(s, i, j)) << where << " query range misses (" << i << "," << j << ")";
    for (idx i0 = first; i0 < s.Tq; i0 += tile) visit(s, i0, std::min(tile, s.Tq - i0), j0, n, counts, where);
  }
  expect_exact_cover(s, counts, where + " (key tiles)");
}

TEST(AttentionTiling, TilesCoverExactlyTheVisiblePairs) {
  const idx lengths[][2] = {{1, 1}, {7, 50}, {33, 33}, {70, 45}, {64, 96}};  // {Tq, Tk}
  const idx offsets[][2] = {{0, 0}, {100, 0}, {37, 5}, {60, 50}, {0, 100}, {5, 37}};  // {q_pos0, k_pos0}
  for (const Named& nb : kNeighborhoods)
    for (const auto& len : lengths)
      for (const auto& off : offsets)
        for (const bool causal : {true, false})
          for (const idx tile : {idx(16), idx(32)}) {
            AttentionShape s{1, len[0], len[1], 1, 1, 16, off[0], off[1], causal, nb.n};
            const std::string where = nb.name + " Tq=" + std::to_string(s.Tq) + " Tk=" + std::to_string(s.Tk) +
                                      " q_pos0=" + std::to_string(s.q_pos0) + " k_pos0=" +
                                      std::to_string(s.k_pos0) + (causal ? "" : " non-causal") +
                                      " tile=" + std::to_string(tile);
            check_query_tile_traversal(s, tile, where);
            check_key_tile_traversal(s, tile, where);
            if (HasFatalFailure()) return;
          }
}

// Keys entirely after the queries (a ring step's fully masked block): every tile is skipped.
TEST(AttentionTiling, KeysAfterTheQueriesAreNeverVisited) {
  const AttentionShape s{1, 40, 40, 1, 1, 16, 0, 40, true};
  for (idx i0 = 0; i0 < s.Tq; i0 += 16) {
    const idx m = std::min(idx(16), s.Tq - i0);
    EXPECT_EQ(cuda::tiling::key_end(s, i0, m), 0);
  }
  EXPECT_EQ(cuda::tiling::query_begin(s, 0), s.Tq);
}

// attention_decode_paged_kernel: the candidate keys of a query at position len - 1, numbered by
// decode_key_at, are distinct, ascending, inside the cache, and include every key it sees.
TEST(AttentionTiling, DecodeCandidatesHoldEveryVisibleKey) {
  for (const Named& nb : kNeighborhoods)
    for (idx len = 0; len <= 140; ++len) {
      const cuda::tiling::DecodeKeys keys = cuda::tiling::decode_keys(nb.n, len);
      const idx count = cuda::tiling::decode_key_count(keys, len);
      std::vector<bool> candidate(std::size_t(len), false);
      for (idx n = 0; n < count; ++n) {
        const idx j = cuda::tiling::decode_key_at(keys, n);
        ASSERT_TRUE(j >= 0 && j < len) << nb.name << " len=" << len << " key " << j;
        if (n > 0) {
          ASSERT_LT(cuda::tiling::decode_key_at(keys, n - 1), j) << nb.name << " len=" << len;
        }
        candidate[std::size_t(j)] = true;
      }
      for (idx j = 0; j < len; ++j)
        if (test::naive_visible(nb.n, len - 1, j)) {
          ASSERT_TRUE(candidate[std::size_t(j)]) << nb.name << " len=" << len << " misses key " << j;
        }
    }
}

TEST(AttentionTiling, HeadDimCapacity) {
  EXPECT_EQ(cuda::tiling::max_head_dim_for(1), 64);
  EXPECT_EQ(cuda::tiling::max_head_dim_for(64), 64);
  EXPECT_EQ(cuda::tiling::max_head_dim_for(65), 128);
  EXPECT_EQ(cuda::tiling::max_head_dim_for(80), 128);
  EXPECT_EQ(cuda::tiling::max_head_dim_for(128), 128);
  EXPECT_EQ(cuda::tiling::max_head_dim_for(256), 256);
  EXPECT_EQ(cuda::tiling::max_head_dim_for(257), 0);
  EXPECT_EQ(cuda::tiling::tiles(0, 32), 0);
  EXPECT_EQ(cuda::tiling::tiles(33, 32), 2);
}

}  // namespace
}  // namespace nexus
