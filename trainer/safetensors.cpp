#include "trainer/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "trainer/crc32.h"

namespace nexus {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this writer copies host bytes as they are");

namespace {

using ordered_json = nlohmann::ordered_json;

// safetensors' own reader refuses headers over 100 MB; so do we, before allocating one.
constexpr std::uint64_t kMaxHeaderLength = 100'000'000;
// Values converted per write/read call: bounds the staging buffer, not the tensor size.
constexpr std::size_t kStageElems = std::size_t(1) << 20;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw SafetensorsError("safetensors file " + path + ": " + what);
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// product(shape) or -1 when a dimension is negative or the product overflows int64.
std::int64_t checked_numel(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<std::int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

std::string crc_hex(std::uint32_t crc) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", crc);
  return buf;
}

// The CRC of a tensor's bytes as stored (bf16 after rounding), computed before the header is
// written so that the header can carry it.
std::uint32_t stored_crc(const TensorToWrite& t, std::size_t numel, std::vector<std::uint16_t>& stage) {
  if (t.dtype == TensorDtype::F32) return crc32_of(t.data, numel * sizeof(float));
  std::uint32_t crc = 0;
  for (std::size_t i = 0; i < numel; i += kStageElems) {
    const std::size_t m = std::min(kStageElems, numel - i);
    stage.resize(m);
    for (std::size_t j = 0; j < m; ++j) stage[j] = float_to_bf16(t.data[i + j]);
    crc = crc32_of(stage.data(), m * 2, crc);
  }
  return crc;
}

// Parses the header, refusing a key that appears twice in one object: JSON parsers disagree on
// which copy wins (nlohmann keeps the last, others the first), so such a file means different
// weights to different readers.
ordered_json parse_header(const std::string& path, const std::string& text) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  const ordered_json::parser_callback_t check = [&](int, ordered_json::parse_event_t event, ordered_json& parsed) {
    if (event == ordered_json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == ordered_json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == ordered_json::parse_event_t::key && duplicate.empty() && !open_objects.empty() &&
               !open_objects.back().insert(parsed.get<std::string>()).second) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  ordered_json header;
  try {
    header = ordered_json::parse(text, check);
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) fail(path, "header lists the key \"" + duplicate + "\" twice (a damaged or forged file)");
  return header;
}

}  // namespace

std::string tensor_crc_key(const std::string& tensor) { return "nexus.crc32:" + tensor; }

std::size_t dtype_bytes(TensorDtype dtype) { return dtype == TensorDtype::BF16 ? 2 : 4; }

const char* dtype_name(TensorDtype dtype) { return dtype == TensorDtype::BF16 ? "BF16" : "F32"; }

std::uint16_t float_to_bf16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  // A NaN whose payload sits only in the low 16 bits would truncate to inf: keep it a NaN by
  // setting the quiet bit, as torch does.
  if (std::isnan(value)) return static_cast<std::uint16_t>((bits >> 16) | 0x0040u);
  // Adding 0x7FFF plus the lowest kept bit rounds to nearest with ties to even; a carry out of the
  // mantissa correctly bumps the exponent (and the largest finite values round up to inf).
  const std::uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

float bf16_to_float(std::uint16_t bits) { return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16); }

std::int64_t tensor_bytes(const std::vector<std::int64_t>& shape, TensorDtype dtype) {
  const std::int64_t numel = checked_numel(shape);
  const auto elem = static_cast<std::int64_t>(dtype_bytes(dtype));
  return numel < 0 || numel > std::numeric_limits<std::int64_t>::max() / elem ? -1 : numel * elem;
}

std::int64_t SafetensorsEntry::numel() const { return checked_numel(shape); }

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  ordered_json header = ordered_json::object();
  ordered_json meta = ordered_json::object();
  for (const auto& [k, v] : metadata) meta[k] = v;
  std::vector<std::uint16_t> stage;
  for (const TensorToWrite& t : tensors) {
    const std::int64_t numel = checked_numel(t.shape);
    if (numel > 0 && t.data) meta[tensor_crc_key(t.name)] = crc_hex(stored_crc(t, static_cast<std::size_t>(numel), stage));
  }
  if (!meta.empty()) header["__metadata__"] = std::move(meta);
  std::int64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") fail(path, "invalid tensor name '" + t.name + "'");
    if (header.contains(t.name)) fail(path, "tensor " + t.name + " is listed twice");
    const std::int64_t numel = checked_numel(t.shape);
    if (numel < 0) fail(path, "tensor " + t.name + " has an invalid shape " + shape_string(t.shape));
    if (numel > 0 && t.data == nullptr) fail(path, "tensor " + t.name + " has no data");
    const std::int64_t bytes = numel * static_cast<std::int64_t>(dtype_bytes(t.dtype));
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // Spaces after the JSON are valid whitespace; they make 8 + N a multiple of 8 so every tensor
  // of a memory-mapped file is aligned for its dtype.
  text.append((8 - text.size() % 8) % 8, ' ');

  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(path, "cannot create " + tmp + ": " + std::strerror(errno));
    const std::uint64_t n = text.size();
    out.write(reinterpret_cast<const char*>(&n), sizeof n);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const TensorToWrite& t : tensors) {
      const auto numel = static_cast<std::size_t>(checked_numel(t.shape));
      if (t.dtype == TensorDtype::F32) {
        out.write(reinterpret_cast<const char*>(t.data), static_cast<std::streamsize>(numel * sizeof(float)));
        continue;
      }
      for (std::size_t i = 0; i < numel; i += kStageElems) {
        const std::size_t m = std::min(kStageElems, numel - i);
        stage.resize(m);
        for (std::size_t j = 0; j < m; ++j) stage[j] = float_to_bf16(t.data[i + j]);
        out.write(reinterpret_cast<const char*>(stage.data()), static_cast<std::streamsize>(m * 2));
      }
    }
    out.flush();
    if (!out) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      fail(path, std::string("write failed (disk full?): ") + std::strerror(errno));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    fail(path, "cannot rename " + tmp + " into place: " + ec.message());
  }
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) fail(path, "cannot open: " + ec.message());
  file_size_ = static_cast<std::int64_t>(size);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, std::string("cannot open: ") + std::strerror(errno));
  if (size < 8) fail(path, "truncated: " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  in.read(reinterpret_cast<char*>(&header_length_), sizeof header_length_);
  if (header_length_ > kMaxHeaderLength || header_length_ > size - 8)
    fail(path, "header length " + std::to_string(header_length_) + " does not fit a file of " +
                   std::to_string(size) + " bytes (truncated or not a safetensors file)");
  std::string text(static_cast<std::size_t>(header_length_), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (!in) fail(path, "cannot read the " + std::to_string(header_length_) + "-byte header");

  const ordered_json header = parse_header(path, text);
  if (!header.is_object()) fail(path, "header is not a JSON object");

  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail(path, "__metadata__ is not an object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) fail(path, "__metadata__ value of '" + mk + "' is not a string");
        metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor " + key + ": ";
    if (!value.is_object()) fail(path, where + "entry is not an object");
    SafetensorsEntry e;
    e.name = key;
    const auto dtype = value.find("dtype");
    if (dtype == value.end() || !dtype->is_string()) fail(path, where + "missing \"dtype\"");
    if (*dtype == "F32")
      e.dtype = TensorDtype::F32;
    else if (*dtype == "BF16")
      e.dtype = TensorDtype::BF16;
    else
      fail(path, where + "unsupported dtype " + dtype->get<std::string>() + " (expected F32 or BF16)");
    const auto shape = value.find("shape");
    if (shape == value.end() || !shape->is_array()) fail(path, where + "missing \"shape\"");
    for (const auto& d : *shape) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 0) fail(path, where + "shape " + shape->dump() + " is invalid");
      e.shape.push_back(d.get<std::int64_t>());
    }
    const auto offsets = value.find("data_offsets");
    if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_integer() ||
        !(*offsets)[1].is_number_integer())
      fail(path, where + "\"data_offsets\" is not [begin, end]");
    e.begin = (*offsets)[0].get<std::int64_t>();
    e.end = (*offsets)[1].get<std::int64_t>();
    if (e.begin < 0 || e.end < e.begin) fail(path, where + "data_offsets " + offsets->dump() + " are invalid");
    const std::int64_t numel = e.numel();
    const auto elem = static_cast<std::int64_t>(dtype_bytes(e.dtype));
    if (numel < 0 || numel > std::numeric_limits<std::int64_t>::max() / elem)
      fail(path, where + "shape " + shape->dump() + " overflows");
    const std::int64_t want = numel * elem;
    if (e.end - e.begin != want)
      fail(path, where + "data_offsets " + offsets->dump() + " hold " + std::to_string(e.end - e.begin) +
                     " bytes but " + dtype_name(e.dtype) + " " + shape_string(e.shape) + " needs " +
                     std::to_string(want));
    index_[e.name] = tensors_.size();
    tensors_.push_back(std::move(e));
  }

  // The byte ranges, in offset order, must tile [0, data size) exactly.
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : tensors_) by_offset.push_back(&e);
  std::stable_sort(by_offset.begin(), by_offset.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  const std::int64_t data_size = file_size_ - data_start();
  std::int64_t pos = 0;
  for (const SafetensorsEntry* e : by_offset) {
    if (e->begin > pos)
      fail(path, "tensor " + e->name + " starts at byte " + std::to_string(e->begin) + " of the data, leaving a hole at [" +
                     std::to_string(pos) + ", " + std::to_string(e->begin) + ")");
    if (e->begin < pos)
      fail(path, "tensor " + e->name + " at [" + std::to_string(e->begin) + ", " + std::to_string(e->end) +
                     ") overlaps the tensor before it (which ends at " + std::to_string(pos) + ")");
    if (e->end > data_size)
      fail(path, "tensor " + e->name + " ends at byte " + std::to_string(e->end) + " but the data section has only " +
                     std::to_string(data_size) + " bytes (truncated file)");
    pos = e->end;
  }
  if (pos != data_size)
    fail(path, "the tensors cover " + std::to_string(pos) + " bytes but the data section has " + std::to_string(data_size) +
                   " (trailing bytes)");

  // Checksums (ours; other writers have none): each must name a tensor and be 8 hex digits.
  const std::string prefix = tensor_crc_key("");
  for (const auto& [key, value] : metadata_) {
    if (key.rfind(prefix, 0) != 0) continue;
    const std::string tensor = key.substr(prefix.size());
    char* end = nullptr;
    const unsigned long crc = std::strtoul(value.c_str(), &end, 16);
    if (!find(tensor)) fail(path, "__metadata__ has a checksum for tensor " + tensor + ", which the file does not hold");
    if (value.size() != 8 || *end != '\0') fail(path, "__metadata__ checksum of tensor " + tensor + " is '" + value + "', not 8 hex digits");
    crc_[tensor] = static_cast<std::uint32_t>(crc);
  }
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsFile::read(const std::string& name, float* out) const {
  const SafetensorsEntry* e = find(name);
  if (!e) fail(path_, "has no tensor " + name);
  std::ifstream in(path_, std::ios::binary);
  in.seekg(data_start() + e->begin);
  const auto numel = static_cast<std::size_t>(e->numel());
  std::uint32_t crc = 0;  // of the bytes as stored
  if (e->dtype == TensorDtype::F32) {
    in.read(reinterpret_cast<char*>(out), static_cast<std::streamsize>(numel * sizeof(float)));
    crc = crc32_of(out, numel * sizeof(float));
  } else {
    std::vector<std::uint16_t> stage;
    for (std::size_t i = 0; i < numel && in; i += kStageElems) {
      const std::size_t m = std::min(kStageElems, numel - i);
      stage.resize(m);
      in.read(reinterpret_cast<char*>(stage.data()), static_cast<std::streamsize>(m * 2));
      crc = crc32_of(stage.data(), m * 2, crc);
      for (std::size_t j = 0; j < m; ++j) out[i + j] = bf16_to_float(stage[j]);
    }
  }
  if (!in) fail(path_, "tensor " + name + ": read failed (file changed or truncated since it was opened?)");
  if (const auto stored = crc_.find(name); stored != crc_.end() && stored->second != crc)
    fail(path_, "tensor " + name + " fails its checksum (stored " + crc_hex(stored->second) + ", computed " + crc_hex(crc) +
                    "): the file is damaged");
}

std::vector<float> SafetensorsFile::read(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) fail(path_, "has no tensor " + name);
  std::vector<float> v(static_cast<std::size_t>(e->numel()));
  read(name, v.data());
  return v;
}

}  // namespace nexus
