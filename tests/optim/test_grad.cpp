// Global-norm clipping, scaling and the finite check.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/ops.h"
#include "optim/grad.h"
#include "support/check.h"

namespace nexus {
namespace {

TEST(GlobalNorm, MatchesDoubleSumOverManyBlocks) {
  const std::size_t n = 300001;  // several reduction blocks and a ragged tail
  const std::vector<float> x = test::random_vector<float>(n, 11, -3.0, 3.0);
  double ref = 0.0;
  for (float v : x) ref += double(v) * double(v);
  ref = std::sqrt(ref);
  EXPECT_NEAR(global_norm(Exec{}, x.data(), static_cast<idx>(n)), ref, 1e-12 * ref);
  EXPECT_EQ(global_norm(Exec{}, x.data(), 0), 0.0);
}

TEST(GlobalNorm, IndependentOfThreadCount) {
  // Replicas may run with different thread counts; their clip factors must agree bit for bit.
  const std::size_t n = 200003;
  const std::vector<float> x = test::random_vector<float>(n, 12);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = global_norm(Exec{}, x.data(), static_cast<idx>(n));
  omp_set_num_threads(3);
  const double three = global_norm(Exec{}, x.data(), static_cast<idx>(n));
  omp_set_num_threads(saved);
  EXPECT_EQ(one, three);
}

TEST(ClipGradNorm, ScalesOnlyAboveThreshold) {
  std::vector<float> g = {3.0f, 0.0f, -4.0f};  // norm 5
  EXPECT_DOUBLE_EQ(clip_grad_norm(Exec{}, g.data(), 3, 10.0), 5.0);
  EXPECT_EQ(g, (std::vector<float>{3.0f, 0.0f, -4.0f}));
  EXPECT_DOUBLE_EQ(clip_grad_norm(Exec{}, g.data(), 3, 5.0), 5.0);  // at the threshold: untouched
  EXPECT_EQ(g, (std::vector<float>{3.0f, 0.0f, -4.0f}));
  EXPECT_DOUBLE_EQ(clip_grad_norm(Exec{}, g.data(), 3, 0.0), 5.0);  // 0 disables clipping
  EXPECT_EQ(g, (std::vector<float>{3.0f, 0.0f, -4.0f}));

  EXPECT_DOUBLE_EQ(clip_grad_norm(Exec{}, g.data(), 3, 1.0), 5.0);  // returns the pre-clip norm
  const double factor = 1.0 / (5.0 + 1e-6);
  EXPECT_FLOAT_EQ(g[0], static_cast<float>(3.0 * factor));
  EXPECT_EQ(g[1], 0.0f);
  EXPECT_FLOAT_EQ(g[2], static_cast<float>(-4.0 * factor));
  EXPECT_NEAR(global_norm(Exec{}, g.data(), 3), 1.0, 1e-6);
}

TEST(ClipGradNorm, NonFiniteNormLeavesBufferAlone) {
  std::vector<float> g = {1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f};
  EXPECT_TRUE(std::isnan(clip_grad_norm(Exec{}, g.data(), 3, 1.0)));
  EXPECT_EQ(g[0], 1.0f);
  EXPECT_EQ(g[2], 2.0f);
  g[1] = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(std::isinf(clip_grad_norm(Exec{}, g.data(), 3, 1.0)));
  EXPECT_EQ(g[0], 1.0f);
}

TEST(ScaleDeltas, MultipliesEveryElement) {
  std::vector<float> x = test::random_vector<float>(1001, 13);
  const std::vector<float> before = x;
  scale_inplace(Exec{}, x.data(), idx(1001), 0.25f);
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i], before[i] * 0.25f);
}

TEST(AllFinite, DetectsNaNAndInfAnywhere) {
  const std::size_t n = 100003;
  std::vector<float> x = test::random_vector<float>(n, 14);
  x[5] = std::numeric_limits<float>::max();
  x[6] = -std::numeric_limits<float>::max();
  x[7] = std::numeric_limits<float>::denorm_min();
  EXPECT_TRUE(all_finite(Exec{}, x.data(), static_cast<idx>(n)));
  EXPECT_TRUE(all_finite(Exec{}, x.data(), 0));
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    for (std::size_t at : {std::size_t{0}, n / 2, n - 1}) {
      std::vector<float> y = x;
      y[at] = bad;
      EXPECT_FALSE(all_finite(Exec{}, y.data(), static_cast<idx>(n))) << bad << " at " << at;
    }
  }
}

}  // namespace
}  // namespace nexus
