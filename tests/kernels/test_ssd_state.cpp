// The initial-state ops of context parallelism against independent references in fp64:
// ssd_state_output_forward against ssd_forward itself (a zero-state run plus the correction must
// equal a run from the initial state, which test_ssd checks against the token-by-token
// recurrence); ssd_state_output_backward as the exact adjoint of the forward correction
// (<dy, F(S)> = <F^T(dy), S>); decayed_state_update against a plain loop over a strided layout.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using Doubles = std::vector<double>;
std::size_t sz(idx n) { return std::size_t(n); }

struct Case {
  SsdShape s{2, 37, 4, 3, 2, 5, 8};  // B, Tn, H, P, G, N, Q (Tn not a multiple of Q)
  SsdStrides ld{4 * 3, 2 * 5, 4};    // compact x [B,Tn,H,P], B/C [B,Tn,G,N], dt [B,Tn,H]
  Doubles x, Bm, Cm, dt_raw, dt_bias, A_log, D, state;
  Case() {
    const idx rows = s.B * s.Tn;
    x = test::random_vector(sz(rows * s.H * s.P), 1);
    Bm = test::random_vector(sz(rows * s.G * s.N), 2);
    Cm = test::random_vector(sz(rows * s.G * s.N), 3);
    dt_raw = test::random_vector(sz(rows * s.H), 4);
    dt_bias = test::random_vector(sz(s.H), 5, -3.0, -2.0);
    A_log = test::random_vector(sz(s.H), 6, 0.0, 1.5);
    D = test::random_vector(sz(s.H), 7, 0.5, 1.5);
    state = test::random_vector(sz(s.B * s.H * s.P * s.N), 8);
  }
  Doubles ssd(const double* init) const {
    Doubles y(sz(s.B * s.Tn * s.H * s.P)), ws(sz(ssd_workspace<double>(s)));
    ssd_forward(Exec{}, y.data(), nullptr, nullptr, x.data(), Bm.data(), Cm.data(), dt_raw.data(), dt_bias.data(),
                A_log.data(), D.data(), init, s, ld, ws.data());
    return y;
  }
};

double dot(const Doubles& a, const Doubles& b) {
  double r = 0;
  for (std::size_t i = 0; i < a.size(); ++i) r += a[i] * b[i];
  return r;
}

TEST(SsdStateOutput, ZeroStateRunPlusCorrectionEqualsTheRunFromTheState) {
  const Case c;
  const Doubles want = c.ssd(c.state.data());
  Doubles y = c.ssd(nullptr);
  EXPECT_GT(test::max_rel_diff(y, want), 1e-3);  // the state matters in this case
  ssd_state_output_forward(Exec{}, y.data(), c.state.data(), c.Cm.data(), c.dt_raw.data(), c.dt_bias.data(),
                           c.A_log.data(), c.s, c.ld);
  EXPECT_LT(test::max_rel_diff(y, want), 1e-12);
}

TEST(SsdStateOutput, BackwardIsTheAdjointOfTheCorrection) {
  const Case c;
  const Doubles dy = test::random_vector(sz(c.s.B * c.s.Tn * c.s.H * c.s.P), 9);
  Doubles Fs(dy.size(), 0.0);  // F(S): the correction alone
  ssd_state_output_forward(Exec{}, Fs.data(), c.state.data(), c.Cm.data(), c.dt_raw.data(), c.dt_bias.data(),
                           c.A_log.data(), c.s, c.ld);
  Doubles Ft(c.state.size(), 123.0);  // overwritten
  ssd_state_output_backward(Exec{}, Ft.data(), dy.data(), c.Cm.data(), c.dt_raw.data(), c.dt_bias.data(),
                            c.A_log.data(), c.s, c.ld);
  const double lhs = dot(dy, Fs), rhs = dot(Ft, c.state);
  EXPECT_NEAR(lhs, rhs, 1e-12 * std::abs(lhs));
  // And against finite differences of L = <dy, F(S)> in S: F is linear, so exactly Ft.
  Doubles S = c.state;
  const auto loss = [&] {
    Doubles f(dy.size(), 0.0);
    ssd_state_output_forward(Exec{}, f.data(), S.data(), c.Cm.data(), c.dt_raw.data(), c.dt_bias.data(), c.A_log.data(),
                             c.s, c.ld);
    return dot(dy, f);
  };
  const test::GradCheck g = test::check_gradient(S, Ft, loss);
  EXPECT_LT(g.max_rel_error, 1e-6) << "at " << g.worst_index;
}

TEST(DecayedStateUpdate, MatchesAPlainLoopOverAStridedLayout) {
  // Rows (b, h) of slot 1 in a [2B, H, W] buffer of segment-sequences 2b + slot: ld_b = 2H rows.
  const idx B = 3, H = 4, W = 7, ld_b = 2 * H;
  const Doubles add = test::random_vector(sz(2 * B * H * W), 1), decay = test::random_vector(sz(2 * B * H), 2, 0.0, 1.0);
  Doubles state = test::random_vector(sz(2 * B * H * W), 3), want = state;
  for (idx b = 0; b < B; ++b)
    for (idx h = 0; h < H; ++h) {
      const idx row = b * ld_b + H + h;  // slot 1
      for (idx i = 0; i < W; ++i) want[sz(row * W + i)] = decay[sz(row)] * want[sz(row * W + i)] + add[sz(row * W + i)];
    }
  decayed_state_update(Exec{}, state.data() + H * W, decay.data() + H, add.data() + H * W, B, H, W, ld_b);
  EXPECT_LT(test::max_rel_diff(state, want), 1e-15);  // one rounding (or one fused multiply-add) apart
  for (idx b = 0; b < B; ++b)                         // slot 0's rows are not touched
    for (idx i = 0; i < H * W; ++i) ASSERT_EQ(state[sz(b * ld_b * W + i)], want[sz(b * ld_b * W + i)]);
}

}  // namespace
}  // namespace nexus
