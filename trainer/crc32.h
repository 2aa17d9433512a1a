// CRC-32/ISO-HDLC (zlib's crc32, Python's zlib.crc32): the checksum of every tensor in a
// checkpoint (HDF5 attribute "crc32") and in an export (safetensors __metadata__).
#pragma once

#include <cstddef>
#include <cstdint>

namespace nexus {

// The CRC of data[0, size) continuing from `crc` (0 to start), so a buffer may be fed in pieces.
std::uint32_t crc32_of(const void* data, std::size_t size, std::uint32_t crc = 0);

}  // namespace nexus
