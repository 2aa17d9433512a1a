// Flash attention against a plain fp64 attention that materialises the full softmax; the ring
// property (per-KV-block partial results merged through lse equal one call over all keys, forward
// and backward); and the backward against finite differences of L = <R, out>.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/attention_reference.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using test::random_vector;
using namespace test::attention;

struct Case {
  std::string name;
  AttentionShape s;  // {B, Tq, Tk, Hq, Hkv, hd, q_pos0, k_pos0, causal}
};

// Tiles are 64 rows, so T > 64 gives several tiles and a ragged last one.
const Case kForwardCases[] = {
    {"gqa_several_tiles", {2, 150, 150, 4, 2, 16, 0, 0, true}},
    {"mha_odd_single_tile", {2, 37, 37, 3, 3, 8, 0, 0, true}},
    {"query_block_after_key_block", {2, 70, 100, 4, 2, 16, 100, 0, true}},
    {"partial_overlap_tq_ne_tk", {1, 90, 130, 4, 1, 16, 30, 0, true}},
    {"not_causal", {2, 45, 130, 2, 1, 16, 0, 0, false}},
    {"rows_without_keys", {2, 100, 70, 2, 2, 8, 0, 20, true}},
    {"head_dim_over_one_chunk", {1, 70, 70, 2, 1, 136, 5, 0, true}},
};

TEST(Attention, ForwardMatchesFullSoftmax) {
  for (const Case& c : kForwardCases) {
    const AttentionShape& s = c.s;
    const auto q = random_vector(q_size(s), 1, -2, 2), k = random_vector(k_size(s), 2, -2, 2),
               v = random_vector(k_size(s), 3);
    const Attn ref = reference(q, k, v, s);
    const Attn d = forward<double>(q, k, v, s);
    EXPECT_LT(test::max_rel_diff(d.out, ref.out), 1e-13) << c.name;
    EXPECT_LT(lse_rel_diff(d.lse, ref.lse), 1e-14) << c.name;
    // float: each score is a 16..80-term dot product (relative error ~1e-7 per term, |score| <~ 10),
    // and the polynomial exp adds ~2 ulp; out and lse come out ~1e-6 from fp64, so 1e-5 bounds
    // rounding while any logic error (a wrong mask, a lost rescale) is O(1e-2) or more.
    const Attn f = forward<float>(q, k, v, s);
    EXPECT_LT(test::max_rel_diff(f.out, ref.out), 1e-5) << c.name;
    EXPECT_LT(lse_rel_diff(f.lse, ref.lse), 1e-5) << c.name;
  }
}

TEST(Attention, RowsWithoutVisibleKeysGiveZeroAndMinusInfinity) {
  const AttentionShape s{2, 100, 70, 2, 2, 8, 0, 20, true};  // queries at 0..19 precede every key
  const auto q = random_vector(q_size(s), 4), k = random_vector(k_size(s), 5), v = random_vector(k_size(s), 6);
  const Attn f = forward<float>(q, k, v, s);
  for (idx b = 0; b < s.B; ++b)
    for (idx i = 0; i < s.Tq; ++i)
      for (idx h = 0; h < s.n_heads; ++h) {
        const std::size_t row = std::size_t((b * s.Tq + i) * s.n_heads + h);
        if (i < 20) {
          EXPECT_EQ(f.lse[row], kNegInf);
          for (idx d = 0; d < s.head_dim; ++d) EXPECT_EQ(f.out[row * std::size_t(s.head_dim) + std::size_t(d)], 0.0);
        } else {
          EXPECT_TRUE(std::isfinite(f.lse[row]));
        }
      }
}

// Rows [t0, t0 + len) of every sequence of a [B, T, row] tensor.
std::vector<double> slice(const std::vector<double>& x, idx B, idx T, idx row, idx t0, idx len) {
  std::vector<double> r;
  for (idx b = 0; b < B; ++b) {
    const auto first = x.begin() + long((b * T + t0) * row);
    r.insert(r.end(), first, first + long(len * row));
  }
  return r;
}

// Ring attention's use: a query block against KV blocks one at a time, merged through lse.
// Blocks: keys before, overlapping, and entirely after the queries (that one fully masked).
TEST(Attention, RingMergeOfKeyBlocksEqualsOneCall) {
  const AttentionShape full{2, 130, 270, 4, 2, 16, 100, 0, true};
  const idx blocks[][2] = {{0, 110}, {110, 120}, {230, 40}};  // {first key, keys}
  const idx krow = full.n_kv_heads * full.head_dim;
  const auto q = random_vector(q_size(full), 7, -2, 2), k = random_vector(k_size(full), 8, -2, 2),
             v = random_vector(k_size(full), 9), R = random_vector(q_size(full), 10);
  const Attn one = forward<double>(q, k, v, full);

  Attn merged{std::vector<double>(q_size(full), 0.0), std::vector<double>(lse_size(full), kNegInf)};
  for (const auto& blk : blocks) {
    AttentionShape s = full;
    s.Tk = blk[1];
    s.k_pos0 = blk[0];
    const Attn part = forward<double>(q, slice(k, full.B, full.Tk, krow, blk[0], blk[1]),
                                      slice(v, full.B, full.Tk, krow, blk[0], blk[1]), s);
    for (std::size_t r = 0; r < merged.lse.size(); ++r) {
      const double a = merged.lse[r], b = part.lse[r];
      const double m = std::max(a, b);
      if (m == kNegInf) continue;
      const double lse = m + std::log(std::exp(a - m) + std::exp(b - m));
      for (std::size_t d = 0; d < std::size_t(full.head_dim); ++d) {
        double& o = merged.out[r * std::size_t(full.head_dim) + d];
        o = std::exp(a - lse) * o + std::exp(b - lse) * part.out[r * std::size_t(full.head_dim) + d];
      }
      merged.lse[r] = lse;
    }
  }
  EXPECT_LT(test::max_rel_diff(merged.out, one.out), 1e-13);
  EXPECT_LT(lse_rel_diff(merged.lse, one.lse), 1e-14);

  const Grads whole = backward(R, q, k, v, one, full,
                               {std::vector<double>(q_size(full)), std::vector<double>(k_size(full)),
                                std::vector<double>(k_size(full))});
  std::vector<double> dq(q_size(full), 0.0);  // accumulates over the blocks, as in the ring
  for (const auto& blk : blocks) {
    AttentionShape s = full;
    s.Tk = blk[1];
    s.k_pos0 = blk[0];
    const std::size_t n = std::size_t(full.B * blk[1] * krow);
    const Grads g = backward(R, q, slice(k, full.B, full.Tk, krow, blk[0], blk[1]),
                             slice(v, full.B, full.Tk, krow, blk[0], blk[1]), merged, s,
                             {dq, std::vector<double>(n), std::vector<double>(n)});
    dq = g.dq;
    EXPECT_LT(test::max_rel_diff(g.dk, slice(whole.dk, full.B, full.Tk, krow, blk[0], blk[1]), 1e-3), 1e-12)
        << "block at " << blk[0];
    EXPECT_LT(test::max_rel_diff(g.dv, slice(whole.dv, full.B, full.Tk, krow, blk[0], blk[1]), 1e-3), 1e-12)
        << "block at " << blk[0];
  }
  EXPECT_LT(test::max_rel_diff(dq, whole.dq), 1e-12);
}

const Case kBackwardCases[] = {
    {"gqa_several_tiles", {2, 70, 70, 4, 2, 8, 0, 0, true}},
    {"rows_without_keys", {1, 75, 66, 2, 1, 8, 0, 20, true}},
    {"query_block_after_key_block", {1, 40, 90, 2, 2, 8, 60, 0, true}},
    {"not_causal", {1, 30, 70, 2, 1, 8, 0, 0, false}},
    {"head_dim_over_one_chunk", {1, 66, 66, 1, 1, 136, 0, 0, true}},
};

// L = <R, out>: dL/dout = R. dq, dk, dv start nonzero and must be added to. The backward picks a
// single pass or two passes from the thread count: 1 thread takes the single pass, 8 threads
// with at most 4 (sequence, kv head) groups the two passes; both must hold.
TEST(Attention, BackwardMatchesFiniteDifferences) {
  const int saved_threads = omp_get_max_threads();
  for (const Case& c : kBackwardCases)
    for (int threads : {1, 8}) {
      omp_set_num_threads(threads);
      const AttentionShape& s = c.s;
      auto q = random_vector(q_size(s), 11), k = random_vector(k_size(s), 12), v = random_vector(k_size(s), 13);
      const auto R = random_vector(q_size(s), 14);
      const Grads before{random_vector(q_size(s), 15), random_vector(k_size(s), 16),
                         random_vector(k_size(s), 17)};
      const Grads after = backward(R, q, k, v, forward<double>(q, k, v, s), s, before);
      std::vector<double> dq(q.size()), dk(k.size()), dv(v.size());
      for (std::size_t i = 0; i < dq.size(); ++i) dq[i] = after.dq[i] - before.dq[i];
      for (std::size_t i = 0; i < dk.size(); ++i) dk[i] = after.dk[i] - before.dk[i];
      for (std::size_t i = 0; i < dv.size(); ++i) dv[i] = after.dv[i] - before.dv[i];
      for (const auto* g : {&after.dq, &after.dk, &after.dv})
        EXPECT_TRUE(std::all_of(g->begin(), g->end(), [](double x) { return std::isfinite(x); })) << c.name;
      const long double base = dot_extended(R, forward<double>(q, k, v, s).out);
      const auto loss = [&] { return double(dot_extended(R, forward<double>(q, k, v, s).out) - base); };
      const std::string at = c.name + ", " + std::to_string(threads) + " threads: ";
      auto r = test::check_gradient(q, dq, loss);
      EXPECT_LT(r.max_rel_error, 1e-6) << at << "dq " << test::describe(r);
      r = test::check_gradient(k, dk, loss);
      EXPECT_LT(r.max_rel_error, 1e-6) << at << "dk " << test::describe(r);
      r = test::check_gradient(v, dv, loss);
      EXPECT_LT(r.max_rel_error, 1e-6) << at << "dv " << test::describe(r);
    }
  omp_set_num_threads(saved_threads);
}

// The float backward (polynomial exp, float accumulation) against the fp64 one.
TEST(Attention, FloatBackwardMatchesDouble) {
  const FloatAndDouble g = float_and_double_backward({2, 150, 150, 4, 2, 16, 0, 0, true});
  // Gradients sum up to 150 keys' or queries' contributions in float: ~1e-6 relative to their scale.
  EXPECT_LT(test::max_rel_diff(g.f.dq, g.d.dq), 1e-5);
  EXPECT_LT(test::max_rel_diff(g.f.dk, g.d.dk), 1e-5);
  EXPECT_LT(test::max_rel_diff(g.f.dv, g.d.dv), 1e-5);
}

}  // namespace
}  // namespace nexus
