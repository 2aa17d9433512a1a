// `nexus data prepare`: raw text files -> llm.c token shards, with the byte tokenizer.
//
// Every document is preceded by EOT (as llm.c's fineweb.py does), so documents are separated by
// EOT and the stream starts with one. The stream is cut into shards of `shard_tokens` tokens (the
// last one shorter; a document may span two shards). The first shard is the validation split, the
// rest are training: <prefix>_val_000000.bin, <prefix>_train_000001.bin, ...
#pragma once

#include <string>
#include <vector>

#include "data/shard.h"

namespace nexus {

struct PrepareOptions {
  std::vector<std::string> inputs;  // text files or glob patterns (see expand_paths), in order
  std::string out_prefix;           // "out/tiny" -> out/tiny_val_000000.bin; parent dirs are created
  idx shard_tokens = 100'000'000;
  ShardFormat format = ShardFormat::u16;  // bytes fit in uint16
  // Empty: each file is one document. Otherwise each file is also split at every occurrence of
  // this string (e.g. "\n\n"); the separator itself is dropped. Empty documents are skipped.
  std::string document_separator;
};

struct PreparedShard {
  std::string path;
  std::string split;  // "val" or "train"
  idx tokens = 0;
};

// Writes the shards and returns them in order. Throws DataError if an input cannot be read, if
// shard_tokens < 1, or if the whole text fits in one shard (there would be no training shard: the
// message says how many tokens there are so a smaller shard_tokens can be chosen); in that case
// nothing is written.
std::vector<PreparedShard> prepare_text_shards(const PrepareOptions& options);

}  // namespace nexus
