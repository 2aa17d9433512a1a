// SwiGLU on the GPU against the CPU kernel: forward and backward, fp32 and fp64, odd sizes.
// Elementwise with the same formula on both sides, so the only difference is exp's last bit:
// a few ulps of each result, so relative to the outputs' scale (at least 1): 1e-6 in fp32,
// 1e-14 in fp64, with |inputs| <= 4. bf16 against the fp32 CPU kernel on the same bf16-rounded
// inputs: float arithmetic, one rounding of each stored output (2^-9 relative) plus exp's ulps:
// bf16_error with its default 2 roundings.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using namespace test;  // kCpu, kGpu, on_gpu, on_host (cuda/gpu_buffers.h), random_vector

template <typename T>
void swiglu_matches_the_cpu(double tol) {
  for (const idx N : {idx(1), idx(37)})
    for (const idx F : {idx(1), idx(48), idx(333)}) {
      const std::size_t nf = std::size_t(N * F);
      const std::vector<T> gate_up = test::random_vector<T>(2 * nf, 1, -4.0, 4.0), dout = test::random_vector<T>(nf, 2);
      std::vector<T> out(nf), dgate_up(2 * nf);
      swiglu_forward(kCpu, out.data(), gate_up.data(), N, F);
      swiglu_backward(kCpu, dgate_up.data(), dout.data(), gate_up.data(), N, F);
      DeviceBuffer<T> g_gate_up = on_gpu(gate_up), g_dout = on_gpu(dout), g_out(kGpu, idx(nf)),
                      g_dgate_up(kGpu, idx(2 * nf));
      swiglu_forward(kGpu, g_out.data(), g_gate_up.data(), N, F);
      swiglu_backward(kGpu, g_dgate_up.data(), g_dout.data(), g_gate_up.data(), N, F);
      EXPECT_LE(max_rel_diff(on_host(g_out), out, 1.0), tol) << "forward N=" << N << " F=" << F;
      EXPECT_LE(max_rel_diff(on_host(g_dgate_up), dgate_up, 1.0), tol) << "backward N=" << N << " F=" << F;
    }
}

TEST(CudaSwiglu, Bf16MatchesTheFp32CpuOnRoundedInputs) {
  for (const idx N : {idx(1), idx(37)})
    for (const idx F : {idx(1), idx(48), idx(333)}) {
      const std::size_t nf = std::size_t(N * F);
      const Bf16Rounded gate_up = round_to_bf16(random_vector<float>(2 * nf, 1, -4.0, 4.0)),
                        dout = round_to_bf16(random_vector<float>(nf, 2));
      std::vector<float> out(nf), dgate_up(2 * nf);
      swiglu_forward(kCpu, out.data(), gate_up.value.data(), N, F);
      swiglu_backward(kCpu, dgate_up.data(), dout.value.data(), gate_up.value.data(), N, F);
      DeviceBuffer<bf16> g_gate_up = on_gpu(gate_up.stored), g_dout = on_gpu(dout.stored), g_out(kGpu, idx(nf)),
                         g_dgate_up(kGpu, idx(2 * nf));
      swiglu_forward(kGpu, g_out.data(), g_gate_up.data(), N, F);
      swiglu_backward(kGpu, g_dgate_up.data(), g_dout.data(), g_gate_up.data(), N, F);
      EXPECT_LE(bf16_error(to_float(on_host(g_out)), out), 1.0) << "forward N=" << N << " F=" << F;
      EXPECT_LE(bf16_error(to_float(on_host(g_dgate_up)), dgate_up), 1.0) << "backward N=" << N << " F=" << F;
    }
}

TEST(CudaSwiglu, Fp32MatchesTheCpu) { swiglu_matches_the_cpu<float>(1e-6); }
TEST(CudaSwiglu, Fp64MatchesTheCpu) { swiglu_matches_the_cpu<double>(1e-14); }

}  // namespace
}  // namespace nexus
