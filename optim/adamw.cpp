#include "optim/adamw.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace nexus {

namespace {

// Large enough to amortise the scheduling, small enough that a few big matrices still spread
// over every thread.
constexpr idx kChunk = idx{1} << 16;

}  // namespace

AdamW::AdamW(idx n, const AdamWHyper& hyper, std::vector<DecayRange> ranges)
    : n_(n), hyper_(hyper), exp_avg_(static_cast<std::size_t>(n), 0.0f), exp_avg_sq_(static_cast<std::size_t>(n), 0.0f) {
  std::sort(ranges.begin(), ranges.end(), [](const DecayRange& a, const DecayRange& b) { return a.offset < b.offset; });
  idx covered = 0;
  for (const DecayRange& r : ranges) {
    if (r.numel < 0 || r.offset != covered)
      throw std::invalid_argument("AdamW: decay ranges must tile [0, " + std::to_string(n) + "): expected a range at offset " +
                                  std::to_string(covered) + ", got offset " + std::to_string(r.offset) + " numel " +
                                  std::to_string(r.numel));
    for (idx c = 0; c < r.numel; c += kChunk) chunks_.push_back({r.offset + c, std::min(kChunk, r.numel - c), r.decay});
    covered += r.numel;
  }
  if (covered != n)
    throw std::invalid_argument("AdamW: decay ranges cover [0, " + std::to_string(covered) + ") but the buffer has " +
                                std::to_string(n) + " elements");
}

void AdamW::step(float* params, const float* deltas, double lr) {
  ++steps_;
  const double t = static_cast<double>(steps_);
  // Scalars in double, as PyTorch computes them on the host; the elementwise work is fp32.
  const double bias1 = 1.0 - std::pow(hyper_.beta1, t);
  const double bias2 = 1.0 - std::pow(hyper_.beta2, t);
  const float decay_factor = static_cast<float>(1.0 - lr * hyper_.weight_decay);
  const float step_size = static_cast<float>(lr / bias1);
  const float bias2_sqrt = static_cast<float>(std::sqrt(bias2));
  const float b1 = static_cast<float>(hyper_.beta1);
  const float b2 = static_cast<float>(hyper_.beta2);
  const float one_minus_b1 = static_cast<float>(1.0 - hyper_.beta1);
  const float one_minus_b2 = static_cast<float>(1.0 - hyper_.beta2);
  const float eps = static_cast<float>(hyper_.eps);
  const idx n_chunks = static_cast<idx>(chunks_.size());

#pragma omp parallel for schedule(static)
  for (idx c = 0; c < n_chunks; ++c) {
    const Chunk& chunk = chunks_[static_cast<std::size_t>(c)];
    float* __restrict p = params + chunk.offset;
    const float* __restrict g = deltas + chunk.offset;
    float* __restrict m = exp_avg_.data() + chunk.offset;
    float* __restrict v = exp_avg_sq_.data() + chunk.offset;
    // Multiplying by exactly 1 leaves no-decay tensors bit-for-bit untouched by the decay.
    const float decay = chunk.decay ? decay_factor : 1.0f;
    for (idx i = 0; i < chunk.numel; ++i) {
      const float gi = g[i];
      const float mi = b1 * m[i] + one_minus_b1 * gi;
      const float vi = b2 * v[i] + one_minus_b2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = p[i] * decay - step_size * (mi / (std::sqrt(vi) / bias2_sqrt + eps));
    }
  }
}

}  // namespace nexus
