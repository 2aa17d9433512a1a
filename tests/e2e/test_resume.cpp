// Exact resume: a run interrupted and resumed from its checkpoint is the same run, bit for bit.
#include <gtest/gtest.h>

#include "e2e/run_options.h"
#include "trainer/checkpoint.h"
#include "trainer/train.h"

namespace nexus {
namespace {

std::vector<std::string> resume_args(std::vector<std::string> extra = {}) {
  std::vector<std::string> a{"--train.steps=8", "--train.global_batch=8", "--train.micro_batch=4",
                             "--schedule.warmup_steps=2", "--train.eval_every=4", "--checkpoint.every=4",
                             "--checkpoint.keep=0"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

TEST(Resume, InterruptedAndResumedRunIsBitIdenticalToAStraightRun) {
  const std::string straight_dir = test::temp_run_dir("straight"), resumed_dir = test::temp_run_dir("resumed");
  const test::TrainedRun straight = test::train_keeping_weights(test::tiny_run(straight_dir, resume_args()), Communicator::self());
  const test::TrainedRun first = test::train_keeping_weights(test::tiny_run(resumed_dir, resume_args({"--train.exit_after=4"})), Communicator::self());
  ASSERT_EQ(first.steps_done, 4);
  ASSERT_FALSE(first.last_checkpoint.empty());
  const test::TrainedRun second = test::train_keeping_weights(test::tiny_run(resumed_dir, resume_args()), Communicator::self(), "latest");
  EXPECT_EQ(second.first_step, 4);
  std::vector<double> joined = first.losses;
  joined.insert(joined.end(), second.losses.begin(), second.losses.end());
  EXPECT_EQ(joined, straight.losses);     // bit-identical, not merely close
  EXPECT_EQ(second.params, straight.params);
  EXPECT_EQ(second.eval_loss, straight.eval_loss);
  std::filesystem::remove_all(straight_dir);
  std::filesystem::remove_all(resumed_dir);
}

TEST(Resume, ResumePicksTheNewestValidCheckpointWhenTheLatestIsDamaged) {
  const std::string dir = test::temp_run_dir("damaged");
  const test::TrainedRun first = test::train_keeping_weights(test::tiny_run(dir, resume_args({"--train.exit_after=8"})), Communicator::self());
  ASSERT_EQ(first.steps_done, 8);
  // Damage the newest checkpoint (step 8): resume must fall back to step 4 and say so.
  const std::string newest = first.last_checkpoint;
  std::filesystem::resize_file(newest, std::filesystem::file_size(newest) / 2);
  const test::TrainedRun again = test::train_keeping_weights(test::tiny_run(dir, resume_args()), Communicator::self(), "latest");
  EXPECT_EQ(again.first_step, 4);
  EXPECT_EQ(again.steps_done, 8);
  std::filesystem::remove_all(dir);
}

TEST(Resume, ADamagedExplicitCheckpointIsRefused) {
  const std::string dir = test::temp_run_dir("refused");
  const test::TrainedRun first = test::train_keeping_weights(test::tiny_run(dir, resume_args({"--train.exit_after=4"})), Communicator::self());
  std::filesystem::resize_file(first.last_checkpoint, 4096);
  EXPECT_THROW(train(test::tiny_run(dir, resume_args()), Communicator::self(), first.last_checkpoint), CheckpointError);
  std::filesystem::remove_all(dir);
}

TEST(Resume, AnotherArchitectureIsRefusedNamingTheField) {
  const std::string dir = test::temp_run_dir("arch");
  const test::TrainedRun first = test::train_keeping_weights(test::tiny_run(dir, resume_args({"--train.exit_after=4"})), Communicator::self());
  try {
    train(test::tiny_run(dir, resume_args({"--model.d_model=96"})), Communicator::self(), first.last_checkpoint);
    FAIL() << "expected a CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("model.d_model"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nexus
