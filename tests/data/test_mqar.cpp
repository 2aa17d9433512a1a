// MQAR: determinism per (seed, split, index), the structure of every sample checked by an
// independent parser, the validation messages, and the accuracy helpers.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "data/mqar.h"
#include "data_test_util.h"

namespace nexus {
namespace {

struct Sample {
  std::vector<std::int32_t> tokens, targets;
  bool operator==(const Sample&) const = default;
};

Sample draw(const MqarTask& task, MqarSplit split, idx index) {
  const auto T = static_cast<std::size_t>(task.config().seq_len);
  Sample s{std::vector<std::int32_t>(T, -99), std::vector<std::int32_t>(T, -99)};
  task.sample(split, index, s.tokens.data(), s.targets.data());
  return s;
}

// Checks the task's contract from the tokens alone: the context is P pairs of distinct keys and
// distinct values from the documented ranges; an answer position holds a context key, its target
// and the next token are that key's value; exactly Q distinct keys are asked; everything else is
// pad with target -1.
void verify(const MqarConfig& c, const Sample& s) {
  const idx K = (c.vocab_size - 1) / 2, P = c.num_pairs, T = c.seq_len;
  std::map<std::int32_t, std::int32_t> value_of;
  std::set<std::int32_t> values;
  for (idx i = 0; i < P; ++i) {
    const auto k = s.tokens[static_cast<std::size_t>(2 * i)], v = s.tokens[static_cast<std::size_t>(2 * i + 1)];
    ASSERT_TRUE(k >= 1 && k < 1 + K) << "key " << k;
    ASSERT_TRUE(v >= 1 + K && v < c.vocab_size) << "value " << v;
    ASSERT_TRUE(value_of.emplace(k, v).second) << "repeated key " << k;
    ASSERT_TRUE(values.insert(v).second) << "repeated value " << v;
    ASSERT_EQ(s.targets[static_cast<std::size_t>(2 * i)], -1);
    ASSERT_EQ(s.targets[static_cast<std::size_t>(2 * i + 1)], -1);
  }
  std::set<std::int32_t> asked;
  for (idx t = 2 * P; t < T; ++t) {
    const auto tok = s.tokens[static_cast<std::size_t>(t)], tgt = s.targets[static_cast<std::size_t>(t)];
    if (tgt >= 0) {
      ASSERT_TRUE(value_of.count(tok)) << "query token " << tok << " at " << t << " is not a context key";
      ASSERT_EQ(tgt, value_of[tok]) << "at " << t;
      ASSERT_LT(t + 1, T);
      ASSERT_EQ(s.tokens[static_cast<std::size_t>(t + 1)], tgt) << "the value follows its query";
      ASSERT_EQ(s.targets[static_cast<std::size_t>(t + 1)], -1);
      ASSERT_TRUE(asked.insert(tok).second) << "key " << tok << " asked twice";
      ++t;  // the value position was just checked
    } else {
      ASSERT_EQ(tgt, -1);
      ASSERT_EQ(tok, MqarTask::kPad) << "at " << t;
    }
  }
  ASSERT_EQ(static_cast<idx>(asked.size()), c.num_queries);
}

TEST(Mqar, DeterministicPerSeedSplitAndIndex) {
  const MqarTask task(MqarConfig{});
  const MqarTask same(MqarConfig{});
  MqarConfig other_seed;
  other_seed.seed = 99;
  const MqarTask other(other_seed);
  EXPECT_EQ(draw(task, MqarSplit::train, 5), draw(same, MqarSplit::train, 5));
  EXPECT_EQ(draw(task, MqarSplit::train, 123456789), draw(task, MqarSplit::train, 123456789));
  std::set<std::vector<std::int32_t>> seen;
  for (idx i = 0; i < 200; ++i) seen.insert(draw(task, MqarSplit::train, i).tokens);
  for (idx i = 0; i < 200; ++i) seen.insert(draw(task, MqarSplit::eval, i).tokens);
  for (idx i = 0; i < 200; ++i) seen.insert(draw(other, MqarSplit::train, i).tokens);
  EXPECT_EQ(seen.size(), 600u) << "indices, splits and seeds must give different samples";
}

TEST(Mqar, EverySampleHasTheContractedStructure) {
  std::vector<MqarConfig> configs(5);
  configs[1].num_queries = 3;                                                        // fewer queries than pairs
  configs[2].seq_len = 2 * (configs[2].num_pairs + configs[2].num_queries);           // no pad at all
  configs[3].seq_len = 67;                                                           // odd tail
  configs[4] = {256, 128, 16, 16, 7};                                                // larger
  for (const auto& c : configs) {
    const MqarTask task(c);
    for (idx i = 0; i < 300; ++i) {
      for (const auto split : {MqarSplit::train, MqarSplit::eval}) {
        SCOPED_TRACE("sample " + std::to_string(i) + " seq_len " + std::to_string(c.seq_len));
        verify(c, draw(task, split, i));
      }
    }
  }
  // The smallest vocabulary where pairs use every key and value.
  const MqarConfig tight{5, 8, 2, 2, 1};
  verify(tight, draw(MqarTask(tight), MqarSplit::train, 3));
}

TEST(Mqar, KeysPositionsAndQueriesVary) {
  // Uniform sampling: over many samples every key appears first, and queries land in many slots.
  const MqarConfig c;
  const MqarTask task(c);
  std::set<std::int32_t> first_keys;
  std::set<idx> first_query_pos;
  for (idx i = 0; i < 2000; ++i) {
    const auto s = draw(task, MqarSplit::train, i);
    first_keys.insert(s.tokens[0]);
    for (idx t = 0; t < c.seq_len; ++t)
      if (s.targets[static_cast<std::size_t>(t)] >= 0) {
        first_query_pos.insert(t);
        break;
      }
  }
  EXPECT_EQ(static_cast<idx>(first_keys.size()), (c.vocab_size - 1) / 2);
  EXPECT_GT(first_query_pos.size(), 10u);
}

TEST(Mqar, ValidationNamesTheField) {
  auto msg_of = [](MqarConfig c) { return test::error_of([&] { MqarTask t(c); }); };
  MqarConfig c;
  c.num_pairs = 40;
  EXPECT_NE(msg_of(c).find("mqar.num_pairs = 40"), std::string::npos) << msg_of(c);
  c = {};
  c.num_queries = 9;
  EXPECT_NE(msg_of(c).find("mqar.num_queries = 9"), std::string::npos);
  c = {};
  c.seq_len = 31;
  EXPECT_NE(msg_of(c).find("mqar.seq_len = 31"), std::string::npos);
  c = {};
  c.vocab_size = 2;
  EXPECT_NE(msg_of(c).find("mqar.vocab_size = 2"), std::string::npos);
}

TEST(Mqar, AccuracyCountsOnlyAnswers) {
  const std::vector<std::int32_t> targets = {-1, 5, -1, 7, 9, -1};
  const std::vector<std::int32_t> predicted = {5, 5, 0, 8, 9, 1};
  const auto s = score_answers(predicted.data(), targets.data(), 6);
  EXPECT_EQ(s.correct, 2);
  EXPECT_EQ(s.total, 3);
  EXPECT_DOUBLE_EQ(s.accuracy(), 2.0 / 3.0);

  // Logits [3, 4]: argmax 2 (right), 1 (wrong, target 3), the third row is ignored.
  const std::vector<float> logits = {0, 1, 3, 2, /**/ 0, 5, 0, 4, /**/ 9, 0, 0, 0};
  const std::vector<std::int32_t> t2 = {2, 3, -1};
  auto s2 = score_answer_logits(logits.data(), 4, t2.data(), 3);
  EXPECT_EQ(s2.correct, 1);
  EXPECT_EQ(s2.total, 2);
  s2 += s;
  EXPECT_EQ(s2.correct, 3);
  EXPECT_EQ(s2.total, 5);
  EXPECT_EQ(AnswerScore{}.accuracy(), 0.0);
}

}  // namespace
}  // namespace nexus
