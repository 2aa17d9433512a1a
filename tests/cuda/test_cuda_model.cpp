// The whole model on the GPU against the whole model on the CPU: the same weights (drawn on the
// host by the same seed), the same batch, then the loss and every parameter gradient; bitwise
// repeatability of a GPU step; and 50 AdamW steps of both side by side.
//
// Tolerances:
//  - fp64: both backends compute the same function with different summation orders (cuBLASLt's
//    tiles, block reductions vs the CPU's loops). Each op then differs by a few ulps times the
//    square root of its reduction length (<= 1e3 here), ~1e-14 relative, compounded through ~10
//    ops per layer and 8 layers in the forward and again in the backward: 1e-10 relative to each
//    tensor's scale leaves three orders of margin and still fails any real difference of formula.
//  - fp32: the same chain at fp32's 6e-8: ~1e-5 on the loss, and on each gradient tensor relative
//    to its largest entry 2e-4 (gradients of deep layers pass through more reductions).
//  - The 50-step curves: fp32 differences of ~1e-6 grow through the optimizer's nonlinearity
//    (Adam normalises small gradients up); after 50 steps the losses must stay within 1e-3
//    relative -- a wrong kernel drifts by far more within a few steps.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/device_memory.h"
#include "model/model.h"
#include "optim/adamw.h"
#include "support/check.h"
#include "support/model_configs.h"

namespace nexus {
namespace {

using namespace test;  // kCpu, kGpu, max_rel_diff, tiny_hybrid

constexpr idx kB = 2, kT = 40;  // 40 tokens: SSD chunks of 16 leave a ragged last chunk

ModelConfig gpu_test_config() {
  ModelConfig c = tiny_hybrid(8, 16);  // one attention layer among seven Mamba layers
  return c;
}

std::vector<std::int32_t> batch_tokens(idx vocab, std::uint64_t seed) { return random_tokens(kB * kT, vocab, seed); }

template <typename T>
struct Step {
  LossSum loss;
  std::vector<accum_t<T>> deltas;
};

template <typename T>
Step<T> forward_backward(Model<T>& m, const std::vector<std::int32_t>& tokens, const std::vector<std::int32_t>& targets) {
  m.zero_deltas();
  Step<T> s;
  s.loss = m.forward(tokens.data(), targets.data());
  m.backward(1.0);
  s.deltas = host_copy(m.exec(), m.deltas(), m.num_params());
  return s;
}

template <typename T>
void model_matches_the_cpu(double loss_tol, double grad_tol) {
  const ModelConfig c = gpu_test_config();
  const std::vector<std::int32_t> tokens = batch_tokens(c.vocab_size, 1), targets = batch_tokens(c.vocab_size, 2);
  Model<T> cpu(c, BatchShape{kB, kT});
  Model<T> gpu(c, BatchShape{kB, kT}, nullptr, kGpu);
  cpu.init(7);
  gpu.init(7);
  ASSERT_EQ(host_copy(kGpu, gpu.params(), gpu.num_params()), host_copy(kCpu, cpu.params(), cpu.num_params()))
      << "init draws on the host: the weights must be identical";
  const Step<T> a = forward_backward(cpu, tokens, targets), b = forward_backward(gpu, tokens, targets);
  EXPECT_EQ(a.loss.count, b.loss.count);
  EXPECT_NEAR(b.loss.sum, a.loss.sum, loss_tol * std::abs(a.loss.sum));
  // Each tensor against its own scale, so a small tensor's error is not hidden by a large one's.
  for (const ParamInfo& p : cpu.table().params()) {
    const auto first = std::size_t(p.offset), last = std::size_t(p.offset + p.numel);
    const std::vector<accum_t<T>> ga(a.deltas.begin() + first, a.deltas.begin() + last),
        gb(b.deltas.begin() + first, b.deltas.begin() + last);
    EXPECT_LE(max_rel_diff(gb, ga, 1e-30), grad_tol) << p.name;
  }
}

TEST(CudaModel, Fp64LossAndEveryGradientMatchTheCpu) { model_matches_the_cpu<double>(1e-10, 1e-10); }
TEST(CudaModel, Fp32LossAndEveryGradientMatchTheCpu) { model_matches_the_cpu<float>(1e-5, 2e-4); }

TEST(CudaModel, AStepIsBitwiseRepeatable) {
  const ModelConfig c = gpu_test_config();
  const std::vector<std::int32_t> tokens = batch_tokens(c.vocab_size, 3), targets = batch_tokens(c.vocab_size, 4);
  Model<float> gpu(c, BatchShape{kB, kT}, nullptr, kGpu);
  gpu.init(11);
  const Step<float> a = forward_backward(gpu, tokens, targets), b = forward_backward(gpu, tokens, targets);
  EXPECT_EQ(std::memcmp(&a.loss.sum, &b.loss.sum, sizeof(double)), 0);
  ASSERT_EQ(a.deltas.size(), b.deltas.size());
  EXPECT_EQ(std::memcmp(a.deltas.data(), b.deltas.data(), a.deltas.size() * sizeof(float)), 0)
      << "the GPU backward must be deterministic (no racing float atomics)";
}

TEST(CudaModel, FiftyAdamWStepsFollowTheCpuCurve) {
  const ModelConfig c = gpu_test_config();
  std::vector<double> curves[2];
  for (int side = 0; side < 2; ++side) {
    const Exec ex = side == 0 ? kCpu : kGpu;
    Model<float> m(c, BatchShape{kB, kT}, nullptr, ex);
    m.init(5);
    AdamW opt(m.num_params(), AdamWHyper{}, decay_ranges(m.table()), ex);
    for (int step = 0; step < 50; ++step) {
      const std::vector<std::int32_t> tokens = batch_tokens(c.vocab_size, 100 + std::uint64_t(step));
      std::vector<std::int32_t> targets(tokens.begin() + 1, tokens.end());
      targets.push_back(-1);  // next-token targets; the last has none
      m.zero_deltas();
      const LossSum l = m.forward(tokens.data(), targets.data());
      m.backward(1.0 / double(l.count));
      opt.step(m.params(), m.deltas(), 3e-3);
      curves[side].push_back(l.sum / double(l.count));
    }
  }
  EXPECT_LT(curves[0].back(), curves[0].front()) << "the CPU run must learn, or the comparison says little";
  EXPECT_LE(max_rel_diff(curves[1], curves[0]), 1e-3);
}

}  // namespace
}  // namespace nexus
