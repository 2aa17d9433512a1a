// ZeRO-1's arithmetic: the flat shards of a buffer over a group (parallel/flat_shard.h) and the
// AdamW decay ranges cut to a shard (optim/distributed_adamw.h). The collectives themselves are
// tested under mpirun (tests/mpi/test_zero1.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "model/memory_need.h"
#include "optim/distributed_adamw.h"
#include "parallel/flat_shard.h"
#include "support/check.h"
#include "support/place_only.h"

namespace nexus {
namespace {

using test::PlaceOnly;

TEST(FlatShard, EqualBlocksAndTheTailOnTheLastRank) {
  // n = 10 over 4 ranks: blocks of 2, the tail [8, 10) on rank 3.
  EXPECT_EQ(flat_shard(10, 4, 0), (FlatShard{0, 2, 2, 2}));
  EXPECT_EQ(flat_shard(10, 4, 2), (FlatShard{4, 2, 2, 2}));
  EXPECT_EQ(flat_shard(10, 4, 3), (FlatShard{6, 4, 2, 2}));
  EXPECT_EQ(largest_flat_shard(10, 4), 4);
  // Fewer elements than ranks: empty blocks, everything in the last rank's tail.
  EXPECT_EQ(flat_shard(3, 4, 1), (FlatShard{0, 0, 0, 3}));
  EXPECT_EQ(flat_shard(3, 4, 3), (FlatShard{0, 3, 0, 3}));
  EXPECT_EQ(flat_shard(12, 1, 0), (FlatShard{0, 12, 12, 0}));
  EXPECT_THROW(flat_shard(10, 4, 4), std::invalid_argument);
  EXPECT_THROW(flat_shard(10, 0, 0), std::invalid_argument);
  EXPECT_THROW(flat_shard(-1, 2, 0), std::invalid_argument);
}

TEST(FlatShard, ShardsTileTheBufferInRankOrder) {
  for (idx n : {0, 1, 7, 8, 9, 1000, 408648})
    for (idx ranks : {1, 2, 3, 4, 7, 16}) {
      idx next = 0;
      for (idx r = 0; r < ranks; ++r) {
        const FlatShard s = flat_shard(n, ranks, r);
        EXPECT_EQ(s.offset, next) << "n " << n << ", rank " << r << " of " << ranks;
        EXPECT_EQ(s.offset, r * s.block);  // where the reduce-scatter puts rank r's block
        EXPECT_LE(s.numel, largest_flat_shard(n, ranks));
        next = s.offset + s.numel;
      }
      EXPECT_EQ(next, n) << "n " << n << " over " << ranks;
    }
}

TEST(ShardDecayRanges, IntersectAndShiftToTheShard) {
  // [0, 5) decay, [5, 8) not, [8, 12) decay; given out of order, as AdamW accepts them.
  const std::vector<DecayRange> ranges{{8, 4, true}, {0, 5, true}, {5, 3, false}};
  const std::vector<DecayRange> mid = shard_decay_ranges(ranges, 4, 6);  // [4, 10)
  ASSERT_EQ(mid.size(), 3u);
  EXPECT_EQ(mid[0].offset, 0);
  EXPECT_EQ(mid[0].numel, 1);
  EXPECT_TRUE(mid[0].decay);
  EXPECT_EQ(mid[1].offset, 1);
  EXPECT_EQ(mid[1].numel, 3);
  EXPECT_FALSE(mid[1].decay);
  EXPECT_EQ(mid[2].offset, 4);
  EXPECT_EQ(mid[2].numel, 2);
  EXPECT_TRUE(mid[2].decay);
  // Inside one range, and an empty shard.
  const std::vector<DecayRange> inner = shard_decay_ranges(ranges, 5, 2);
  ASSERT_EQ(inner.size(), 1u);
  EXPECT_EQ(inner[0].offset, 0);
  EXPECT_EQ(inner[0].numel, 2);
  EXPECT_FALSE(inner[0].decay);
  EXPECT_TRUE(shard_decay_ranges(ranges, 12, 0).empty());
}

// The property ZeRO-1 rests on: AdamWs over the shards, each stepping its slice with its own
// moments, produce exactly the weights and moments of one AdamW over the whole buffer (the update
// is elementwise; only the decay flag depends on the position, and that must follow the shard).
TEST(ShardDecayRanges, AdamWOverTheShardsEqualsAdamWOverTheWhole) {
  const idx n = 103;  // not a multiple of the ranks: the last shard has a tail
  const std::vector<DecayRange> ranges{{0, 30, true}, {30, 1, false}, {31, 50, true}, {81, 22, false}};
  const AdamWHyper hyper{0.9, 0.95, 1e-8, 0.5};
  std::vector<float> whole = test::random_vector<float>(std::size_t(n), 1);
  for (const idx ranks : {2, 3, 4}) {
    std::vector<float> p = whole, sharded = whole;
    AdamW reference(n, hyper, ranges);
    std::vector<AdamW> shards;
    for (idx r = 0; r < ranks; ++r) {
      const FlatShard s = flat_shard(n, ranks, r);
      shards.emplace_back(s.numel, hyper, shard_decay_ranges(ranges, s.offset, s.numel));
    }
    for (int t = 0; t < 3; ++t) {
      const std::vector<float> g = test::random_vector<float>(std::size_t(n), std::uint64_t(10 + t));
      reference.step(p.data(), g.data(), 0.01);
      for (idx r = 0; r < ranks; ++r) {
        const FlatShard s = flat_shard(n, ranks, r);
        shards[std::size_t(r)].step(sharded.data() + s.offset, g.data() + s.offset, 0.01);
      }
    }
    EXPECT_EQ(sharded, p) << ranks << " shards";
    for (idx r = 0; r < ranks; ++r) {
      const FlatShard s = flat_shard(n, ranks, r);
      const auto m = shards[std::size_t(r)].exp_avg(), v = shards[std::size_t(r)].exp_avg_sq();
      for (idx i = 0; i < s.numel; ++i) {
        ASSERT_EQ(m[std::size_t(i)], reference.exp_avg()[std::size_t(s.offset + i)]) << "rank " << r << ", " << i;
        ASSERT_EQ(v[std::size_t(i)], reference.exp_avg_sq()[std::size_t(s.offset + i)]) << "rank " << r << ", " << i;
      }
    }
  }
}

// The memory check counts, per rank, the moments of the largest shard that any rank's
// DistributedAdamW allocates, and the shard's reduce-scatter buffer beside the deltas.
TEST(ShardDecayRanges, MemoryNeedCountsTheMomentsOfTheLargestShard) {
  ModelConfig c;
  c.vocab_size = 97;
  c.d_model = 64;
  c.n_layers = 6;
  c.mlp_hidden = 96;
  const ParamTable table(c);
  const idx n = table.total();
  const MemoryNeed whole = training_memory_need(c, BatchShape{1, 8});
  EXPECT_EQ(training_memory_need(c, BatchShape{1, 8}, 1, 1).total(), whole.total());
  for (const int ranks : {2, 3, 4}) {
    const MemoryNeed need = training_memory_need(c, BatchShape{1, 8}, 1, ranks);
    idx largest = 0;
    for (int r = 0; r < ranks; ++r) {
      const PlaceOnly place(ranks, r);  // outlives the optimizer, which keeps a reference
      const DistributedAdamW opt(n, AdamWHyper{}, decay_ranges(table), place, 1);
      ASSERT_TRUE(opt.sharded());
      largest = std::max(largest, opt.local().size());
    }
    EXPECT_EQ(need.optimizer, 2 * std::size_t(largest) * sizeof(float)) << ranks << " ranks";
    EXPECT_EQ(need.deltas, whole.deltas + std::size_t(largest) * sizeof(float)) << ranks << " ranks";
    EXPECT_LT(need.optimizer, whole.optimizer / std::size_t(ranks) + 2 * std::size_t(ranks) * sizeof(float));
  }
  // Zero 1 on one rank shards nothing.
  const PlaceOnly alone(1, 0), first_of_two(2, 0);
  EXPECT_FALSE(DistributedAdamW(n, AdamWHyper{}, decay_ranges(table), alone, 1).sharded());
  EXPECT_THROW(DistributedAdamW(n, AdamWHyper{}, decay_ranges(table), first_of_two, 2), std::invalid_argument);
}

// The master weights of a bf16 run (set_master): each rank keeps exactly its shard of the whole
// buffer it is given, and a checkpoint's full state includes them (CPU, zero 0: in place). The
// bf16 step itself runs on a GPU only (tests/cuda/test_cuda_model_bf16.cpp).
TEST(DistributedAdamWMaster, EachRankKeepsItsShardOfTheMaster) {
  const idx n = 103;
  const std::vector<DecayRange> ranges{{0, n, true}};
  std::vector<float> whole(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < whole.size(); ++i) whole[i] = 0.25f * float(i) - 3.0f;
  for (int ranks : {1, 4}) {
    for (int r = 0; r < ranks; ++r) {
      const PlaceOnly place(ranks, r);
      DistributedAdamW opt(n, AdamWHyper{}, ranges, place, 1);
      EXPECT_FALSE(opt.has_master());
      EXPECT_EQ(opt.master(), nullptr);
      opt.set_master(whole.data());
      ASSERT_TRUE(opt.has_master());
      const FlatShard s = opt.shard();
      EXPECT_EQ(s.numel, ranks == 1 ? n : flat_shard(n, ranks, r).numel);
      EXPECT_TRUE(std::equal(opt.master(), opt.master() + s.numel, whole.begin() + s.offset)) << r << " of " << ranks;
    }
  }
  const PlaceOnly alone(1, 0);
  DistributedAdamW opt(n, AdamWHyper{}, ranges, alone, 0);
  EXPECT_EQ(opt.full_moments(true).master, nullptr);  // fp32: the weights are their own master
  opt.set_master(whole.data());
  const DistributedAdamW::FullMoments full = opt.full_moments(true);
  EXPECT_EQ(full.master, opt.master());  // CPU zero 0: the optimizer's own buffer, no staging
  EXPECT_EQ(full.exp_avg, opt.local().exp_avg().data());
}

TEST(DistributedAdamWMaster, ABf16StepWithoutMasterWeightsIsRefused) {
  const PlaceOnly alone(1, 0);
  DistributedAdamW opt(4, AdamWHyper{}, {{0, 4, true}}, alone, 0);
  std::vector<bf16> params(4, bf16(1.0f));
  std::vector<float> deltas(4, 1.0f);
  EXPECT_THROW(opt.step(params.data(), deltas.data(), 1.0f, 1.0, 1.0, 1e-3), std::logic_error);
  EXPECT_EQ(opt.steps(), 0);
}

}  // namespace
}  // namespace nexus
