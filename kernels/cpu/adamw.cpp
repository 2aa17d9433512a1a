// The AdamW step, elementwise over a run of the flat buffers (optim/adamw.cpp calls it once per
// run of tensors that share a weight-decay flag). The arithmetic is fp32, in the order of
// torch.optim.AdamW's single-tensor path, with the step's scalars precomputed on the host.
#include <cmath>

#include "kernels/cpu/backend.h"

namespace nexus::cpu {

template <typename T>
void adamw_update(const Exec&, accum_t<T>* __restrict master, T* __restrict compute, const accum_t<T>* __restrict grad,
                  accum_t<T>* __restrict exp_avg, accum_t<T>* __restrict exp_avg_sq, idx n,
                  const AdamWCoefficients& k) {
  using A = accum_t<T>;
  // Multiplying by exactly 1 (k.decay for no-decay tensors) leaves them bit-for-bit untouched.
#pragma omp parallel for schedule(static)
  for (idx i = 0; i < n; ++i) {
    const A gi = grad[i];
    const A mi = k.beta1 * exp_avg[i] + k.one_minus_beta1 * gi;
    const A vi = k.beta2 * exp_avg_sq[i] + k.one_minus_beta2 * gi * gi;
    exp_avg[i] = mi;
    exp_avg_sq[i] = vi;
    master[i] = master[i] * k.decay - k.step_size * (mi / (std::sqrt(vi) / k.bias2_sqrt + k.eps));
    if constexpr (!std::is_same_v<T, A>) compute[i] = T(master[i]);
  }
}

template void adamw_update<float>(const Exec&, float*, float*, const float*, float*, float*, idx,
                                  const AdamWCoefficients&);
template void adamw_update<bf16>(const Exec&, float*, bf16*, const float*, float*, float*, idx,
                                 const AdamWCoefficients&);

}  // namespace nexus::cpu
