// ssd_step: Tn successive steps from an initial state equal the chunked full-sequence ssd_forward
// over those Tn tokens (itself checked against the sequential recurrence in test_ssd.cpp): every
// output row and the final state. Operands are column slices of one in_proj-like row buffer, as
// in the model; two groups; several chunk sizes so the full op crosses chunk boundaries; float
// against double.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "tests/support/check.h"

namespace nexus {
namespace {

using test::max_rel_diff;
using test::random_vector;

struct Case {
  idx B, Tn, H, P, G, N;
  idx HP() const { return H * P; }
  idx GN() const { return G * N; }
  // One row per token: [pad | x | B | C | dt | pad], shared stride.
  idx ox() const { return 2; }
  idx ob() const { return ox() + HP(); }
  idx oc() const { return ob() + GN(); }
  idx odt() const { return oc() + GN(); }
  idx ld() const { return odt() + H + 3; }
};

struct Inputs {
  std::vector<double> rows;                     // [B,Tn,ld]
  std::vector<double> dt_bias, A_log, D, init;  // [H] x3, [B,H,P,N]
};

Inputs make_inputs(const Case& c, std::uint64_t seed) {
  Inputs in;
  in.rows = random_vector(std::size_t(c.B * c.Tn * c.ld()), seed);
  // dt_raw in [-4, 1] so softplus spans small and O(1) steps.
  for (idx r = 0; r < c.B * c.Tn; ++r)
    for (idx h = 0; h < c.H; ++h) {
      double& v = in.rows[std::size_t(r * c.ld() + c.odt() + h)];
      v = -1.5 + 2.5 * v;
    }
  in.dt_bias = random_vector(std::size_t(c.H), seed + 1, -1, 0.5);
  in.A_log = random_vector(std::size_t(c.H), seed + 2, 0.0, std::log(16.0));
  in.D = random_vector(std::size_t(c.H), seed + 3, 0.5, 1.5);
  in.init = random_vector(std::size_t(c.B * c.HP() * c.N), seed + 4);
  return in;
}

template <typename T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

SsdShape shape_of(const Case& c, idx Tn, idx Q) { return {c.B, Tn, c.H, c.P, c.G, c.N, Q}; }

// y [B,Tn,H,P] of Tn steps; `state` starts as in.init and ends as the final state.
template <typename T>
std::vector<T> run_steps(const Inputs& in, const Case& c, std::vector<T>& state) {
  const std::vector<T> rows = cast<T>(in.rows), bias = cast<T>(in.dt_bias), alog = cast<T>(in.A_log), D = cast<T>(in.D);
  state = cast<T>(in.init);
  const idx ld = c.ld();
  std::vector<T> row(std::size_t(c.B * ld)), y_t(std::size_t(c.B * c.HP())), y(std::size_t(c.B * c.Tn * c.HP()));
  for (idx t = 0; t < c.Tn; ++t) {
    for (idx b = 0; b < c.B; ++b) std::copy_n(rows.begin() + (b * c.Tn + t) * ld, ld, row.begin() + b * ld);
    ssd_step(Exec{}, y_t.data(), state.data(), row.data() + c.ox(), row.data() + c.ob(), row.data() + c.oc(),
             row.data() + c.odt(), bias.data(), alog.data(), D.data(), shape_of(c, 1, 1), SsdStrides{ld, ld, ld});
    for (idx b = 0; b < c.B; ++b) std::copy_n(y_t.begin() + b * c.HP(), c.HP(), y.begin() + (b * c.Tn + t) * c.HP());
  }
  return y;
}

struct Full {
  std::vector<double> y, final_state;
};

Full full_forward(const Inputs& in, const Case& c, idx Q) {
  const SsdShape s = shape_of(c, c.Tn, Q);
  const idx ld = c.ld();
  Full f{std::vector<double>(std::size_t(c.B * c.Tn * c.HP())), std::vector<double>(in.init.size())};
  std::vector<double> ws(std::size_t(ssd_workspace<double>(s)));
  const double* r = in.rows.data();
  ssd_forward(Exec{}, f.y.data(), f.final_state.data(), static_cast<double*>(nullptr), r + c.ox(), r + c.ob(),
              r + c.oc(), r + c.odt(), in.dt_bias.data(), in.A_log.data(), in.D.data(), in.init.data(), s,
              SsdStrides{ld, ld, ld}, ws.data());
  return f;
}

TEST(SsdStep, StepsEqualFullSequence) {
  for (idx G : {1, 2}) {
    const Case cg{2, 29, 4, 6, G, 10};
    const Inputs in = make_inputs(cg, 70 + std::uint64_t(G));
    std::vector<double> state;
    const std::vector<double> y = run_steps(in, cg, state);
    for (idx Q : {4, 8, 29, 64}) {
      SCOPED_TRACE("G " + std::to_string(G) + " Q " + std::to_string(Q));
      const Full f = full_forward(in, cg, Q);
      // Different summation orders of the same O(1) terms over 29 tokens: ~1e-15.
      EXPECT_LT(max_rel_diff(y, f.y), 1e-12);
      EXPECT_LT(max_rel_diff(state, f.final_state), 1e-12);
    }
  }
}

TEST(SsdStep, ZeroInitialState) {
  const Case c{1, 17, 2, 5, 1, 7};
  Inputs in = make_inputs(c, 3);
  std::fill(in.init.begin(), in.init.end(), 0.0);
  std::vector<double> state;
  const std::vector<double> y = run_steps(in, c, state);
  const Full f = full_forward(in, c, 8);
  EXPECT_LT(max_rel_diff(y, f.y), 1e-12);
  EXPECT_LT(max_rel_diff(state, f.final_state), 1e-12);
}

TEST(SsdStep, FloatMatchesDouble) {
  const Case c{2, 29, 4, 6, 2, 10};
  const Inputs in = make_inputs(c, 11);
  std::vector<float> state;
  const std::vector<float> y = run_steps(in, c, state);
  const Full f = full_forward(in, c, 8);
  // The state is a decaying sum (every factor <= 1) of O(1) terms, so float rounding does not
  // grow with Tn beyond the ~N-term dot product per output: a few ulps (6e-8) relative to the
  // largest entry, with a 20x margin.
  EXPECT_LT(max_rel_diff(y, f.y), 2e-6);
  EXPECT_LT(max_rel_diff(state, f.final_state), 2e-6);
}

}  // namespace
}  // namespace nexus
