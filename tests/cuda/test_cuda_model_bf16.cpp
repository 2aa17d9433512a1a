// Model<bf16> on the GPU (bf16 activations and compute weights, fp32 statistics, deltas, master
// weights and moments) against Model<float> on the CPU given the same bf16-representable weights
// and the same batch; 50 steps of bf16 AdamW over fp32 master weights against fp32 AdamW on the
// CPU; and the checkpoint of a bf16 run holding the optimizer's fp32 master exactly.
//
// Tolerances (bf16 rounds each stored value to 8 significant bits: relative error <= 2^-9, about
// 2e-3, random in sign from one value to the next):
//  - Loss, 2e-2 relative. Every tensor the forward stores (norm outputs, projections, conv, SSD
//    and attention outputs, the gated norm, SwiGLU, the residual stream itself) adds one such
//    rounding; ~10 per layer over 8 layers is ~80 roundings, which compound like a random walk:
//    sqrt(80) * 2^-9 ~ 2e-2 relative on a logit in the worst case. The loss is a mean over 80
//    tokens of log-sum-exp minus a logit, computed in fp32: its error is at most the logits'
//    absolute error and averages over tokens, so 2e-2 relative on a loss of ~log V holds with a
//    wide margin while a wrong formula (a missing term, a wrong scale) moves it by far more.
//  - Gradients: bf16 noise is relative to each entry, so a max-abs comparison against a tensor's
//    largest entry either hides small entries or fails on noise. Instead the cosine similarity of
//    each gradient tensor with the CPU's: the backward adds the same ~80 roundings again (the
//    gradients of the stored activations are bf16 too), ~sqrt(160) * 2^-9 ~ 2.5e-2 relative error
//    as a vector, i.e. a cosine of ~1 - 3e-4. >= 0.99 allows a relative error of 0.14 (6x the
//    estimate); a transposed or mis-scaled gradient has a cosine far below that. The norm ratio is
//    checked too (within 10%), since a cosine cannot see a wrong scale.
//  - 50 steps: the bf16 run follows the fp32 curve with its own bf16 noise, which Adam's
//    normalisation does not amplify beyond the noise of a gradient (the master weights accumulate
//    in fp32, so small updates are not lost to bf16 rounding): the losses must stay within 3e-2
//    relative of the CPU's at every step, and the run must learn (the last loss below the first).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/device_memory.h"
#include "model/model.h"
#include "optim/distributed_adamw.h"
#include "parallel/data_plane.h"
#include "support/check.h"
#include "support/model_configs.h"
#if NEXUS_TEST_CHECKPOINT
#include "trainer/checkpoint.h"
#endif

namespace nexus {
namespace {

using namespace test;  // kCpu, kGpu, tiny_hybrid, round_to_bf16

constexpr idx kB = 2, kT = 40;  // 40 tokens: SSD chunks of 16 leave a ragged last chunk

// A data plane of one rank: the sums over the group are the rank's own values, so an optimizer
// over it is unsharded and runs exactly as on one GPU.
class SoloPlane final : public DataPlane {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }

 private:
  [[noreturn]] static void unused() { throw std::logic_error("SoloPlane: an unsharded optimizer moves no data"); }
  void do_allreduce_sum(void*, idx, DType) const override {}
  void do_allgather(const void*, void*, idx, DType) const override { unused(); }
  void do_reduce_scatter_sum(const void*, void*, idx, DType) const override { unused(); }
  Request do_ireduce_scatter_sum(void*, std::span<const idx>, void*, DType) const override { unused(); }
  Request do_isend(const void*, idx, DType, int, int) const override { unused(); }
  Request do_irecv(void*, idx, DType, int, int) const override { unused(); }
};

std::vector<std::int32_t> batch_tokens(idx vocab, std::uint64_t seed) { return random_tokens(kB * kT, vocab, seed); }

// The fp32 draw of Model::init (what a bf16 run's master starts from).
std::vector<float> fp32_draw(const Model<bf16>& m, std::uint64_t seed) {
  std::vector<float> w(std::size_t(m.num_params()));
  init_parameters(w.data(), m.table(), m.config(), seed);
  return w;
}

double dot(const std::vector<float>& a, const std::vector<float>& b, std::size_t first, std::size_t last) {
  double s = 0;
  for (std::size_t i = first; i < last; ++i) s += double(a[i]) * double(b[i]);
  return s;
}

TEST(CudaModelBf16, LossAndEveryGradientFollowTheFp32Cpu) {
  const ModelConfig c = tiny_hybrid(8, 16);  // one attention layer among seven Mamba layers
  const std::vector<std::int32_t> tokens = batch_tokens(c.vocab_size, 1), targets = batch_tokens(c.vocab_size, 2);
  Model<bf16> gpu(c, BatchShape{kB, kT}, nullptr, kGpu);
  Model<float> cpu(c, BatchShape{kB, kT});
  gpu.init(7);
  // The CPU model gets exactly the GPU's weights: the fp32 draw rounded to bf16, widened back.
  const Bf16Rounded w = round_to_bf16(fp32_draw(gpu, 7));
  cpu.set_weights(w.value.data());
  ASSERT_TRUE(same_bits(host_copy(kGpu, gpu.params(), gpu.num_params()), w.stored))
      << "Model<bf16>::init must store the rounding of the fp32 draw";

  cpu.zero_deltas();
  gpu.zero_deltas();
  const LossSum a = cpu.forward(tokens.data(), targets.data()), b = gpu.forward(tokens.data(), targets.data());
  cpu.backward(1.0);
  gpu.backward(1.0);
  EXPECT_EQ(a.count, b.count);
  EXPECT_NEAR(b.sum, a.sum, 2e-2 * std::abs(a.sum));
  const std::vector<float> ga = host_copy(kCpu, cpu.deltas(), cpu.num_params()),
                           gb = host_copy(kGpu, gpu.deltas(), gpu.num_params());
  for (const ParamInfo& p : cpu.table().params()) {
    const auto first = std::size_t(p.offset), last = std::size_t(p.offset + p.numel);
    const double aa = dot(ga, ga, first, last), bb = dot(gb, gb, first, last);
    if (aa == 0 && bb == 0) continue;  // no gradient on either side (nothing to compare)
    EXPECT_GE(dot(ga, gb, first, last) / std::sqrt(aa * bb), 0.99) << p.name;
    EXPECT_NEAR(std::sqrt(bb / aa), 1.0, 0.1) << p.name;
  }
}

TEST(CudaModelBf16, FiftyStepsOverFp32MasterWeightsFollowTheFp32CpuCurve) {
  const ModelConfig c = tiny_hybrid(8, 16);
  const SoloPlane solo;
  Model<bf16> gpu(c, BatchShape{kB, kT}, nullptr, kGpu);
  Model<float> cpu(c, BatchShape{kB, kT});
  const std::vector<float> master0 = fp32_draw(gpu, 5);
  // Both start from the same bf16-representable point, so the curves differ by bf16 compute only.
  const Bf16Rounded w = round_to_bf16(master0);
  gpu.set_weights(w.value.data());
  cpu.set_weights(w.value.data());
  const std::vector<DecayRange> ranges = decay_ranges(cpu.table());
  DistributedAdamW gpu_opt(gpu.num_params(), AdamWHyper{}, ranges, solo, 0, kGpu);
  DistributedAdamW cpu_opt(cpu.num_params(), AdamWHyper{}, ranges, solo, 0, kCpu);
  gpu_opt.set_master(w.value.data());
  std::vector<double> curves[2];
  for (int step = 0; step < 50; ++step) {
    const std::vector<std::int32_t> tokens = batch_tokens(c.vocab_size, 100 + std::uint64_t(step));
    std::vector<std::int32_t> targets(tokens.begin() + 1, tokens.end());
    targets.push_back(-1);  // next-token targets; the last has none
    cpu.zero_deltas();
    gpu.zero_deltas();
    const LossSum la = cpu.forward(tokens.data(), targets.data()), lb = gpu.forward(tokens.data(), targets.data());
    cpu.backward(1.0);
    gpu.backward(1.0);
    const float scale = float(1.0 / double(la.count));
    const double mean_a = la.sum / double(la.count), mean_b = lb.sum / double(lb.count);
    ASSERT_TRUE(cpu_opt.step(cpu.params(), cpu.deltas(), scale, mean_a, 1.0, 3e-3).applied);
    ASSERT_TRUE(gpu_opt.step(gpu.params(), gpu.deltas(), scale, mean_b, 1.0, 3e-3).applied);
    curves[0].push_back(mean_a);
    curves[1].push_back(mean_b);
  }
  EXPECT_LT(curves[0].back(), curves[0].front()) << "the CPU run must learn, or the comparison says little";
  EXPECT_LT(curves[1].back(), curves[1].front());
  for (std::size_t s = 0; s < curves[0].size(); ++s)
    EXPECT_NEAR(curves[1][s], curves[0][s], 3e-2 * curves[0][s]) << "step " << s;
  // The compute copy is the master's rounding, bit for bit (adamw_update writes both).
  const std::vector<float> master = host_copy(kGpu, gpu_opt.master(), gpu.num_params());
  EXPECT_TRUE(same_bits(host_copy(kGpu, gpu.params(), gpu.num_params()), round_to_bf16(master).stored));
  EXPECT_FALSE(same_bits(master, round_to_bf16(master).value)) << "the master must keep more than bf16's bits";
}

#if NEXUS_TEST_CHECKPOINT
// Save (the optimizer's full state gathered to host memory, as CheckpointCadence::save does) and
// load (as CheckpointCadence::restore does: set_master from the file's weights, the model's
// weights their rounding): the file's weights are the fp32 master, exactly.
TEST(CudaModelBf16, ACheckpointHoldsTheFp32MasterExactly) {
  const ModelConfig c = tiny_hybrid(8, 16);
  const SoloPlane solo;
  Model<bf16> gpu(c, BatchShape{kB, kT}, nullptr, kGpu);
  const std::vector<float> master0 = fp32_draw(gpu, 9);
  gpu.set_weights(master0.data());
  DistributedAdamW opt(gpu.num_params(), AdamWHyper{}, decay_ranges(gpu.table()), solo, 0, kGpu);
  opt.set_master(master0.data());
  for (int step = 0; step < 3; ++step) {  // moments and master off their initial values
    const std::vector<std::int32_t> tokens = batch_tokens(c.vocab_size, 40 + std::uint64_t(step));
    gpu.zero_deltas();
    const LossSum l = gpu.forward(tokens.data(), tokens.data());
    gpu.backward(1.0);
    ASSERT_TRUE(opt.step(gpu.params(), gpu.deltas(), float(1.0 / double(l.count)), l.sum / double(l.count), 1.0, 1e-2)
                    .applied);
  }
  const idx n = gpu.num_params();
  const std::vector<float> master = host_copy(kGpu, opt.master(), n);
  opt.gather_moments(0);
  const DistributedAdamW::FullMoments full = opt.full_moments(true);
  ASSERT_NE(full.master, nullptr);
  EXPECT_EQ(std::memcmp(full.master, master.data(), master.size() * sizeof(float)), 0);
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "nexus_cuda_model_bf16_ckpt";
  std::filesystem::remove_all(dir);
  CheckpointMeta meta;
  meta.step = 3;
  meta.optimizer_steps = opt.steps();
  const std::string path = save_checkpoint(dir.string(), meta, gpu.table(), full.master, full.exp_avg,
                                           full.exp_avg_sq, 0);
  const std::vector<float> avg(full.exp_avg, full.exp_avg + n), avg_sq(full.exp_avg_sq, full.exp_avg_sq + n);
  opt.release_full_moments();

  const auto un = static_cast<std::size_t>(n);
  std::vector<float> weights(un), m(un), v(un);
  load_checkpoint(path, c, gpu.table(), weights.data(), m.data(), v.data());
  EXPECT_TRUE(same_bits(weights, master)) << "the checkpoint's weights must be the fp32 master";
  EXPECT_TRUE(same_bits(m, avg));
  EXPECT_TRUE(same_bits(v, avg_sq));
  // Restore into a fresh model and optimizer.
  Model<bf16> restored(c, BatchShape{kB, kT}, nullptr, kGpu);
  DistributedAdamW opt2(n, AdamWHyper{}, decay_ranges(restored.table()), solo, 0, kGpu);
  restored.set_weights(weights.data());
  opt2.set_master(weights.data());
  EXPECT_TRUE(same_bits(host_copy(kGpu, opt2.master(), n), master));
  EXPECT_TRUE(same_bits(host_copy(kGpu, restored.params(), n), host_copy(kGpu, gpu.params(), n)))
      << "the restored bf16 weights are the master's rounding, as the saved run's were";
  std::filesystem::remove_all(dir);
}
#endif

}  // namespace
}  // namespace nexus
