// This rank's share of a batch the loader read: whole sequences, or under context parallelism the
// zigzag pair of chunks of each (parallel/zigzag.h).
#pragma once

#include <cstdint>
#include <vector>

#include "data/loader.h"
#include "data/zigzag.h"

namespace nexus {

// This rank's part of a batch of whole sequences: all of it, or under context parallelism its
// zigzag pair of chunks of every sequence (tokens and targets alike).
class LocalBatch {
 public:
  LocalBatch(idx cp, idx cp_rank) : cp_(cp), rank_(cp_rank) {}
  void take(const Batch& full) {
    if (cp_ == 1) {
      tokens_ = full.tokens.data();
      targets_ = full.targets.data();
      return;
    }
    const idx local = full.B * full.T / cp_;
    tokens_buf_.resize(std::size_t(local));
    targets_buf_.resize(std::size_t(local));
    zigzag_slice(full.tokens.data(), full.B, full.T, cp_, rank_, tokens_buf_.data());
    zigzag_slice(full.targets.data(), full.B, full.T, cp_, rank_, targets_buf_.data());
    tokens_ = tokens_buf_.data();
    targets_ = targets_buf_.data();
  }
  const std::int32_t* tokens() const { return tokens_; }
  const std::int32_t* targets() const { return targets_; }

 private:
  idx cp_, rank_;
  std::vector<std::int32_t> tokens_buf_, targets_buf_;  // [B, T / cp], reused
  const std::int32_t* tokens_ = nullptr;
  const std::int32_t* targets_ = nullptr;
};

}  // namespace nexus
