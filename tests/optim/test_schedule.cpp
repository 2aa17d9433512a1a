// Learning-rate schedules at their key steps against the closed forms.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "optim/schedule.h"

namespace nexus {
namespace {

constexpr double kLr = 1e-3, kMin = 1e-4;

ScheduleConfig make(LrSchedule kind, idx warmup, idx total, double fraction = 0.2) {
  return ScheduleConfig{kind, kLr, kMin, warmup, total, fraction};
}

TEST(Schedule, CosineKeySteps) {
  const ScheduleConfig c = make(LrSchedule::Cosine, 10, 110);
  EXPECT_DOUBLE_EQ(learning_rate(c, 0), kLr / 10);    // first warmup step
  EXPECT_DOUBLE_EQ(learning_rate(c, 4), kLr * 0.5);   // halfway through warmup
  EXPECT_DOUBLE_EQ(learning_rate(c, 9), kLr);         // end of warmup
  EXPECT_DOUBLE_EQ(learning_rate(c, 10), kLr);        // decay starts at the peak
  EXPECT_DOUBLE_EQ(learning_rate(c, 60), (kLr + kMin) / 2);  // midpoint of the decay
  const double quarter = kMin + (kLr - kMin) * 0.5 * (1 + std::cos(std::numbers::pi * 0.25));
  EXPECT_DOUBLE_EQ(learning_rate(c, 35), quarter);
  EXPECT_DOUBLE_EQ(learning_rate(c, 110), kMin);  // end
  EXPECT_DOUBLE_EQ(learning_rate(c, 500), kMin);  // past the end
  for (idx s = 10; s < 110; ++s) EXPECT_LE(learning_rate(c, s + 1), learning_rate(c, s)) << s;
}

TEST(Schedule, CosineWithoutWarmupStartsAtPeak) {
  const ScheduleConfig c = make(LrSchedule::Cosine, 0, 100);
  EXPECT_DOUBLE_EQ(learning_rate(c, 0), kLr);
  EXPECT_DOUBLE_EQ(learning_rate(c, 50), (kLr + kMin) / 2);
  EXPECT_DOUBLE_EQ(learning_rate(c, 100), kMin);
}

TEST(Schedule, ConstantKeySteps) {
  const ScheduleConfig c = make(LrSchedule::Constant, 4, 100);
  EXPECT_DOUBLE_EQ(learning_rate(c, 0), kLr / 4);
  EXPECT_DOUBLE_EQ(learning_rate(c, 3), kLr);
  EXPECT_DOUBLE_EQ(learning_rate(c, 50), kLr);
  EXPECT_DOUBLE_EQ(learning_rate(c, 100), kLr);
}

TEST(Schedule, WsdKeySteps) {
  // 100 steps, last 20% decays: stable until step 80, min_lr at step 100.
  const ScheduleConfig c = make(LrSchedule::Wsd, 10, 100, 0.2);
  EXPECT_EQ(wsd_decay_start(c), 80);
  EXPECT_DOUBLE_EQ(learning_rate(c, 0), kLr / 10);
  EXPECT_DOUBLE_EQ(learning_rate(c, 9), kLr);
  EXPECT_DOUBLE_EQ(learning_rate(c, 50), kLr);   // stable phase
  EXPECT_DOUBLE_EQ(learning_rate(c, 79), kLr);
  EXPECT_DOUBLE_EQ(learning_rate(c, 80), kLr);   // decay starts at the peak
  EXPECT_DOUBLE_EQ(learning_rate(c, 90), (kLr + kMin) / 2);
  EXPECT_DOUBLE_EQ(learning_rate(c, 95), kLr + (kMin - kLr) * 0.75);
  EXPECT_DOUBLE_EQ(learning_rate(c, 100), kMin);
  EXPECT_DOUBLE_EQ(learning_rate(c, 1000), kMin);
}

TEST(Schedule, NamesRoundTrip) {
  for (LrSchedule k : {LrSchedule::Cosine, LrSchedule::Constant, LrSchedule::Wsd})
    EXPECT_EQ(parse_lr_schedule(to_string(k)), k);
  EXPECT_FALSE(parse_lr_schedule("linear").has_value());
}

}  // namespace
}  // namespace nexus
