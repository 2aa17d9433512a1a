// The byte tokenizer: exact token values for ASCII and UTF-8, round trips over every byte value,
// EOT rendering, and the vocabulary checks.
#include <gtest/gtest.h>

#include "data/byte_tokenizer.h"
#include "data_test_util.h"

namespace nexus {
namespace {

TEST(ByteTokenizer, TokensAreTheBytes) {
  // "é" is UTF-8 C3 A9, "✓" is E2 9C 93.
  EXPECT_EQ(byte_encode("Aé✓\n"), (std::vector<std::int32_t>{65, 0xC3, 0xA9, 0xE2, 0x9C, 0x93, 10}));
  EXPECT_TRUE(byte_encode("").empty());
  std::vector<std::int32_t> out = {kByteEot};
  byte_encode("hi", out);  // appends
  EXPECT_EQ(out, (std::vector<std::int32_t>{256, 104, 105}));
}

TEST(ByteTokenizer, RoundTripsEveryByteValue) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  all += "Grüße, 世界 end";
  const auto t = byte_encode(all);
  ASSERT_EQ(t.size(), all.size());
  for (std::size_t i = 0; i < 256; ++i) EXPECT_EQ(t[i], static_cast<std::int32_t>(i));
  EXPECT_EQ(byte_decode(t.data(), static_cast<idx>(t.size())), all);
}

TEST(ByteTokenizer, DecodesEotAndRejectsOthers) {
  const std::vector<std::int32_t> t = {kByteEot, 'a', kByteEot, 'b'};
  EXPECT_EQ(byte_decode(t.data(), 4), "<|endoftext|>a<|endoftext|>b");
  EXPECT_EQ(byte_decode(t.data(), 4, "|"), "|a|b");
  const std::vector<std::int32_t> bad = {'a', 257};
  const auto msg = test::error_of([&] { byte_decode(bad.data(), 2); });
  EXPECT_NE(msg.find("token 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("257"), std::string::npos) << msg;
  const std::vector<std::int32_t> neg = {-1};
  EXPECT_NE(test::error_of([&] { byte_decode(neg.data(), 1); }).find("-1"), std::string::npos);
}

TEST(ByteTokenizer, VocabularyChecks) {
  EXPECT_EQ(kByteVocabSize, 257);
  check_byte_vocab(257);
  check_byte_vocab(320);
  const auto msg = test::error_of([] { check_byte_vocab(256); });
  EXPECT_NE(msg.find("vocab_size = 256"), std::string::npos) << msg;
  EXPECT_NE(msg.find("257"), std::string::npos) << msg;
  EXPECT_EQ(padded_vocab_size(257), 320);
  EXPECT_EQ(padded_vocab_size(256), 256);
  EXPECT_EQ(padded_vocab_size(257, 8), 264);
}

}  // namespace
}  // namespace nexus
