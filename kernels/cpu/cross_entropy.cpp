// Softmax cross-entropy over the vocabulary, one row per token, rows in parallel.
//
// Targets: < 0 means ignored (padding, the last token of a sequence). A target >= V is a
// programming error, not an input to tolerate: the model validates token ids when it loads a batch,
// so it is only asserted here (debug builds) and otherwise reads out of the row.
//
// Numerics: every exponential is taken of (logit - row max) or (logit - lse), both <= 0, so nothing
// overflows whatever the logits' scale; each row's sum of exponentials and the total loss are
// accumulated in double.
#include <omp.h>

#include <algorithm>
#include <cassert>
#include <cmath>

#include "kernels/cpu/backend.h"

namespace nexus::cpu {

template <typename T>
double cross_entropy_forward(const Exec&, accum_t<T>* lse, const T* logits, const std::int32_t* targets, idx N, idx V) {
  // Each thread sums a fixed contiguous block of rows, and the blocks are added in thread order:
  // unlike an OpenMP reduction, the total is bit-identical from run to run (and so is every logged
  // loss, which exact resume relies on).
  constexpr int kMaxThreads = 256;
  double partial[kMaxThreads] = {};
  const int threads = std::min(omp_get_max_threads(), kMaxThreads);
#pragma omp parallel num_threads(threads)
  {
    double mine = 0.0;
#pragma omp for schedule(static)
    for (idx n = 0; n < N; ++n) {
      const T* __restrict row = logits + n * V;  // [V]
      T mx = row[0];
#pragma omp simd reduction(max : mx)
      for (idx v = 1; v < V; ++v) mx = std::max(mx, row[v]);
      double sum = 0.0;
      for (idx v = 0; v < V; ++v) sum += double(std::exp(row[v] - mx));
      const double row_lse = double(mx) + std::log(sum);
      lse[n] = T(row_lse);
      const std::int32_t target = targets[n];
      assert(target < V);
      if (target >= 0) mine += row_lse - double(row[target]);
    }
    partial[omp_get_thread_num()] = mine;
  }
  double total = 0.0;
  for (int t = 0; t < threads; ++t) total += partial[t];
  return total;
}

template <typename T>
void cross_entropy_backward(const Exec&, T* logits_to_dlogits, const accum_t<T>* lse, const std::int32_t* targets,
                            idx N, idx V, double scale) {
  const T s = T(scale);
#pragma omp parallel for schedule(static)
  for (idx n = 0; n < N; ++n) {
    T* __restrict row = logits_to_dlogits + n * V;  // [V]: logits in, dlogits out
    const std::int32_t target = targets[n];
    assert(target < V);
    if (target < 0) {
      std::fill_n(row, V, T(0));
      continue;
    }
    const T row_lse = lse[n];
    for (idx v = 0; v < V; ++v) row[v] = std::exp(row[v] - row_lse) * s;  // softmax * scale
    row[target] -= s;
  }
}

idx count_targets(const Exec&, const std::int32_t* targets, idx N) {
  idx count = 0;
#pragma omp simd reduction(+ : count)
  for (idx n = 0; n < N; ++n) count += targets[n] >= 0;
  return count;
}

template double cross_entropy_forward<float>(const Exec&, float*, const float*, const std::int32_t*, idx, idx);
template double cross_entropy_forward<double>(const Exec&, double*, const double*, const std::int32_t*, idx, idx);
template void cross_entropy_backward<float>(const Exec&, float*, const float*, const std::int32_t*, idx, idx, double);
template void cross_entropy_backward<double>(const Exec&, double*, const double*, const std::int32_t*, idx, idx,
                                             double);

}  // namespace nexus::cpu
