// A bit-by-bit CRC-32 (reflected 0xEDB88320), written independently of the table-driven
// trainer/crc32.cpp: the reference the checkpoint and export checksums are tested against.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nexus::test {

inline std::uint32_t reference_crc32(const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

}  // namespace nexus::test
