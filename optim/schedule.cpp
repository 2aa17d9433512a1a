#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace nexus {

std::optional<LrSchedule> parse_lr_schedule(std::string_view name) {
  if (name == "cosine") return LrSchedule::Cosine;
  if (name == "constant") return LrSchedule::Constant;
  if (name == "wsd") return LrSchedule::Wsd;
  return std::nullopt;
}

const char* to_string(LrSchedule kind) {
  switch (kind) {
    case LrSchedule::Cosine: return "cosine";
    case LrSchedule::Constant: return "constant";
    case LrSchedule::Wsd: return "wsd";
  }
  return "?";
}

idx wsd_decay_start(const ScheduleConfig& config) {
  const auto decay_steps = static_cast<idx>(std::llround(config.decay_fraction * static_cast<double>(config.total_steps)));
  return config.total_steps - std::clamp<idx>(decay_steps, 0, config.total_steps);
}

double learning_rate(const ScheduleConfig& config, idx step) {
  if (step < config.warmup_steps)
    return config.lr * static_cast<double>(step + 1) / static_cast<double>(config.warmup_steps);
  // Progress through a decay phase [start, total_steps), clamped so that later steps keep min_lr.
  const auto progress = [&](idx start) {
    const idx length = config.total_steps - start;
    if (length <= 0) return 1.0;
    return std::clamp(static_cast<double>(step - start) / static_cast<double>(length), 0.0, 1.0);
  };
  switch (config.kind) {
    case LrSchedule::Constant: return config.lr;
    case LrSchedule::Cosine: {
      const double s = progress(config.warmup_steps);
      return config.min_lr + (config.lr - config.min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * s));
    }
    case LrSchedule::Wsd: {
      const idx start = wsd_decay_start(config);
      if (step < start) return config.lr;
      return config.lr + (config.min_lr - config.lr) * progress(start);
    }
  }
  return config.lr;
}

}  // namespace nexus
