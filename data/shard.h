// llm.c / nanoGPT token shards: a header of 256 little-endian int32 (header[0] magic,
// header[1] version, header[2] token count, the rest zero), then the tokens.
//
//   magic 20240520, version 1: uint16 tokens (llm.c "gpt-2")
//   magic 20240801, version 7: uint32 tokens (llm.c "llama-3", dev/data/data_common.py)
//
// A file must be exactly 1024 + count * width bytes; anything else is reported as a truncated (or
// overlong) shard rather than read as garbage.
#pragma once

#include <cstdint>
#include <string>

#include "data/token_reader.h"

namespace nexus {

enum class ShardFormat { u16, u32 };

inline constexpr std::int32_t kShardMagicU16 = 20240520;
inline constexpr std::int32_t kShardVersionU16 = 1;
inline constexpr std::int32_t kShardMagicU32 = 20240801;
inline constexpr std::int32_t kShardVersionU32 = 7;
inline constexpr idx kShardHeaderInts = 256;
inline constexpr idx kShardHeaderBytes = kShardHeaderInts * 4;

// Bytes per token: 2 or 4.
idx shard_token_width(ShardFormat format);

// Writes `count` tokens to `path` (replacing it). Throws DataError naming the file and the token
// index if a token is negative or too wide for the format (>= 65536 for u16), if count >= 2^31
// (the header's int32 count), or if the write fails.
void write_shard(const std::string& path, const std::int32_t* tokens, idx count, ShardFormat format);

// One shard opened for random access with pread (no mapping, no whole-file read). The header and
// the file size are validated on open; DataError names the file on every failure (missing file,
// bad magic or version, negative count, truncated file).
class ShardReader final : public TokenReader {
 public:
  explicit ShardReader(std::string path);
  ~ShardReader() override;
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  ShardFormat format() const { return format_; }
  const std::string& path() const override { return path_; }
  idx size() const override { return count_; }
  // uint32 tokens above INT32_MAX arrive negative (same bits); TokenSource rejects them.
  void read(idx start, idx count, std::int32_t* out) override;
  std::string locate(idx i) const override;

 private:
  std::string path_;
  int fd_ = -1;
  idx count_ = 0;
  ShardFormat format_ = ShardFormat::u16;
};

}  // namespace nexus
