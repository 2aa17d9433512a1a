// Embedding: the forward is a row gather, checked exactly; the backward's scatter-add is checked
// against finite differences with ids repeated many times over (the case a token-parallel scatter
// would race on) and a width spanning several column blocks plus a ragged tail.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/ops.h"
#include "tests/support/check.h"

namespace nexus {
namespace {

using test::check_gradient;
using test::describe;
using test::random_vector;

constexpr idx V = 11;   // few ids for many tokens: every id repeats
constexpr idx N = 41;
constexpr idx D = 150;  // two full 64-column blocks and a 22-column tail; not a multiple of 8

std::vector<std::int32_t> make_tokens() {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> id(0, int(V) - 1);
  std::vector<std::int32_t> t(N);
  for (auto& v : t) v = id(rng);
  t[1] = t[0] = 3;  // adjacent duplicates as well
  return t;
}

// out[n, d] = table[tokens[n], d]
std::vector<double> reference_forward(const std::vector<double>& table, const std::vector<std::int32_t>& tokens) {
  std::vector<double> out(N * D);
  for (idx n = 0; n < N; ++n)
    for (idx d = 0; d < D; ++d) out[n * D + d] = table[tokens[n] * D + d];
  return out;
}

TEST(Embedding, ForwardGathersRows) {
  const auto tokens = make_tokens();
  const auto table = random_vector(V * D, 1);
  std::vector<double> out(N * D, -7.0);
  embedding_forward(Exec{}, out.data(), tokens.data(), table.data(), N, D);
  EXPECT_EQ(out, reference_forward(table, tokens));

  // A copy is exact in any precision.
  const auto table_f = random_vector<float>(V * D, 1);
  std::vector<float> out_f(N * D, -7.0f);
  embedding_forward(Exec{}, out_f.data(), tokens.data(), table_f.data(), N, D);
  EXPECT_EQ(test::max_rel_diff(out_f, reference_forward(test::to_double(table_f), tokens)), 0.0);
}

TEST(Embedding, BackwardMatchesFiniteDifferencesAndAccumulates) {
  const auto tokens = make_tokens();
  auto table = random_vector(V * D, 1);
  const auto R = random_vector(N * D, 2);  // L = <R, out>, so dout = R
  const auto prior = random_vector(V * D, 3, 2.0, 3.0);

  std::vector<double> dtable = prior;
  embedding_backward(Exec{}, dtable.data(), tokens.data(), R.data(), N, D);
  std::vector<double> added(V * D);
  for (idx i = 0; i < V * D; ++i) added[i] = dtable[i] - prior[i];

  const auto r = check_gradient(table, added, [&] { return test::dot(R, reference_forward(table, tokens)); }, V * D);
  EXPECT_LT(r.max_rel_error, 1e-6) << describe(r);
}

// Float sums of up to N terms of size <= 1 in the reference's order of tokens: each entry's error is
// at most ~N ulp(1) = 41 * 6e-8 = 2.5e-6, so 1e-5 relative to the largest entry is safe.
TEST(Embedding, FloatBackwardMatchesDouble) {
  const auto tokens = make_tokens();
  const auto R = random_vector<float>(N * D, 2);
  std::vector<float> dtable(V * D, 0.5f);
  embedding_backward(Exec{}, dtable.data(), tokens.data(), R.data(), N, D);
  std::vector<double> expected(V * D, 0.5);
  for (idx n = 0; n < N; ++n)
    for (idx d = 0; d < D; ++d) expected[tokens[n] * D + d] += double(R[n * D + d]);
  EXPECT_LT(test::max_rel_diff(dtable, expected), 1e-5);
}

}  // namespace
}  // namespace nexus
