// Softmax cross-entropy: lse and the summed loss against a naive log-softmax in double (logits left
// intact, ignored targets excluded, huge logits still finite), the float forward against it, and the
// in-place backward against finite differences of L = scale * sum loss, with exact zero rows for
// ignored targets.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/ops.h"
#include "tests/support/check.h"

namespace nexus {
namespace {

using test::max_rel_diff;
using test::random_vector;

constexpr idx N = 23, V = 101;  // V not a multiple of 8 or 16: vector tails in every row
constexpr double kScale = 0.37;

std::vector<std::int32_t> make_targets() {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> id(0, int(V) - 1);
  std::vector<std::int32_t> t(N);
  for (auto& v : t) v = id(rng);
  t[0] = 0;
  t[1] = std::int32_t(V - 1);  // both ends of the vocabulary
  t[4] = t[9] = t[N - 1] = -1;   // ignored
  return t;
}

// R = double, or long double for the finite-difference loss.
template <typename R = double>
struct Ref {
  std::vector<R> lse;
  R loss = 0;  // sum over non-ignored rows of lse - logit[target]
};

template <typename R = double>
Ref<R> reference(const std::vector<double>& logits, const std::vector<std::int32_t>& targets) {
  Ref<R> r{std::vector<R>(N)};
  for (idx n = 0; n < N; ++n) {
    R mx = logits[n * V];
    for (idx v = 0; v < V; ++v) mx = std::max(mx, R(logits[n * V + v]));
    R sum = 0;
    for (idx v = 0; v < V; ++v) sum += std::exp(R(logits[n * V + v]) - mx);
    r.lse[n] = mx + std::log(sum);
    if (targets[n] >= 0) r.loss += r.lse[n] - R(logits[n * V + targets[n]]);
  }
  return r;
}

TEST(CrossEntropy, ForwardMatchesReference) {
  const auto targets = make_targets();
  const auto logits = random_vector(N * V, 1, -3.0, 3.0);
  const auto kept = logits;
  std::vector<double> lse(N, -7.0);
  const double loss = cross_entropy_forward(Exec{}, lse.data(), logits.data(), targets.data(), N, V);
  const Ref<> ref = reference(logits, targets);
  EXPECT_LT(max_rel_diff(lse, ref.lse), 1e-14);  // every row, ignored ones included
  EXPECT_NEAR(loss, ref.loss, 1e-13 * std::abs(ref.loss));
  EXPECT_EQ(logits, kept);
}

// Float: each exponential is within a few ulp, summed in double; lse = max + log(sum) is then one
// rounding to float: ~1e-7 relative. The loss adds N such terms in double. 1e-5 leaves margin.
TEST(CrossEntropy, FloatForwardMatchesDouble) {
  const auto targets = make_targets();
  const auto logits = random_vector<float>(N * V, 1, -3.0, 3.0);
  std::vector<float> lse(N);
  const double loss = cross_entropy_forward(Exec{}, lse.data(), logits.data(), targets.data(), N, V);
  const Ref<> ref = reference(test::to_double(logits), targets);
  EXPECT_LT(max_rel_diff(lse, ref.lse), 1e-5);
  EXPECT_NEAR(loss, ref.loss, 1e-5 * std::abs(ref.loss));
}

// exp(1000) overflows even a double, so a naive softmax gives inf / inf; the max-subtracted one is
// exact. In float the logits themselves are only 6e-5 apart near 1000 (the reference sees the same
// rounded values), and each row's loss is computed from differences of them, so 1e-5 still holds.
TEST(CrossEntropy, HugeLogitsStayFinite) {
  const auto targets = make_targets();
  auto logits = random_vector<float>(N * V, 2, -3.0, 3.0);
  for (idx i = 0; i < N * V; ++i) logits[i] += (i / V) % 2 ? 1000.0f : -1000.0f;
  std::vector<float> lse(N);
  const double loss = cross_entropy_forward(Exec{}, lse.data(), logits.data(), targets.data(), N, V);
  const Ref<> ref = reference(test::to_double(logits), targets);
  for (idx n = 0; n < N; ++n) EXPECT_TRUE(std::isfinite(lse[n])) << "row " << n;
  EXPECT_LT(max_rel_diff(lse, ref.lse), 1e-5);
  EXPECT_NEAR(loss, ref.loss, 1e-5 * std::abs(ref.loss));

  cross_entropy_backward(Exec{}, logits.data(), lse.data(), targets.data(), N, V, kScale);
  for (const float g : logits) EXPECT_TRUE(std::isfinite(g));
}

TEST(CrossEntropy, BackwardMatchesFiniteDifferences) {
  const auto targets = make_targets();
  auto logits = random_vector(N * V, 3, -3.0, 3.0);
  std::vector<double> lse(N);
  cross_entropy_forward(Exec{}, lse.data(), logits.data(), targets.data(), N, V);
  std::vector<double> dlogits = logits;
  cross_entropy_backward(Exec{}, dlogits.data(), lse.data(), targets.data(), N, V, kScale);

  for (idx n = 0; n < N; ++n) {
    if (targets[n] >= 0) continue;
    for (idx v = 0; v < V; ++v) EXPECT_EQ(dlogits[n * V + v], 0.0) << "ignored row " << n;
  }
  // L - L(logits0) in long double: the loss sums N log-sum-exps, and the rounding of a plain double
  // L would be ~1e-16 / 2h = 5e-12 of noise in each difference quotient (see test_conv1d.cpp).
  const long double base = reference<long double>(logits, targets).loss;
  auto loss = [&] { return static_cast<double>(kScale * (reference<long double>(logits, targets).loss - base)); };
  const auto r = test::check_gradient(logits, dlogits, loss, 600);
  EXPECT_LT(r.max_rel_error, 1e-6) << test::describe(r);
}

// The float backward against the verified double one: softmax entries are exp(logit - lse) with
// lse rounded to float (~3e-7 absolute at |lse| ~ 5), i.e. a few 1e-7 relative; 1e-5 holds.
TEST(CrossEntropy, FloatBackwardMatchesDouble) {
  const auto targets = make_targets();
  const auto logits = random_vector(N * V, 4, -3.0, 3.0);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    std::vector<T> l(logits.begin(), logits.end()), lse(N);
    cross_entropy_forward(Exec{}, lse.data(), l.data(), targets.data(), N, V);
    cross_entropy_backward(Exec{}, l.data(), lse.data(), targets.data(), N, V, kScale);
    return test::to_double(l);
  };
  EXPECT_LT(max_rel_diff(run(0.0f), run(0.0)), 1e-5);
}

}  // namespace
}  // namespace nexus
