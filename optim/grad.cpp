#include "optim/grad.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

namespace nexus {

namespace {

// Fixed, thread-count-independent reduction blocks (see the header).
constexpr idx kBlock = idx{1} << 15;

idx block_count(idx n) { return (n + kBlock - 1) / kBlock; }

}  // namespace

double global_norm(const float* x, idx n) {
  const idx blocks = block_count(n);
  std::vector<double> partial(static_cast<std::size_t>(blocks));  // one sum of squares per block
#pragma omp parallel for schedule(static)
  for (idx b = 0; b < blocks; ++b) {
    const float* __restrict xb = x + b * kBlock;
    const idx len = std::min(kBlock, n - b * kBlock);
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (idx i = 0; i < len; ++i) {
      const double v = static_cast<double>(xb[i]);
      sum += v * v;
    }
    partial[static_cast<std::size_t>(b)] = sum;
  }
  double total = 0.0;
  for (double s : partial) total += s;
  return std::sqrt(total);
}

double clip_grad_norm(float* deltas, idx n, double max_norm) {
  const double norm = global_norm(deltas, n);
  if (max_norm > 0.0 && std::isfinite(norm) && norm > max_norm)
    scale_deltas(deltas, n, static_cast<float>(max_norm / (norm + 1e-6)));
  return norm;
}

void scale_deltas(float* x, idx n, float factor) {
#pragma omp parallel for schedule(static)
  for (idx i = 0; i < n; ++i) x[i] *= factor;
}

bool all_finite(const float* x, idx n) {
  int bad = 0;
#pragma omp parallel for simd schedule(static) reduction(| : bad)
  for (idx i = 0; i < n; ++i) bad |= !(std::fabs(x[i]) <= FLT_MAX);  // NaN compares false
  return bad == 0;
}

}  // namespace nexus
