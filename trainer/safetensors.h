// The safetensors format (Hugging Face's weight files), writer and validating reader.
//
//   [8 bytes]  N, little-endian uint64: the header's length
//   [N bytes]  JSON header: {"__metadata__": {"format": "pt"},
//                            "<name>": {"dtype": "BF16", "shape": [V, D], "data_offsets": [b, e]}, ...}
//              padded with spaces so the data starts 8-byte aligned
//   [data]     the tensors' little-endian bytes; [b, e) is relative to the data start
//
// The writer lays the tensors out back to back in the order given (the header lists them in that
// order too), and stores each tensor's CRC-32 (of its bytes as stored, 8 lowercase hex digits) in
// __metadata__ under "nexus.crc32:<name>" (string values, which transformers ignores); the reader
// verifies a tensor against its checksum when the file has one (files from other writers do not). The reader refuses anything it cannot account for byte by byte: a header length
// that does not fit the file, JSON that does not parse, a key listed twice in one object, a
// malformed checksum entry, an unknown dtype, a byte size that is not
// dtype size * product(shape), offsets that leave holes, overlap, or do not end exactly at the
// end of the file. Every error names the file and, where there is one, the tensor.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace nexus {

// Anything wrong with a safetensors file or writing one; what() names the file (and tensor).
struct SafetensorsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class TensorDtype { F32, BF16 };

std::size_t dtype_bytes(TensorDtype dtype);
const char* dtype_name(TensorDtype dtype);  // "F32", "BF16": the header's spelling

// fp32 -> bf16 with round-to-nearest-even (what torch's .to(torch.bfloat16) does): finite values
// round to the nearest bf16, ties to the even mantissa, values past the largest bf16 to +-inf;
// inf stays inf and NaN stays a NaN of the same sign (quiet, never rounded into inf).
std::uint16_t float_to_bf16(float value);
// bf16 -> fp32 is exact (bf16 is fp32's upper half).
float bf16_to_float(std::uint16_t bits);

// One tensor for write_safetensors: `data` holds product(shape) fp32 values, stored as `dtype`.
struct TensorToWrite {
  std::string name;
  std::vector<std::int64_t> shape;  // empty: a scalar
  const float* data = nullptr;
  TensorDtype dtype = TensorDtype::F32;
};

// Bytes one tensor occupies in the data section; -1 for a negative or overflowing shape.
std::int64_t tensor_bytes(const std::vector<std::int64_t>& shape, TensorDtype dtype);

// Writes `path` (through a temporary file in the same directory, renamed when complete) with
// `metadata` as "__metadata__" (default {"format": "pt"}, what transformers expects). Throws
// SafetensorsError naming the file on an I/O error or a duplicate / empty tensor name.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// "nexus.crc32:<tensor>": the __metadata__ key of a tensor's checksum.
std::string tensor_crc_key(const std::string& tensor);

struct SafetensorsEntry {
  std::string name;
  TensorDtype dtype = TensorDtype::F32;
  std::vector<std::int64_t> shape;
  std::int64_t begin = 0;  // [begin, end) in bytes, relative to the data start
  std::int64_t end = 0;
  std::int64_t numel() const;
};

// An open, validated safetensors file. The constructor reads and checks the header; tensor data
// is read on demand.
class SafetensorsFile {
 public:
  // Throws SafetensorsError naming `path` (and the tensor) for every violation listed at the top.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return path_; }
  // In the header's order.
  const std::vector<SafetensorsEntry>& tensors() const { return tensors_; }
  const SafetensorsEntry* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::uint64_t header_length() const { return header_length_; }  // N
  std::int64_t data_start() const { return static_cast<std::int64_t>(8 + header_length_); }
  std::int64_t file_size() const { return file_size_; }

  // The tensor's values as fp32 (bf16 widened exactly) into out[0, numel). Throws
  // SafetensorsError when the tensor is absent, the read fails, or the bytes fail the tensor's
  // stored checksum.
  void read(const std::string& name, float* out) const;
  std::vector<float> read(const std::string& name) const;

 private:
  std::string path_;
  std::vector<SafetensorsEntry> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, std::uint32_t> crc_;  // tensor -> stored checksum, when the file has one
  std::uint64_t header_length_ = 0;
  std::int64_t file_size_ = 0;
};

}  // namespace nexus
