// Depthwise causal conv1d + SiLU on the GPU against the CPU kernel: with and without a halo (and
// its gradient), x and dx rows wider than C (ld_x, ld_dx), K = 1, Tn below K - 1, B > 1, more
// tokens than one column-sum slab (64).
// Tolerances: the pre-activation is the same K-term sum in the same order, but nvcc contracts it
// into FMAs and exp's last bit differs (CUDA's and glibc's expf are both faithfully rounded): the
// forward and dx within 1e-5 (fp32) / 1e-12 (fp64) of the scale (dx adds K such terms). dw and
// dbias: the CPU sums each 16-token tile in T and adds the tiles, the GPU sums in double: the
// CPU's own fp32 rounding over ~400 tokens dominates, 2e-5 relative (fp32), 1e-12 (fp64). bf16
// against the fp32 CPU kernel on the same rounded inputs: stored out/dx/dhalo within two bf16
// roundings (bf16_error), dw and dbias (fp32, summed in fp32 on the GPU) within 1e-4.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using namespace test;

struct Shape {
  idx B, Tn, C, K, ld_x, ld_dx;
  bool halo, dhalo;
};
const Shape kShapes[] = {{1, 1, 1, 1, 1, 1, false, false},   {2, 37, 70, 4, 80, 75, true, true},
                         {3, 2, 33, 4, 33, 40, true, false}, {1, 200, 130, 3, 130, 130, false, true},
                         {2, 150, 64, 4, 96, 64, true, true}};

std::string where(const Shape& s) {
  return " B=" + std::to_string(s.B) + " Tn=" + std::to_string(s.Tn) + " C=" + std::to_string(s.C) +
         " K=" + std::to_string(s.K) + " halo=" + std::to_string(s.halo) + " dhalo=" + std::to_string(s.dhalo);
}

// Every buffer of one test case, in T (inputs as the test draws them; gradients' initial contents).
template <typename T, typename A>
struct Case {
  std::vector<T> x, halo, w, bias, dout, dx, dhalo;
  std::vector<A> dw, dbias;
};
template <typename T, typename A>
Case<T, A> make_case(const Shape& s) {
  const auto n = [](idx a) { return std::size_t(a); };
  return {random_as<T>(n(s.B * s.Tn * s.ld_x), 1, -2.0, 2.0),
          random_as<T>(n(s.B * (s.K - 1) * s.C), 2, -2.0, 2.0),
          random_as<T>(n(s.C * s.K), 3),
          random_as<T>(n(s.C), 4),
          random_as<T>(n(s.B * s.Tn * s.C), 5),
          random_as<T>(n(s.B * s.Tn * s.ld_dx), 6),
          random_as<T>(n(s.B * (s.K - 1) * s.C), 7),
          random_vector<A>(n(s.C * s.K), 8),
          random_vector<A>(n(s.C), 9)};
}

template <typename T>
void conv1d_matches_the_cpu(double tol, double tol_dw) {
  for (const Shape s : kShapes) {
    Case<T, T> h = make_case<T, T>(s);
    std::vector<T> out(std::size_t(s.B * s.Tn * s.C));
    DeviceBuffer<T> g_x = on_gpu(h.x), g_halo = on_gpu(h.halo), g_w = on_gpu(h.w), g_bias = on_gpu(h.bias),
                    g_dout = on_gpu(h.dout), g_dx = on_gpu(h.dx), g_dhalo = on_gpu(h.dhalo), g_dw = on_gpu(h.dw),
                    g_dbias = on_gpu(h.dbias), g_out(kGpu, idx(out.size()));
    const T* halo = s.halo ? h.halo.data() : nullptr;
    const T* g_halo_p = s.halo ? g_halo.data() : nullptr;
    conv1d_silu_forward(kCpu, out.data(), h.x.data(), s.ld_x, halo, h.w.data(), h.bias.data(), s.B, s.Tn, s.C, s.K);
    conv1d_silu_forward(kGpu, g_out.data(), g_x.data(), s.ld_x, g_halo_p, g_w.data(), g_bias.data(), s.B, s.Tn, s.C,
                        s.K);
    EXPECT_LE(max_rel_diff(on_host(g_out), out, 1.0), tol) << "out" << where(s);
    conv1d_silu_backward(kCpu, h.dx.data(), s.ld_dx, s.dhalo ? h.dhalo.data() : nullptr, h.dw.data(), h.dbias.data(),
                         h.dout.data(), h.x.data(), s.ld_x, halo, h.w.data(), h.bias.data(), s.B, s.Tn, s.C, s.K);
    conv1d_silu_backward(kGpu, g_dx.data(), s.ld_dx, s.dhalo ? g_dhalo.data() : nullptr, g_dw.data(), g_dbias.data(),
                         g_dout.data(), g_x.data(), s.ld_x, g_halo_p, g_w.data(), g_bias.data(), s.B, s.Tn, s.C, s.K);
    EXPECT_LE(max_rel_diff(on_host(g_dx), h.dx, 1.0), tol) << "dx" << where(s);
    EXPECT_LE(max_rel_diff(on_host(g_dhalo), h.dhalo, 1.0), tol) << "dhalo" << where(s);
    EXPECT_LE(max_rel_diff(on_host(g_dw), h.dw, 1.0), tol_dw) << "dw" << where(s);
    EXPECT_LE(max_rel_diff(on_host(g_dbias), h.dbias, 1.0), tol_dw) << "dbias" << where(s);
  }
}

TEST(CudaConv1d, Fp32MatchesTheCpu) { conv1d_matches_the_cpu<float>(1e-5, 2e-5); }
TEST(CudaConv1d, Fp64MatchesTheCpu) { conv1d_matches_the_cpu<double>(1e-12, 1e-12); }

TEST(CudaConv1d, Bf16MatchesTheFp32CpuOnRoundedInputs) {
  for (const Shape s : kShapes) {
    const Case<bf16, float> g = make_case<bf16, float>(s);
    Case<float, float> h{to_float(g.x),  to_float(g.halo),  to_float(g.w), to_float(g.bias), to_float(g.dout),
                         to_float(g.dx), to_float(g.dhalo), g.dw,          g.dbias};
    std::vector<float> out(std::size_t(s.B * s.Tn * s.C));
    DeviceBuffer<bf16> g_x = on_gpu(g.x), g_halo = on_gpu(g.halo), g_w = on_gpu(g.w), g_bias = on_gpu(g.bias),
                       g_dout = on_gpu(g.dout), g_dx = on_gpu(g.dx), g_dhalo = on_gpu(g.dhalo),
                       g_out(kGpu, idx(out.size()));
    DeviceBuffer<float> g_dw = on_gpu(g.dw), g_dbias = on_gpu(g.dbias);
    const float* halo = s.halo ? h.halo.data() : nullptr;
    const bf16* g_halo_p = s.halo ? g_halo.data() : nullptr;
    conv1d_silu_forward(kCpu, out.data(), h.x.data(), s.ld_x, halo, h.w.data(), h.bias.data(), s.B, s.Tn, s.C, s.K);
    cuda::conv1d_silu_forward(kGpu, g_out.data(), g_x.data(), s.ld_x, g_halo_p, g_w.data(), g_bias.data(), s.B, s.Tn,
                              s.C, s.K);
    EXPECT_LE(bf16_error(to_float(on_host(g_out)), out), 1.0) << "out" << where(s);
    conv1d_silu_backward(kCpu, h.dx.data(), s.ld_dx, s.dhalo ? h.dhalo.data() : nullptr, h.dw.data(), h.dbias.data(),
                         h.dout.data(), h.x.data(), s.ld_x, halo, h.w.data(), h.bias.data(), s.B, s.Tn, s.C, s.K);
    cuda::conv1d_silu_backward(kGpu, g_dx.data(), s.ld_dx, s.dhalo ? g_dhalo.data() : nullptr, g_dw.data(),
                               g_dbias.data(), g_dout.data(), g_x.data(), s.ld_x, g_halo_p, g_w.data(), g_bias.data(),
                               s.B, s.Tn, s.C, s.K);
    EXPECT_LE(bf16_error(to_float(on_host(g_dx)), h.dx), 1.0) << "dx" << where(s);
    EXPECT_LE(bf16_error(to_float(on_host(g_dhalo)), h.dhalo), 1.0) << "dhalo" << where(s);
    EXPECT_LE(max_rel_diff(on_host(g_dw), h.dw, 1.0), 1e-4) << "dw" << where(s);
    EXPECT_LE(max_rel_diff(on_host(g_dbias), h.dbias, 1.0), 1e-4) << "dbias" << where(s);
  }
}

template <typename T>
void parameter_grads_are_deterministic() {
  const Shape s{3, 300, 96, 4, 96, 96, true, true};
  const Case<T, accum_t<T>> c = make_case<T, accum_t<T>>(s);
  DeviceBuffer<T> g_x = on_gpu(c.x), g_halo = on_gpu(c.halo), g_w = on_gpu(c.w), g_bias = on_gpu(c.bias),
                  g_dout = on_gpu(c.dout), g_dx = on_gpu(c.dx), g_dhalo = on_gpu(c.dhalo);
  std::vector<std::vector<accum_t<T>>> dw, dbias;
  for (int run = 0; run < 2; ++run) {
    DeviceBuffer<accum_t<T>> g_dw(kGpu, s.C * s.K), g_dbias(kGpu, s.C);
    g_dw.zero();
    g_dbias.zero();
    cuda::conv1d_silu_backward(kGpu, g_dx.data(), s.ld_dx, g_dhalo.data(), g_dw.data(), g_dbias.data(), g_dout.data(),
                               g_x.data(), s.ld_x, g_halo.data(), g_w.data(), g_bias.data(), s.B, s.Tn, s.C, s.K);
    dw.push_back(on_host(g_dw));
    dbias.push_back(on_host(g_dbias));
  }
  EXPECT_TRUE(same_bits(dw[0], dw[1]));
  EXPECT_TRUE(same_bits(dbias[0], dbias[1]));
}

TEST(CudaConv1d, ParameterGradsAreDeterministic) {
  parameter_grads_are_deterministic<float>();
  parameter_grads_are_deterministic<double>();
  parameter_grads_are_deterministic<bf16>();
}

}  // namespace
}  // namespace nexus
