// Residual RMSNorm: forward against a naive double reference (with and without the branch, and in
// place), the float forward against it, and the backward against finite differences of
// L = <Ry, y> + <Rh, h>, which exercises both accumulating outputs: dh arrives holding Rh (the
// skip-connection gradient) and dweight holds an arbitrary prior.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "kernels/ops.h"
#include "tests/support/check.h"

namespace nexus {
namespace {

using namespace test;  // the gradient-check helpers (tests/support/check.h)

constexpr double kEps = 1e-5;

// R = double, or long double for the finite-difference loss.
template <typename R = double>
struct Ref {
  std::vector<R> h, y, rstd;
};

// h = x + branch; y = h / sqrt(mean(h^2) + eps) * w.
template <typename R = double>
Ref<R> reference_forward(const std::vector<double>& x, const std::vector<double>* branch,
                         const std::vector<double>& w, idx N, idx D) {
  Ref<R> r{std::vector<R>(N * D), std::vector<R>(N * D), std::vector<R>(N)};
  for (idx n = 0; n < N; ++n) {
    R ss = 0;
    for (idx d = 0; d < D; ++d) {
      const R h = R(x[n * D + d]) + (branch ? R((*branch)[n * D + d]) : R(0));
      r.h[n * D + d] = h;
      ss += h * h;
    }
    r.rstd[n] = 1 / std::sqrt(ss / R(D) + R(kEps));
    for (idx d = 0; d < D; ++d) r.y[n * D + d] = r.h[n * D + d] * r.rstd[n] * w[d];
  }
  return r;
}

TEST(RmsNorm, ForwardMatchesReference) {
  const idx N = 13, D = 53;
  const auto x = random_vector(N * D, 1), branch = random_vector(N * D, 2);
  const auto w = random_vector(D, 3, 0.5, 1.5);
  for (const bool with_branch : {true, false}) {
    const Ref<> ref = reference_forward(x, with_branch ? &branch : nullptr, w, N, D);
    std::vector<double> h(N * D), y(N * D), rstd(N);
    residual_rmsnorm_forward(Exec{}, h.data(), y.data(), rstd.data(), x.data(), with_branch ? branch.data() : nullptr,
                             w.data(), N, D, kEps);
    EXPECT_LT(max_rel_diff(h, ref.h), 1e-14) << "branch " << with_branch;
    EXPECT_LT(max_rel_diff(y, ref.y), 1e-13) << "branch " << with_branch;
    EXPECT_LT(max_rel_diff(rstd, ref.rstd), 1e-13) << "branch " << with_branch;

    // In place: h aliases x, the residual stream updated where it lives.
    std::vector<double> stream = x;
    residual_rmsnorm_forward(Exec{}, stream.data(), y.data(), rstd.data(), stream.data(),
                             with_branch ? branch.data() : nullptr, w.data(), N, D, kEps);
    EXPECT_LT(max_rel_diff(stream, ref.h), 1e-14) << "in place, branch " << with_branch;
    EXPECT_LT(max_rel_diff(y, ref.y), 1e-13) << "in place, branch " << with_branch;
  }
}

// Float: h is one rounded add; rstd comes from a double sum of squares rounded once; y is two float
// products. Each is within a few ulp (6e-8) of the exact value, so 1e-5 relative to the largest
// entry leaves two orders of margin while any formula error shows as O(1).
TEST(RmsNorm, FloatForwardMatchesDouble) {
  const idx N = 13, D = 53;
  const auto xf = random_vector<float>(N * D, 1), bf = random_vector<float>(N * D, 2);
  const auto wf = random_vector<float>(D, 3, 0.5, 1.5);
  const auto bd = test::to_double(bf);
  const Ref<> ref = reference_forward(test::to_double(xf), &bd, test::to_double(wf), N, D);
  std::vector<float> h(N * D), y(N * D), rstd(N);
  residual_rmsnorm_forward(Exec{}, h.data(), y.data(), rstd.data(), xf.data(), bf.data(), wf.data(), N, D, kEps);
  EXPECT_LT(max_rel_diff(h, ref.h), 1e-5);
  EXPECT_LT(max_rel_diff(y, ref.y), 1e-5);
  EXPECT_LT(max_rel_diff(rstd, ref.rstd), 1e-5);
}

void check_backward(idx N, idx D) {
  auto x = random_vector(N * D, 11), branch = random_vector(N * D, 12);
  auto w = random_vector(D, 13, 0.5, 1.5);
  const auto Ry = random_vector(N * D, 14), Rh = random_vector(N * D, 15);
  const auto w_prior = random_vector(D, 16, 2.0, 3.0);
  std::vector<double> R = Ry;  // [Ry ; Rh] against [y ; h]
  R.insert(R.end(), Rh.begin(), Rh.end());
  const auto loss = centred_loss(R, [&] {
    auto r = reference_forward<long double>(x, &branch, w, N, D);
    r.y.insert(r.y.end(), r.h.begin(), r.h.end());
    return r.y;
  });

  std::vector<double> h(N * D), y(N * D), rstd(N);
  residual_rmsnorm_forward(Exec{}, h.data(), y.data(), rstd.data(), x.data(), branch.data(), w.data(), N, D, kEps);
  std::vector<double> dh = Rh, dw = w_prior;  // dh arrives with the skip-connection gradient
  rmsnorm_backward(Exec{}, dh.data(), dw.data(), Ry.data(), h.data(), w.data(), rstd.data(), N, D);
  std::vector<double> dw_added(D);
  for (idx d = 0; d < D; ++d) dw_added[d] = dw[d] - w_prior[d];

  // h = x + branch, so dL/dx = dL/dbranch = dL/dh.
  const auto gx = check_gradient(x, dh, loss, 200);
  EXPECT_LT(gx.max_rel_error, 1e-6) << "dx, D " << D << ": " << describe(gx);
  const auto gb = check_gradient(branch, dh, loss, 200);
  EXPECT_LT(gb.max_rel_error, 1e-6) << "dbranch, D " << D << ": " << describe(gb);
  const auto gw = check_gradient(w, dw_added, loss, 200);
  EXPECT_LT(gw.max_rel_error, 1e-6) << "dweight, D " << D << ": " << describe(gw);

  // Finite differences sample 200 columns; every column of dweight (each chunk boundary included)
  // against its closed form sum_n dy h rstd.
  const Ref<> ref = reference_forward(x, &branch, w, N, D);
  std::vector<double> dw_closed(D, 0.0);
  for (idx n = 0; n < N; ++n)
    for (idx d = 0; d < D; ++d) dw_closed[d] += Ry[n * D + d] * ref.h[n * D + d] * ref.rstd[n];
  EXPECT_LT(max_rel_diff(dw_added, dw_closed), 1e-12) << "dweight, all columns, D " << D;
}

TEST(RmsNorm, BackwardMatchesFiniteDifferences) { check_backward(13, 53); }

// Wider than the kernel's 4096-column dweight chunk: the second chunk is summed on a later pass.
TEST(RmsNorm, BackwardMatchesFiniteDifferencesWideRows) { check_backward(3, 4133); }

// The float backward (float arithmetic, double row sums) against the verified double one: the
// per-element terms are O(1) products of a few float ops, so again 1e-5 relative.
TEST(RmsNorm, FloatBackwardMatchesDouble) {
  const idx N = 29, D = 53;
  const auto x = random_vector<float>(N * D, 21), w = random_vector<float>(D, 22, 0.5, 1.5);
  const auto dy = random_vector<float>(N * D, 23), dh0 = random_vector<float>(N * D, 24);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    std::vector<T> xt(x.begin(), x.end()), wt(w.begin(), w.end()), dyt(dy.begin(), dy.end());
    std::vector<T> h(N * D), y(N * D), rstd(N), dh(dh0.begin(), dh0.end()), dw(D, T(1));
    residual_rmsnorm_forward(Exec{}, h.data(), y.data(), rstd.data(), xt.data(), static_cast<const T*>(nullptr),
                             wt.data(), N, D, kEps);
    rmsnorm_backward(Exec{}, dh.data(), dw.data(), dyt.data(), h.data(), wt.data(), rstd.data(), N, D);
    return std::make_pair(test::to_double(dh), test::to_double(dw));
  };
  const auto [dh_f, dw_f] = run(0.0f);
  const auto [dh_d, dw_d] = run(0.0);
  EXPECT_LT(max_rel_diff(dh_f, dh_d), 1e-5);
  EXPECT_LT(max_rel_diff(dw_f, dw_d), 1e-5);
}

}  // namespace
}  // namespace nexus
