// conv1d_silu_step on the GPU against the CPU kernel: K = 1 (no state), 2, 4 and 7, x rows wider
// than C, several steps in a row so the rolling state is checked as it shifts.
// Tolerances: the same K-term sum per element in the same order, with nvcc's FMA contraction and
// exp's last bit as the only differences: 1e-5 (fp32) / 1e-12 (fp64) of the scale over 3 steps;
// the state is moved, never computed: exact. bf16 against the fp32 CPU kernel on the same rounded
// inputs: the output within two bf16 roundings (bf16_error), the state exact. No reduction over
// rows: no determinism test needed.
#include <gtest/gtest.h>

#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using namespace test;

struct Shape {
  idx B, C, K, ld_x;
};
const Shape kShapes[] = {{1, 1, 1, 1}, {3, 70, 4, 80}, {2, 300, 2, 300}, {1, 5, 7, 9}};
constexpr int kSteps = 3;

template <typename T>
void step_matches_the_cpu(double tol) {
  for (const Shape s : kShapes) {
    std::vector<T> state = random_vector<T>(std::size_t(s.B * (s.K - 1) * s.C), 1), out(std::size_t(s.B * s.C));
    const std::vector<T> w = random_vector<T>(std::size_t(s.C * s.K), 2), bias = random_vector<T>(std::size_t(s.C), 3);
    DeviceBuffer<T> g_state = on_gpu(state), g_w = on_gpu(w), g_bias = on_gpu(bias), g_out(kGpu, idx(out.size()));
    for (int step = 0; step < kSteps; ++step) {
      const std::vector<T> x = random_vector<T>(std::size_t(s.B * s.ld_x), 10 + std::uint64_t(step), -2.0, 2.0);
      DeviceBuffer<T> g_x = on_gpu(x);
      conv1d_silu_step(kCpu, out.data(), state.data(), x.data(), s.ld_x, w.data(), bias.data(), s.B, s.C, s.K);
      conv1d_silu_step(kGpu, g_out.data(), g_state.data(), g_x.data(), s.ld_x, g_w.data(), g_bias.data(), s.B, s.C,
                       s.K);
      EXPECT_LE(max_rel_diff(on_host(g_out), out, 1.0), tol) << "out step " << step << " C=" << s.C << " K=" << s.K;
      EXPECT_TRUE(same_bits(on_host(g_state), state)) << "state step " << step << " C=" << s.C << " K=" << s.K;
    }
  }
}

TEST(CudaConv1dSiluStep, Fp32MatchesTheCpu) { step_matches_the_cpu<float>(1e-5); }
TEST(CudaConv1dSiluStep, Fp64MatchesTheCpu) { step_matches_the_cpu<double>(1e-12); }

TEST(CudaConv1dSiluStep, Bf16MatchesTheFp32CpuOnRoundedInputs) {
  for (const Shape s : kShapes) {
    const Bf16Rounded state0 = round_to_bf16(random_vector<float>(std::size_t(s.B * (s.K - 1) * s.C), 1)),
                      w = round_to_bf16(random_vector<float>(std::size_t(s.C * s.K), 2)),
                      bias = round_to_bf16(random_vector<float>(std::size_t(s.C), 3));
    std::vector<float> state = state0.value, out(std::size_t(s.B * s.C));
    DeviceBuffer<bf16> g_state = on_gpu(state0.stored), g_w = on_gpu(w.stored), g_bias = on_gpu(bias.stored),
                       g_out(kGpu, idx(out.size()));
    for (int step = 0; step < kSteps; ++step) {
      const Bf16Rounded x = round_to_bf16(random_vector<float>(std::size_t(s.B * s.ld_x), 10 + std::uint64_t(step)));
      DeviceBuffer<bf16> g_x = on_gpu(x.stored);
      conv1d_silu_step(kCpu, out.data(), state.data(), x.value.data(), s.ld_x, w.value.data(), bias.value.data(), s.B,
                       s.C, s.K);
      cuda::conv1d_silu_step(kGpu, g_out.data(), g_state.data(), g_x.data(), s.ld_x, g_w.data(), g_bias.data(), s.B,
                             s.C, s.K);
      EXPECT_LE(bf16_error(to_float(on_host(g_out)), out), 1.0) << "out step " << step << " C=" << s.C;
      EXPECT_TRUE(same_bits(to_float(on_host(g_state)), state)) << "state step " << step << " C=" << s.C;
    }
  }
}

}  // namespace
}  // namespace nexus
