// AdamW against the torch.optim.AdamW update written out independently in double.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "optim/adamw.h"
#include "support/check.h"

namespace nexus {
namespace {

// torch.optim.AdamW (single tensor, non-amsgrad), one step at count t, in double.
struct RefAdamW {
  double beta1, beta2, eps, wd;
  std::vector<double> m, v;
  void step(std::vector<double>& p, const std::vector<double>& g, const std::vector<bool>& decay, double lr, int t) {
    for (std::size_t i = 0; i < p.size(); ++i) {
      if (decay[i]) p[i] -= lr * wd * p[i];
      m[i] = beta1 * m[i] + (1 - beta1) * g[i];
      v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
      const double mhat = m[i] / (1 - std::pow(beta1, t));
      const double vhat = v[i] / (1 - std::pow(beta2, t));
      p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
};

TEST(AdamW, ThreeScalarStepsMatchHandComputedValues) {
  // Three scalars; the third is in a no-decay range. lr 0.1, betas (0.9, 0.999), eps 1e-8,
  // weight decay 0.1. Expected values from the formula above evaluated in Python floats:
  // t=1: bias correction makes the update lr * g/|g| (m^ = g, v^ = g^2), e.g.
  //      p0 = 1: 1 * (1 - 0.01) - 0.1 * 0.5 / (0.5 + 1e-8) = 0.890000002.
  // t=2: bias corrections 1 - 0.9^2 = 0.19 and 1 - 0.999^2 = 0.001999; the third delta is 0, so
  //      only its momentum moves it.
  const AdamWHyper hyper{0.9, 0.999, 1e-8, 0.1};
  AdamW opt(3, hyper, {{0, 2, true}, {2, 1, false}});
  std::vector<float> p = {1.0f, -2.0f, 0.5f};
  const std::vector<std::vector<float>> g = {{0.5f, -0.25f, 1.0f}, {-0.25f, 0.5f, 0.0f}, {2.0f, 2.0f, -3.0f}};
  const std::vector<std::vector<double>> expected = {{0.890000002, -1.880000004, 0.400000001},
                                                     {0.854466298688, -1.89781035574, 0.332994176534},
                                                     {0.778856871522, -1.94797206124, 0.377238919614}};
  for (std::size_t s = 0; s < 3; ++s) {
    opt.step(p.data(), g[s].data(), 0.1);
    EXPECT_EQ(opt.steps(), static_cast<std::int64_t>(s + 1));
    for (std::size_t i = 0; i < 3; ++i)
      EXPECT_NEAR(p[i], expected[s][i], 2e-7 * std::abs(expected[s][i]) + 1e-7) << "step " << s + 1 << " param " << i;
  }
  // First moments after three steps: m = 0.01 g1 * 0.9^2... written as the recurrence's closed form.
  const double m0 = 0.9 * 0.9 * 0.1 * 0.5 + 0.9 * 0.1 * -0.25 + 0.1 * 2.0;
  const double v0 = 0.999 * 0.999 * 0.001 * 0.25 + 0.999 * 0.001 * 0.0625 + 0.001 * 4.0;
  EXPECT_NEAR(opt.exp_avg()[0], m0, 1e-7);
  EXPECT_NEAR(opt.exp_avg_sq()[0], v0, 1e-9);
}

TEST(AdamW, NoDecayRangesAreUntouchedByDecay) {
  // With zero deltas the Adam part of the update is exactly 0 / (0 + eps) = 0, so only the
  // decay acts: decayed tensors scale by (1 - lr * wd), the others keep their bits.
  const idx n = 100;
  const std::vector<DecayRange> ranges = {{0, 30, true}, {30, 10, false}, {40, 50, true}, {90, 10, false}};
  AdamW opt(n, {0.9, 0.95, 1e-8, 0.5}, ranges);
  std::vector<float> p = test::random_vector<float>(n, 7);
  const std::vector<float> before = p;
  const std::vector<float> zero(n, 0.0f);
  opt.step(p.data(), zero.data(), 0.2);
  const float factor = static_cast<float>(1.0 - 0.2 * 0.5);
  for (const DecayRange& r : ranges)
    for (idx i = r.offset; i < r.offset + r.numel; ++i) {
      const auto k = static_cast<std::size_t>(i);
      if (r.decay)
        EXPECT_FLOAT_EQ(p[k], before[k] * factor) << i;
      else
        EXPECT_EQ(p[k], before[k]) << i;
    }
}

TEST(AdamW, ManyStepsMatchDoubleReferenceAcrossChunks) {
  // Ranges larger than the internal work chunk (65536) and out of order, to check the tiling.
  const idx n = 150000;
  const std::vector<DecayRange> ranges = {{70000, 80000, true}, {0, 3, false}, {3, 69997, true}};
  const AdamWHyper hyper{0.8, 0.99, 1e-6, 0.05};
  AdamW opt(n, hyper, ranges);
  std::vector<float> p = test::random_vector<float>(n, 1);
  std::vector<double> pr = test::to_double(p);
  std::vector<bool> decay(n, true);
  for (idx i = 0; i < 3; ++i) decay[static_cast<std::size_t>(i)] = false;
  RefAdamW ref{hyper.beta1, hyper.beta2, hyper.eps, hyper.weight_decay, std::vector<double>(n), std::vector<double>(n)};
  for (int t = 1; t <= 4; ++t) {
    const std::vector<float> g = test::random_vector<float>(n, 100 + static_cast<std::uint64_t>(t), -2.0, 2.0);
    const double lr = 0.01 * t;
    opt.step(p.data(), g.data(), lr);
    ref.step(pr, test::to_double(g), decay, lr, t);
  }
  // fp32 state vs fp64: each step adds a few ulp of |p| ~ 1 plus lr times a relative error of
  // ~1e-6 in m / sqrt(v), so 1e-6 of the scale is a tight bound.
  EXPECT_LT(test::max_rel_diff(p, pr), 1e-6);
  EXPECT_LT(test::max_rel_diff(std::vector<float>(opt.exp_avg().begin(), opt.exp_avg().end()), ref.m), 1e-6);
  EXPECT_LT(test::max_rel_diff(std::vector<float>(opt.exp_avg_sq().begin(), opt.exp_avg_sq().end()), ref.v), 1e-6);
}

TEST(AdamW, RestoredStateContinuesBitForBit) {
  const idx n = 1000;
  const std::vector<DecayRange> ranges = {{0, 600, true}, {600, 400, false}};
  AdamW a(n, {}, ranges);
  std::vector<float> p = test::random_vector<float>(n, 3);
  const std::vector<float> g1 = test::random_vector<float>(n, 4), g2 = test::random_vector<float>(n, 5);
  a.step(p.data(), g1.data(), 1e-2);
  // "Checkpoint": copy step count and moments into a fresh optimizer.
  AdamW b(n, {}, ranges);
  b.set_steps(a.steps());
  std::copy(a.exp_avg().begin(), a.exp_avg().end(), b.exp_avg().begin());
  std::copy(a.exp_avg_sq().begin(), a.exp_avg_sq().end(), b.exp_avg_sq().begin());
  std::vector<float> q = p;
  a.step(p.data(), g2.data(), 1e-2);
  b.step(q.data(), g2.data(), 1e-2);
  EXPECT_EQ(p, q);
  EXPECT_EQ(b.steps(), 2);
}

TEST(AdamW, RejectsRangesThatDoNotTileTheBuffer) {
  EXPECT_THROW(AdamW(10, {}, {{0, 4, true}, {5, 5, false}}), std::invalid_argument);  // gap
  EXPECT_THROW(AdamW(10, {}, {{0, 6, true}, {5, 5, false}}), std::invalid_argument);  // overlap
  EXPECT_THROW(AdamW(10, {}, {{0, 9, true}}), std::invalid_argument);                 // short
  EXPECT_NO_THROW(AdamW(10, {}, {{4, 6, true}, {0, 4, false}}));
}

}  // namespace
}  // namespace nexus
