// Token embedding on the GPU against the CPU kernel, with token ids repeating (a small vocabulary)
// so the backward adds several rows into one. Tolerance: none. The forward copies; the backward
// adds each dtable entry's contributions one by one in token order on both sides (the GPU's
// column-owner kernel keeps the CPU's order), so fp32, fp64 and bf16 (whose dtable is fp32, added
// the same fp32 values as the CPU fp32 kernel on the rounded dout) must all equal the CPU bit for
// bit, and two GPU runs equal each other.
#include <gtest/gtest.h>

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
  idx N, D, V;
};
const Shape kShapes[] = {{1, 1, 1}, {100, 70, 7}, {37, 300, 50}, {513, 33, 3}};

std::vector<std::int32_t> random_tokens(idx N, idx V, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int32_t> u(0, std::int32_t(V - 1));
  std::vector<std::int32_t> t(static_cast<std::size_t>(N));
  for (auto& x : t) x = u(rng);
  return t;
}

template <typename T>
void embedding_matches_the_cpu() {
  for (const Shape s : kShapes) {
    const std::size_t nd = std::size_t(s.N * s.D), vd = std::size_t(s.V * s.D);
    const std::vector<std::int32_t> tokens = random_tokens(s.N, s.V, 1);
    const std::vector<T> table = random_vector<T>(vd, 2), dout = random_vector<T>(nd, 3);
    std::vector<T> out(nd), dtable = random_vector<T>(vd, 4);  // dtable accumulates
    DeviceBuffer<std::int32_t> g_tokens = on_gpu(tokens);
    DeviceBuffer<T> g_table = on_gpu(table), g_dout = on_gpu(dout), g_out(kGpu, idx(nd)), g_dtable = on_gpu(dtable);
    embedding_forward(kCpu, out.data(), tokens.data(), table.data(), s.N, s.D);
    embedding_backward(kCpu, dtable.data(), tokens.data(), dout.data(), s.N, s.D);
    embedding_forward(kGpu, g_out.data(), g_tokens.data(), g_table.data(), s.N, s.D);
    embedding_backward(kGpu, g_dtable.data(), g_tokens.data(), g_dout.data(), s.N, s.D);
    EXPECT_TRUE(same_bits(on_host(g_out), out)) << "forward N=" << s.N << " D=" << s.D;
    EXPECT_TRUE(same_bits(on_host(g_dtable), dtable)) << "backward N=" << s.N << " D=" << s.D;
  }
}

TEST(CudaEmbedding, Fp32EqualsTheCpu) { embedding_matches_the_cpu<float>(); }
TEST(CudaEmbedding, Fp64EqualsTheCpu) { embedding_matches_the_cpu<double>(); }

TEST(CudaEmbedding, Bf16EqualsTheFp32CpuOnRoundedInputs) {
  for (const Shape s : kShapes) {
    const std::size_t nd = std::size_t(s.N * s.D), vd = std::size_t(s.V * s.D);
    const std::vector<std::int32_t> tokens = random_tokens(s.N, s.V, 1);
    const Bf16Rounded table = round_to_bf16(random_vector<float>(vd, 2)),
                      dout = round_to_bf16(random_vector<float>(nd, 3));
    std::vector<float> out(nd), dtable = random_vector<float>(vd, 4);
    DeviceBuffer<std::int32_t> g_tokens = on_gpu(tokens);
    DeviceBuffer<bf16> g_table = on_gpu(table.stored), g_dout = on_gpu(dout.stored), g_out(kGpu, idx(nd));
    DeviceBuffer<float> g_dtable = on_gpu(dtable);
    embedding_forward(kCpu, out.data(), tokens.data(), table.value.data(), s.N, s.D);
    embedding_backward(kCpu, dtable.data(), tokens.data(), dout.value.data(), s.N, s.D);
    cuda::embedding_forward(kGpu, g_out.data(), g_tokens.data(), g_table.data(), s.N, s.D);
    cuda::embedding_backward(kGpu, g_dtable.data(), g_tokens.data(), g_dout.data(), s.N, s.D);
    EXPECT_TRUE(same_bits(to_float(on_host(g_out)), out)) << "forward N=" << s.N << " D=" << s.D;
    EXPECT_TRUE(same_bits(on_host(g_dtable), dtable)) << "backward N=" << s.N << " D=" << s.D;
  }
}

template <typename T>
void dtable_is_deterministic() {
  const idx N = 2000, D = 96, V = 11;
  const std::vector<std::int32_t> tokens = random_tokens(N, V, 5);
  DeviceBuffer<std::int32_t> g_tokens = on_gpu(tokens);
  DeviceBuffer<T> g_dout = on_gpu(random_as<T>(std::size_t(N * D), 6));
  std::vector<std::vector<accum_t<T>>> runs;
  for (int run = 0; run < 2; ++run) {
    DeviceBuffer<accum_t<T>> g_dtable(kGpu, V * D);
    g_dtable.zero();
    cuda::embedding_backward(kGpu, g_dtable.data(), g_tokens.data(), g_dout.data(), N, D);
    runs.push_back(on_host(g_dtable));
  }
  EXPECT_TRUE(same_bits(runs[0], runs[1]));
}

TEST(CudaEmbedding, DtableIsDeterministic) {
  dtable_is_deterministic<float>();
  dtable_is_deterministic<double>();
  dtable_is_deterministic<bf16>();
}

}  // namespace
}  // namespace nexus
