// The AdamW op against torch.optim.AdamW's update written out in double (the same formula and
// order: decay, moments, bias-corrected step), the fp32 loop the optimizer used before it became an
// op (equal up to where the compiler fuses multiply-adds: a few ulps), and its bf16 instantiation:
// fp32 master weights, moments and gradients, with the bf16 compute copy equal to the rounded
// master.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using test::random_vector;

struct Hyper {
  double lr = 3e-3, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
};

AdamWCoefficients coefficients(const Hyper& h, int t, bool decay) {
  AdamWCoefficients k{};
  k.decay = decay ? float(1.0 - h.lr * h.wd) : 1.0f;
  k.step_size = float(h.lr / (1.0 - std::pow(h.b1, t)));
  k.bias2_sqrt = float(std::sqrt(1.0 - std::pow(h.b2, t)));
  k.beta1 = float(h.b1);
  k.beta2 = float(h.b2);
  k.one_minus_beta1 = float(1.0 - h.b1);
  k.one_minus_beta2 = float(1.0 - h.b2);
  k.eps = float(h.eps);
  return k;
}

TEST(AdamWUpdate, FollowsTorchAdamWInDoubleOverSeveralSteps) {
  const Hyper h;
  const idx n = 40000;
  std::vector<float> p = random_vector<float>(std::size_t(n), 1), m(std::size_t(n), 0.0f), v(std::size_t(n), 0.0f);
  std::vector<double> pr(p.begin(), p.end()), mr(std::size_t(n), 0.0), vr(std::size_t(n), 0.0);
  for (int t = 1; t <= 5; ++t) {
    const std::vector<float> g = random_vector<float>(std::size_t(n), 10 + std::uint64_t(t));
    adamw_update(Exec{}, p.data(), static_cast<float*>(nullptr), g.data(), m.data(), v.data(), n,
                 coefficients(h, t, true));
    for (std::size_t i = 0; i < std::size_t(n); ++i) {
      pr[i] *= 1.0 - h.lr * h.wd;
      mr[i] = h.b1 * mr[i] + (1 - h.b1) * g[i];
      vr[i] = h.b2 * vr[i] + (1 - h.b2) * double(g[i]) * g[i];
      const double denom = std::sqrt(vr[i]) / std::sqrt(1 - std::pow(h.b2, t)) + h.eps;
      pr[i] -= h.lr / (1 - std::pow(h.b1, t)) * mr[i] / denom;
    }
  }
  // fp32 rounding of O(1) weights over 5 steps: a few ulps of 1 (1.2e-7 each).
  EXPECT_LT(test::max_rel_diff(p, pr), 2e-6);
  EXPECT_LT(test::max_rel_diff(m, mr), 2e-6);
}

TEST(AdamWUpdate, MatchesThePlainFp32LoopToAFewUlps) {
  const Hyper h;
  const idx n = 70001;
  const std::vector<float> g = random_vector<float>(std::size_t(n), 2);
  std::vector<float> p = random_vector<float>(std::size_t(n), 3),
                     m = random_vector<float>(std::size_t(n), 4, -0.1, 0.1),
                     v = random_vector<float>(std::size_t(n), 5, 0.0, 0.01);
  std::vector<float> p0 = p, m0 = m, v0 = v;
  for (bool decay : {true, false}) {
    const AdamWCoefficients k = coefficients(h, 7, decay);
    adamw_update(Exec{}, p.data(), static_cast<float*>(nullptr), g.data(), m.data(), v.data(), n, k);
    for (std::size_t i = 0; i < std::size_t(n); ++i) {  // optim/adamw.cpp's loop before the op existed
      m0[i] = k.beta1 * m0[i] + k.one_minus_beta1 * g[i];
      v0[i] = k.beta2 * v0[i] + k.one_minus_beta2 * g[i] * g[i];
      p0[i] = p0[i] * k.decay - k.step_size * (m0[i] / (std::sqrt(v0[i]) / k.bias2_sqrt + k.eps));
    }
    // A fused multiply-add here or there moves a result by about one ulp of its operands per
    // operation: a few ulps (2^-23) of the buffer's scale. A wrong term would move it by ~lr.
    EXPECT_LE(test::max_rel_diff(p, p0), 4 * 0x1p-23);
    EXPECT_LE(test::max_rel_diff(m, m0), 4 * 0x1p-23);
    EXPECT_LE(test::max_rel_diff(v, v0), 4 * 0x1p-23);
    p0 = p, m0 = m, v0 = v;  // the next pass starts from the same state
  }
}

// The CPU kernel itself (the route refuses bf16 data on the CPU; this kernel is the reference the
// CUDA AdamW's bf16 copy is checked against in tests/cuda/test_cuda_buffer_ops.cpp).
TEST(AdamWUpdate, Bf16KeepsFp32MasterWeightsAndWritesTheRoundedCopy) {
  const Hyper h;
  const idx n = 5000;
  const std::vector<float> g = random_vector<float>(std::size_t(n), 6);
  std::vector<float> master = random_vector<float>(std::size_t(n), 7), m(std::size_t(n), 0.0f), v(std::size_t(n), 0.0f);
  std::vector<float> master32 = master, m32 = m, v32 = v;
  std::vector<bf16> compute(static_cast<std::size_t>(n));
  const AdamWCoefficients k = coefficients(h, 1, true);
  cpu::adamw_update(Exec{}, master.data(), compute.data(), g.data(), m.data(), v.data(), n, k);
  adamw_update(Exec{}, master32.data(), static_cast<float*>(nullptr), g.data(), m32.data(), v32.data(), n, k);
  EXPECT_EQ(master, master32);  // the master update is the fp32 one
  EXPECT_EQ(m, m32);
  for (std::size_t i = 0; i < std::size_t(n); ++i) ASSERT_EQ(compute[i].bits, bf16(master[i]).bits) << i;
}

}  // namespace
}  // namespace nexus
