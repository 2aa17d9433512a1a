// The memory planner against the allocations it predicts: the arena of a real Model to the byte,
// the parameter, delta and AdamW buffers, the generation caches, and the longest sequence that fits
// a budget at its edge (under context parallelism too), ZeRO-1's shards as DistributedAdamW allocates
// them; bad flags are named.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "model/inference.h"
#include "optim/adamw.h"
#include "optim/distributed_adamw.h"
#include "support/place_only.h"
#include "trainer/plan.h"

namespace nexus {
namespace {

RunOptions load(const std::string& config, std::vector<std::string> overrides = {}) {
  overrides.insert(overrides.begin(), std::string(NEXUS_SOURCE_DIR) + "/configs/" + config);
  return parse_command_line(overrides).options;
}

PlanTarget cpu_without_runtime(std::size_t budget = SIZE_MAX) {
  PlanTarget t;
  t.budget = budget;
  return t;
}

TEST(Plan, MatchesTheBuffersOfARealModelToTheByte) {
  for (const char* config : {"tiny.ini", "small.ini"})
    for (const char* setting : {"none", "attention", "mamba", "mlp", "all"}) {
      const RunOptions o = load(config, {"--train.seq_len=64", "--train.recompute=" + std::string(setting)});
      const TrainingPlan p = plan_training(o, cpu_without_runtime(), 64);
      const Model<float> model(o.model, BatchShape{o.train.micro_batch, 64});
      const AdamW optimizer(model.num_params(), o.adamw(), decay_ranges(model.table()));
      const std::string what = std::string(config) + ", recompute " + setting;
      EXPECT_EQ(p.arena.total(), model.arena_bytes()) << what;
      EXPECT_EQ(p.weights, std::size_t(model.num_params()) * sizeof(float)) << what;
      EXPECT_EQ(p.deltas, std::size_t(model.num_params()) * sizeof(float)) << what;
      EXPECT_EQ(p.moments, optimizer.exp_avg().size_bytes() + optimizer.exp_avg_sq().size_bytes()) << what;
      EXPECT_EQ(p.master, 0u) << what;
      // What train() refuses by is what the plan adds up (without the runtime).
      const MemoryNeed need = run_memory_need(o, batch_layout(o, 1));
      EXPECT_EQ(need.total(), p.total()) << what;
    }
}

TEST(Plan, GpuTargetCountsBf16ActivationsAndFp32State) {
  const RunOptions o = load("small.ini", {"--train.recompute=mamba"});
  const PlanTarget h100 = plan_target("h100-80g", "", 1);
  EXPECT_TRUE(h100.gpu);
  EXPECT_EQ(h100.budget, std::size_t(81559) << 20);
  EXPECT_EQ(plan_target("h200", "", 1).budget, std::size_t(143771) << 20);
  const TrainingPlan p = plan_training(o, h100, 1024);
  const std::size_t n = std::size_t(ParamTable(o.model).total());
  EXPECT_EQ(p.weights, 2 * n);
  EXPECT_EQ(p.master, 4 * n);
  EXPECT_EQ(p.deltas, 4 * n);
  EXPECT_EQ(p.moments, 8 * n);
  EXPECT_EQ(p.runtime, kGpuRuntimeReserve);
  EXPECT_EQ(p.arena.total(), Model<bf16>::activation_bytes(o.model, BatchShape{o.train.micro_batch, 1024}));
  EXPECT_LT(p.arena.total(), plan_training(o, cpu_without_runtime(), 1024).arena.total());
  EXPECT_EQ(plan_target("h200", "96GiB", 1).budget, std::size_t(96) << 30);
}

TEST(Plan, LongestSequenceSitsAtTheBudgetsEdge) {
  for (const char* cp : {"1", "2"}) {
    const RunOptions o = load("tiny.ini", {"--parallel.cp=" + std::string(cp), "--train.recompute=mamba"});
    const PlanTarget t = cpu_without_runtime(std::size_t(64) << 20);
    const idx T = longest_fitting_seq_len(o, t);
    const idx unit = o.parallel.cp > 1 ? 2 * o.parallel.cp : 1;
    ASSERT_GT(T, 0) << "cp " << cp;
    EXPECT_EQ(T % unit, 0) << "cp " << cp;
    EXPECT_LE(plan_training(o, t, T).total(), t.budget) << "cp " << cp;
    EXPECT_GT(plan_training(o, t, T + unit).total(), t.budget) << "cp " << cp;
  }
  EXPECT_EQ(longest_fitting_seq_len(load("small.ini"), cpu_without_runtime(1 << 20)), 0);  // weights alone are over
}

// Under parallel.zero = 1 a rank holds the moments of its shard of all dp x cp ranks (the largest,
// the last rank's, is what a plan counts), the shard's reduce-scatter buffer beside the deltas and,
// on a GPU, the shard's fp32 master weights; the total falls by exactly that much.
TEST(Plan, ZeroOneShardsAsDistributedAdamWAllocates) {
  const std::vector<std::string> layout{"--train.seq_len=64", "--train.micro_batch=1", "--train.global_batch=8"};
  for (const char* cp : {"1", "2"}) {
    std::vector<std::string> zero0 = layout, zero1 = layout;
    zero0.push_back("--parallel.cp=" + std::string(cp));
    zero1.push_back("--parallel.cp=" + std::string(cp));
    zero1.push_back("--parallel.zero=1");
    const RunOptions o0 = load("small.ini", zero0), o1 = load("small.ini", zero1);
    const ParamTable table(o1.model);
    const idx n = table.total();
    const idx world = 4;
    idx largest = 0;
    for (int r = 0; r < int(world); ++r) {
      const test::PlaceOnly place(int(world), r);  // outlives the optimizer, which keeps a reference
      const DistributedAdamW opt(n, o1.adamw(), decay_ranges(table), place, 1);
      ASSERT_TRUE(opt.sharded());
      largest = std::max(largest, opt.local().size());
      if (r == int(world) - 1) {
        EXPECT_EQ(opt.local().exp_avg().size_bytes() + opt.local().exp_avg_sq().size_bytes(),
                  2 * std::size_t(largest) * sizeof(float));
      }
    }
    const std::size_t shard = std::size_t(largest) * sizeof(float), whole = std::size_t(n) * sizeof(float);
    const std::string what = std::string("cp ") + cp;
    for (const PlanTarget& t : {cpu_without_runtime(), plan_target("h100-80g", "", 1)}) {
      const TrainingPlan p0 = plan_training(o0, t, 64, world), p1 = plan_training(o1, t, 64, world);
      EXPECT_EQ(p1.world, world) << what;
      EXPECT_EQ(p1.shards, world) << what;
      EXPECT_EQ(p0.shards, 1) << what;
      EXPECT_EQ(p1.moments, 2 * shard) << what;
      EXPECT_EQ(p0.moments, 2 * whole) << what;
      EXPECT_EQ(p1.deltas, p0.deltas + shard) << what;
      EXPECT_EQ(p1.weights, p0.weights) << what;
      EXPECT_EQ(p1.master, t.gpu ? shard : 0) << what;
      EXPECT_EQ(p1.arena.total(), p0.arena.total()) << what;
      const std::size_t saved = (p0.moments - p1.moments) + (p0.master - p1.master) - shard;
      EXPECT_EQ(p1.total(), p0.total() - saved) << what;
      // The root's host staging while a checkpoint moves (checkpoint_cadence.cpp): on the CPU both
      // moments whole under ZeRO-1 only; on a GPU always, with the fp32 weights as well.
      EXPECT_EQ(p1.root_staging, (t.gpu ? 3 : 2) * whole) << what;
      EXPECT_EQ(p0.root_staging, t.gpu ? 3 * whole : 0u) << what;
    }
    // The CPU plan is what train() checks on every rank.
    EXPECT_EQ(plan_training(o1, cpu_without_runtime(), 64, world).total(),
              run_memory_need(o1, batch_layout(o1, world)).total()) << what;
    // One group and dp 1 (the default world, parallel.cp): ZeRO-1 over cp ranks, or nothing on one rank.
    const TrainingPlan alone = plan_training(o1, cpu_without_runtime(), 64);
    EXPECT_EQ(alone.world, o1.parallel.cp) << what;
    EXPECT_EQ(alone.shards, o1.parallel.cp) << what;
  }
  // A world that does not split the options is refused with batch_layout's message.
  EXPECT_THROW(plan_training(load("small.ini", {"--parallel.cp=2"}), cpu_without_runtime(), 64, 3), OptionsError);
}

TEST(Plan, GenerationIsTheSessionsCaches) {
  const RunOptions o = load("small.ini");
  const GenerationPlan g = plan_generation(o.model, cpu_without_runtime(), 1000, 3);
  EXPECT_EQ(g.kv_blocks, 3 * ((1000 + 15) / 16 + 1));
  EXPECT_EQ(g.kv_cache + g.mamba_state, InferenceSession<float>::cache_bytes(o.model, 3, 16, g.kv_blocks));
  EXPECT_EQ(g.mamba_state, InferenceSession<float>::cache_bytes(o.model, 3, 16, 0));
  EXPECT_GT(g.kv_cache, 0u);
}

TEST(Plan, BadFlagsAreNamed) {
  try {
    plan_target("a100", "", 1);
    ADD_FAILURE() << "accepted --device a100";
  } catch (const OptionsError& e) {
    EXPECT_NE(std::string(e.what()).find("--device a100 is not one of cpu, h100-80g, h200"), std::string::npos);
  }
  try {
    plan_target("cpu", "80 gigs", 1);
    ADD_FAILURE() << "accepted --memory '80 gigs'";
  } catch (const OptionsError& e) {
    EXPECT_NE(std::string(e.what()).find("--memory 80 gigs is not a size such as 512MiB"), std::string::npos);
  }
}

}  // namespace
}  // namespace nexus
