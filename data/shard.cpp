#include "data/shard.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

namespace nexus {

// The format is little-endian on disk and read without byte swapping.
static_assert(std::endian::native == std::endian::little, "token shards assume a little-endian host");

idx shard_token_width(ShardFormat format) { return format == ShardFormat::u16 ? 2 : 4; }

void write_shard(const std::string& path, const std::int32_t* tokens, idx count, ShardFormat format) {
  if (count < 0 || count > std::numeric_limits<std::int32_t>::max())
    throw data_error(path, ": cannot write ", count, " tokens in one shard (the header count is int32)");
  const bool u16 = format == ShardFormat::u16;
  const std::int64_t max_token = u16 ? 65535 : std::numeric_limits<std::int32_t>::max();
  for (idx i = 0; i < count; ++i)
    if (tokens[i] < 0 || tokens[i] > max_token)
      throw data_error(path, ": token ", i, " has value ", tokens[i], ", expected 0..", max_token, " for ",
                       u16 ? "uint16" : "uint32", " shards");

  std::int32_t header[kShardHeaderInts] = {};
  header[0] = u16 ? kShardMagicU16 : kShardMagicU32;
  header[1] = u16 ? kShardVersionU16 : kShardVersionU32;
  header[2] = static_cast<std::int32_t>(count);

  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw data_error("cannot create token shard '", path, "': ", std::strerror(errno));
  bool ok = std::fwrite(header, sizeof(header), 1, f) == 1;
  if (u16) {
    // Narrow in blocks so a billion-token shard needs no second full-size copy.
    std::vector<std::uint16_t> block(static_cast<std::size_t>(std::min<idx>(count, idx(1) << 20)));
    for (idx done = 0; ok && done < count;) {
      const idx n = std::min<idx>(count - done, static_cast<idx>(block.size()));
      for (idx i = 0; i < n; ++i) block[static_cast<std::size_t>(i)] = static_cast<std::uint16_t>(tokens[done + i]);
      ok = std::fwrite(block.data(), 2, static_cast<std::size_t>(n), f) == static_cast<std::size_t>(n);
      done += n;
    }
  } else if (count > 0) {
    ok = ok && std::fwrite(tokens, 4, static_cast<std::size_t>(count), f) == static_cast<std::size_t>(count);
  }
  const int saved_errno = errno;
  if (std::fclose(f) != 0) ok = false;
  if (!ok) throw data_error("failed writing token shard '", path, "': ", std::strerror(saved_errno ? saved_errno : errno));
}

// Reads exactly n bytes at offset, retrying short reads; false at end of file or on error.
static bool pread_all(int fd, void* buf, std::size_t n, idx offset) {
  auto* p = static_cast<unsigned char*>(buf);
  while (n > 0) {
    const ssize_t got = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    p += got;
    n -= static_cast<std::size_t>(got);
    offset += got;
  }
  return true;
}

ShardReader::ShardReader(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw data_error("cannot open token shard '", path_, "': ", std::strerror(errno));
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw data_error("cannot stat token shard '", path_, "': ", std::strerror(errno));
    if (!S_ISREG(st.st_mode))  // a directory opens read-only too, and reads as 0 bytes
      throw data_error("token shard '", path_, "' is ", S_ISDIR(st.st_mode) ? "a directory" : "not a regular file",
                       "; expected an llm.c .bin shard");
    const idx file_bytes = static_cast<idx>(st.st_size);
    std::int32_t header[kShardHeaderInts];
    if (file_bytes < kShardHeaderBytes || !pread_all(fd_, header, sizeof(header), 0))
      throw data_error(path_, ": truncated token shard: the file has ", file_bytes, " bytes, expected at least the ",
                       kShardHeaderBytes, "-byte header");
    if (header[0] == kShardMagicU16) {
      format_ = ShardFormat::u16;
    } else if (header[0] == kShardMagicU32) {
      format_ = ShardFormat::u32;
    } else {
      throw data_error(path_, ": bad magic ", header[0], " at byte offset 0, expected ", kShardMagicU16,
                       " (uint16 tokens) or ", kShardMagicU32, " (uint32 tokens); is this an llm.c token shard?");
    }
    const std::int32_t version = format_ == ShardFormat::u16 ? kShardVersionU16 : kShardVersionU32;
    if (header[1] != version)
      throw data_error(path_, ": unsupported version ", header[1], " at byte offset 4, expected ", version,
                       " for magic ", header[0]);
    if (header[2] < 0)
      throw data_error(path_, ": negative token count ", header[2], " at byte offset 8");
    count_ = header[2];
    const idx width = shard_token_width(format_);
    const idx expected = kShardHeaderBytes + count_ * width;
    if (file_bytes != expected)
      throw data_error(path_, ": ", file_bytes < expected ? "truncated" : "overlong", " token shard: the header (byte offset 8) says ",
                       count_, " tokens of ", width, " bytes, so the file should have ", expected, " bytes, but it has ",
                       file_bytes, " (", file_bytes < expected ? "data ends at token " : "extra bytes after token ",
                       (std::min(file_bytes, expected) - kShardHeaderBytes) / width, ")");
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

ShardReader::~ShardReader() {
  if (fd_ >= 0) ::close(fd_);
}

void ShardReader::read(idx start, idx count, std::int32_t* out) {
  if (start < 0 || count < 0 || start + count > count_)
    throw data_error(path_, ": token range [", start, ", ", start + count, ") is outside the shard's ", count_, " tokens");
  const idx width = shard_token_width(format_);
  auto* bytes = reinterpret_cast<unsigned char*>(out);
  errno = 0;
  if (!pread_all(fd_, bytes, static_cast<std::size_t>(count * width), kShardHeaderBytes + start * width))
    throw data_error(path_, ": read of tokens [", start, ", ", start + count, ") at byte offset ",
                     kShardHeaderBytes + start * width, " failed: ", errno ? std::strerror(errno) : "unexpected end of file");
  if (format_ == ShardFormat::u16) {
    // Widen in place from the back: out[i] (bytes 4i..4i+3) only overwrites uint16 entries 2i and
    // 2i+1, which are at or after i and so already consumed.
    for (idx i = count - 1; i >= 0; --i) {
      std::uint16_t v;
      std::memcpy(&v, bytes + 2 * i, 2);
      out[i] = static_cast<std::int32_t>(v);
    }
  }
}

std::string ShardReader::locate(idx i) const {
  return "token " + std::to_string(i) + " (byte offset " +
         std::to_string(kShardHeaderBytes + i * shard_token_width(format_)) + ")";
}

}  // namespace nexus
