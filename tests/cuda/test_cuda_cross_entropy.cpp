// Cross-entropy on the GPU against the CPU kernel: vocabularies below, at and far above the block
// width, ignored targets, logits in [-10, 10].
// Tolerances: each row's lse is a double sum of exponentials taken in T on both sides, but the GPU
// takes them relative to each thread's running max (one rounding more, and rescaled), so lse and
// the loss differ by a few ulps of T relative: 1e-6 in fp32, 1e-13 in fp64. bf16 sums in fp32
// (V/256 positive terms per thread, then the block tree: at most ~200 ulps, typically ~15, of the
// sum, i.e. of lse in absolute terms): 1e-5 relative to lse and to the loss. The backward, given the same lse, computes the same exp(x - lse) * scale per
// entry: 1e-6 / 1e-14 of the row scale, and bf16's stored dlogits within two roundings
// (bf16_error). The loss is a reduction: two runs return the same bits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using namespace test;

struct Shape {
  idx N, V;
};
const Shape kShapes[] = {{1, 1}, {5, 100}, {37, 3001}, {3, 50000}, {300, 256}};
constexpr double kScale = 0.01;

// Random targets in [0, V), every fifth ignored (-1).
std::vector<std::int32_t> random_targets(idx N, idx V, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int32_t> u(0, std::int32_t(V - 1));
  std::vector<std::int32_t> t(static_cast<std::size_t>(N));
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = i % 5 == 3 ? -1 : u(rng);
  return t;
}

template <typename T>
void cross_entropy_matches_the_cpu(double tol, double tol_backward) {
  for (const Shape s : kShapes) {
    const std::size_t nv = std::size_t(s.N * s.V);
    const std::vector<std::int32_t> targets = random_targets(s.N, s.V, 1);
    const std::vector<T> logits = random_vector<T>(nv, 2, -10.0, 10.0);
    std::vector<T> lse(std::size_t(s.N)), dlogits = logits;
    DeviceBuffer<std::int32_t> g_targets = on_gpu(targets);
    DeviceBuffer<T> g_logits = on_gpu(logits), g_lse(kGpu, s.N);
    const double loss = cross_entropy_forward(kCpu, lse.data(), logits.data(), targets.data(), s.N, s.V);
    const double g_loss = cross_entropy_forward(kGpu, g_lse.data(), g_logits.data(), g_targets.data(), s.N, s.V);
    const std::string where = " N=" + std::to_string(s.N) + " V=" + std::to_string(s.V);
    EXPECT_LE(std::fabs(g_loss - loss), tol * std::max(1.0, std::fabs(loss))) << "loss" << where;
    EXPECT_LE(max_rel_diff(on_host(g_lse), lse, 1.0), tol) << "lse" << where;
    // Both backwards from the CPU's lse.
    DeviceBuffer<T> g_cpu_lse = on_gpu(lse);
    cross_entropy_backward(kCpu, dlogits.data(), lse.data(), targets.data(), s.N, s.V, kScale);
    cross_entropy_backward(kGpu, g_logits.data(), g_cpu_lse.data(), g_targets.data(), s.N, s.V, kScale);
    EXPECT_LE(max_rel_diff(on_host(g_logits), dlogits, kScale), tol_backward) << "dlogits" << where;
  }
}

TEST(CudaCrossEntropy, Fp32MatchesTheCpu) { cross_entropy_matches_the_cpu<float>(1e-6, 1e-6); }
TEST(CudaCrossEntropy, Fp64MatchesTheCpu) { cross_entropy_matches_the_cpu<double>(1e-13, 1e-14); }

TEST(CudaCrossEntropy, Bf16MatchesTheFp32CpuOnRoundedInputs) {
  for (const Shape s : kShapes) {
    const std::size_t nv = std::size_t(s.N * s.V);
    const std::vector<std::int32_t> targets = random_targets(s.N, s.V, 1);
    const Bf16Rounded logits = round_to_bf16(random_vector<float>(nv, 2, -10.0, 10.0));
    std::vector<float> lse(std::size_t(s.N)), dlogits = logits.value;
    DeviceBuffer<std::int32_t> g_targets = on_gpu(targets);
    DeviceBuffer<bf16> g_logits = on_gpu(logits.stored);
    DeviceBuffer<float> g_lse(kGpu, s.N);
    const double loss = cross_entropy_forward(kCpu, lse.data(), logits.value.data(), targets.data(), s.N, s.V);
    const double g_loss = cuda::cross_entropy_forward(kGpu, g_lse.data(), g_logits.data(), g_targets.data(), s.N, s.V);
    const std::string where = " N=" + std::to_string(s.N) + " V=" + std::to_string(s.V);
    EXPECT_LE(std::fabs(g_loss - loss), 1e-5 * std::max(1.0, std::fabs(loss))) << "loss" << where;
    EXPECT_LE(max_rel_diff(on_host(g_lse), lse, 1.0), 1e-5) << "lse" << where;
    DeviceBuffer<float> g_cpu_lse = on_gpu(lse);
    cross_entropy_backward(kCpu, dlogits.data(), lse.data(), targets.data(), s.N, s.V, kScale);
    cuda::cross_entropy_backward(kGpu, g_logits.data(), g_cpu_lse.data(), g_targets.data(), s.N, s.V, kScale);
    EXPECT_LE(bf16_error(to_float(on_host(g_logits)), dlogits), 1.0) << "dlogits" << where;
  }
}

template <typename T>
void loss_is_deterministic() {
  const idx N = 1000, V = 777;
  DeviceBuffer<std::int32_t> g_targets = on_gpu(random_targets(N, V, 3));
  DeviceBuffer<T> g_logits = on_gpu(random_as<T>(std::size_t(N * V), 4, -10.0, 10.0));
  DeviceBuffer<accum_t<T>> g_lse(kGpu, N);
  const double first = cuda::cross_entropy_forward(kGpu, g_lse.data(), g_logits.data(), g_targets.data(), N, V);
  const double second = cuda::cross_entropy_forward(kGpu, g_lse.data(), g_logits.data(), g_targets.data(), N, V);
  EXPECT_TRUE(same_bits(std::vector<double>{first}, std::vector<double>{second}));
}

TEST(CudaCrossEntropy, LossIsDeterministic) {
  loss_is_deterministic<float>();
  loss_is_deterministic<double>();
  loss_is_deterministic<bf16>();
}

}  // namespace
}  // namespace nexus
