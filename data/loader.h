// The distributed data loader: one global batch of `global_batch` sequences per step, of which
// data-parallel rank r of dp takes rows [r * global_batch / dp, (r + 1) * global_batch / dp).
// Every rank reads only its own rows, so the concatenation of all ranks' batches equals the
// dp = 1 batch, whatever dp is.
//
// A SequenceSource numbers its sequences 0..num_sequences()-1. Global batch g of an epoch holds
// sequences [g * global_batch, (g + 1) * global_batch); when fewer than global_batch remain, the
// tail is skipped and the next epoch starts at sequence 0 (so every batch is full).
//
// The position (epoch, next sequence) is all the state there is: save it with the checkpoint,
// restore it, and the loader produces the identical next batches, on any dp size.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "data/mqar.h"
#include "data/token_source.h"

namespace nexus {

// tokens and targets are row-major [B, T]; targets[b, t] = -1 means "no loss here".
struct Batch {
  idx B = 0, T = 0;
  std::vector<std::int32_t> tokens, targets;
};

struct LoaderPosition {
  std::int64_t epoch = 0;
  std::int64_t next_sequence = 0;  // first sequence of the next global batch

  // "epoch=2,sequence=1536"; parse() accepts exactly that form and throws DataError otherwise.
  std::string to_string() const;
  static LoaderPosition parse(const std::string& text);
  bool operator==(const LoaderPosition&) const = default;
};

class SequenceSource {
 public:
  virtual ~SequenceSource() = default;
  virtual idx seq_len() const = 0;
  virtual idx num_sequences() const = 0;  // per epoch
  // tokens[seq_len] and targets[seq_len] of sequence i, 0 <= i < num_sequences().
  virtual void read(idx i, std::int32_t* tokens, std::int32_t* targets) = 0;
  virtual std::string describe() const = 0;
};

// Language modelling over a token stream: sequence i is the seq_len + 1 tokens starting at token
// i * seq_len (consecutive sequences share one boundary token); tokens = the first seq_len,
// targets = the last seq_len. num_sequences = (tokens - 1) / seq_len.
class TokenSequences final : public SequenceSource {
 public:
  TokenSequences(TokenSource source, idx seq_len);
  idx seq_len() const override { return seq_len_; }
  idx num_sequences() const override { return (source_.size() - 1) / seq_len_; }
  void read(idx i, std::int32_t* tokens, std::int32_t* targets) override;
  std::string describe() const override;

 private:
  TokenSource source_;
  idx seq_len_;
  std::vector<std::int32_t> window_;  // [seq_len + 1], reused for every read
};

// MQAR samples 0, 1, 2, ... of one split; targets come from the task. `count` bounds the stream
// (e.g. the number of eval sequences); by default it is practically endless.
class MqarSequences final : public SequenceSource {
 public:
  MqarSequences(const MqarConfig& config, MqarSplit split, idx count = std::numeric_limits<idx>::max());
  idx seq_len() const override { return task_.config().seq_len; }
  idx num_sequences() const override { return count_; }
  void read(idx i, std::int32_t* tokens, std::int32_t* targets) override;
  std::string describe() const override;
  const MqarTask& task() const { return task_; }

 private:
  MqarTask task_;
  MqarSplit split_;
  idx count_;
};

class DataLoader {
 public:
  // Throws DataError if global_batch is not divisible by dp_size (naming both), if dp_rank is not
  // in [0, dp_size), or if the source holds fewer sequences than one global batch.
  DataLoader(std::unique_ptr<SequenceSource> source, idx global_batch, idx dp_rank = 0, idx dp_size = 1);

  idx global_batch() const { return global_batch_; }
  idx local_batch() const { return global_batch_ / dp_size_; }
  idx seq_len() const { return source_->seq_len(); }
  const SequenceSource& source() const { return *source_; }

  // Fills this rank's rows of the next global batch into `batch` (B = local_batch, T = seq_len)
  // and advances. The vectors are sized on the first call and reused: no allocation afterwards.
  void next(Batch& batch);

  // The position of the next batch. After the last full batch of an epoch it is already
  // {epoch + 1, 0}.
  LoaderPosition position() const { return position_; }
  // Throws DataError if the position is negative or past this source's last full batch.
  void restore(const LoaderPosition& position);
  // Back to the first batch (for the eval loader, before every evaluation).
  void reset() { position_ = {}; }

 private:
  std::unique_ptr<SequenceSource> source_;
  idx global_batch_, dp_rank_, dp_size_;
  LoaderPosition position_;
};

}  // namespace nexus
