#include "data/loader.h"

#include <cstdio>

namespace nexus {

std::string LoaderPosition::to_string() const {
  return "epoch=" + std::to_string(epoch) + ",sequence=" + std::to_string(next_sequence);
}

LoaderPosition LoaderPosition::parse(const std::string& text) {
  long long epoch = 0, sequence = 0;
  int consumed = 0;
  if (std::sscanf(text.c_str(), "epoch=%lld,sequence=%lld%n", &epoch, &sequence, &consumed) != 2 ||
      static_cast<std::size_t>(consumed) != text.size())
    throw data_error("data loader position '", text, "' is not of the form epoch=E,sequence=S");
  return {epoch, sequence};
}

TokenSequences::TokenSequences(TokenSource source, idx seq_len)
    : source_(std::move(source)), seq_len_(seq_len), window_(static_cast<std::size_t>(seq_len + 1)) {
  if (seq_len < 1) throw data_error("seq_len = ", seq_len, " must be >= 1");
}

void TokenSequences::read(idx i, std::int32_t* tokens, std::int32_t* targets) {
  source_.read(i * seq_len_, seq_len_ + 1, window_.data());
  for (idx t = 0; t < seq_len_; ++t) {
    tokens[t] = window_[static_cast<std::size_t>(t)];
    targets[t] = window_[static_cast<std::size_t>(t + 1)];
  }
}

std::string TokenSequences::describe() const {
  return std::to_string(num_sequences()) + " sequences of " + std::to_string(seq_len_) + " + 1 tokens from " +
         source_.describe();
}

MqarSequences::MqarSequences(const MqarConfig& config, MqarSplit split, idx count)
    : task_(config), split_(split), count_(count) {}

void MqarSequences::read(idx i, std::int32_t* tokens, std::int32_t* targets) { task_.sample(split_, i, tokens, targets); }

std::string MqarSequences::describe() const {
  const auto& c = task_.config();
  return std::string("MQAR ") + (split_ == MqarSplit::eval ? "eval" : "train") + " (vocab " +
         std::to_string(c.vocab_size) + ", seq_len " + std::to_string(c.seq_len) + ", " + std::to_string(c.num_pairs) +
         " pairs, " + std::to_string(c.num_queries) + " queries, seed " + std::to_string(c.seed) + ")";
}

DataLoader::DataLoader(std::unique_ptr<SequenceSource> source, idx global_batch, idx dp_rank, idx dp_size)
    : source_(std::move(source)), global_batch_(global_batch), dp_rank_(dp_rank), dp_size_(dp_size) {
  if (dp_size < 1 || dp_rank < 0 || dp_rank >= dp_size)
    throw data_error("data loader: dp_rank = ", dp_rank, " is not in [0, dp_size = ", dp_size, ")");
  if (global_batch < 1 || global_batch % dp_size != 0)
    throw data_error("global_batch = ", global_batch, " is not a positive multiple of the data-parallel size dp = ",
                     dp_size, " (each dp rank takes global_batch / dp sequences)");
  if (source_->num_sequences() < global_batch)
    throw data_error("the data holds ", source_->num_sequences(), " sequences, fewer than one global batch of ",
                     global_batch, ": ", source_->describe());
}

void DataLoader::next(Batch& batch) {
  const idx B = local_batch(), T = seq_len();
  batch.B = B;
  batch.T = T;
  batch.tokens.resize(static_cast<std::size_t>(B * T));
  batch.targets.resize(static_cast<std::size_t>(B * T));
  const idx first = position_.next_sequence + dp_rank_ * B;
  for (idx b = 0; b < B; ++b) source_->read(first + b, batch.tokens.data() + b * T, batch.targets.data() + b * T);

  position_.next_sequence += global_batch_;
  if (position_.next_sequence > source_->num_sequences() - global_batch_) {  // no full batch left
    ++position_.epoch;
    position_.next_sequence = 0;
  }
}

void DataLoader::restore(const LoaderPosition& position) {
  if (position.epoch < 0 || position.next_sequence < 0 ||
      position.next_sequence > source_->num_sequences() - global_batch_)
    throw data_error("data loader position ", position.to_string(), " is outside this data (",
                     source_->num_sequences(), " sequences, global_batch ", global_batch_, "): ", source_->describe());
  position_ = position;
}

}  // namespace nexus
