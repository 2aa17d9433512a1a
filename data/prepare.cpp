#include "data/prepare.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <string_view>

#include "data/byte_tokenizer.h"
#include "data/token_source.h"

namespace nexus {

namespace {

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw data_error("cannot open text file '", path, "': ", std::strerror(errno));
  std::ostringstream s;
  s << f.rdbuf();
  if (f.bad()) throw data_error("failed reading text file '", path, "'");
  return s.str();
}

// Collects the token stream and writes a shard each time one is full and another token arrives,
// so that at the end we know whether there was more than one shard before writing anything.
class ShardWriter {
 public:
  explicit ShardWriter(const PrepareOptions& o) : options_(o) {}

  void push(std::int32_t token) {
    if (static_cast<idx>(buffer_.size()) == options_.shard_tokens) flush();
    buffer_.push_back(token);
  }

  std::vector<PreparedShard> finish() {
    if (written_.empty())
      throw data_error("prepare: the text is ", buffer_.size(), " tokens, which fits in one shard of shard_tokens = ",
                       options_.shard_tokens, ", leaving no training shard after the validation shard; use a smaller "
                       "shard_tokens (e.g. ", std::max<std::size_t>(1, buffer_.size() / 10), ")");
    flush();
    return written_;
  }

 private:
  void flush() {
    const std::string split = written_.empty() ? "val" : "train";
    std::ostringstream name;
    name << options_.out_prefix << '_' << split << '_' << std::setw(6) << std::setfill('0') << written_.size() << ".bin";
    write_shard(name.str(), buffer_.data(), static_cast<idx>(buffer_.size()), options_.format);
    written_.push_back({name.str(), split, static_cast<idx>(buffer_.size())});
    buffer_.clear();
  }

  const PrepareOptions& options_;
  std::vector<std::int32_t> buffer_;
  std::vector<PreparedShard> written_;
};

}  // namespace

std::vector<PreparedShard> prepare_text_shards(const PrepareOptions& options) {
  if (options.shard_tokens < 1) throw data_error("prepare: shard_tokens = ", options.shard_tokens, " must be >= 1");
  if (options.out_prefix.empty()) throw data_error("prepare: empty output prefix");
  if (options.inputs.empty()) throw data_error("prepare: no input files");
  std::vector<std::string> files;
  for (const auto& item : options.inputs) {
    const auto expanded = expand_paths(item);
    files.insert(files.end(), expanded.begin(), expanded.end());
  }
  const auto parent = std::filesystem::path(options.out_prefix).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);

  ShardWriter writer(options);
  auto add_document = [&](std::string_view doc) {
    if (doc.empty()) return;
    writer.push(kByteEot);
    for (const char c : doc) writer.push(byte_token(c));
  };
  for (const auto& path : files) {
    const std::string text = read_text_file(path);
    const std::string_view all(text), sep(options.document_separator);
    if (sep.empty()) {
      add_document(all);
      continue;
    }
    std::size_t begin = 0;
    for (std::size_t at; (at = all.find(sep, begin)) != std::string_view::npos; begin = at + sep.size())
      add_document(all.substr(begin, at - begin));
    add_document(all.substr(begin));
  }
  return writer.finish();
}

}  // namespace nexus
