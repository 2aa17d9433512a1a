// The distributed loader: batch contents against the documented offsets, dp ranks partitioning
// the dp = 1 batch, epoch wrap, exact resume from a saved position, and the validation messages.
#include <gtest/gtest.h>

#include "data/loader.h"
#include "data/shard.h"
#include "data_test_util.h"

namespace nexus {
namespace {

using test::error_of;
using test::TempDir;

// Token i of the stream has value i (uint32 shards), split over two shards, so every token
// states its own offset.
std::unique_ptr<SequenceSource> counting_tokens(const TempDir& dir, idx n, idx seq_len) {
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (idx i = 0; i < n; ++i) t[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
  const idx half = n / 3;
  write_shard(dir.file("c_000.bin"), t.data(), half, ShardFormat::u32);
  write_shard(dir.file("c_001.bin"), t.data() + half, n - half, ShardFormat::u32);
  return std::make_unique<TokenSequences>(TokenSource::open(dir.file("c_*.bin"), n), seq_len);
}

std::vector<Batch> take(DataLoader& loader, int steps) {
  std::vector<Batch> out(static_cast<std::size_t>(steps));
  for (auto& b : out) loader.next(b);
  return out;
}

void expect_same(const Batch& a, const Batch& b) {
  EXPECT_EQ(a.B, b.B);
  EXPECT_EQ(a.T, b.T);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.targets, b.targets);
}

TEST(Loader, TokenBatchesFollowTheStream) {
  TempDir dir;
  const idx T = 8, G = 4, n = 1000;  // (1000 - 1) / 8 = 124 sequences = 31 full batches
  DataLoader loader(counting_tokens(dir, n, T), G);
  ASSERT_EQ(loader.source().num_sequences(), 124);
  Batch b;
  for (idx step = 0; step < 40; ++step) {
    loader.next(b);
    ASSERT_EQ(b.B, G);
    ASSERT_EQ(b.T, T);
    const idx first_seq = (step % 31) * G;  // epoch 1 restarts at sequence 0
    for (idx r = 0; r < G; ++r)
      for (idx t = 0; t < T; ++t) {
        const idx want = (first_seq + r) * T + t;
        ASSERT_EQ(b.tokens[static_cast<std::size_t>(r * T + t)], want) << "step " << step;
        ASSERT_EQ(b.targets[static_cast<std::size_t>(r * T + t)], want + 1) << "step " << step;
      }
  }
  EXPECT_EQ(loader.position(), (LoaderPosition{1, 9 * G}));
}

TEST(Loader, EpochWrapsAfterTheLastFullBatch) {
  TempDir dir;
  // 10 sequences of 4 + 1 tokens, global batch 4: batches start at 0 and 4; 8 and 9 are skipped.
  DataLoader loader(counting_tokens(dir, 41, 4), 4);
  Batch b;
  loader.next(b);
  EXPECT_EQ(loader.position(), (LoaderPosition{0, 4}));
  loader.next(b);
  EXPECT_EQ(b.tokens[0], 16);
  EXPECT_EQ(loader.position(), (LoaderPosition{1, 0}));
  loader.next(b);
  EXPECT_EQ(b.tokens[0], 0);
  EXPECT_EQ(b.targets.back(), 16);  // the last target of sequence 3 is token 16
}

TEST(Loader, DpRanksPartitionTheGlobalBatch) {
  TempDir dir;
  const idx T = 16, G = 8;
  for (const idx dp : {2, 4}) {
    DataLoader whole(counting_tokens(dir, 2000, T), G);
    std::vector<std::unique_ptr<DataLoader>> ranks;
    for (idx r = 0; r < dp; ++r) ranks.push_back(std::make_unique<DataLoader>(counting_tokens(dir, 2000, T), G, r, dp));
    Batch full, part;
    for (int step = 0; step < 20; ++step) {  // crosses an epoch boundary (15 batches per epoch)
      whole.next(full);
      std::vector<std::int32_t> tokens, targets;
      for (auto& l : ranks) {
        l->next(part);
        ASSERT_EQ(part.B, G / dp);
        tokens.insert(tokens.end(), part.tokens.begin(), part.tokens.end());
        targets.insert(targets.end(), part.targets.begin(), part.targets.end());
      }
      ASSERT_EQ(tokens, full.tokens) << "dp " << dp << " step " << step;
      ASSERT_EQ(targets, full.targets) << "dp " << dp << " step " << step;
    }
  }
}

TEST(Loader, MqarRanksPartitionTheGlobalBatchToo) {
  MqarConfig c;
  DataLoader whole(std::make_unique<MqarSequences>(c, MqarSplit::train), 6);
  DataLoader r0(std::make_unique<MqarSequences>(c, MqarSplit::train), 6, 0, 2);
  DataLoader r1(std::make_unique<MqarSequences>(c, MqarSplit::train), 6, 1, 2);
  Batch full, a, b;
  for (int step = 0; step < 3; ++step) {
    whole.next(full);
    r0.next(a);
    r1.next(b);
    a.tokens.insert(a.tokens.end(), b.tokens.begin(), b.tokens.end());
    a.targets.insert(a.targets.end(), b.targets.begin(), b.targets.end());
    EXPECT_EQ(a.tokens, full.tokens);
    EXPECT_EQ(a.targets, full.targets);
  }
  // Row r of step s is MQAR sample s * 6 + r, straight from the task.
  const MqarTask task(c);
  std::vector<std::int32_t> tok(64), tgt(64);
  task.sample(MqarSplit::train, 2 * 6 + 5, tok.data(), tgt.data());
  EXPECT_EQ(std::vector<std::int32_t>(full.tokens.begin() + 5 * 64, full.tokens.end()), tok);
  EXPECT_EQ(std::vector<std::int32_t>(full.targets.begin() + 5 * 64, full.targets.end()), tgt);
}

TEST(Loader, RestoredPositionGivesIdenticalBatches) {
  TempDir dir;
  DataLoader a(counting_tokens(dir, 3000, 32), 4, 1, 2);
  take(a, 7);
  const std::string saved = a.position().to_string();
  EXPECT_EQ(LoaderPosition::parse(saved), a.position());
  const auto expected = take(a, 50);  // crosses epochs (23 batches each)

  DataLoader b(counting_tokens(dir, 3000, 32), 4, 1, 2);
  take(b, 3);  // somewhere else entirely
  b.restore(LoaderPosition::parse(saved));
  const auto got = take(b, 50);
  for (std::size_t i = 0; i < got.size(); ++i) expect_same(got[i], expected[i]);

  // Resuming on a different dp size continues the same global stream.
  DataLoader c(counting_tokens(dir, 3000, 32), 4, 0, 1);
  c.restore(LoaderPosition::parse(saved));
  Batch whole;
  c.next(whole);
  EXPECT_EQ(std::vector<std::int32_t>(whole.tokens.begin() + 2 * 32, whole.tokens.end()), expected[0].tokens);
}

TEST(Loader, EvalLoaderResetsToTheStart) {
  MqarConfig c;
  DataLoader eval(std::make_unique<MqarSequences>(c, MqarSplit::eval, 32), 8);
  const auto first = take(eval, 4);
  EXPECT_EQ(eval.position(), (LoaderPosition{1, 0}));  // 32 sequences = exactly 4 batches
  eval.reset();
  const auto again = take(eval, 4);
  for (std::size_t i = 0; i < 4; ++i) expect_same(first[i], again[i]);
  DataLoader train(std::make_unique<MqarSequences>(c, MqarSplit::train), 8);
  EXPECT_NE(take(train, 1)[0].tokens, first[0].tokens);
}

TEST(Loader, ReusesTheBatchBuffers) {
  DataLoader loader(std::make_unique<MqarSequences>(MqarConfig{}, MqarSplit::train), 4);
  Batch b;
  loader.next(b);
  const auto* tokens = b.tokens.data();
  const auto* targets = b.targets.data();
  for (int i = 0; i < 5; ++i) loader.next(b);
  EXPECT_EQ(b.tokens.data(), tokens);
  EXPECT_EQ(b.targets.data(), targets);
}

TEST(Loader, ValidationMessages) {
  TempDir dir;
  auto msg = error_of([&] { DataLoader l(counting_tokens(dir, 1000, 8), 6, 0, 4); });
  EXPECT_NE(msg.find("global_batch = 6"), std::string::npos) << msg;
  EXPECT_NE(msg.find("dp = 4"), std::string::npos) << msg;
  msg = error_of([&] { DataLoader l(counting_tokens(dir, 1000, 8), 8, 4, 4); });
  EXPECT_NE(msg.find("dp_rank = 4"), std::string::npos) << msg;
  msg = error_of([&] { DataLoader l(counting_tokens(dir, 30, 8), 4); });  // 3 sequences
  EXPECT_NE(msg.find("3 sequences"), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir.file("c_000.bin")), std::string::npos) << msg;

  DataLoader l(counting_tokens(dir, 1000, 8), 4);  // 124 sequences
  msg = error_of([&] { l.restore({0, 121}); });
  EXPECT_NE(msg.find("epoch=0,sequence=121"), std::string::npos) << msg;
  l.restore({3, 120});
  EXPECT_NE(error_of([] { LoaderPosition::parse("epoch=1,seq=2"); }).find("epoch=1,seq=2"), std::string::npos);
  EXPECT_NE(error_of([] { LoaderPosition::parse("epoch=1,sequence=2x"); }).find("form"), std::string::npos);
}

}  // namespace
}  // namespace nexus
