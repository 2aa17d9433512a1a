#include "optim/grad.h"

#include <cmath>

#include "kernels/ops.h"

namespace nexus {

double global_norm(const Exec& ex, const float* x, idx n) { return std::sqrt(sum_of_squares(ex, x, n)); }

double clip_grad_norm(const Exec& ex, float* deltas, idx n, double max_norm) {
  const double norm = global_norm(ex, deltas, n);
  clip_to_norm(ex, deltas, n, norm, max_norm);
  return norm;
}

void clip_to_norm(const Exec& ex, float* deltas, idx n, double norm, double max_norm) {
  if (max_norm > 0.0 && std::isfinite(norm) && norm > max_norm)
    scale_inplace(ex, deltas, n, static_cast<float>(max_norm / (norm + 1e-6)));
}

}  // namespace nexus
