// Whole training runs: the tiny hybrid learns associative recall, and gradient accumulation is
// the same optimisation as a larger micro-batch.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "e2e/logged_steps.h"
#include "e2e/run_options.h"
#include "trainer/train.h"

namespace nexus {
namespace {

TEST(Training, TinyHybridLearnsAssociativeRecall) {
  const std::string dir = test::temp_run_dir("recall");
  // configs/tiny.ini as shipped: the README's main job, on one rank with the same global batch.
  const test::TrainedRun r = test::train_keeping_weights(test::tiny_run(dir, {}), Communicator::self());
  ASSERT_FALSE(r.losses.empty());
  EXPECT_LT(r.losses.back(), 0.5 * r.losses.front());
  EXPECT_GE(r.eval_accuracy, 0.90) << "eval accuracy after " << r.steps_done << " steps";
  EXPECT_TRUE(std::filesystem::exists(r.metrics_path));
  std::filesystem::remove_all(dir);
}

TEST(Training, GradAccumulationMatchesALargerMicroBatch) {
  const std::string dir = test::temp_run_dir("accum");
  const std::vector<std::string> common{"--train.steps=3", "--train.global_batch=8", "--train.eval_every=0",
                                        "--schedule.warmup_steps=10", "--train.log_every=1"};
  auto with = [&](const std::string& micro) {
    auto args = common;
    args.push_back("--train.micro_batch=" + micro);
    return test::tiny_run(dir + "/micro" + micro, args);
  };
  const test::TrainedRun accumulated = test::train_keeping_weights(with("2"), Communicator::self());  // 4 micro-batches of 2
  const test::TrainedRun whole = test::train_keeping_weights(with("8"), Communicator::self());        // 1 micro-batch of 8
  ASSERT_EQ(whole.losses.size(), 3u);
  ASSERT_EQ(accumulated.losses.size(), 3u);
  // The accumulated gradient's scale, which clipping and AdamW hide from the weights: a sum over
  // micro-batches not divided by the global target count (or divided twice) shows here.
  // Summation order only, as for the losses: 1e-4 relative is far below any wrong factor.
  test::expect_same_grad_norms(test::logged_grad_norms(accumulated.metrics_path),
                               test::logged_grad_norms(whole.metrics_path), 0, 1e-4, "grad_accum 4 vs 1");
  for (std::size_t s = 0; s < whole.losses.size(); ++s)
    EXPECT_NEAR(accumulated.losses[s], whole.losses[s], 1e-5 * whole.losses[s]) << "step " << s;
  // Same tolerance argument as the data-parallel test (tests/mpi/test_train_dp.cpp): fp32
  // summation order only, which a near-cancelling gradient entry passes through AdamW's
  // m / sqrt(v) (measured 1.96e-5 on one weight on an AMD EPYC).
  double worst = 0;
  for (std::size_t i = 0; i < whole.params.size(); ++i)
    worst = std::max(worst, double(std::abs(accumulated.params[i] - whole.params[i])));
  std::printf("max |weight difference| = %.3g\n", worst);
  EXPECT_LT(worst, 1e-4);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nexus
