// Learning-rate schedules: a pure function of the schedule config and the step index.
#pragma once

#include <optional>
#include <string_view>

#include "kernels/types.h"

namespace nexus {

enum class LrSchedule {
  Cosine,    // linear warmup, then cosine decay from lr to min_lr at total_steps
  Constant,  // linear warmup, then lr
  Wsd,       // warmup-stable-decay: warmup, lr, then linear decay to min_lr over the last
             // decay_fraction of total_steps
};

// "cosine", "constant", "wsd"; nullopt for anything else.
std::optional<LrSchedule> parse_lr_schedule(std::string_view name);
const char* to_string(LrSchedule kind);

struct ScheduleConfig {
  LrSchedule kind = LrSchedule::Cosine;
  double lr = 1e-3;  // peak
  double min_lr = 0.0;
  idx warmup_steps = 0;
  idx total_steps = 1;
  double decay_fraction = 0.2;  // WSD only
};

// The learning rate of the optimizer step with 0-based index `step` (AdamW's t is step + 1).
//  warmup:  step < warmup_steps       -> lr * (step + 1) / warmup_steps  (reaches lr at warmup_steps - 1)
//  cosine:  s = (step - warmup) / (total - warmup) -> min_lr + (lr - min_lr) * (1 + cos(pi s)) / 2
//  wsd:     decay_steps = round(decay_fraction * total), start = total - decay_steps;
//           step < start -> lr, else lr + (min_lr - lr) * (step - start) / decay_steps
// Decays reach min_lr at step == total_steps and stay there after it.
double learning_rate(const ScheduleConfig& config, idx step);

// The first step of the WSD decay phase (total_steps - round(decay_fraction * total_steps)).
idx wsd_decay_start(const ScheduleConfig& config);

}  // namespace nexus
