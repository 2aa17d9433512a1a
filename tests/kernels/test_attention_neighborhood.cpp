// Flash attention under every neighborhood (kernels/neighborhood.h) against plain fp64 softmax
// attention masked by the rule written out independently (support/naive_neighborhood.h): forward
// and lse, float and double, on shapes whose tiles straddle windows, clusters and dilation steps,
// with queries and keys at offset global positions (q_pos0, k_pos0) as ring steps and split
// sequences call the kernel; and the backward against fourth-order finite differences in fp64.
#include <gtest/gtest.h>
#include <omp.h>

#include <string>
#include <vector>

#include "kernels/attention_reference.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using test::random_vector;
using namespace test::attention;

using test::make_neighborhood;

struct Named {
  std::string name;
  Neighborhood n;
};

// Windows and clusters around the 64-row tile size, so tiles are empty, full and partial.
const Named kNeighborhoods[] = {
    {"sliding:1", make_neighborhood(Neighborhood::kSliding, 1)},
    {"sliding:50", make_neighborhood(Neighborhood::kSliding, 50)},
    {"sliding:100", make_neighborhood(Neighborhood::kSliding, 100)},
    {"dilated:5:17", make_neighborhood(Neighborhood::kDilated, 5, 17)},
    {"dilated:3:64", make_neighborhood(Neighborhood::kDilated, 3, 64)},
    {"log", make_neighborhood(Neighborhood::kLog)},
    {"block:64", make_neighborhood(Neighborhood::kBlock, 64)},
    {"block:37", make_neighborhood(Neighborhood::kBlock, 37)},
    {"sink:3+sliding:20", make_neighborhood(Neighborhood::kSliding, 20, 1, 3)},
    {"sink:70+log", make_neighborhood(Neighborhood::kLog, 0, 1, 70)},
    {"sink:5+block:40", make_neighborhood(Neighborhood::kBlock, 40, 1, 5)},
};

// {B, Tq, Tk, Hq, Hkv, hd, q_pos0, k_pos0}: one sequence block on itself, a query block after its
// key block (a ring step), and queries partly before the keys (rows that see nothing).
const AttentionShape kShapes[] = {
    {2, 200, 200, 4, 2, 16, 0, 0},
    {1, 130, 150, 2, 1, 16, 237, 100},
    {1, 90, 160, 3, 3, 8, 20, 0},
    {1, 100, 70, 2, 2, 8, 0, 30},
};

TEST(AttentionNeighborhood, ForwardMatchesMaskedSoftmax) {
  for (const Named& nb : kNeighborhoods)
    for (AttentionShape s : kShapes) {
      s.neighborhood = nb.n;
      const std::string at = nb.name + " Tq=" + std::to_string(s.Tq) + " q_pos0=" + std::to_string(s.q_pos0) +
                             " k_pos0=" + std::to_string(s.k_pos0);
      const auto q = random_vector(q_size(s), 1, -2, 2), k = random_vector(k_size(s), 2, -2, 2),
                 v = random_vector(k_size(s), 3);
      const Attn ref = reference(q, k, v, s);
      const Attn d = forward<double>(q, k, v, s);
      EXPECT_LT(test::max_rel_diff(d.out, ref.out), 1e-13) << at;
      EXPECT_LT(lse_rel_diff(d.lse, ref.lse), 1e-14) << at;  // -inf exactly where no key is visible
      // float: as in test_attention (rounding ~1e-6; a wrong mask is O(1e-2)).
      const Attn f = forward<float>(q, k, v, s);
      EXPECT_LT(test::max_rel_diff(f.out, ref.out), 1e-5) << at;
      EXPECT_LT(lse_rel_diff(f.lse, ref.lse), 1e-5) << at;
    }
}

// A rule that reads every earlier key (a window or cluster longer than the positions) must equal
// full causal attention, although it runs through the general mask path.
TEST(AttentionNeighborhood, RulesCoveringThePrefixEqualFull) {
  AttentionShape s{1, 150, 150, 2, 1, 16, 0, 0};
  const auto q = random_vector(q_size(s), 4), k = random_vector(k_size(s), 5), v = random_vector(k_size(s), 6);
  const Attn full = forward<double>(q, k, v, s);
  for (const Neighborhood& n : {make_neighborhood(Neighborhood::kSliding, 150), make_neighborhood(Neighborhood::kBlock, 1000),
                                make_neighborhood(Neighborhood::kDilated, 150, 1), make_neighborhood(Neighborhood::kLog, 0, 1, 150)}) {
    s.neighborhood = n;
    const Attn d = forward<double>(q, k, v, s);
    EXPECT_LT(test::max_rel_diff(d.out, full.out), 1e-14);
    EXPECT_LT(lse_rel_diff(d.lse, full.lse), 1e-15);
  }
}

// L = <R, out>; dq, dk, dv start nonzero and must be added to. 1 thread takes the backward's
// single pass, 8 threads its two passes (dq by query tiles, dk/dv by key tiles): the first is held
// to finite differences, the second to the first (same sums in another order: ~1e-16).
TEST(AttentionNeighborhood, BackwardMatchesFiniteDifferences) {
  const int saved_threads = omp_get_max_threads();
  const AttentionShape shapes[] = {{1, 140, 140, 2, 1, 8, 0, 0}, {1, 70, 90, 2, 2, 8, 100, 40}};
  for (const Named& nb : kNeighborhoods)
    for (AttentionShape s : shapes) {
      s.neighborhood = nb.n;
      auto q = random_vector(q_size(s), 11), k = random_vector(k_size(s), 12), v = random_vector(k_size(s), 13);
      const auto R = random_vector(q_size(s), 14);
      const Grads before{random_vector(q_size(s), 15), random_vector(k_size(s), 16), random_vector(k_size(s), 17)};
      const std::string at = nb.name + " q_pos0=" + std::to_string(s.q_pos0) + ": ";
      std::vector<double> dq(q.size()), dk(k.size()), dv(v.size());
      Grads one_pass;
      for (int threads : {1, 8}) {
        omp_set_num_threads(threads);
        const Grads after = backward(R, q, k, v, forward<double>(q, k, v, s), s, before);
        if (threads == 1) {
          one_pass = after;
          continue;
        }
        EXPECT_LT(test::max_rel_diff(after.dq, one_pass.dq), 1e-13) << at << "two-pass dq";
        EXPECT_LT(test::max_rel_diff(after.dk, one_pass.dk), 1e-13) << at << "two-pass dk";
        EXPECT_LT(test::max_rel_diff(after.dv, one_pass.dv), 1e-13) << at << "two-pass dv";
      }
      omp_set_num_threads(1);  // the many small forwards of the differences: threads would only wait
      for (std::size_t i = 0; i < dq.size(); ++i) dq[i] = one_pass.dq[i] - before.dq[i];
      for (std::size_t i = 0; i < dk.size(); ++i) dk[i] = one_pass.dk[i] - before.dk[i];
      for (std::size_t i = 0; i < dv.size(); ++i) dv[i] = one_pass.dv[i] - before.dv[i];
      const long double base = dot_extended(R, forward<double>(q, k, v, s).out);
      const auto loss = [&] { return double(dot_extended(R, forward<double>(q, k, v, s).out) - base); };
      auto r = test::check_gradient(q, dq, loss, 24);
      EXPECT_LT(r.max_rel_error, 1e-6) << at << "dq " << test::describe(r);
      r = test::check_gradient(k, dk, loss, 24);
      EXPECT_LT(r.max_rel_error, 1e-6) << at << "dk " << test::describe(r);
      r = test::check_gradient(v, dv, loss, 24);
      EXPECT_LT(r.max_rel_error, 1e-6) << at << "dv " << test::describe(r);
    }
  omp_set_num_threads(saved_threads);
}

// The float backward against the fp64 one under each rule (masks in the float path too).
TEST(AttentionNeighborhood, FloatBackwardMatchesDouble) {
  for (const Named& nb : kNeighborhoods) {
    AttentionShape s{2, 150, 150, 4, 2, 16, 0, 0};
    s.neighborhood = nb.n;
    const FloatAndDouble g = float_and_double_backward(s);
    // Relative to the gradients' scale, floored at 1: they are O(1) here, except under sliding:1,
    // where each query reads one key with softmax weight exactly 1 and dq, dk vanish, and the float
    // path leaves rounding of its O(1) terms (~1e-6) that only an absolute comparison can judge.
    EXPECT_LT(test::max_rel_diff(g.f.dq, g.d.dq, 1.0), 1e-5) << nb.name;
    EXPECT_LT(test::max_rel_diff(g.f.dk, g.d.dk, 1.0), 1e-5) << nb.name;
    EXPECT_LT(test::max_rel_diff(g.f.dv, g.d.dv, 1.0), 1e-5) << nb.name;
  }
}

}  // namespace
}  // namespace nexus
