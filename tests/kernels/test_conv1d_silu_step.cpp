// conv1d_silu_step: Tn successive steps from a state equal the full-sequence conv1d_silu_forward
// over those Tn tokens with that state as its halo (itself checked against a naive reference in
// test_conv1d.cpp), and the final state is the last K-1 inputs. Strided input rows, ragged
// channel tiles, several K (including K = 1, no state, and K-1 > Tn), float against double.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/ops.h"
#include "tests/support/check.h"

namespace nexus {
namespace {

using test::max_rel_diff;
using test::random_vector;

struct Case {
  idx B, Tn, C, K;
  idx ld_x = C + 7;  // the input is a column slice of a wider buffer, as xBC of in_proj's output
};

struct Inputs {
  std::vector<double> x, halo, w, bias;  // [B,Tn,ld_x], [B,K-1,C], [C,K], [C]
};

Inputs make_inputs(const Case& c, std::uint64_t seed) {
  return {random_vector(std::size_t(c.B * c.Tn * c.ld_x), seed, -2, 2),
          random_vector(std::size_t(c.B * (c.K - 1) * c.C), seed + 1, -2, 2),
          random_vector(std::size_t(c.C * c.K), seed + 2), random_vector(std::size_t(c.C), seed + 3)};
}

template <typename T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// Steps through the Tn tokens; returns the outputs as [B,Tn,C] and leaves the final state.
template <typename T>
std::vector<T> run_steps(const Inputs& in, const Case& c, std::vector<T>& state) {
  const std::vector<T> x = cast<T>(in.x), w = cast<T>(in.w), bias = cast<T>(in.bias);
  state = cast<T>(in.halo);
  // One row per sequence at a time, gathered from [B,Tn,ld_x] into [B,ld_x] as a decoder would
  // have it (its in_proj output for the new token).
  std::vector<T> row(std::size_t(c.B * c.ld_x)), out_t(std::size_t(c.B * c.C)), out(std::size_t(c.B * c.Tn * c.C));
  for (idx t = 0; t < c.Tn; ++t) {
    for (idx b = 0; b < c.B; ++b)
      for (idx j = 0; j < c.ld_x; ++j) row[std::size_t(b * c.ld_x + j)] = x[std::size_t((b * c.Tn + t) * c.ld_x + j)];
    conv1d_silu_step(Exec{}, out_t.data(), state.data(), row.data(), c.ld_x, w.data(), bias.data(), c.B, c.C, c.K);
    for (idx b = 0; b < c.B; ++b)
      for (idx ch = 0; ch < c.C; ++ch) out[std::size_t((b * c.Tn + t) * c.C + ch)] = out_t[std::size_t(b * c.C + ch)];
  }
  return out;
}

std::vector<double> full_forward(const Inputs& in, const Case& c) {
  std::vector<double> out(std::size_t(c.B * c.Tn * c.C));
  conv1d_silu_forward(Exec{}, out.data(), in.x.data(), c.ld_x, c.K > 1 ? in.halo.data() : nullptr, in.w.data(),
                      in.bias.data(), c.B, c.Tn, c.C, c.K);
  return out;
}

// The last K-1 conv inputs of each sequence, from x and (when Tn < K-1) the halo's tail.
std::vector<double> expected_state(const Inputs& in, const Case& c) {
  std::vector<double> st(std::size_t(c.B * (c.K - 1) * c.C));
  for (idx b = 0; b < c.B; ++b)
    for (idx j = 0; j < c.K - 1; ++j)
      for (idx ch = 0; ch < c.C; ++ch) {
        const idx s = c.Tn - (c.K - 1) + j;
        st[std::size_t((b * (c.K - 1) + j) * c.C + ch)] =
            s >= 0 ? in.x[std::size_t((b * c.Tn + s) * c.ld_x + ch)]
                   : in.halo[std::size_t((b * (c.K - 1) + (c.K - 1) + s) * c.C + ch)];
      }
  return st;
}

TEST(Conv1dSiluStep, StepsEqualFullSequence) {
  // C = 75: a full 64-channel tile and a ragged one.
  for (const Case& c : {Case{2, 13, 75, 4}, Case{3, 9, 17, 2}, Case{1, 6, 8, 1}, Case{2, 2, 70, 5}}) {
    SCOPED_TRACE("B " + std::to_string(c.B) + " Tn " + std::to_string(c.Tn) + " C " + std::to_string(c.C) + " K " +
                 std::to_string(c.K));
    const Inputs in = make_inputs(c, 40 + std::uint64_t(c.K));
    std::vector<double> state;
    const std::vector<double> out = run_steps(in, c, state);
    // Same sums in the same order: only the SiLU's rounding could differ, and it does not.
    EXPECT_LT(max_rel_diff(out, full_forward(in, c)), 1e-14);
    EXPECT_EQ(state, expected_state(in, c));
  }
}

TEST(Conv1dSiluStep, ZeroStateIsStartOfSequence) {
  const Case c{2, 11, 40, 4};
  Inputs in = make_inputs(c, 5);
  std::fill(in.halo.begin(), in.halo.end(), 0.0);
  std::vector<double> state;
  const std::vector<double> out = run_steps(in, c, state);
  std::vector<double> ref(out.size());
  conv1d_silu_forward(Exec{}, ref.data(), in.x.data(), c.ld_x, static_cast<const double*>(nullptr), in.w.data(),
                      in.bias.data(), c.B, c.Tn, c.C, c.K);
  EXPECT_LT(max_rel_diff(out, ref), 1e-14);
}

TEST(Conv1dSiluStep, FloatMatchesDouble) {
  const Case c{2, 13, 75, 4};
  const Inputs in = make_inputs(c, 9);
  std::vector<float> state;
  const std::vector<float> out = run_steps(in, c, state);
  // Each output is a K+1 term sum of O(1) products through SiLU: a few float ulps (6e-8) of the
  // O(1) outputs; the state is copied, so exact.
  EXPECT_LT(max_rel_diff(out, full_forward(in, c)), 1e-6);
  EXPECT_LT(max_rel_diff(state, expected_state(in, c)), 1e-7);
}

}  // namespace
}  // namespace nexus
