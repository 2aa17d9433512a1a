#include "data/token_source.h"

#include <glob.h>

#include <algorithm>
#include <filesystem>

#include "data/hdf5_tokens.h"
#include "data/shard.h"

namespace nexus {

static std::vector<std::string> glob_sorted(const std::string& pattern) {
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);  // glob sorts unless GLOB_NOSORT
  std::vector<std::string> out;
  if (rc == 0)
    for (std::size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  ::globfree(&g);
  std::sort(out.begin(), out.end());  // byte order, independent of the locale's collation
  return out;
}

// The token files directly in `dir` (*.bin, *.h5, *.hdf5), sorted by name in byte order.
static std::vector<std::string> token_files_in(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string ext = entry.path().extension().string();
    if (entry.is_regular_file(ec) && (ext == ".bin" || ext == ".h5" || ext == ".hdf5")) out.push_back(entry.path().string());
  }
  if (ec) throw data_error("cannot list data directory '", dir, "': ", ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> expand_paths(const std::string& spec) {
  std::vector<std::string> out;
  std::size_t begin = 0;
  while (begin <= spec.size()) {
    std::size_t end = spec.find(',', begin);
    if (end == std::string::npos) end = spec.size();
    const std::string item = spec.substr(begin, end - begin);
    begin = end + 1;
    if (item.empty()) continue;
    if (item.find_first_of("*?[") != std::string::npos) {
      const auto matches = glob_sorted(item);
      if (matches.empty()) throw data_error("data pattern '", item, "' matches no files");
      out.insert(out.end(), matches.begin(), matches.end());
    } else if (std::error_code ec; std::filesystem::is_directory(item, ec)) {
      const auto files = token_files_in(item);
      if (files.empty())
        throw data_error("data directory '", item, "' holds no token files (*.bin llm.c shards, *.h5 / *.hdf5)");
      out.insert(out.end(), files.begin(), files.end());
    } else {
      if (!std::filesystem::exists(item, ec)) throw data_error("data file '", item, "' does not exist");
      out.push_back(item);
    }
  }
  if (out.empty()) throw data_error("data spec '", spec, "' names no files");
  return out;
}

std::unique_ptr<TokenReader> open_token_file(const std::string& path) {
  const std::string ext = std::filesystem::path(path).extension().string();
  if (ext == ".h5" || ext == ".hdf5" || has_hdf5_signature(path)) return std::make_unique<Hdf5TokenReader>(path);
  return std::make_unique<ShardReader>(path);
}

TokenSource::TokenSource(const std::vector<std::string>& paths, idx vocab_size) : vocab_size_(vocab_size) {
  if (vocab_size <= 0) throw data_error("token source: vocab_size = ", vocab_size, " must be positive");
  if (paths.empty()) throw data_error("token source: no files given");
  offsets_.push_back(0);
  for (const auto& p : paths) {
    files_.push_back(open_token_file(p));
    offsets_.push_back(offsets_.back() + files_.back()->size());
  }
}

TokenSource TokenSource::open(const std::string& spec, idx vocab_size) {
  return TokenSource(expand_paths(spec), vocab_size);
}

std::string TokenSource::describe() const {
  return std::to_string(files_.size()) + (files_.size() == 1 ? " file, " : " files, ") + std::to_string(size()) +
         " tokens (first: " + files_.front()->path() + ")";
}

void TokenSource::read(idx start, idx count, std::int32_t* out) {
  if (start < 0 || count < 0 || start + count > size())
    throw data_error("token range [", start, ", ", start + count, ") is outside the ", size(), " tokens of ", describe());
  // The file holding `start`: the last f with offsets_[f] <= start.
  std::size_t f = static_cast<std::size_t>(std::upper_bound(offsets_.begin(), offsets_.end(), start) - offsets_.begin()) - 1;
  for (idx done = 0; done < count; ++f) {
    const idx local = start + done - offsets_[f];
    const idx n = std::min(count - done, files_[f]->size() - local);
    if (n <= 0) continue;  // empty file
    std::int32_t* dst = out + done;
    files_[f]->read(local, n, dst);
    for (idx i = 0; i < n; ++i)
      if (dst[i] < 0 || dst[i] >= vocab_size_)
        throw data_error(files_[f]->path(), ": ", files_[f]->locate(local + i), " has value ", dst[i],
                         dst[i] < 0 ? " (" + std::to_string(static_cast<std::uint32_t>(dst[i])) + " if unsigned)" : "",
                         ", expected a token id in [0, ", vocab_size_, ") (the model's vocab_size)");
    done += n;
  }
}

}  // namespace nexus
