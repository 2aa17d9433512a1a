// Data parallelism: N ranks splitting a global batch train the same model as one rank taking the
// whole batch, and every rank holds identical weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "e2e/run_options.h"
#include "mpi/world.h"
#include "support/check.h"
#include "trainer/train.h"

namespace nexus {
namespace {

TEST(DataParallel, RanksSplittingTheGlobalBatchMatchOneRank) {
  const Communicator& world = test::world();
  const idx global = 8, steps = 3;
  const std::string dir = test::temp_run_dir("dp_rank" + std::to_string(world.rank()));
  const std::vector<std::string> common{"--train.steps=" + std::to_string(steps),
                                        "--train.global_batch=" + std::to_string(global), "--train.eval_every=0",
                                        "--train.warmup_steps=1"};
  auto with = [&](std::string micro) {
    auto args = common;
    args.push_back("--train.micro_batch=" + micro);
    return test::tiny_run(dir, args);
  };
  const TrainResult distributed = train(with(std::to_string(global / world.size())), world);
  // The single-rank reference: each process runs it alone on MPI_COMM_SELF.
  const TrainResult single = train(with(std::to_string(global)), Communicator::self());

  ASSERT_EQ(distributed.losses.size(), std::size_t(steps));
  // Same data, same weights: losses agree up to fp32 summation order (sums over 2-4 partial
  // batches instead of one), ~1e-7 relative.
  for (idx s = 0; s < steps; ++s)
    EXPECT_NEAR(distributed.losses[std::size_t(s)], single.losses[std::size_t(s)], 1e-5 * single.losses[std::size_t(s)])
        << "step " << s;
  // Weights: a gradient entry that differs by fp32 rounding moves AdamW's normalised update
  // m / sqrt(v) by the same relative amount, ~1e-6, of an update of at most lr = 3e-3 per step;
  // 1e-5 absolute over 3 steps is far above that and far below one update (a wrong batch split
  // or a missing all-reduce moves weights by ~lr).
  double worst = 0;
  for (std::size_t i = 0; i < single.params.size(); ++i)
    worst = std::max(worst, double(std::abs(distributed.params[i] - single.params[i])));
  std::printf("max |weight difference| = %.3g\n", worst);
  EXPECT_LT(worst, 1e-5);

  // Every rank holds bit-identical weights: compare with rank 0's.
  std::vector<float> root = distributed.params;
  world.broadcast(root.data(), root.size() * sizeof(float));
  EXPECT_EQ(root, distributed.params) << "rank " << world.rank() << " diverged from rank 0";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nexus
