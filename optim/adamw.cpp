#include "optim/adamw.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/ops.h"

namespace nexus {

AdamW::AdamW(idx n, const AdamWHyper& hyper, std::vector<DecayRange> ranges, const Exec& ex)
    : n_(n), hyper_(hyper) {
  std::sort(ranges.begin(), ranges.end(), [](const DecayRange& a, const DecayRange& b) { return a.offset < b.offset; });
  idx covered = 0;
  for (const DecayRange& r : ranges) {
    if (r.numel < 0 || r.offset != covered)
      throw std::invalid_argument("AdamW: decay ranges must tile [0, " + std::to_string(n) +
                                  "): expected a range at offset " + std::to_string(covered) + ", got offset " +
                                  std::to_string(r.offset) + " numel " + std::to_string(r.numel));
    covered += r.numel;
  }
  if (covered != n)
    throw std::invalid_argument("AdamW: decay ranges cover [0, " + std::to_string(covered) + ") but the buffer has " +
                                std::to_string(n) + " elements");
  ranges_ = std::move(ranges);
  exp_avg_ = DeviceBuffer<float>(ex, n);
  exp_avg_.zero();
  exp_avg_sq_ = DeviceBuffer<float>(ex, n);
  exp_avg_sq_.zero();
}

void AdamW::step(float* params, const float* deltas, double lr) {
  // fp32 training: the master weights are the compute weights, so there is no copy to write.
  update(params, static_cast<float*>(nullptr), deltas, lr);
}

void AdamW::step(float* master, bf16* compute, const float* deltas, double lr) { update(master, compute, deltas, lr); }

template <typename C>
void AdamW::update(float* master, C* compute, const float* deltas, double lr) {
  ++steps_;
  const double t = static_cast<double>(steps_);
  // Scalars in double, as PyTorch computes them on the host; the elementwise work is fp32.
  const double bias1 = 1.0 - std::pow(hyper_.beta1, t);
  const double bias2 = 1.0 - std::pow(hyper_.beta2, t);
  AdamWCoefficients k{};
  k.step_size = static_cast<float>(lr / bias1);
  k.bias2_sqrt = static_cast<float>(std::sqrt(bias2));
  k.beta1 = static_cast<float>(hyper_.beta1);
  k.beta2 = static_cast<float>(hyper_.beta2);
  k.one_minus_beta1 = static_cast<float>(1.0 - hyper_.beta1);
  k.one_minus_beta2 = static_cast<float>(1.0 - hyper_.beta2);
  k.eps = static_cast<float>(hyper_.eps);
  const float decay_factor = static_cast<float>(1.0 - lr * hyper_.weight_decay);
  for (const DecayRange& r : ranges_) {
    // Multiplying by exactly 1 leaves no-decay tensors bit-for-bit untouched by the decay.
    k.decay = r.decay ? decay_factor : 1.0f;
    adamw_update(exec(), master + r.offset, compute ? compute + r.offset : compute, deltas + r.offset,
                 exp_avg_.data() + r.offset, exp_avg_sq_.data() + r.offset, r.numel, k);
  }
}

}  // namespace nexus
