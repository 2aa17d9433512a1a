// `prepare`: text files -> val/train shards whose tokens decode back to the documents with EOT
// in front of each, cut at shard_tokens.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/byte_tokenizer.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "data_test_util.h"

namespace nexus {
namespace {

using test::TempDir;

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// All tokens of the shards, in order, after checking each shard's name, split and size.
std::vector<std::int32_t> read_all(const std::vector<PreparedShard>& shards, const std::string& prefix, idx shard_tokens) {
  std::vector<std::int32_t> all;
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const std::string split = i == 0 ? "val" : "train";
    char name[32];
    std::snprintf(name, sizeof(name), "_%s_%06zu.bin", split.c_str(), i);
    EXPECT_EQ(shards[i].path, prefix + name);
    EXPECT_EQ(shards[i].split, split);
    ShardReader r(shards[i].path);
    EXPECT_EQ(r.format(), ShardFormat::u16);
    EXPECT_EQ(r.size(), shards[i].tokens);
    if (i + 1 < shards.size()) {
      EXPECT_EQ(r.size(), shard_tokens) << "only the last shard may be short";
    }
    std::vector<std::int32_t> t(static_cast<std::size_t>(r.size()));
    r.read(0, r.size(), t.data());
    all.insert(all.end(), t.begin(), t.end());
  }
  return all;
}

TEST(Prepare, ShardsDecodeToTheDocumentsWithEot) {
  TempDir dir;
  const std::string a = "First document.\nWith two lines, ünïcode.", b = "Second: ✓";
  write_text(dir.file("a.txt"), a);
  write_text(dir.file("b.txt"), b);
  write_text(dir.file("empty.txt"), "");
  PrepareOptions o;
  o.inputs = {dir.file("a.txt"), dir.file("empty.txt"), dir.file("b.txt")};
  o.out_prefix = (dir.path() / "out" / "tiny").string();  // a directory that does not exist yet
  o.shard_tokens = 16;
  const auto shards = prepare_text_shards(o);
  const idx total = static_cast<idx>(a.size() + b.size()) + 2;  // + one EOT per non-empty document
  ASSERT_EQ(static_cast<idx>(shards.size()), (total + 15) / 16);
  const auto all = read_all(shards, o.out_prefix, 16);
  ASSERT_EQ(static_cast<idx>(all.size()), total);
  EXPECT_EQ(all.front(), kByteEot);
  EXPECT_EQ(byte_decode(all.data(), total, "|"), "|" + a + "|" + b);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path() / "out"), {}), static_cast<long>(shards.size()));
}

TEST(Prepare, SeparatorSplitsDocumentsAndGlobsExpand) {
  TempDir dir;
  write_text(dir.file("p1.txt"), "one\n\ntwo\n\n\n\nthree");
  write_text(dir.file("p2.txt"), "four");
  PrepareOptions o;
  o.inputs = {dir.file("p*.txt")};
  o.out_prefix = dir.file("sep");
  o.shard_tokens = 5;
  o.document_separator = "\n\n";
  const auto all = read_all(prepare_text_shards(o), o.out_prefix, 5);
  EXPECT_EQ(byte_decode(all.data(), static_cast<idx>(all.size()), "|"), "|one|two|three|four");
}

TEST(Prepare, OneShardIsAnErrorAndWritesNothing) {
  TempDir dir;
  write_text(dir.file("s.txt"), "tiny");
  PrepareOptions o;
  o.inputs = {dir.file("s.txt")};
  o.out_prefix = dir.file("x");
  o.shard_tokens = 5;  // exactly the 5 tokens: one shard, no train split
  const auto msg = test::error_of([&] { prepare_text_shards(o); });
  EXPECT_NE(msg.find("5 tokens"), std::string::npos) << msg;
  EXPECT_NE(msg.find("shard_tokens = 5"), std::string::npos) << msg;
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
  o.inputs = {dir.file("missing.txt")};
  EXPECT_NE(test::error_of([&] { prepare_text_shards(o); }).find("missing.txt"), std::string::npos);
}

}  // namespace
}  // namespace nexus
