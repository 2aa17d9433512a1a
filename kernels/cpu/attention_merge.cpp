// Log-sum-exp merge of partial attention results: how ring attention (and a KV cache split into
// blocks) combines the outputs of several attention_forward calls over disjoint key blocks.
#include <cmath>
#include <limits>

#include "kernels/cpu/backend.h"

namespace nexus::cpu {

template <typename T>
void attention_merge(const Exec&, T* out, accum_t<T>* lse, const T* out_b, const accum_t<T>* lse_b, idx rows,
                     idx head_dim) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
#pragma omp parallel for schedule(static)
  for (idx r = 0; r < rows; ++r) {
    const T la = lse[r], lb = lse_b[r];
    if (lb == neg_inf) continue;  // the other block saw no key for this row
    T* __restrict o = out + r * head_dim;
    const T* __restrict ob = out_b + r * head_dim;
    if (la == neg_inf) {
      for (idx d = 0; d < head_dim; ++d) o[d] = ob[d];
      lse[r] = lb;
      continue;
    }
    // Subtracting the max keeps both exponentials <= 1.
    const T m = la > lb ? la : lb;
    const T ea = std::exp(la - m), eb = std::exp(lb - m);
    const T merged = m + std::log(ea + eb);
    const T wa = std::exp(la - merged), wb = std::exp(lb - merged);
    for (idx d = 0; d < head_dim; ++d) o[d] = wa * o[d] + wb * ob[d];
    lse[r] = merged;
  }
}

template void attention_merge<float>(const Exec&, float*, float*, const float*, const float*, idx, idx);
template void attention_merge<double>(const Exec&, double*, double*, const double*, const double*, idx, idx);

}  // namespace nexus::cpu
