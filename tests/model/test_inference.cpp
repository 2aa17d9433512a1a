// Recurrent inference against the full-sequence model: logits produced token by token by
// InferenceSession equal Model<double>::forward's logits at every position (T = 40 over SSD chunks
// of 8 and KV pages of 4 tokens, GQA, two groups, B = 2, Mamba and attention layers interleaved),
// in double and in float; prefill equals stepping; the KV pool's exhaustion error, its rollback,
// and block reuse after reset; one sequence reset while the other continues. Bounded attention
// neighborhoods (sliding, block, dilated, with a sink) equal the full forward under the same
// neighborhood token by token while the cache frees old blocks and stays within its bound.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "model/inference.h"
#include "model/model.h"
#include "support/check.h"
#include "support/model_configs.h"

namespace nexus {
namespace {

using test::max_rel_diff;

constexpr idx kB = 2, kT = 40;

ModelConfig small_config(const std::string& pattern) {
  // init_std 0.3: O(1) activations, so every layer visibly shapes the logits.
  return test::small_hybrid({.vocab_size = 37, .d_model = 24, .pattern = pattern, .mlp_hidden = 40, .n_heads = 6,
                             .n_kv_heads = 2, .head_dim = 8, .mamba_ngroups = 2, .mamba_chunk = 8, .init_std = 0.3});
}

// Initialised, then every tensor perturbed (norm weights, D, biases not at their constants).
void randomise(Model<double>& m, std::uint64_t seed) {
  m.init(seed);
  std::mt19937_64 rng(seed + 1);
  std::uniform_real_distribution<double> u(-0.2, 0.2);
  for (idx i = 0; i < m.num_params(); ++i) m.params()[i] += u(rng);
}

std::vector<std::int32_t> random_tokens(const ModelConfig& c, idx n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int32_t> tok(0, std::int32_t(c.vocab_size - 1));
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (auto& x : t) x = tok(rng);
  return t;
}

ModelConfig with_neighborhood(ModelConfig c, const std::string& neighborhood) {
  c.attention_neighborhood = neighborhood;
  return c;
}

// A randomised Model<double>, a batch of tokens [B, T] and its full-forward logits [B*T, V].
struct Reference {
  ModelConfig c;
  Model<double> m;
  std::vector<std::int32_t> tokens;
  std::vector<double> logits;

  Reference(const std::string& pattern, std::uint64_t seed, const std::string& neighborhood = "full")
      : c(with_neighborhood(small_config(pattern), neighborhood)),
        m(c, BatchShape{kB, kT}),
        tokens(random_tokens(c, kB * kT, seed + 100)) {
    randomise(m, seed);
    const std::vector<std::int32_t> targets(tokens.size(), -1);
    m.forward(tokens.data(), targets.data());
    logits.assign(m.logits(), m.logits() + tokens.size() * std::size_t(c.vocab_size));
  }
  // The full forward's logits of sequence b, tokens [t0, t1).
  std::vector<double> rows(idx b, idx t0, idx t1) const {
    const idx V = c.vocab_size;
    return std::vector<double>(logits.begin() + (b * kT + t0) * V, logits.begin() + (b * kT + t1) * V);
  }
};

// Steps the session through the first Tn of tokens [B, ld]; returns the logits [B, Tn, V].
template <typename T>
std::vector<double> stepped_logits(InferenceSession<T>& s, const std::vector<std::int32_t>& tokens, idx Tn,
                                   idx ld = kT) {
  const idx B = s.max_batch(), V = s.config().vocab_size;
  std::vector<double> out(std::size_t(B * Tn * V));
  std::vector<std::int32_t> col(static_cast<std::size_t>(B));
  for (idx t = 0; t < Tn; ++t) {
    for (idx b = 0; b < B; ++b) col[std::size_t(b)] = tokens[std::size_t(b * ld + t)];
    const T* lg = s.step(col.data());
    for (idx b = 0; b < B; ++b)
      for (idx v = 0; v < V; ++v) out[std::size_t((b * Tn + t) * V + v)] = double(lg[b * V + v]);
  }
  return out;
}

class InferenceVsFull : public ::testing::TestWithParam<std::string> {};

TEST_P(InferenceVsFull, DoubleStepsMatchFullForward) {
  const Reference r(GetParam(), 5);
  InferenceSession<double> s(r.c, r.m.params(), kB, /*block_tokens=*/4, /*max_blocks=*/2 * kT / 4);
  // Only summation orders differ (chunked scan vs recurrence, tiled vs online softmax): ~1e-15.
  EXPECT_LT(max_rel_diff(stepped_logits(s, r.tokens, kT), r.logits), 1e-10);
  EXPECT_EQ(s.position(0), kT);
  EXPECT_EQ(s.free_blocks(), r.c.attention_layer_count() > 0 ? 0 : 2 * kT / 4);
}

TEST_P(InferenceVsFull, FloatStepsMatchDoubleFullForward) {
  const Reference r(GetParam(), 6);
  const std::vector<float> pf(r.m.params(), r.m.params() + r.m.num_params());
  InferenceSession<float> s(r.c, pf.data(), kB, 4, 2 * kT / 4);
  // The float parameters are the double ones rounded (relative 6e-8), and each of the ~10 norms,
  // projections and scans of a layer adds a few ulps relative to its O(1) outputs; the recurrent
  // states decay (every factor <= 1), so errors do not compound along the 40 tokens. Observed
  // 1e-6 to 3e-6 relative to the largest logit; 3e-5 keeps a 10x margin while any real mistake
  // (a wrong position, block or state) shows as O(1e-2) or more.
  EXPECT_LT(max_rel_diff(stepped_logits(s, r.tokens, kT), r.logits), 3e-5);
}

INSTANTIATE_TEST_SUITE_P(Patterns, InferenceVsFull, ::testing::Values("MAMA", "MMMMAMMM", "AA", "MM"));

TEST(Inference, PrefillEqualsStepping) {
  const Reference r("MAMA", 7);
  InferenceSession<double> s(r.c, r.m.params(), kB, 4, 20);
  const double* lg = s.prefill(r.tokens.data(), kT);
  const idx V = r.c.vocab_size;
  for (idx b = 0; b < kB; ++b)
    EXPECT_LT(max_rel_diff(std::vector<double>(lg + b * V, lg + (b + 1) * V), r.rows(b, kT - 1, kT)), 1e-10);
}

TEST(Inference, PoolExhaustionThrowsAndLeavesTheSessionUnchanged) {
  const Reference r("MAMA", 8);
  const idx V = r.c.vocab_size;
  // 5 blocks of 4 tokens for two sequences: tokens 0..7 take 4 blocks; token 8 needs 2 more.
  InferenceSession<double> s(r.c, r.m.params(), kB, 4, 5);
  const std::vector<double> first = stepped_logits(s, r.tokens, 8);
  for (idx b = 0; b < kB; ++b)
    EXPECT_LT(
        max_rel_diff(std::vector<double>(first.begin() + b * 8 * V, first.begin() + (b + 1) * 8 * V), r.rows(b, 0, 8)),
        1e-10)
        << "sequence " << b;
  EXPECT_EQ(s.free_blocks(), 1);
  const std::int32_t col[kB] = {r.tokens[8], r.tokens[kT + 8]};
  try {
    s.step(col);
    FAIL() << "expected KvCacheFull";
  } catch (const KvCacheFull& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("exhausted"), std::string::npos) << msg;
    EXPECT_NE(msg.find("sequence 1 at position 8"), std::string::npos) << msg;
  }
  // Sequence 0's block went back: nothing was consumed.
  EXPECT_EQ(s.free_blocks(), 1);
  EXPECT_EQ(s.position(0), 8);
  EXPECT_EQ(s.position(1), 8);

  // Freeing sequence 1 lets sequence 0 go on exactly as the full forward, while sequence 1
  // restarts from position 0 as a fresh sequence.
  s.reset_sequence(1);
  EXPECT_EQ(s.free_blocks(), 3);
  for (idx t = 8; t < 12; ++t) {
    const std::int32_t step_tokens[kB] = {r.tokens[std::size_t(t)], r.tokens[std::size_t(kT + t - 8)]};
    const double* lg = s.step(step_tokens);
    EXPECT_LT(max_rel_diff(std::vector<double>(lg, lg + V), r.rows(0, t, t + 1)), 1e-10) << "sequence 0, token " << t;
    EXPECT_LT(max_rel_diff(std::vector<double>(lg + V, lg + 2 * V), r.rows(1, t - 8, t - 7)), 1e-10)
        << "sequence 1, token " << t - 8;
  }
}

TEST(Inference, ResetReusesBlocksAndReproduces) {
  const Reference r("MAMA", 9);
  // Exactly enough blocks for one pass: a second pass works only if reset returned them all.
  InferenceSession<double> s(r.c, r.m.params(), kB, 4, 2 * kT / 4);
  const std::vector<double> first = stepped_logits(s, r.tokens, kT);
  EXPECT_EQ(s.free_blocks(), 0);
  s.reset();
  EXPECT_EQ(s.free_blocks(), 2 * kT / 4);
  EXPECT_EQ(s.position(1), 0);
  const std::vector<double> second = stepped_logits(s, r.tokens, kT);
  EXPECT_EQ(first, second);  // same blocks in the same order, same arithmetic: bit-identical
}

// With every attention layer bounded, a pool of B * bounded_blocks blocks (a quarter or less of
// what 40 tokens take under full) carries both sequences to the end, the logits equal the full
// forward under the same neighborhood at every position, and no step holds more blocks than the
// bound. Pages of 4 tokens, so windows and clusters straddle them.
TEST(Inference, BoundedNeighborhoodsFreeOldBlocksAndMatchTheFullForward) {
  for (const std::string nb : {"sliding:6", "block:8", "dilated:3:4", "sink:2+sliding:5", "sliding:3,block:5"}) {
    const Reference r("MAMA", 10, nb);
    const idx bound = InferenceSession<double>::bounded_blocks(r.c, 4);
    ASSERT_GT(bound, 0) << nb;
    ASSERT_LE(bound * 4, kT / 2) << nb;
    InferenceSession<double> s(r.c, r.m.params(), kB, 4, kB * bound);
    const idx V = r.c.vocab_size;
    for (idx t = 0; t < kT; ++t) {
      const std::int32_t col[kB] = {r.tokens[std::size_t(t)], r.tokens[std::size_t(kT + t)]};
      const double* lg = s.step(col);
      for (idx b = 0; b < kB; ++b)
        EXPECT_LT(max_rel_diff(std::vector<double>(lg + b * V, lg + (b + 1) * V), r.rows(b, t, t + 1)), 1e-10)
            << nb << ": sequence " << b << ", token " << t;
    }
    // The same pool under full attention runs out: the neighborhood is what bounds it.
    const Reference full("MAMA", 10);
    InferenceSession<double> unbounded(full.c, full.m.params(), kB, 4, kB * bound);
    EXPECT_THROW(stepped_logits(unbounded, full.tokens, kT), KvCacheFull) << nb;
  }
  EXPECT_EQ(InferenceSession<double>::bounded_blocks(with_neighborhood(small_config("MA"), "log"), 4), -1);
  EXPECT_EQ(InferenceSession<double>::bounded_blocks(with_neighborhood(small_config("MAA"), "sliding:9,full"), 4), -1);
}

// A rule that reads back arbitrarily far (log: distances 0, 1, 2, 4, ...) frees nothing but still
// masks in the decode kernel: the steps equal the full forward under log.
TEST(Inference, LogNeighborhoodStepsMatchTheFullForward) {
  const Reference r("MAMA", 11, "log");
  InferenceSession<double> s(r.c, r.m.params(), kB, 4, 2 * kT / 4);
  EXPECT_LT(max_rel_diff(stepped_logits(s, r.tokens, kT), r.logits), 1e-10);
  EXPECT_EQ(s.free_blocks(), 0);
  const Reference full("MAMA", 11);  // the same weights and tokens under full attention differ
  EXPECT_GT(max_rel_diff(full.logits, r.logits), 1e-3);
}

// A long run under sliding: 4 blocks of 4 tokens carry one sequence through 200 tokens, and the
// sequence's reset gives them all back.
TEST(Inference, SlidingCacheStaysBoundedOverALongSequence) {
  ModelConfig c = with_neighborhood(small_config("MA"), "sliding:5");
  Model<double> m(c, BatchShape{1, 1});
  m.init(3);
  const idx bound = InferenceSession<double>::bounded_blocks(c, 4);
  EXPECT_EQ(bound, 3);
  InferenceSession<double> s(c, m.params(), 1, 4, bound);
  const auto tokens = random_tokens(c, 200, 4);
  for (idx t = 0; t < 200; ++t) s.step(&tokens[std::size_t(t)]);
  EXPECT_EQ(s.position(0), 200);
  // Token 199 reads keys 195..199: blocks 48 (192..195) and 49 (196..199) are held, the rest free.
  EXPECT_EQ(s.free_blocks(), bound - 2);
  s.reset_sequence(0);
  EXPECT_EQ(s.free_blocks(), bound);
}

TEST(Inference, RejectsTokensOutsideTheVocabulary) {
  const ModelConfig c = small_config("MA");
  Model<double> m(c, BatchShape{1, 1});
  InferenceSession<double> s(c, m.params(), 2);
  const std::int32_t bad[2] = {3, 37};
  EXPECT_THROW(s.step(bad), std::invalid_argument);
  EXPECT_EQ(s.position(0), 0);
}

}  // namespace
}  // namespace nexus
