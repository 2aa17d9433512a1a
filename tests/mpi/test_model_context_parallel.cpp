// The whole model under context parallelism: on a dp x cp mesh, each cp group's loss and summed
// parameter gradients equal the single-rank model's on the same whole sequences, under full
// attention and under a sliding window (global positions through the ring, skipped hops).
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "data/zigzag.h"
#include "model/model.h"
#include "mpi/world.h"
#include "support/check.h"
#include "support/model_configs.h"

namespace nexus {
namespace {

// Pattern MMMMAMMM; chunks of 5 tokens per zigzag segment span two SSD chunks, unevenly.
ModelConfig hybrid_config() { return test::tiny_hybrid(8, 4); }

void check_mesh(idx cp, const std::string& neighborhood = "full") {
  const Communicator& world = test::world();
  if (world.size() % cp != 0) GTEST_SKIP() << "world " << world.size() << " not divisible by cp " << cp;
  const Communicator group = world.split(world.rank() / int(cp), world.rank());
  const idx dp_rank = world.rank() / cp;
  ModelConfig c = hybrid_config();
  c.pattern = "MAMMAMMA";  // attention layers 1, 4 and 7
  c.attention_neighborhood = neighborhood;
  const idx B = 2, chunk = 5, T = 2 * cp * chunk;

  // Each dp replica trains on its own batch; every rank of a cp group builds the same one.
  std::mt19937_64 rng(100 + std::uint64_t(dp_rank));
  std::uniform_int_distribution<std::int32_t> tok(0, std::int32_t(c.vocab_size - 1));
  std::vector<std::int32_t> tokens(std::size_t(B * T)), targets(tokens.size());
  for (auto& t : tokens) t = tok(rng);
  for (std::size_t i = 0; i < targets.size(); ++i) targets[i] = i % 7 == 2 ? -1 : tok(rng);

  Model<double> full(c, {B, T});
  full.init(5);
  std::mt19937_64 prng(6);
  std::uniform_real_distribution<double> u(-0.2, 0.2);
  for (idx i = 0; i < full.num_params(); ++i) full.params()[i] += u(prng);
  const LossSum ref = full.forward(tokens.data(), targets.data());
  full.zero_deltas();
  full.backward(1.0);

  Model<double> local(c, {B, T / cp}, &group);
  std::copy(full.params(), full.params() + full.num_params(), local.params());
  std::vector<std::int32_t> my_tokens(std::size_t(B * T / cp)), my_targets(my_tokens.size());
  zigzag_slice(tokens.data(), B, T, cp, group.rank(), my_tokens.data());
  zigzag_slice(targets.data(), B, T, cp, group.rank(), my_targets.data());
  const LossSum mine = local.forward(my_tokens.data(), my_targets.data());
  local.zero_deltas();
  local.backward(1.0);

  // The group's share sums to the whole: loss, target count, every parameter's gradient.
  double totals[2] = {mine.sum, double(mine.count)};
  group.allreduce_sum(totals, 2);
  EXPECT_EQ(totals[1], double(ref.count));
  EXPECT_NEAR(totals[0], ref.sum, 1e-12 * ref.sum);
  group.allreduce_sum(local.deltas(), local.num_params());
  for (const ParamInfo& p : full.table().params()) {
    std::vector<double> got(local.deltas() + p.offset, local.deltas() + p.offset + p.numel);
    std::vector<double> want(full.deltas() + p.offset, full.deltas() + p.offset + p.numel);
    // fp64 throughout; only the summation order differs (per-segment SSD, ring merges).
    EXPECT_LT(test::max_rel_diff(got, want), 1e-10) << p.name << " (cp " << cp << ")";
  }
  if (cp > 1) {
    EXPECT_GT(local.mamba_bytes_sent(), 0u);
    EXPECT_GT(local.ring_stats().block_calls, 0);
  }
}

TEST(ModelContextParallel, MatchesSingleRankOnTheWholeSequence) { check_mesh(test::world().size()); }

// A window of 3 (chunks are 5 tokens): each rank reads only its sequence neighbours' K/V, so with
// cp = 4 some hops are skipped, and a per-layer list puts different rules on the three layers.
TEST(ModelContextParallel, NeighborhoodsMatchSingleRank) {
  check_mesh(test::world().size(), "sliding:3");
  check_mesh(test::world().size(), "block:4,sink:2+log,dilated:2:6");
}

TEST(ModelContextParallel, DataTimesContextMeshOfTwoByTwo) {
  if (test::world().size() != 4) GTEST_SKIP() << "needs 4 ranks";
  check_mesh(2);
}

}  // namespace
}  // namespace nexus
