// A token stream made of one or more token files read as one concatenation, with every token read
// checked against the model's vocabulary.
//
// Data specs: a comma-separated list of items; each item is a file path, a directory (every
// *.bin, *.h5 and *.hdf5 file directly in it) or a glob pattern (containing * ? or [). A
// directory's files and a pattern's matches are sorted by name; items keep the order given. So
// "fineweb_train_*.bin" reads the shards in their numbered order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/token_reader.h"

namespace nexus {

// The files a spec names, in reading order. Throws DataError naming the item when a plain path
// does not exist, a directory holds no token file or a pattern matches nothing.
std::vector<std::string> expand_paths(const std::string& spec);

// Opens one token file: HDF5 (dataset /tokens) if the name ends in .h5 / .hdf5 or the file starts
// with the HDF5 signature, otherwise an llm.c shard.
std::unique_ptr<TokenReader> open_token_file(const std::string& path);

class TokenSource {
 public:
  // Opens every file of the list (in order). vocab_size: the model's vocabulary; tokens must lie in
  // [0, vocab_size). Throws DataError if the list is empty or a file fails to open.
  TokenSource(const std::vector<std::string>& paths, idx vocab_size);
  // Same, from a spec (see expand_paths).
  static TokenSource open(const std::string& spec, idx vocab_size);

  idx size() const { return offsets_.back(); }  // total tokens over all files
  idx vocab_size() const { return vocab_size_; }
  idx file_count() const { return static_cast<idx>(files_.size()); }
  const TokenReader& file(idx f) const { return *files_[static_cast<std::size_t>(f)]; }
  std::string describe() const;  // "3 files, 123456 tokens (first: a.bin)"

  // out[0, count) = tokens [start, start + count) of the concatenation; a range may span files.
  // Throws DataError if a token is < 0 or >= vocab_size, naming the file, the token's index and
  // byte offset in it, the value and the vocabulary size.
  void read(idx start, idx count, std::int32_t* out);

 private:
  std::vector<std::unique_ptr<TokenReader>> files_;
  std::vector<idx> offsets_;  // [files + 1]: offsets_[f] = first global token of file f
  idx vocab_size_ = 0;
};

}  // namespace nexus
