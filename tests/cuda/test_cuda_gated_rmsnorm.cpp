// Gated RMSNorm on the GPU against the CPU kernel: one and several groups, z and dz rows wider
// than C (ld_z, ld_dz), odd group widths, rows past one column-sum slab (64 rows).
// Tolerances: as test_cuda_rmsnorm (group statistics summed in double on both sides in another
// order, nvcc's FMA contraction), plus exp's last bit in silu (CUDA's and glibc's expf are both
// faithfully rounded, not always to the same neighbour): outputs and input gradients within 1e-5
// of the row's scale in fp32, 1e-12 in fp64; dweight adds 130 terms each off by an ulp or two:
// 1e-5 (fp32), 1e-12 (fp64). bf16 against the fp32 CPU kernel on the same rounded inputs: stored
// outputs within two bf16 roundings (bf16_error), rstd 1e-5 (fp32 sum over a group), dweight (fp32,
// summed in fp32 over 130 rows) 1e-4.
#include <gtest/gtest.h>

#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using namespace test;

struct Shape {
  idx N, C, groups, ld_z, ld_dz;
};
const Shape kShapes[] = {{1, 1, 1, 1, 1}, {3, 96, 1, 96, 100}, {37, 256, 4, 300, 256}, {130, 120, 8, 130, 125}};
constexpr double kEps = 1e-5;

template <typename T>
void gated_rmsnorm_matches_the_cpu(double tol, double tol_dw) {
  for (const Shape s : kShapes) {
    const std::size_t nc = std::size_t(s.N * s.C), c = std::size_t(s.C);
    const std::vector<T> y = random_vector<T>(nc, 1, -2.0, 2.0),
                         z = random_vector<T>(std::size_t(s.N * s.ld_z), 2, -3.0, 3.0),
                         w = random_vector<T>(c, 3, 0.5, 1.5), dout = random_vector<T>(nc, 4);
    std::vector<T> out(nc), rstd(std::size_t(s.N * s.groups)), dy(nc),
        dz = random_vector<T>(std::size_t(s.N * s.ld_dz), 5), dw = random_vector<T>(c, 6);
    DeviceBuffer<T> g_y = on_gpu(y), g_z = on_gpu(z), g_w = on_gpu(w), g_dout = on_gpu(dout), g_out(kGpu, idx(nc)),
                    g_rstd(kGpu, s.N * s.groups), g_dy(kGpu, idx(nc)), g_dz = on_gpu(dz), g_dw = on_gpu(dw);
    gated_rmsnorm_forward(kCpu, out.data(), rstd.data(), y.data(), z.data(), s.ld_z, w.data(), s.N, s.C, s.groups,
                          kEps);
    gated_rmsnorm_forward(kGpu, g_out.data(), g_rstd.data(), g_y.data(), g_z.data(), s.ld_z, g_w.data(), s.N, s.C,
                          s.groups, kEps);
    const std::string where = " N=" + std::to_string(s.N) + " C=" + std::to_string(s.C) + " groups=" +
                              std::to_string(s.groups);
    EXPECT_LE(max_rel_diff(on_host(g_out), out, 1.0), tol) << "out" << where;
    EXPECT_LE(max_rel_diff(on_host(g_rstd), rstd, 1.0), tol) << "rstd" << where;
    // Both backwards from the CPU's rstd.
    DeviceBuffer<T> g_cpu_rstd = on_gpu(rstd);
    gated_rmsnorm_backward(kCpu, dy.data(), dz.data(), s.ld_dz, dw.data(), dout.data(), y.data(), z.data(), s.ld_z,
                           w.data(), rstd.data(), s.N, s.C, s.groups);
    gated_rmsnorm_backward(kGpu, g_dy.data(), g_dz.data(), s.ld_dz, g_dw.data(), g_dout.data(), g_y.data(), g_z.data(),
                           s.ld_z, g_w.data(), g_cpu_rstd.data(), s.N, s.C, s.groups);
    EXPECT_LE(max_rel_diff(on_host(g_dy), dy, 1.0), tol) << "dy" << where;
    EXPECT_LE(max_rel_diff(on_host(g_dz), dz, 1.0), tol) << "dz" << where;
    EXPECT_LE(max_rel_diff(on_host(g_dw), dw, 1.0), tol_dw) << "dweight" << where;
  }
}

TEST(CudaGatedRmsnorm, Fp32MatchesTheCpu) { gated_rmsnorm_matches_the_cpu<float>(1e-5, 1e-5); }
TEST(CudaGatedRmsnorm, Fp64MatchesTheCpu) { gated_rmsnorm_matches_the_cpu<double>(1e-12, 1e-12); }

TEST(CudaGatedRmsnorm, Bf16MatchesTheFp32CpuOnRoundedInputs) {
  for (const Shape s : kShapes) {
    const std::size_t nc = std::size_t(s.N * s.C), c = std::size_t(s.C);
    const Bf16Rounded y = round_to_bf16(random_vector<float>(nc, 1, -2.0, 2.0)),
                      z = round_to_bf16(random_vector<float>(std::size_t(s.N * s.ld_z), 2, -3.0, 3.0)),
                      w = round_to_bf16(random_vector<float>(c, 3, 0.5, 1.5)),
                      dout = round_to_bf16(random_vector<float>(nc, 4)),
                      dz0 = round_to_bf16(random_vector<float>(std::size_t(s.N * s.ld_dz), 5));
    std::vector<float> out(nc), rstd(std::size_t(s.N * s.groups)), dy(nc), dz = dz0.value,
        dw = random_vector<float>(c, 6);
    DeviceBuffer<bf16> g_y = on_gpu(y.stored), g_z = on_gpu(z.stored), g_w = on_gpu(w.stored),
                       g_dout = on_gpu(dout.stored), g_out(kGpu, idx(nc)), g_dy(kGpu, idx(nc)),
                       g_dz = on_gpu(dz0.stored);
    DeviceBuffer<float> g_rstd(kGpu, s.N * s.groups), g_dw = on_gpu(dw);
    gated_rmsnorm_forward(kCpu, out.data(), rstd.data(), y.value.data(), z.value.data(), s.ld_z, w.value.data(), s.N,
                          s.C, s.groups, kEps);
    cuda::gated_rmsnorm_forward(kGpu, g_out.data(), g_rstd.data(), g_y.data(), g_z.data(), s.ld_z, g_w.data(), s.N,
                                s.C, s.groups, kEps);
    const std::string where = " N=" + std::to_string(s.N) + " C=" + std::to_string(s.C) + " groups=" +
                              std::to_string(s.groups);
    EXPECT_LE(bf16_error(to_float(on_host(g_out)), out), 1.0) << "out" << where;
    EXPECT_LE(max_rel_diff(on_host(g_rstd), rstd, 1.0), 1e-5) << "rstd" << where;
    DeviceBuffer<float> g_cpu_rstd = on_gpu(rstd);
    gated_rmsnorm_backward(kCpu, dy.data(), dz.data(), s.ld_dz, dw.data(), dout.value.data(), y.value.data(),
                           z.value.data(), s.ld_z, w.value.data(), rstd.data(), s.N, s.C, s.groups);
    cuda::gated_rmsnorm_backward(kGpu, g_dy.data(), g_dz.data(), s.ld_dz, g_dw.data(), g_dout.data(), g_y.data(),
                                 g_z.data(), s.ld_z, g_w.data(), g_cpu_rstd.data(), s.N, s.C, s.groups);
    EXPECT_LE(bf16_error(to_float(on_host(g_dy)), dy), 1.0) << "dy" << where;
    EXPECT_LE(bf16_error(to_float(on_host(g_dz)), dz), 1.0) << "dz" << where;
    EXPECT_LE(max_rel_diff(on_host(g_dw), dw, 1.0), 1e-4) << "dweight" << where;
  }
}

template <typename T>
void dweight_is_deterministic() {
  const idx N = 300, C = 384, groups = 3;
  const std::size_t nc = std::size_t(N * C);
  DeviceBuffer<T> g_dout = on_gpu(random_as<T>(nc, 1)), g_y = on_gpu(random_as<T>(nc, 2)),
                  g_z = on_gpu(random_as<T>(nc, 3)), g_w = on_gpu(random_as<T>(std::size_t(C), 4)),
                  g_dy(kGpu, idx(nc)), g_dz(kGpu, idx(nc));
  DeviceBuffer<accum_t<T>> g_rstd = on_gpu(random_vector<accum_t<T>>(std::size_t(N * groups), 5, 0.5, 2.0));
  std::vector<std::vector<accum_t<T>>> runs;
  for (int run = 0; run < 2; ++run) {
    DeviceBuffer<accum_t<T>> g_dw(kGpu, C);
    g_dw.zero();
    cuda::gated_rmsnorm_backward(kGpu, g_dy.data(), g_dz.data(), C, g_dw.data(), g_dout.data(), g_y.data(), g_z.data(),
                                 C, g_w.data(), g_rstd.data(), N, C, groups);
    runs.push_back(on_host(g_dw));
  }
  EXPECT_TRUE(same_bits(runs[0], runs[1]));
}

TEST(CudaGatedRmsnorm, DweightIsDeterministic) {
  dweight_is_deterministic<float>();
  dweight_is_deterministic<double>();
  dweight_is_deterministic<bf16>();
}

}  // namespace
}  // namespace nexus
