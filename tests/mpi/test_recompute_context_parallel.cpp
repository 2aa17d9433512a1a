// Activation recomputation under context parallelism: recomputing a Mamba layer re-runs its
// collective forward (halo exchange, state passing) and recomputing an attention layer re-runs
// ring attention, in the same order on every rank. Loss and every gradient of each rank's share
// stay bit-identical to the run without recomputation, and the traffic counters report the extra
// forward that the recomputed layers send.
#include <gtest/gtest.h>

#include <string>

#include "data/zigzag.h"
#include "model/model.h"
#include "mpi/world.h"
#include "support/recompute_run.h"

namespace nexus {
namespace {

// Segments of 5 tokens span two SSD chunks of 4 unevenly.
ModelConfig hybrid_config() { return test::recompute_test_config("MAMMAMMA", 4); }

template <typename F>
void check_cp(idx cp) {
  const Communicator& world = test::world();
  if (world.size() % cp != 0) GTEST_SKIP() << "world " << world.size() << " not divisible by cp " << cp;
  const Communicator group = world.split(world.rank() / int(cp), world.rank());
  const ModelConfig c = hybrid_config();
  const idx B = 2, chunk = 5, T = 2 * cp * chunk;  // whole sequences of 2cp chunks
  std::vector<std::vector<std::int32_t>> tokens, targets, mine_tokens, mine_targets;
  test::make_batches(c.vocab_size, B * T, 2, 21 + std::uint64_t(world.rank() / cp), tokens, targets);
  for (std::size_t p = 0; p < tokens.size(); ++p) {
    mine_tokens.emplace_back(std::size_t(B * T / cp));
    mine_targets.emplace_back(std::size_t(B * T / cp));
    zigzag_slice(tokens[p].data(), B, T, cp, group.rank(), mine_tokens[p].data());
    zigzag_slice(targets[p].data(), B, T, cp, group.rank(), mine_targets[p].data());
  }
  const BatchShape shape{B, T / cp};
  const auto none = test::run_passes<F>(c, "none", shape, &group, mine_tokens, mine_targets);
  // What one forward alone sends: the extra each recomputed layer's second forward adds.
  Model<F> forward_only(c, shape, &group);
  forward_only.init(5);
  forward_only.forward(mine_tokens[0].data(), mine_targets[0].data());
  const std::size_t forward_mamba_bytes = forward_only.mamba_bytes_sent();
  const idx forward_ring_calls = forward_only.ring_stats().block_calls;
  ASSERT_GT(forward_mamba_bytes, 0u);
  ASSERT_GT(forward_ring_calls, 0);

  for (const std::string& setting : test::recompute_settings()) {
    const auto got = test::run_passes<F>(c, setting, shape, &group, mine_tokens, mine_targets);
    test::expect_bit_identical(got, none, setting + " (cp " + std::to_string(cp) + ")");
    EXPECT_LT(got.arena_bytes, none.arena_bytes) << setting;
    const Recompute rc = parse_recompute(setting);
    EXPECT_EQ(got.mamba_bytes_sent, none.mamba_bytes_sent + (rc.mamba ? forward_mamba_bytes : 0)) << setting;
    EXPECT_EQ(got.ring.block_calls, none.ring.block_calls + (rc.attention ? forward_ring_calls : 0)) << setting;
  }
}

TEST(RecomputeContextParallel, FloatIsBitIdenticalToNoneAtCp2) { check_cp<float>(2); }
TEST(RecomputeContextParallel, DoubleIsBitIdenticalToNoneAtCp2) { check_cp<double>(2); }
TEST(RecomputeContextParallel, FloatIsBitIdenticalToNoneOnTheWholeWorld) { check_cp<float>(test::world().size()); }

}  // namespace
}  // namespace nexus
