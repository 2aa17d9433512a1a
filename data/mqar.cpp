#include "data/mqar.h"

#include <utility>

#include "data/token_reader.h"

namespace nexus {

namespace {

constexpr std::uint64_t kGamma = 0x9E3779B97F4A7C15ULL;
constexpr std::uint64_t kEvalSalt = 0xE7A1E7A1D15C0DEDULL;  // separates the eval stream from train

// splitmix64's output function: a bijection on 64-bit words with good avalanche.
std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// splitmix64 (Steele et al.), seeded per sample so samples need no shared generator state.
struct SampleRng {
  std::uint64_t state;
  std::uint64_t next() { return mix64(state += kGamma); }
  // Uniform in [0, n); the modulo bias is below n / 2^64, far under anything measurable here.
  idx below(idx n) { return static_cast<idx>(next() % static_cast<std::uint64_t>(n)); }
};

// Writes m distinct values of [lo, lo + n) to out[0], out[stride], ... in uniformly random order.
// Floyd's algorithm draws a uniform m-subset in O(m^2) without an n-sized table; its output order
// is not uniform, so a Fisher-Yates pass follows.
void sample_distinct(SampleRng& rng, idx n, idx m, std::int32_t lo, std::int32_t* out, idx stride) {
  for (idx j = n - m, k = 0; j < n; ++j, ++k) {
    const auto t = static_cast<std::int32_t>(lo + rng.below(j + 1));
    bool seen = false;
    for (idx q = 0; q < k; ++q) seen = seen || out[q * stride] == t;
    out[k * stride] = seen ? static_cast<std::int32_t>(lo + j) : t;
  }
  for (idx k = m - 1; k > 0; --k) std::swap(out[k * stride], out[rng.below(k + 1) * stride]);
}

}  // namespace

void MqarConfig::validate() const {
  const idx keys = (vocab_size - 1) / 2, values = vocab_size - 1 - keys;
  if (vocab_size < 3)
    throw data_error("mqar.vocab_size = ", vocab_size, " is too small: it needs a pad token, keys and values (>= 3)");
  if (num_pairs < 1) throw data_error("mqar.num_pairs = ", num_pairs, " must be >= 1");
  if (num_pairs > keys || num_pairs > values)
    throw data_error("mqar.num_pairs = ", num_pairs, " exceeds the ", keys, " keys / ", values,
                     " values of mqar.vocab_size = ", vocab_size, " (pairs use distinct keys and values)");
  if (num_queries < 1 || num_queries > num_pairs)
    throw data_error("mqar.num_queries = ", num_queries, " must be in [1, mqar.num_pairs = ", num_pairs, "]");
  if (seq_len < 2 * (num_pairs + num_queries))
    throw data_error("mqar.seq_len = ", seq_len, " is shorter than 2 * (num_pairs + num_queries) = ",
                     2 * (num_pairs + num_queries), " tokens");
}

MqarTask::MqarTask(const MqarConfig& config) : config_(config) { config_.validate(); }

void MqarTask::sample(MqarSplit split, idx index, std::int32_t* tokens, std::int32_t* targets) const {
  const idx T = config_.seq_len, P = config_.num_pairs, Q = config_.num_queries;
  const std::uint64_t salt = split == MqarSplit::eval ? kEvalSalt : 0;
  SampleRng rng{mix64(mix64(config_.seed ^ salt) ^ static_cast<std::uint64_t>(index))};

  // Context: P (key, value) pairs at positions 2i, 2i+1.
  sample_distinct(rng, num_keys(), P, first_key(), tokens, 2);
  sample_distinct(rng, num_values(), P, first_value(), tokens + 1, 2);

  // Which pairs are asked, in asking order: a partial Fisher-Yates shuffle of 0..P-1. targets[0, P)
  // serves as the scratch array (those targets are -1 in the end, written below).
  for (idx i = 0; i < P; ++i) targets[i] = static_cast<std::int32_t>(i);
  for (idx q = 0; q < Q; ++q) std::swap(targets[q], targets[q + rng.below(P - q)]);

  // Queries: Q of the 2-token slots after the context, chosen by selection sampling (Knuth's
  // algorithm S: each slot is taken with probability still-needed / still-available).
  const idx slots = (T - 2 * P) / 2;
  idx asked = 0;
  for (idx s = 0; s < slots; ++s) {
    const idx pos = 2 * P + 2 * s;
    if (rng.below(slots - s) < Q - asked) {
      const idx pair = targets[asked++];
      tokens[pos] = tokens[2 * pair];
      tokens[pos + 1] = tokens[2 * pair + 1];
      targets[pos] = tokens[2 * pair + 1];
    } else {
      tokens[pos] = tokens[pos + 1] = kPad;
      targets[pos] = -1;
    }
    targets[pos + 1] = -1;
  }
  if ((T - 2 * P) % 2 != 0) {
    tokens[T - 1] = kPad;
    targets[T - 1] = -1;
  }
  for (idx t = 0; t < 2 * P; ++t) targets[t] = -1;
}

AnswerScore score_answers(const std::int32_t* predicted, const std::int32_t* targets, idx n) {
  AnswerScore s;
  for (idx i = 0; i < n; ++i) {
    if (targets[i] < 0) continue;
    ++s.total;
    s.correct += predicted[i] == targets[i];
  }
  return s;
}

AnswerScore score_answer_logits(const float* logits, idx vocab, const std::int32_t* targets, idx n) {
  AnswerScore s;
  for (idx i = 0; i < n; ++i) {
    if (targets[i] < 0) continue;
    const float* row = logits + i * vocab;
    idx best = 0;
    for (idx v = 1; v < vocab; ++v)
      if (row[v] > row[best]) best = v;
    ++s.total;
    s.correct += best == targets[i];
  }
  return s;
}

}  // namespace nexus
