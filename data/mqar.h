// Multi-query associative recall (MQAR, Zoology / Based papers): the built-in synthetic task for
// runs with no data at hand, and a quick test that a model can retrieve from its context.
//
// One sequence of seq_len tokens (vocabulary layout: token 0 = pad, keys [1, 1 + K),
// values [1 + K, vocab_size), K = (vocab_size - 1) / 2):
//
//   k0 v0 k1 v1 ... k(P-1) v(P-1) | pad pad kq vq pad pad pad pad kq' vq' ...
//   `-- num_pairs distinct keys,   `-- num_queries distinct earlier keys, each followed by its value
//       distinct values                 (teacher forcing), in random 2-token slots; the rest is pad
//
// targets[t] is the value paired with key tokens[t] at every query position and -1 everywhere
// else, so the loss and the accuracy count only the answers. A sample is a pure function of
// (seed, split, index): any rank generates sample i alone, identically, with no shared state.
// The eval split draws from a different stream than train.
//
// Sizes that a tiny 8-layer hybrid (d_model 64-128) learns in a few hundred steps: vocab 64-256,
// seq_len 64-128, 8-16 pairs and as many queries.
#pragma once

#include <cstdint>

#include "kernels/types.h"

namespace nexus {

enum class MqarSplit { train, eval };

struct MqarConfig {
  idx vocab_size = 64;
  idx seq_len = 64;
  idx num_pairs = 8;
  idx num_queries = 8;  // <= num_pairs: every query asks a different key
  std::uint64_t seed = 1234;

  // Throws DataError naming the first invalid field ("mqar.num_pairs = 40 exceeds ...").
  void validate() const;
};

class MqarTask {
 public:
  static constexpr std::int32_t kPad = 0;

  explicit MqarTask(const MqarConfig& config);  // validates
  const MqarConfig& config() const { return config_; }
  std::int32_t first_key() const { return 1; }
  std::int32_t first_value() const { return static_cast<std::int32_t>(1 + num_keys()); }
  idx num_keys() const { return (config_.vocab_size - 1) / 2; }
  idx num_values() const { return config_.vocab_size - 1 - num_keys(); }

  // tokens[seq_len] and targets[seq_len] of sample `index` (>= 0) of `split`.
  void sample(MqarSplit split, idx index, std::int32_t* tokens, std::int32_t* targets) const;

 private:
  MqarConfig config_;
};

// Accuracy over the answer positions (targets >= 0); positions with target -1 are not counted.
struct AnswerScore {
  idx correct = 0;
  idx total = 0;
  double accuracy() const { return total > 0 ? static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
  AnswerScore& operator+=(const AnswerScore& o) {
    correct += o.correct;
    total += o.total;
    return *this;
  }
};

// From predicted tokens [n] (e.g. argmax of the logits) and targets [n].
AnswerScore score_answers(const std::int32_t* predicted, const std::int32_t* targets, idx n);
// From logits [n, vocab] row-major; the prediction is the first maximum of each row.
AnswerScore score_answer_logits(const float* logits, idx vocab, const std::int32_t* targets, idx n);

}  // namespace nexus
