// RoPE on the GPU against the CPU kernel: partial and full rotary dims, B > 1, odd token counts,
// and positions up to ~1.3e5 (angles of 1e5 radians, computed in double on both sides).
// Tolerances: the angle's double arithmetic may differ in its last ulp (CUDA's pow, cos and sin
// are within 1-2 ulps, glibc's correctly rounded or nearly): ~1e-11 absolute at 1e5 radians, so
// fp64 results agree to 1e-10; fp32 rounds cos and sin to float (a double difference that small
// only rarely flips a rounding) and nvcc may contract x1 c - x2 s into an FMA: a few ulps, 1e-6
// relative to the scale. bf16 against the fp32 CPU kernel on the same rounded inputs: two
// roundings (bf16_error). Elementwise, with nothing summed over rows: no determinism test needed.
#include <gtest/gtest.h>

#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using namespace test;

struct Shape {
  idx B, Tn, H, head_dim, rotary_dim, pos0;
};
const Shape kShapes[] = {{1, 1, 1, 2, 2, 0}, {2, 37, 3, 16, 8, 5}, {3, 100, 4, 64, 32, 4000},
                         {1, 5, 2, 10, 10, 123456}, {2, 7, 2, 128, 64, 0}};
constexpr double kTheta = 10000.0;

std::string where(const Shape& s) {
  return " B=" + std::to_string(s.B) + " Tn=" + std::to_string(s.Tn) + " hd=" + std::to_string(s.head_dim) +
         " rd=" + std::to_string(s.rotary_dim) + " pos0=" + std::to_string(s.pos0);
}

template <typename T>
void rope_matches_the_cpu(double tol) {
  for (const Shape s : kShapes) {
    const std::size_t n = std::size_t(s.B * s.Tn * s.H * s.head_dim);
    std::vector<T> x = random_vector<T>(n, 1), dx = random_vector<T>(n, 2);
    DeviceBuffer<T> g_x = on_gpu(x), g_dx = on_gpu(dx);
    rope_forward(kCpu, x.data(), s.B, s.Tn, s.H, s.head_dim, s.rotary_dim, s.pos0, kTheta);
    rope_backward(kCpu, dx.data(), s.B, s.Tn, s.H, s.head_dim, s.rotary_dim, s.pos0, kTheta);
    rope_forward(kGpu, g_x.data(), s.B, s.Tn, s.H, s.head_dim, s.rotary_dim, s.pos0, kTheta);
    rope_backward(kGpu, g_dx.data(), s.B, s.Tn, s.H, s.head_dim, s.rotary_dim, s.pos0, kTheta);
    EXPECT_LE(max_rel_diff(on_host(g_x), x, 1.0), tol) << "forward" << where(s);
    EXPECT_LE(max_rel_diff(on_host(g_dx), dx, 1.0), tol) << "backward" << where(s);
  }
}

TEST(CudaRope, Fp32MatchesTheCpu) { rope_matches_the_cpu<float>(1e-6); }
TEST(CudaRope, Fp64MatchesTheCpu) { rope_matches_the_cpu<double>(1e-10); }

TEST(CudaRope, Bf16MatchesTheFp32CpuOnRoundedInputs) {
  for (const Shape s : kShapes) {
    const std::size_t n = std::size_t(s.B * s.Tn * s.H * s.head_dim);
    const Bf16Rounded x0 = round_to_bf16(random_vector<float>(n, 1)), dx0 = round_to_bf16(random_vector<float>(n, 2));
    std::vector<float> x = x0.value, dx = dx0.value;
    DeviceBuffer<bf16> g_x = on_gpu(x0.stored), g_dx = on_gpu(dx0.stored);
    rope_forward(kCpu, x.data(), s.B, s.Tn, s.H, s.head_dim, s.rotary_dim, s.pos0, kTheta);
    rope_backward(kCpu, dx.data(), s.B, s.Tn, s.H, s.head_dim, s.rotary_dim, s.pos0, kTheta);
    cuda::rope_forward(kGpu, g_x.data(), s.B, s.Tn, s.H, s.head_dim, s.rotary_dim, s.pos0, kTheta);
    cuda::rope_backward(kGpu, g_dx.data(), s.B, s.Tn, s.H, s.head_dim, s.rotary_dim, s.pos0, kTheta);
    EXPECT_LE(bf16_error(to_float(on_host(g_x)), x), 1.0) << "forward" << where(s);
    EXPECT_LE(bf16_error(to_float(on_host(g_dx)), dx), 1.0) << "backward" << where(s);
  }
}

}  // namespace
}  // namespace nexus
