// attention_merge on the GPU against the CPU kernel: rows where either side or both saw no key
// (lse = -inf), lse values far apart, head_dim below, at and above a warp.
// Tolerances: the same formula per row with exp/log's last bit and nvcc's FMA contraction as the
// only differences: 1e-6 (fp32) and 1e-14 (fp64) relative to the scale; bf16 against the fp32
// CPU kernel on the same rounded inputs: the stored output within two roundings (bf16_error), the
// fp32 lse within 1e-6. Elementwise per row, with no sum over rows: no determinism test needed.
#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using namespace test;

struct Shape {
  idx rows, head_dim;
};
const Shape kShapes[] = {{1, 1}, {37, 64}, {300, 65}, {8, 200}};

// lse values in [-5, 20], with row patterns: every 7th row -inf on side a, every 5th on side b.
template <typename A>
std::vector<A> random_lse(idx rows, std::uint64_t seed, idx every) {
  std::vector<A> lse = random_vector<A>(static_cast<std::size_t>(rows), seed, -5.0, 20.0);
  for (std::size_t r = 0; r < lse.size(); r += std::size_t(every)) lse[r] = -std::numeric_limits<A>::infinity();
  return lse;
}

// The merged lse against the CPU's: rows left at -inf (both sides empty) must match exactly, the
// others within tol relative to the scale.
template <typename A>
void expect_lse_near(const std::vector<A>& got, const std::vector<A>& want, double tol) {
  std::vector<A> got_finite(got.size()), want_finite(want.size());
  for (std::size_t r = 0; r < want.size(); ++r) {
    const bool empty = want[r] == -std::numeric_limits<A>::infinity();
    EXPECT_EQ(got[r] == -std::numeric_limits<A>::infinity(), empty) << "row " << r;
    got_finite[r] = empty ? A(0) : got[r];
    want_finite[r] = empty ? A(0) : want[r];
  }
  EXPECT_LE(max_rel_diff(got_finite, want_finite, 1.0), tol);
}

template <typename T>
void attention_merge_matches_the_cpu(double tol) {
  for (const Shape s : kShapes) {
    const std::size_t n = std::size_t(s.rows * s.head_dim);
    std::vector<T> out = random_vector<T>(n, 1), lse = random_lse<T>(s.rows, 2, 7);
    const std::vector<T> out_b = random_vector<T>(n, 3), lse_b = random_lse<T>(s.rows, 4, 5);
    DeviceBuffer<T> g_out = on_gpu(out), g_lse = on_gpu(lse), g_out_b = on_gpu(out_b), g_lse_b = on_gpu(lse_b);
    attention_merge(kCpu, out.data(), lse.data(), out_b.data(), lse_b.data(), s.rows, s.head_dim);
    attention_merge(kGpu, g_out.data(), g_lse.data(), g_out_b.data(), g_lse_b.data(), s.rows, s.head_dim);
    EXPECT_LE(max_rel_diff(on_host(g_out), out, 1.0), tol) << "out rows=" << s.rows << " hd=" << s.head_dim;
    expect_lse_near(on_host(g_lse), lse, tol);
  }
}

TEST(CudaAttentionMerge, Fp32MatchesTheCpu) { attention_merge_matches_the_cpu<float>(1e-6); }
TEST(CudaAttentionMerge, Fp64MatchesTheCpu) { attention_merge_matches_the_cpu<double>(1e-14); }

TEST(CudaAttentionMerge, Bf16MatchesTheFp32CpuOnRoundedInputs) {
  for (const Shape s : kShapes) {
    const std::size_t n = std::size_t(s.rows * s.head_dim);
    const Bf16Rounded out0 = round_to_bf16(random_vector<float>(n, 1)),
                      out_b = round_to_bf16(random_vector<float>(n, 3));
    std::vector<float> out = out0.value, lse = random_lse<float>(s.rows, 2, 7);
    const std::vector<float> lse_b = random_lse<float>(s.rows, 4, 5);
    DeviceBuffer<bf16> g_out = on_gpu(out0.stored), g_out_b = on_gpu(out_b.stored);
    DeviceBuffer<float> g_lse = on_gpu(lse), g_lse_b = on_gpu(lse_b);
    attention_merge(kCpu, out.data(), lse.data(), out_b.value.data(), lse_b.data(), s.rows, s.head_dim);
    cuda::attention_merge(kGpu, g_out.data(), g_lse.data(), g_out_b.data(), g_lse_b.data(), s.rows, s.head_dim);
    EXPECT_LE(bf16_error(to_float(on_host(g_out)), out), 1.0) << "out rows=" << s.rows << " hd=" << s.head_dim;
    expect_lse_near(on_host(g_lse), lse, 1e-6);
  }
}

}  // namespace
}  // namespace nexus
