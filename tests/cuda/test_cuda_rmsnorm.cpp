// Residual RMSNorm on the GPU against the CPU kernel: forward (with and without the branch, h
// aliasing x) and backward, odd widths, rows past one column-sum slab (64 rows).
// Tolerances: both sides sum the row statistics in double and round the same formula once more
// in T, but in another order (block tree vs sequential) and with nvcc's FMA contraction, so
// outputs differ by a few ulps of the row's scale: relative 1e-5 in fp32 (the input gradient
// subtracts two terms of the row's scale), 1e-12 in fp64. dweight is a double sum of the same fp32
// products on both sides: 1e-6 (fp32), 1e-12 (fp64). bf16, against the fp32 CPU kernel on the same
// rounded inputs: the GPU rounds h = x + branch to bf16 before its statistic (up to 2^-8 on h^2,
// so 2^-9 on rstd: 4e-3 allowed), so y carries h's, rstd's and its own rounding (bf16_error with 4
// roundings, gpu_buffers.h); dh (given the same h and rstd) only its own (2). dweight is fp32,
// summed in fp32 on the GPU over <= 130 rows: 1e-4 relative.
#include <gtest/gtest.h>

#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using namespace test;

struct Shape {
  idx N, D;
};
const Shape kShapes[] = {{1, 1}, {3, 255}, {37, 768}, {130, 97}};
constexpr double kEps = 1e-5;

template <typename T>
void forward_matches_the_cpu(double tol) {
  for (const Shape s : kShapes)
    for (const bool with_branch : {false, true}) {
      const std::size_t nd = std::size_t(s.N * s.D);
      const std::vector<T> x = random_vector<T>(nd, 1, -2.0, 2.0), branch = random_vector<T>(nd, 2),
                           w = random_vector<T>(std::size_t(s.D), 3, 0.5, 1.5);
      std::vector<T> h(nd), y(nd), rstd(std::size_t(s.N));
      residual_rmsnorm_forward(kCpu, h.data(), y.data(), rstd.data(), x.data(), with_branch ? branch.data() : nullptr,
                               w.data(), s.N, s.D, kEps);
      // On the GPU h aliases x: the residual stream updated in place, as the model runs it.
      DeviceBuffer<T> g_h = on_gpu(x), g_branch = on_gpu(branch), g_w = on_gpu(w), g_y(kGpu, idx(nd)),
                      g_rstd(kGpu, s.N);
      residual_rmsnorm_forward(kGpu, g_h.data(), g_y.data(), g_rstd.data(), g_h.data(),
                               with_branch ? g_branch.data() : nullptr, g_w.data(), s.N, s.D, kEps);
      const std::string where = " N=" + std::to_string(s.N) + " D=" + std::to_string(s.D) + " branch=" +
                                std::to_string(with_branch);
      EXPECT_LE(max_rel_diff(on_host(g_h), h, 1.0), tol) << "h" << where;
      EXPECT_LE(max_rel_diff(on_host(g_y), y, 1.0), tol) << "y" << where;
      EXPECT_LE(max_rel_diff(on_host(g_rstd), rstd, 1.0), tol) << "rstd" << where;
    }
}

template <typename T>
void backward_matches_the_cpu(double tol_dh, double tol_dw) {
  for (const Shape s : kShapes) {
    const std::size_t nd = std::size_t(s.N * s.D);
    const std::vector<T> dy = random_vector<T>(nd, 4), h = random_vector<T>(nd, 5, -2.0, 2.0),
                         w = random_vector<T>(std::size_t(s.D), 6, 0.5, 1.5),
                         rstd = random_vector<T>(std::size_t(s.N), 7, 0.5, 2.0);
    std::vector<T> dh = random_vector<T>(nd, 8), dw = random_vector<T>(std::size_t(s.D), 9);  // accumulate
    DeviceBuffer<T> g_dh = on_gpu(dh), g_dw = on_gpu(dw), g_dy = on_gpu(dy), g_h = on_gpu(h), g_w = on_gpu(w),
                    g_rstd = on_gpu(rstd);
    rmsnorm_backward(kCpu, dh.data(), dw.data(), dy.data(), h.data(), w.data(), rstd.data(), s.N, s.D);
    rmsnorm_backward(kGpu, g_dh.data(), g_dw.data(), g_dy.data(), g_h.data(), g_w.data(), g_rstd.data(), s.N, s.D);
    EXPECT_LE(max_rel_diff(on_host(g_dh), dh, 1.0), tol_dh) << "dh N=" << s.N << " D=" << s.D;
    EXPECT_LE(max_rel_diff(on_host(g_dw), dw, 1.0), tol_dw) << "dweight N=" << s.N << " D=" << s.D;
  }
}

TEST(CudaRmsnorm, Fp32ForwardMatchesTheCpu) { forward_matches_the_cpu<float>(1e-5); }
TEST(CudaRmsnorm, Fp64ForwardMatchesTheCpu) { forward_matches_the_cpu<double>(1e-12); }
TEST(CudaRmsnorm, Fp32BackwardMatchesTheCpu) { backward_matches_the_cpu<float>(1e-5, 1e-6); }
TEST(CudaRmsnorm, Fp64BackwardMatchesTheCpu) { backward_matches_the_cpu<double>(1e-12, 1e-12); }

TEST(CudaRmsnorm, Bf16MatchesTheFp32CpuOnRoundedInputs) {
  for (const Shape s : kShapes) {
    const std::size_t nd = std::size_t(s.N * s.D), d = std::size_t(s.D);
    const Bf16Rounded x = round_to_bf16(random_vector<float>(nd, 1, -2.0, 2.0)),
                      branch = round_to_bf16(random_vector<float>(nd, 2)),
                      w = round_to_bf16(random_vector<float>(d, 3, 0.5, 1.5)),
                      dy = round_to_bf16(random_vector<float>(nd, 4)), dh0 = round_to_bf16(random_vector<float>(nd, 8));
    std::vector<float> h(nd), y(nd), rstd(std::size_t(s.N)), dh = dh0.value, dw = random_vector<float>(d, 9);
    residual_rmsnorm_forward(kCpu, h.data(), y.data(), rstd.data(), x.value.data(), branch.value.data(),
                             w.value.data(), s.N, s.D, kEps);
    // The backward's inputs are the GPU forward's own h and rstd, given to both sides.
    DeviceBuffer<bf16> g_x = on_gpu(x.stored), g_branch = on_gpu(branch.stored), g_w = on_gpu(w.stored),
                       g_h(kGpu, idx(nd)), g_y(kGpu, idx(nd)), g_dy = on_gpu(dy.stored), g_dh = on_gpu(dh0.stored);
    DeviceBuffer<float> g_rstd(kGpu, s.N), g_dw = on_gpu(dw);
    cuda::residual_rmsnorm_forward(kGpu, g_h.data(), g_y.data(), g_rstd.data(), g_x.data(), g_branch.data(),
                                   g_w.data(), s.N, s.D, kEps);
    const std::string where = " N=" + std::to_string(s.N) + " D=" + std::to_string(s.D);
    const std::vector<float> gpu_h = to_float(on_host(g_h)), gpu_rstd = on_host(g_rstd);
    EXPECT_LE(bf16_error(gpu_h, h), 1.0) << "h" << where;
    EXPECT_LE(bf16_error(to_float(on_host(g_y)), y, 4), 1.0) << "y" << where;
    EXPECT_LE(max_rel_diff(gpu_rstd, rstd), 4e-3) << "rstd" << where;

    rmsnorm_backward(kCpu, dh.data(), dw.data(), dy.value.data(), gpu_h.data(), w.value.data(), gpu_rstd.data(), s.N,
                     s.D);
    cuda::rmsnorm_backward(kGpu, g_dh.data(), g_dw.data(), g_dy.data(), g_h.data(), g_w.data(), g_rstd.data(), s.N,
                           s.D);
    EXPECT_LE(bf16_error(to_float(on_host(g_dh)), dh), 1.0) << "dh" << where;
    EXPECT_LE(max_rel_diff(on_host(g_dw), dw, 1.0), 1e-4) << "dweight" << where;
  }
}

// dweight is a reduction over rows: two runs on the same inputs must agree bit for bit.
template <typename T>
void dweight_is_deterministic() {
  const idx N = 300, D = 513;
  const std::size_t nd = std::size_t(N * D);
  DeviceBuffer<T> g_dy = on_gpu(random_as<T>(nd, 4)), g_h = on_gpu(random_as<T>(nd, 5)),
                  g_w = on_gpu(random_as<T>(std::size_t(D), 6)), g_dh(kGpu, idx(nd));
  DeviceBuffer<accum_t<T>> g_rstd = on_gpu(random_vector<accum_t<T>>(std::size_t(N), 7, 0.5, 2.0));
  g_dh.zero();
  std::vector<std::vector<accum_t<T>>> runs;
  for (int run = 0; run < 2; ++run) {
    DeviceBuffer<accum_t<T>> g_dw(kGpu, D);
    g_dw.zero();
    cuda::rmsnorm_backward(kGpu, g_dh.data(), g_dw.data(), g_dy.data(), g_h.data(), g_w.data(), g_rstd.data(), N, D);
    runs.push_back(on_host(g_dw));
  }
  EXPECT_TRUE(same_bits(runs[0], runs[1]));
}

TEST(CudaRmsnorm, DweightIsDeterministic) {
  dweight_is_deterministic<float>();
  dweight_is_deterministic<double>();
  dweight_is_deterministic<bf16>();
}

}  // namespace
}  // namespace nexus
