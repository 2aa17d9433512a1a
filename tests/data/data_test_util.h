// Helpers shared by the data tests: a per-test temporary directory, raw file writers that do not go
// through the code under test, and capturing a DataError's message.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "data/token_reader.h"
#include "support/temp_dir.h"

namespace nexus::test {

inline void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(f), {});
}

inline void put_le(std::vector<unsigned char>& out, std::uint64_t v, int width) {
  for (int i = 0; i < width; ++i) out.push_back(static_cast<unsigned char>(v >> (8 * i)));
}

// An llm.c shard built byte by byte: header {magic, version, count, 0...} then `width`-byte
// little-endian tokens. `count` may disagree with tokens.size() to make malformed files.
inline std::vector<unsigned char> raw_shard(std::int32_t magic, std::int32_t version, std::int32_t count,
                                            const std::vector<std::uint32_t>& tokens, int width) {
  std::vector<unsigned char> out;
  put_le(out, static_cast<std::uint32_t>(magic), 4);
  put_le(out, static_cast<std::uint32_t>(version), 4);
  put_le(out, static_cast<std::uint32_t>(count), 4);
  for (int i = 3; i < 256; ++i) put_le(out, 0, 4);
  for (const auto t : tokens) put_le(out, t, width);
  return out;
}

// The message of the DataError that f throws (a test failure if it throws nothing).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a DataError";
  return {};
}

}  // namespace nexus::test
