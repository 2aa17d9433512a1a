// The AdamW step on the GPU: the CPU backend's arithmetic (kernels/cpu/adamw.cpp), elementwise in
// fp32 on the master weights, writing the bf16 compute copy when the compute type is bf16. Every
// operation is an explicitly rounded intrinsic, in the CPU's order: nvcc would otherwise contract
// a*b+c into FMAs (the CPU build, ISO C++, does not), and the GPU step would drift from the CPU's
// by an ulp per step. So a GPU step equals the CPU step bit for bit, and a run resumed on the
// other device continues the same trajectory.
#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"

namespace nexus::cuda {

namespace {

constexpr unsigned kThreads = 256;

template <typename T>
__global__ void adamw_kernel(accum_t<T>* __restrict__ master, T* __restrict__ compute,
                             const accum_t<T>* __restrict__ grad, accum_t<T>* __restrict__ exp_avg,
                             accum_t<T>* __restrict__ exp_avg_sq, idx n, AdamWCoefficients k) {
  using A = accum_t<T>;
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < n; i += idx(gridDim.x) * blockDim.x) {
    static_assert(std::is_same_v<A, float>, "the rounded intrinsics below are fp32's");
    const float gi = grad[i];
    const float mi = __fadd_rn(__fmul_rn(k.beta1, exp_avg[i]), __fmul_rn(k.one_minus_beta1, gi));
    const float vi = __fadd_rn(__fmul_rn(k.beta2, exp_avg_sq[i]), __fmul_rn(__fmul_rn(k.one_minus_beta2, gi), gi));
    exp_avg[i] = mi;
    exp_avg_sq[i] = vi;
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), k.bias2_sqrt), k.eps);
    const float updated = __fsub_rn(__fmul_rn(master[i], k.decay), __fmul_rn(k.step_size, __fdiv_rn(mi, denom)));
    master[i] = updated;
    if constexpr (!std::is_same_v<T, A>) compute[i] = T(updated);
  }
}

}  // namespace

template <typename T>
void adamw_update(const Exec& ex, accum_t<T>* master, T* compute, const accum_t<T>* grad, accum_t<T>* exp_avg,
                  accum_t<T>* exp_avg_sq, idx n, const AdamWCoefficients& k) {
  launch_over<kThreads>(ex, n, adamw_kernel<T>, master, compute, grad, exp_avg, exp_avg_sq, n, k);
}

template void adamw_update<float>(const Exec&, float*, float*, const float*, float*, float*, idx,
                                  const AdamWCoefficients&);
template void adamw_update<bf16>(const Exec&, float*, bf16*, const float*, float*, float*, idx,
                                 const AdamWCoefficients&);

}  // namespace nexus::cuda
