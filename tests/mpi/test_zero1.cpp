// ZeRO-1 (parallel.zero = 1): AdamW moments sharded over the ranks give the training of zero 0 --
// the optimizer step itself on random deltas, whole training runs on dp and dp x cp meshes, and
// checkpoints that move between zero settings and world sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <utility>
#include <vector>

#include "e2e/logged_steps.h"
#include "e2e/run_options.h"
#include "mpi/world.h"
#include "optim/distributed_adamw.h"
#include "optim/delta_reduction.h"
#include "support/check.h"
#include "trainer/train.h"

namespace nexus {
namespace {

// A flat buffer whose size no world size here divides (1001 = 7 * 11 * 13), so the last rank
// holds a tail, with decay flags changing inside every shard.
constexpr idx kN = 1001;
const std::vector<DecayRange> kRanges{{0, 300, true}, {300, 1, false}, {301, 450, true}, {751, 250, false}};
const AdamWHyper kHyper{0.9, 0.95, 1e-8, 0.1};

// This rank's deltas for step t: different on every rank, as each rank's share of a batch is.
std::vector<float> rank_deltas(int rank, int t) {
  return test::random_vector<float>(std::size_t(kN), std::uint64_t(1000 * t + rank), -2.0, 2.0);
}

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::abs(a[i] - b[i])));
  return worst;
}

TEST(DistributedAdamW, ShardedStepsEqualReplicatedSteps) {
  const Communicator& world = test::world();
  DistributedAdamW replicated(kN, kHyper, kRanges, world, 0), sharded(kN, kHyper, kRanges, world, 1);
  // Zero 1 whose deltas were reduce-scattered bucket by bucket during a "backward" (the trainer's
  // overlap): buckets of 50 elements, final in ranges of 37, so buckets straddle shard boundaries.
  DistributedAdamW overlapped(kN, kHyper, kRanges, world, 1);
  ASSERT_TRUE(sharded.sharded());
  ASSERT_FALSE(replicated.sharded());
  const std::vector<float> init = test::random_vector<float>(std::size_t(kN), 7);
  std::vector<float> p0 = init, p1 = init, p2 = init;
  for (int t = 0; t < 4; ++t) {
    std::vector<float> d0 = rank_deltas(world.rank(), t), d1 = d0, d2 = d0;
    DeltaReduction on_owner(world, d2.data(), kN, 50 * sizeof(float), overlapped.shard(),
                                      overlapped.shard_sums());
    for (idx end = kN; end > 0;) {
      const idx count = std::min<idx>(end, 37);
      on_owner.ready(end - count, count);
      end -= count;
    }
    on_owner.finish();
    const auto c = overlapped.step(p2.data(), d2.data(), 1.0f / float(world.size()), 2.5, 1.0, 1e-2, true);
    // Clip at 1.0: the summed deltas' norm (~ sqrt(kN * S) * 1.15 / S) is above it, so clipping acts.
    const auto a = replicated.step(p0.data(), d0.data(), 1.0f / float(world.size()), 2.5, 1.0, 1e-2);
    const auto b = sharded.step(p1.data(), d1.data(), 1.0f / float(world.size()), 2.5, 1.0, 1e-2);
    ASSERT_TRUE(a.applied);
    ASSERT_TRUE(b.applied);
    EXPECT_GT(a.grad_norm, 1.0);
    // Norms: on 2 ranks the deltas are the same bits (see below) and only the grouping of the
    // double partial sums differs, ~1e-16 relative; on 4 ranks the deltas differ by fp32 rounding
    // (~6e-8 relative per entry), measured 4e-9 relative in the norm.
    EXPECT_NEAR(b.grad_norm, a.grad_norm, (world.size() == 2 ? 1e-12 : 1e-6) * a.grad_norm) << "step " << t;
    ASSERT_TRUE(c.applied);
    EXPECT_NEAR(c.grad_norm, a.grad_norm, (world.size() == 2 ? 1e-12 : 1e-6) * a.grad_norm) << "step " << t;
  }
  // 2 ranks: a + b is exact whatever the order, so the reduce-scatter and the all-reduce give the
  // same bits. 4 ranks: MPI may add the four partial sums in another order (fp32, ~1e-7 relative
  // per entry); AdamW's m / sqrt(v) passes that on, times lr = 1e-2 per step.
  const double worst = max_abs_difference(p1, p0);
  std::printf("zero 1 vs zero 0 on %d ranks, random deltas: max |weight difference| = %.3g\n", world.size(), worst);
  const double worst_overlapped = max_abs_difference(p2, p0);
  std::printf("zero 1 reduce-scattered in buckets vs zero 0: max |weight difference| = %.3g\n", worst_overlapped);
  if (world.size() == 2) {
    EXPECT_EQ(p1, p0);
    EXPECT_EQ(p2, p0);
  }
  EXPECT_LT(worst, 1e-5);
  EXPECT_LT(worst_overlapped, 1e-5);
  std::vector<float> root2 = p2;
  world.broadcast(root2.data(), root2.size() * sizeof(float));
  EXPECT_EQ(root2, p2) << "rank " << world.rank() << ": the overlapped step's all-gather";
  EXPECT_GT(max_abs_difference(p1, init), 1e-2);  // the weights did move
  // Every rank ends with the same weights: the all-gather reached everyone.
  std::vector<float> root = p1;
  world.broadcast(root.data(), root.size() * sizeof(float));
  EXPECT_EQ(root, p1) << "rank " << world.rank();

  // The moments, gathered whole on the root, are zero 0's; scattered back, each rank's shard.
  EXPECT_EQ(sharded.steps(), 4);
  const auto whole = sharded.full_moments(world.is_root());
  sharded.gather_moments(0);
  if (world.is_root()) {
    const auto ref = replicated.full_moments(true);
    double m = 0, v = 0;
    for (idx i = 0; i < kN; ++i) {
      m = std::max(m, double(std::abs(whole.exp_avg[i] - ref.exp_avg[i])));
      v = std::max(v, double(std::abs(whole.exp_avg_sq[i] - ref.exp_avg_sq[i])));
    }
    EXPECT_LT(m, 1e-6);
    EXPECT_LT(v, 1e-6);
  }
  DistributedAdamW restored(kN, kHyper, kRanges, world, 1);
  const auto staging = restored.full_moments(world.is_root());
  if (world.is_root()) {
    std::copy_n(whole.exp_avg, kN, staging.exp_avg);
    std::copy_n(whole.exp_avg_sq, kN, staging.exp_avg_sq);
  }
  sharded.release_full_moments();
  restored.scatter_moments(0);
  ASSERT_EQ(restored.shard(), sharded.shard());
  const auto got = restored.local().exp_avg(), want = sharded.local().exp_avg();
  EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin(), want.end())) << "rank " << world.rank();
  const auto got_sq = restored.local().exp_avg_sq(), want_sq = sharded.local().exp_avg_sq();
  EXPECT_TRUE(std::equal(got_sq.begin(), got_sq.end(), want_sq.begin(), want_sq.end())) << "rank " << world.rank();
}

// A non-finite delta on one rank lands in one shard only after the reduce-scatter; the global
// norm still sees it on every rank, so every rank skips the step, as under zero 0.
TEST(DistributedAdamW, ANonFiniteStepIsSkippedOnEveryRank) {
  const Communicator& world = test::world();
  DistributedAdamW sharded(kN, kHyper, kRanges, world, 1);
  const std::vector<float> init = test::random_vector<float>(std::size_t(kN), 8);
  std::vector<float> p = init;
  std::vector<float> d = rank_deltas(world.rank(), 0);
  // The last rank poisons an element of rank 0's shard.
  if (world.rank() == world.size() - 1) d[3] = std::numeric_limits<float>::infinity();
  const auto bad = sharded.step(p.data(), d.data(), 0.5f, 2.5, 1.0, 1e-2);
  EXPECT_FALSE(bad.applied) << "rank " << world.rank();
  EXPECT_FALSE(std::isfinite(bad.grad_norm));
  EXPECT_EQ(p, init);
  EXPECT_EQ(sharded.steps(), 0);
  // A non-finite loss skips the step too, with finite deltas.
  d = rank_deltas(world.rank(), 1);
  const auto nan_loss = sharded.step(p.data(), d.data(), 0.5f, std::numeric_limits<double>::quiet_NaN(), 1.0, 1e-2);
  EXPECT_FALSE(nan_loss.applied);
  EXPECT_TRUE(std::isfinite(nan_loss.grad_norm));
  EXPECT_EQ(p, init);
  // The next good step applies everywhere.
  d = rank_deltas(world.rank(), 2);
  EXPECT_TRUE(sharded.step(p.data(), d.data(), 0.5f, 2.5, 1.0, 1e-2).applied);
  EXPECT_EQ(sharded.steps(), 1);
  EXPECT_NE(p, init);
}

// configs/tiny.ini runs of `steps` steps with a global batch of 8 over `dp` replicas (one
// micro-batch each) and `cp`, plus `extra` options.
RunOptions zero_run(const std::string& dir, idx steps, idx dp, idx cp, int zero, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"--train.steps=" + std::to_string(steps), "--train.global_batch=8",
                                "--train.micro_batch=" + std::to_string(8 / dp), "--parallel.cp=" + std::to_string(cp),
                                "--parallel.zero=" + std::to_string(zero), "--schedule.warmup_steps=10",
                                "--train.eval_every=0", "--checkpoint.every=3", "--train.log_every=1"};
  args.insert(args.end(), extra.begin(), extra.end());
  return test::tiny_run(dir, args);
}

// Whole runs: zero 1 against zero 0 on the same ranks and mesh -- dp = world (2 or 4), and cp 2
// (dp 1 x cp 2 on 2 ranks, dp 2 x cp 2 on 4) -- with zero 1's deltas reduce-scattered after the
// backward (overlap_kib 0) and during it in 1 KiB buckets (many buckets, some straddling a shard
// boundary).
TEST(ZeroOne, TrainingEqualsZeroZeroOnDpAndDpTimesCp) {
  const Communicator& world = test::world();
  const idx steps = 5;
  const std::string mine = test::temp_run_dir("zero1_r" + std::to_string(world.rank()));
  for (const idx cp : {idx(1), idx(2)}) {
    const idx dp = world.size() / cp;
    const std::string run = "_cp" + std::to_string(cp);
    const test::TrainedRun zero0 = test::train_keeping_weights(zero_run(mine + "/z0" + run, steps, dp, cp, 0), world);
    for (const idx overlap_kib : {idx(0), idx(1)}) {
      const std::string layout = "dp " + std::to_string(dp) + " x cp " + std::to_string(cp) + ", overlap_kib " +
                                 std::to_string(overlap_kib);
      const test::TrainedRun zero1 = test::train_keeping_weights(
          zero_run(mine + "/z1" + run + "_o" + std::to_string(overlap_kib), steps, dp, cp, 1,
                   {"--parallel.overlap_kib=" + std::to_string(overlap_kib)}),
          world);
      ASSERT_EQ(zero0.losses.size(), std::size_t(steps));
      ASSERT_EQ(zero1.losses.size(), std::size_t(steps));
      // The forward and backward passes are the same code on the same weights; only the reduction
      // differs. On 2 ranks a reduce-scatter (whole or in buckets) adds the same two fp32 values as the
      // all-reduce (a + b is exact in either order) and the norms differ only in how double
      // partial sums are grouped (measured 2e-16 relative, far below the fp32 clip factor's
      // rounding): losses and weights are bit-identical, and asserted so; the logged norms are
      // held to 1e-12.
      // On 4 ranks MPI's reduce-scatters and all-reduce may group the four partial deltas
      // differently (~1e-7 relative per entry), which reaches the loss curve at ~1e-7 and the
      // weights as in the dp test (tests/mpi/test_train_dp.cpp): 1e-5 relative on losses and 1e-4
      // relative on gradient norms and 1e-4 absolute on weights, a thirtieth of one step's update
      // (lr 3e-3 here). A missing all-gather, a shard at the wrong offset or a bucket's piece
      // received at the wrong place leaves whole ranges a full update apart (>= 1e-3) on some rank.
      double worst_loss = 0;
      for (std::size_t s = 0; s < std::size_t(steps); ++s) {
        worst_loss = std::max(worst_loss, std::abs(zero1.losses[s] - zero0.losses[s]) / zero0.losses[s]);
        EXPECT_NEAR(zero1.losses[s], zero0.losses[s], 1e-5 * zero0.losses[s]) << layout << ", step " << s;
      }
      const double worst = max_abs_difference(zero1.params, zero0.params);
      std::printf("%s: zero 1 vs zero 0: max relative loss difference %.3g, max |weight difference| %.3g\n",
                  layout.c_str(), worst_loss, worst);
      EXPECT_LT(worst, 1e-4) << layout;
      if (world.size() == 2) {
        EXPECT_EQ(zero1.losses, zero0.losses) << layout;
        EXPECT_EQ(zero1.params, zero0.params) << layout;
      }
      if (world.is_root())
        test::expect_same_grad_norms(test::logged_grad_norms(zero1.metrics_path),
                                     test::logged_grad_norms(zero0.metrics_path), 0, world.size() == 2 ? 1e-12 : 1e-4,
                                     layout + ", zero 1 vs zero 0");
      // Every rank holds rank 0's weights bit for bit.
      std::vector<float> root = zero1.params;
      world.broadcast(root.data(), root.size() * sizeof(float));
      EXPECT_EQ(root, zero1.params) << layout << ": rank " << world.rank() << " diverged from rank 0";
    }
  }
  world.barrier();
  std::filesystem::remove_all(mine);
}

// Checkpoints hold the moments whole, so they move between zero settings and world sizes: a
// 2-rank zero-1 run's checkpoint continues under zero 0 on 1 rank and on the whole world (2 or 4),
// and 1-rank and whole-world zero-0 checkpoints continue under zero 1 on 2 ranks, all equal to one
// uninterrupted run.
TEST(ZeroOne, CheckpointsMoveBetweenZeroSettingsAndWorldSizes) {
  const Communicator& world = test::world();
  const Communicator& self = Communicator::self();
  const Communicator pair = world.split(world.rank() / 2, world.rank());  // ranks {0, 1} (and {2, 3})
  const idx n_world = world.size();
  const std::string mine = test::temp_run_dir("zero1_resume_r" + std::to_string(world.rank()));
  const std::vector<std::string> first_half{"--train.exit_after=3"};
  const test::TrainedRun single = test::train_keeping_weights(zero_run(mine + "/single", 6, 1, 1, 0), self);

  // zero 1 on 2 ranks -> zero 0 on 1 rank, and on the world.
  const test::TrainedRun z1_pair = test::train_keeping_weights(zero_run(mine + "/a", 6, 2, 1, 1, first_half), pair);
  const std::string from_pair = test::broadcast_string(pair, z1_pair.last_checkpoint);
  const test::TrainedRun to_one = test::train_keeping_weights(zero_run(mine + "/a1", 6, 1, 1, 0), self, from_pair);
  const test::TrainedRun to_world = test::train_keeping_weights(zero_run(mine + "/aw", 6, n_world, 1, 0), world,
                                                                test::broadcast_string(world, z1_pair.last_checkpoint));
  // zero 0 on 1 rank, and on the world -> zero 1 on 2 ranks.
  const test::TrainedRun z0_one = test::train_keeping_weights(zero_run(mine + "/b", 6, 1, 1, 0, first_half), self);
  const test::TrainedRun from_one = test::train_keeping_weights(zero_run(mine + "/b1", 6, 2, 1, 1), pair,
                                                                test::broadcast_string(pair, z0_one.last_checkpoint));
  const test::TrainedRun z0_world =
      test::train_keeping_weights(zero_run(mine + "/c", 6, n_world, 1, 0, first_half), world);
  const test::TrainedRun from_world = test::train_keeping_weights(
      zero_run(mine + "/cw", 6, 2, 1, 1), pair, test::broadcast_string(pair, test::broadcast_string(world, z0_world.last_checkpoint)));

  ASSERT_EQ(single.losses.size(), 6u);
  const std::vector<std::pair<const char*, const test::TrainedRun*>> resumed{
      {"zero 1 x 2 -> zero 0 x 1", &to_one},
      {"zero 1 x 2 -> zero 0 x world", &to_world},
      {"zero 0 x 1 -> zero 1 x 2", &from_one},
      {"zero 0 x world -> zero 1 x 2", &from_world}};
  const std::vector<double> single_norms = test::logged_grad_norms(single.metrics_path);
  for (const auto& [what, run] : resumed) {
    ASSERT_EQ(run->first_step, 3) << what;
    ASSERT_EQ(run->losses.size(), 3u) << what;
    // Tolerances of tests/mpi/test_train_dp.cpp: only fp32 summation order differs from the
    // single rank's run. A moment shard scattered to the wrong rank, or moments lost in the save,
    // change AdamW's next updates by their full size.
    for (std::size_t s = 0; s < 3; ++s)
      EXPECT_NEAR(run->losses[s], single.losses[s + 3], 1e-5 * single.losses[s + 3]) << what << ", step " << s + 3;
    const double worst = max_abs_difference(run->params, single.params);
    std::printf("%s: max |weight difference| to the uninterrupted run %.3g\n", what, worst);
    EXPECT_LT(worst, 1e-4) << what;
  }
  // Each run's root wrote its metrics: world rank 0 is the root of every run here.
  if (world.is_root())
    for (const auto& [what, run] : resumed)
      test::expect_same_grad_norms(test::logged_grad_norms(run->metrics_path), single_norms, 3, 1e-4, what);
  world.barrier();
  std::filesystem::remove_all(mine);
}

}  // namespace
}  // namespace nexus
