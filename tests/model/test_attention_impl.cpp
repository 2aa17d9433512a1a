// model.attention_impl (model/attention_impl.h): the value check, which calls go to cuDNN (only
// when asked, on CUDA, in bf16 and where cuDNN can express the call), the refusal of a GPU run
// asking for it on a build without it, and the per-layer lines of the run's log. Host decisions
// only: the same in every build, with or without a GPU.
#include <gtest/gtest.h>

#include <string>

#include "config_test_util.h"
#include "kernels/cuda/attention_cudnn.h"
#include "model/attention_impl.h"

namespace nexus {
namespace {

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

ModelConfig with_impl(const std::string& impl) {
  ModelConfig c;
  c.n_layers = 8;
  c.pattern = "MAMMAMMA";
  c.head_dim = 32;
  c.attention_impl = impl;
  return c;
}

AttentionShape square(idx T, const ModelConfig& c) {
  return AttentionShape{2, T, T, c.n_heads, c.n_kv_heads, c.head_dim, 0, 0, true, {}};
}

TEST(AttentionImpl, ValueIsNexusOrCudnn) {
  EXPECT_EQ(ModelConfig{}.attention_impl, "nexus");
  EXPECT_EQ(test::error_of(with_impl("nexus")), "");
  EXPECT_EQ(test::error_of(with_impl("cudnn")), "");
  EXPECT_CONTAINS(test::error_of(with_impl("flash")), "model.attention_impl = \"flash\" is not one of nexus, cudnn");
}

TEST(AttentionImpl, NexusAlwaysRunsTheOwnKernel) {
  const ModelConfig c = with_impl("nexus");
  for (const Device d : {Device::cpu, Device::cuda}) {
    const AttentionImplChoice choice = choose_attention_impl<bf16>(c, d, square(64, c));
    EXPECT_FALSE(choice.cudnn);
    EXPECT_EQ(choice.why_not_cudnn, nullptr);
  }
}

TEST(AttentionImpl, CudnnWhereItCanOwnKernelElsewhere) {
  const ModelConfig c = with_impl("cudnn");
  const AttentionShape s = square(64, c);
  EXPECT_FALSE(choose_attention_impl<bf16>(c, Device::cpu, s).cudnn);
  EXPECT_CONTAINS(choose_attention_impl<bf16>(c, Device::cpu, s).why_not_cudnn, "CPU");
  EXPECT_EQ(choose_attention_impl<bf16>(c, Device::cuda, s).cudnn, cuda::kCudnnAttentionBuilt);
  EXPECT_FALSE(choose_attention_impl<float>(c, Device::cuda, s).cudnn);
  AttentionShape ring_block = s;
  ring_block.q_pos0 = 64;
  EXPECT_FALSE(choose_attention_impl<bf16>(c, Device::cuda, ring_block).cudnn);
  if (cuda::kCudnnAttentionBuilt) {
    EXPECT_CONTAINS(choose_attention_impl<float>(c, Device::cuda, s).why_not_cudnn, "bf16");
    EXPECT_CONTAINS(choose_attention_impl<bf16>(c, Device::cuda, ring_block).why_not_cudnn, "offset");
  }
}

TEST(AttentionImpl, AGpuRunAskingForCudnnNeedsItBuilt) {
  EXPECT_NO_THROW(require_attention_impl_built(with_impl("nexus"), Device::cuda));
  EXPECT_NO_THROW(require_attention_impl_built(with_impl("cudnn"), Device::cpu));  // the CPU ignores it
  if (cuda::kCudnnAttentionBuilt) {
    EXPECT_NO_THROW(require_attention_impl_built(with_impl("cudnn"), Device::cuda));
  } else {
    try {
      require_attention_impl_built(with_impl("cudnn"), Device::cuda);
      ADD_FAILURE() << "not refused";
    } catch (const ConfigError& e) {
      EXPECT_CONTAINS(e.what(), "model.attention_impl = cudnn");
      EXPECT_CONTAINS(e.what(), "launch/setup.sh");
    }
  }
}

TEST(AttentionImpl, ReportHasALinePerAttentionLayer) {
  ModelConfig c = with_impl("nexus");
  c.attention_neighborhood = "full,sliding:16,full";
  EXPECT_EQ(attention_impl_report(c, Device::cuda, true, 2, 256, 1),
            "# attention layer 1 (full): nexus\n# attention layer 4 (sliding:16): nexus\n"
            "# attention layer 7 (full): nexus\n");

  c.attention_impl = "cudnn";
  const std::string on_gpu = attention_impl_report(c, Device::cuda, true, 2, 256, 1);
  EXPECT_CONTAINS(on_gpu,
                  std::string("attention layer 1 (full): ") + (cuda::kCudnnAttentionBuilt ? "cudnn\n" : "nexus ("));
  EXPECT_CONTAINS(on_gpu, "attention layer 4 (sliding:16): nexus (model.attention_impl = cudnn, but ");
  EXPECT_CONTAINS(attention_impl_report(c, Device::cuda, false, 2, 256, 1), "attention layer 1 (full): nexus (");
  EXPECT_CONTAINS(attention_impl_report(c, Device::cpu, true, 2, 256, 1), "CPU");
  const std::string ring = attention_impl_report(c, Device::cuda, true, 2, 128, 2);
  EXPECT_CONTAINS(ring, "attention layer 1 (full): nexus (model.attention_impl = cudnn, but ring attention over "
                        "parallel.cp = 2");
}

}  // namespace
}  // namespace nexus
