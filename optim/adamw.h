// AdamW with decoupled weight decay over the flat fp32 parameter buffer, with exactly the update
// of torch.optim.AdamW (default, non-amsgrad, non-maximize):
//   p -= lr * wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= lr * (m / (1 - b1^t)) / (sqrt(v) / sqrt(1 - b2^t) + eps)
// The optimizer state (step count t, exp_avg m, exp_avg_sq v) has the layout of the parameter
// buffer, so checkpoints write it with the same loop over the parameter table.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/device_memory.h"
#include "model/params.h"

namespace nexus {

struct AdamWHyper {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

// A run of the flat buffer that shares one weight-decay flag.
struct DecayRange {
  idx offset = 0;
  idx numel = 0;
  bool decay = true;
};

// The decay ranges of a parameter table, adjacent tensors with the same flag merged.
inline std::vector<DecayRange> decay_ranges(const ParamTable& table) {
  std::vector<DecayRange> ranges;
  for (const ParamInfo& p : table.params()) {
    if (!ranges.empty() && ranges.back().decay == p.decay && ranges.back().offset + ranges.back().numel == p.offset)
      ranges.back().numel += p.numel;
    else
      ranges.push_back({p.offset, p.numel, p.decay});
  }
  return ranges;
}

class AdamW {
 public:
  // `ranges` must tile [0, n) exactly (in any order, no gaps or overlaps); throws
  // std::invalid_argument naming the offending offset otherwise. The moments live on ex's device,
  // zero-initialised, and every step runs there.
  AdamW(idx n, const AdamWHyper& hyper, std::vector<DecayRange> ranges, const Exec& ex = {});

  // One pass of the adamw_update op over params, deltas and both moments per decay range (all on
  // the optimizer's device). Increments the step count first, so the first call uses t = 1. `lr`
  // is this step's learning rate (from the schedule).
  void step(float* params, const float* deltas, double lr);
  // The same step on fp32 master weights with a bf16 compute copy: the pass also writes
  // compute[i] = bf16(master[i]) (round to nearest even). bf16 runs on a GPU only.
  void step(float* master, bf16* compute, const float* deltas, double lr);

  idx size() const { return n_; }
  const AdamWHyper& hyper() const { return hyper_; }
  void set_hyper(const AdamWHyper& hyper) { hyper_ = hyper; }

  // Checkpoint state: the number of steps taken and the two moment buffers (n floats each, device
  // memory: read them on the host through a HostMirror).
  std::int64_t steps() const { return steps_; }
  void set_steps(std::int64_t steps) { steps_ = steps; }
  const Exec& exec() const { return exp_avg_.exec(); }
  std::span<float> exp_avg() { return {exp_avg_.data(), std::size_t(n_)}; }
  std::span<const float> exp_avg() const { return {exp_avg_.data(), std::size_t(n_)}; }
  std::span<float> exp_avg_sq() { return {exp_avg_sq_.data(), std::size_t(n_)}; }
  std::span<const float> exp_avg_sq() const { return {exp_avg_sq_.data(), std::size_t(n_)}; }

 private:
  template <typename C>
  void update(float* master, C* compute, const float* deltas, double lr);

  idx n_;
  AdamWHyper hyper_;
  std::vector<DecayRange> ranges_;  // sorted by offset, tiling [0, n)
  std::int64_t steps_ = 0;
  DeviceBuffer<float> exp_avg_;     // [n] first moment, parameter-table layout
  DeviceBuffer<float> exp_avg_sq_;  // [n] second moment
};

}  // namespace nexus
