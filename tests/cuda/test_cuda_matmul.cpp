// The cuBLASLt linear layer against the CPU backend (OpenBLAS) on the same inputs: forward, the
// input gradient (overwritten and accumulated) and the weight gradient accumulated onto a nonzero
// delta buffer. Odd shapes, so a transposed or mis-strided layout cannot pass.
// Tolerances: both sides accumulate in the input precision in different orders; the error of a
// K-term dot product is at most K * u * sum|a_i b_i| (Higham's gamma_K), here K <= 64 and
// |a|, |b| <= 1: 2.4e-4 worst case for fp32 (u = 2^-24), typically ~1e-6, so 1e-4; 1e-12 for
// fp64. bf16 runs against the fp64 GEMM of the same bf16-rounded inputs: the forward and input
// gradient are rounded to bf16 once (relative 2^-8), the weight gradient stays fp32 (1e-4).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/device_memory.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using namespace test;  // kCpu, kGpu, on_gpu, on_host (cuda/gpu_buffers.h), random_vector

template <typename T>
double max_abs_diff(const std::vector<T>& a, const std::vector<T>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

struct Shape {
  idx N, I, O;
};
const Shape kShapes[] = {{37, 64, 48}, {1, 40, 24}, {64, 24, 1}};

template <typename T>
void matmul_matches_the_cpu(double tol) {
  for (const Shape& s : kShapes) {
    const auto n = [](idx a, idx b) { return std::size_t(a * b); };
    const std::vector<T> inp = test::random_vector<T>(n(s.N, s.I), 1), w = test::random_vector<T>(n(s.O, s.I), 2),
                         dout = test::random_vector<T>(n(s.N, s.O), 3), dinp0 = test::random_vector<T>(n(s.N, s.I), 4),
                         dw0 = test::random_vector<T>(n(s.O, s.I), 5);
    DeviceBuffer<T> g_inp = on_gpu(inp), g_w = on_gpu(w), g_dout = on_gpu(dout), g_out(kGpu, idx(n(s.N, s.O)));
    std::vector<T> out(n(s.N, s.O));
    matmul_forward(kCpu, out.data(), inp.data(), w.data(), s.N, s.I, s.O);
    matmul_forward(kGpu, g_out.data(), g_inp.data(), g_w.data(), s.N, s.I, s.O);
    EXPECT_LE(max_abs_diff(on_host(g_out), out), tol) << "forward N=" << s.N;
    for (const bool accumulate : {false, true}) {
      std::vector<T> dinp = dinp0, dw = dw0;
      DeviceBuffer<T> g_dinp = on_gpu(dinp0), g_dw = on_gpu(dw0);
      matmul_backward(kCpu, dinp.data(), dw.data(), dout.data(), inp.data(), w.data(), s.N, s.I, s.O, accumulate);
      matmul_backward(kGpu, g_dinp.data(), g_dw.data(), g_dout.data(), g_inp.data(), g_w.data(), s.N, s.I, s.O,
                      accumulate);
      EXPECT_LE(max_abs_diff(on_host(g_dinp), dinp), tol) << "dinp accumulate=" << accumulate << " N=" << s.N;
      EXPECT_LE(max_abs_diff(on_host(g_dw), dw), tol) << "dweight N=" << s.N;
    }
  }
}

TEST(CudaMatmul, Fp32MatchesTheCpu) { matmul_matches_the_cpu<float>(1e-4); }
TEST(CudaMatmul, Fp64MatchesTheCpu) { matmul_matches_the_cpu<double>(1e-12); }

TEST(CudaMatmul, Bf16MatchesTheFp64ProductOfTheRoundedInputs) {
  const Shape s{37, 64, 48};
  const auto n = [](idx a, idx b) { return std::size_t(a * b); };
  auto rounded = [](const std::vector<double>& x, std::vector<bf16>& as_bf16) {
    as_bf16.resize(x.size());
    std::vector<double> back(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      as_bf16[i] = bf16(float(x[i]));
      back[i] = double(float(as_bf16[i]));
    }
    return back;
  };
  std::vector<bf16> inp_h, w_h, dout_h;
  const std::vector<double> inp = rounded(test::random_vector<double>(n(s.N, s.I), 1), inp_h),
                            w = rounded(test::random_vector<double>(n(s.O, s.I), 2), w_h),
                            dout = rounded(test::random_vector<double>(n(s.N, s.O), 3), dout_h);
  std::vector<double> out(n(s.N, s.O)), dinp(n(s.N, s.I)), dw(n(s.O, s.I), 0.0);
  matmul_forward(kCpu, out.data(), inp.data(), w.data(), s.N, s.I, s.O);
  matmul_backward(kCpu, dinp.data(), dw.data(), dout.data(), inp.data(), w.data(), s.N, s.I, s.O, false);

  DeviceBuffer<bf16> g_inp = on_gpu(inp_h), g_w = on_gpu(w_h), g_dout = on_gpu(dout_h), g_out(kGpu, idx(out.size())),
                     g_dinp(kGpu, idx(dinp.size()));
  DeviceBuffer<float> g_dw(kGpu, idx(dw.size()));
  g_dw.zero();
  // The CPU backend has no bf16 GEMM, so the public route cannot be instantiated for bf16 here.
  cuda::matmul_forward(kGpu, g_out.data(), g_inp.data(), g_w.data(), s.N, s.I, s.O);
  cuda::matmul_backward(kGpu, g_dinp.data(), g_dw.data(), g_dout.data(), g_inp.data(), g_w.data(), s.N, s.I, s.O,
                        false);
  const auto near_bf16 = [](const std::vector<bf16>& got, const std::vector<double>& want) {
    for (std::size_t i = 0; i < want.size(); ++i)
      if (std::fabs(double(float(got[i])) - want[i]) > std::ldexp(std::fabs(want[i]), -8) + 1e-4) return false;
    return true;
  };
  EXPECT_TRUE(near_bf16(on_host(g_out), out));
  EXPECT_TRUE(near_bf16(on_host(g_dinp), dinp));
  const std::vector<float> dw_gpu = on_host(g_dw);
  EXPECT_LE(max_abs_diff(dw_gpu, std::vector<float>(dw.begin(), dw.end())), 1e-4);
}

}  // namespace
}  // namespace nexus
