// llm.c token shards: the bytes write_shard produces, reading hand-made shards, every error, and
// a TokenSource over several shards.
#include <gtest/gtest.h>

#include <filesystem>
#include <numeric>

#include "data/shard.h"
#include "data/token_source.h"
#include "data_test_util.h"

namespace nexus {
namespace {

using test::error_of;
using test::raw_shard;
using test::read_bytes;
using test::TempDir;
using test::write_bytes;

// Tokens that exercise the top bit of each width (a sign-extension bug would show).
std::vector<std::uint32_t> sample_tokens(idx n, std::uint32_t max) {
  std::vector<std::uint32_t> t(static_cast<std::size_t>(n));
  for (idx i = 0; i < n; ++i) t[static_cast<std::size_t>(i)] = static_cast<std::uint32_t>((i * 2654435761u) % (max + 1ull));
  t[0] = max;
  t[1] = 0;
  return t;
}

std::vector<std::int32_t> as_int32(const std::vector<std::uint32_t>& v) { return {v.begin(), v.end()}; }

TEST(Shard, WriteProducesTheLlmcBytes) {
  TempDir dir;
  struct Case { ShardFormat format; std::int32_t magic, version; int width; std::uint32_t max; };
  for (const auto& c : {Case{ShardFormat::u16, 20240520, 1, 2, 65535}, Case{ShardFormat::u32, 20240801, 7, 4, 0x7fffffff}}) {
    const auto tokens = sample_tokens(300, c.max);
    const auto ints = as_int32(tokens);
    write_shard(dir.file("a.bin"), ints.data(), 300, c.format);
    EXPECT_EQ(read_bytes(dir.file("a.bin")), raw_shard(c.magic, c.version, 300, tokens, c.width));
  }
}

// Random-access reads of a hand-made file return exactly the tokens written.
void check_reads(ShardFormat format, std::int32_t magic, std::int32_t version, int width, std::uint32_t max) {
  TempDir dir;
  const idx n = 1000;
  const auto tokens = sample_tokens(n, max);
  write_bytes(dir.file("s.bin"), raw_shard(magic, version, static_cast<std::int32_t>(n), tokens, width));
  ShardReader r(dir.file("s.bin"));
  EXPECT_EQ(r.format(), format);
  ASSERT_EQ(r.size(), n);
  for (const auto& [start, count] : std::vector<std::pair<idx, idx>>{{0, n}, {0, 1}, {999, 1}, {123, 456}, {500, 0}}) {
    std::vector<std::int32_t> out(static_cast<std::size_t>(count) + 1, -7);
    r.read(start, count, out.data());
    for (idx i = 0; i < count; ++i)
      ASSERT_EQ(static_cast<std::uint32_t>(out[static_cast<std::size_t>(i)]), tokens[static_cast<std::size_t>(start + i)])
          << "start " << start << " i " << i;
    EXPECT_EQ(out.back(), -7) << "read wrote past the range";
  }
  EXPECT_NE(error_of([&] { std::int32_t x; r.read(n, 1, &x); }).find("outside"), std::string::npos);
}

TEST(Shard, ReadsHandMadeU16) { check_reads(ShardFormat::u16, 20240520, 1, 2, 65535); }
TEST(Shard, ReadsHandMadeU32) { check_reads(ShardFormat::u32, 20240801, 7, 4, 0x7fffffff); }

TEST(Shard, RoundTripBothFormats) {
  TempDir dir;
  for (const auto format : {ShardFormat::u16, ShardFormat::u32}) {
    const auto ints = as_int32(sample_tokens(77, format == ShardFormat::u16 ? 65535 : 1u << 30));
    write_shard(dir.file("r.bin"), ints.data(), 77, format);
    ShardReader r(dir.file("r.bin"));
    std::vector<std::int32_t> back(77);
    r.read(0, 77, back.data());
    EXPECT_EQ(back, ints);
  }
}

TEST(Shard, WrongMagicNamesFileValueAndExpected) {
  TempDir dir;
  const auto path = dir.file("bad_magic.bin");
  write_bytes(path, raw_shard(12345, 1, 2, {1, 2}, 2));
  const auto msg = error_of([&] { ShardReader r(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("12345"), std::string::npos) << msg;
  EXPECT_NE(msg.find("byte offset 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("20240520"), std::string::npos) << msg;
  EXPECT_NE(msg.find("20240801"), std::string::npos) << msg;
}

TEST(Shard, WrongVersionAndNegativeCount) {
  TempDir dir;
  const auto path = dir.file("v.bin");
  write_bytes(path, raw_shard(20240801, 1, 2, {1, 2}, 4));
  auto msg = error_of([&] { ShardReader r(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("version 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected 7"), std::string::npos) << msg;
  write_bytes(path, raw_shard(20240520, 1, -5, {}, 2));
  msg = error_of([&] { ShardReader r(path); });
  EXPECT_NE(msg.find("negative token count -5"), std::string::npos) << msg;
}

TEST(Shard, TruncatedFileNamesSizes) {
  TempDir dir;
  const auto path = dir.file("short.bin");
  write_bytes(path, raw_shard(20240520, 1, 10, {1, 2, 3, 4, 5, 6, 7}, 2));  // 7 of 10 tokens
  const auto msg = error_of([&] { ShardReader r(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1044"), std::string::npos) << msg;  // expected 1024 + 10 * 2 bytes
  EXPECT_NE(msg.find("1038"), std::string::npos) << msg;  // found 1024 + 7 * 2
  EXPECT_NE(msg.find("token 7"), std::string::npos) << msg;

  write_bytes(path, std::vector<unsigned char>(100, 0));  // shorter than a header
  const auto msg2 = error_of([&] { ShardReader r(path); });
  EXPECT_NE(msg2.find(path), std::string::npos) << msg2;
  EXPECT_NE(msg2.find("100 bytes"), std::string::npos) << msg2;
}

TEST(Shard, MissingFileNamesIt) {
  TempDir dir;
  const auto path = dir.file("nope.bin");
  EXPECT_NE(error_of([&] { ShardReader r(path); }).find(path), std::string::npos);
  EXPECT_NE(error_of([&] { TokenSource::open(path, 100); }).find(path), std::string::npos);
}

TEST(Shard, WriteRejectsTokensTooWide) {
  TempDir dir;
  const std::vector<std::int32_t> t = {1, 70000, 3};
  const auto msg = error_of([&] { write_shard(dir.file("w.bin"), t.data(), 3, ShardFormat::u16); });
  EXPECT_NE(msg.find("token 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("70000"), std::string::npos) << msg;
}

TEST(TokenSource, TokenAtOrAboveVocabNamesFileIndexOffsetAndValue) {
  TempDir dir;
  const auto path = dir.file("v.bin");
  write_bytes(path, raw_shard(20240520, 1, 5, {1, 2, 3, 300, 4}, 2));
  auto src = TokenSource::open(path, 300);
  std::vector<std::int32_t> out(5);
  src.read(0, 3, out.data());  // the good prefix reads fine
  const auto msg = error_of([&] { src.read(1, 4, out.data()); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("token 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("byte offset 1030"), std::string::npos) << msg;  // 1024 + 3 * 2
  EXPECT_NE(msg.find("value 300"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[0, 300)"), std::string::npos) << msg;

  // A uint32 token above INT32_MAX is out of vocabulary too, not a negative id.
  write_bytes(path, raw_shard(20240801, 7, 2, {5, 0xfffffff0u}, 4));
  auto src2 = TokenSource::open(path, 300);
  const auto msg2 = error_of([&] { src2.read(0, 2, out.data()); });
  EXPECT_NE(msg2.find("4294967280"), std::string::npos) << msg2;
}

TEST(TokenSource, ConcatenatesGlobMatchesInSortedOrder) {
  TempDir dir;
  // Written out of order and in both formats; sizes 3, 0, 5, 4.
  write_bytes(dir.file("d_train_000003.bin"), raw_shard(20240801, 7, 4, {9, 10, 11, 12}, 4));
  write_bytes(dir.file("d_train_000001.bin"), raw_shard(20240520, 1, 3, {0, 1, 2}, 2));
  write_bytes(dir.file("d_train_000002.bin"), raw_shard(20240520, 1, 5, {3, 4, 5, 6, 7}, 2));
  write_bytes(dir.file("d_train_000001a.bin"), raw_shard(20240520, 1, 0, {}, 2));
  write_bytes(dir.file("d_val_000000.bin"), raw_shard(20240520, 1, 2, {99, 99}, 2));
  auto src = TokenSource::open(dir.file("d_train_*.bin"), 13);
  ASSERT_EQ(src.file_count(), 4);
  EXPECT_EQ(src.file(0).path(), dir.file("d_train_000001.bin"));
  EXPECT_EQ(src.file(3).path(), dir.file("d_train_000003.bin"));
  ASSERT_EQ(src.size(), 12);
  std::vector<std::int32_t> want(12), got(12);
  std::iota(want.begin(), want.end(), 0);
  want[8] = 9, want[9] = 10, want[10] = 11, want[11] = 12;  // the last shard starts at 9, not 8
  for (idx start = 0; start < 12; ++start)
    for (idx count = 0; start + count <= 12; ++count) {
      src.read(start, count, got.data());
      for (idx i = 0; i < count; ++i) ASSERT_EQ(got[static_cast<std::size_t>(i)], want[static_cast<std::size_t>(start + i)]);
    }

  // A comma list keeps its order; a pattern with no match is named.
  const auto paths = expand_paths(dir.file("d_val_000000.bin") + "," + dir.file("d_train_00000[12].bin"));
  ASSERT_EQ(paths.size(), 3u);
  EXPECT_EQ(paths[0], dir.file("d_val_000000.bin"));
  EXPECT_EQ(paths[2], dir.file("d_train_000002.bin"));
  const auto msg = error_of([&] { expand_paths(dir.file("x_*.bin")); });
  EXPECT_NE(msg.find(dir.file("x_*.bin")), std::string::npos) << msg;
}

TEST(TokenSource, ADirectoryReadsEveryTokenFileInItByName) {
  // data.path = DIR: before, the directory was opened as a shard ("truncated token shard").
  TempDir dir;
  std::filesystem::create_directories(dir.file("shards/sub"));
  write_bytes(dir.file("shards/b_000002.bin"), raw_shard(20240520, 1, 2, {5, 6}, 2));
  write_bytes(dir.file("shards/a_000001.bin"), raw_shard(20240801, 7, 3, {1, 2, 3}, 4));
  write_bytes(dir.file("shards/README.txt"), {'h', 'i'});                          // not a token file
  write_bytes(dir.file("shards/sub/c.bin"), raw_shard(20240520, 1, 1, {9}, 2));  // not descended into
  // The reference: the same files listed explicitly, in name order.
  const auto listed = expand_paths(dir.file("shards/a_000001.bin") + "," + dir.file("shards/b_000002.bin"));
  EXPECT_EQ(expand_paths(dir.file("shards")), listed);
  auto src = TokenSource::open(dir.file("shards"), 10);
  ASSERT_EQ(src.size(), 5);
  std::vector<std::int32_t> got(5);
  src.read(0, 5, got.data());
  EXPECT_EQ(got, (std::vector<std::int32_t>{1, 2, 3, 5, 6}));

  // A directory without token files, and a directory opened as a shard, are named as such.
  std::filesystem::create_directories(dir.file("empty"));
  std::string msg = error_of([&] { expand_paths(dir.file("empty")); });
  EXPECT_NE(msg.find("data directory '" + dir.file("empty") + "' holds no token files"), std::string::npos) << msg;
  msg = error_of([&] { ShardReader reader(dir.file("shards")); });
  EXPECT_NE(msg.find("is a directory"), std::string::npos) << msg;
}

}  // namespace
}  // namespace nexus
