// SwiGLU on [gate | up] rows: forward against a naive double reference, the float forward against
// it, and the backward (both halves of dgate_up) against finite differences of L = <R, out>.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "kernels/ops.h"
#include "tests/support/check.h"

namespace nexus {
namespace {

using test::centred_loss;
using test::max_rel_diff;
using test::random_vector;

constexpr idx N = 19, F = 37;  // F not a multiple of 8 or 16: vector tails in both halves

// out[n, f] = gate / (1 + exp(-gate)) * up
std::vector<double> reference_forward(const std::vector<double>& gate_up) {
  std::vector<double> out(N * F);
  for (idx n = 0; n < N; ++n)
    for (idx f = 0; f < F; ++f) {
      const double g = gate_up[n * 2 * F + f], u = gate_up[n * 2 * F + F + f];
      out[n * F + f] = g / (1.0 + std::exp(-g)) * u;
    }
  return out;
}

TEST(SwiGlu, ForwardMatchesReference) {
  const auto gate_up = random_vector(N * 2 * F, 1, -4.0, 4.0);
  std::vector<double> out(N * F);
  swiglu_forward(Exec{}, out.data(), gate_up.data(), N, F);
  EXPECT_LT(max_rel_diff(out, reference_forward(gate_up)), 1e-14);
}

// Float: one exp (a few ulp), a divide and two products per element, so within ~10 ulp (6e-7) of
// exact; 1e-5 relative to the largest output leaves an order of margin.
TEST(SwiGlu, FloatForwardMatchesDouble) {
  const auto gate_up = random_vector<float>(N * 2 * F, 1, -4.0, 4.0);
  std::vector<float> out(N * F);
  swiglu_forward(Exec{}, out.data(), gate_up.data(), N, F);
  EXPECT_LT(max_rel_diff(out, reference_forward(test::to_double(gate_up))), 1e-5);
}

TEST(SwiGlu, BackwardMatchesFiniteDifferences) {
  auto gate_up = random_vector(N * 2 * F, 1, -4.0, 4.0);
  const auto R = random_vector(N * F, 2);
  std::vector<double> dgate_up(N * 2 * F, 1e3);  // overwritten: stale values must not survive
  swiglu_backward(Exec{}, dgate_up.data(), R.data(), gate_up.data(), N, F);
  const auto loss = centred_loss(R, [&] { return reference_forward(gate_up); });
  const auto r = test::check_gradient(gate_up, dgate_up, loss, N * 2 * F);
  EXPECT_LT(r.max_rel_error, 1e-6) << test::describe(r);
}

}  // namespace
}  // namespace nexus
