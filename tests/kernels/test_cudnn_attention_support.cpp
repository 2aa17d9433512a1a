// Which attention calls cuDNN's fused attention takes (kernels/cuda/attention_cudnn.h): a host
// decision, tested in every build, GPU or not. Every causal call it takes must mean cuDNN's
// top-left causal mask (key j visible to query i iff j <= i) under our neighborhood rule; the
// calls it refuses (other dtypes, head dims, neighborhoods, offset blocks) give a reason.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "kernels/cuda/attention_cudnn.h"
#include "support/naive_neighborhood.h"

namespace nexus {
namespace {

using cuda::cudnn_attention_supports;
using cuda::cudnn_attention_unsupported;
using test::make_neighborhood;

AttentionShape causal_square(idx T, idx Hq, idx Hkv, idx hd, Neighborhood nb = {}, idx pos0 = 0) {
  return AttentionShape{2, T, T, Hq, Hkv, hd, pos0, pos0, true, nb};
}

TEST(CudnnAttentionSupport, OnlyBf16) {
  const AttentionShape s = causal_square(64, 4, 2, 64);
  EXPECT_TRUE(cudnn_attention_supports<bf16>(s));
  EXPECT_FALSE(cudnn_attention_supports<float>(s));
  EXPECT_FALSE(cudnn_attention_supports<double>(s));
  EXPECT_NE(std::string(cudnn_attention_unsupported<float>(s)).find("bf16"), std::string::npos);
}

TEST(CudnnAttentionSupport, HeadDimsAreMultiplesOf8UpTo128) {
  for (idx hd = 1; hd <= 300; ++hd) {
    const bool expected = hd % 8 == 0 && hd <= cuda::kCudnnAttentionMaxHeadDim;
    EXPECT_EQ(cudnn_attention_supports<bf16>(causal_square(16, 2, 1, hd)), expected) << "head_dim " << hd;
  }
  EXPECT_EQ(cuda::kCudnnAttentionMaxHeadDim, 128);
}

TEST(CudnnAttentionSupport, GroupedQueryAttentionWhenTheGroupsDivide) {
  for (const idx group : {1, 2, 4, 8})
    EXPECT_TRUE(cudnn_attention_supports<bf16>(causal_square(32, 8, 8 / group, 32))) << "group " << group;
  EXPECT_FALSE(cudnn_attention_supports<bf16>(causal_square(32, 6, 4, 32)));
}

TEST(CudnnAttentionSupport, EmptyShapesStayWithTheOwnKernel) {
  AttentionShape s = causal_square(16, 2, 1, 32);
  s.B = 0;
  EXPECT_FALSE(cudnn_attention_supports<bf16>(s));
  s = causal_square(0, 2, 1, 32);
  EXPECT_FALSE(cudnn_attention_supports<bf16>(s));
  s = AttentionShape{1, 4, 0, 2, 1, 32, 0, 0, false, {}};
  EXPECT_FALSE(cudnn_attention_supports<bf16>(s));
}

TEST(CudnnAttentionSupport, CausalOnlyWithTheFullNeighborhood) {
  EXPECT_TRUE(cudnn_attention_supports<bf16>(causal_square(64, 2, 1, 64, make_neighborhood(Neighborhood::kFull))));
  // A sink adds nothing to full: still the plain causal triangle.
  EXPECT_TRUE(
      cudnn_attention_supports<bf16>(causal_square(64, 2, 1, 64, make_neighborhood(Neighborhood::kFull, 0, 1, 5))));
  for (const Neighborhood nb :
       {make_neighborhood(Neighborhood::kSliding, 16), make_neighborhood(Neighborhood::kDilated, 4, 3),
        make_neighborhood(Neighborhood::kLog), make_neighborhood(Neighborhood::kBlock, 8),
        make_neighborhood(Neighborhood::kSliding, 5, 1, 3)}) {
    const AttentionShape s = causal_square(64, 2, 1, 64, nb);
    EXPECT_FALSE(cudnn_attention_supports<bf16>(s)) << "kind " << int(nb.kind);
    EXPECT_NE(std::string(cudnn_attention_unsupported<bf16>(s)).find("neighborhood"), std::string::npos);
  }
}

TEST(CudnnAttentionSupport, CausalOffsetBlocksStayWithTheOwnKernel) {
  AttentionShape ring_block = causal_square(64, 2, 1, 64);
  ring_block.q_pos0 = 128;  // a ring step: queries after the keys
  EXPECT_FALSE(cudnn_attention_supports<bf16>(ring_block));
  EXPECT_NE(std::string(cudnn_attention_unsupported<bf16>(ring_block)).find("offset"), std::string::npos);
  AttentionShape prefix = causal_square(64, 2, 1, 64, {}, 100);
  prefix.Tk = 100;  // a cached prefix before the queries
  prefix.k_pos0 = 0;
  EXPECT_FALSE(cudnn_attention_supports<bf16>(prefix));
  AttentionShape ragged = causal_square(64, 2, 1, 64);
  ragged.Tk = 65;
  EXPECT_FALSE(cudnn_attention_supports<bf16>(ragged));
  // Both blocks starting at the same later position: the same triangle.
  EXPECT_TRUE(cudnn_attention_supports<bf16>(causal_square(64, 2, 1, 64, {}, 4096)));
}

TEST(CudnnAttentionSupport, NonCausalAnyBlocks) {
  // Without causal every key is visible: positions, lengths and the neighborhood do not matter.
  const AttentionShape s{3, 50, 77, 4, 2, 64, 100, 0, false, make_neighborhood(Neighborhood::kSliding, 4)};
  EXPECT_TRUE(cudnn_attention_supports<bf16>(s));
}

// The causal calls taken mean exactly cuDNN's top-left triangle under our rule.
TEST(CudnnAttentionSupport, TakenCausalCallsAreTheTopLeftTriangle) {
  for (const Neighborhood nb :
       {make_neighborhood(Neighborhood::kFull), make_neighborhood(Neighborhood::kFull, 0, 1, 5)})
    for (const idx pos0 : {0, 7, 1000}) {
      const AttentionShape s = causal_square(40, 2, 1, 16, nb, pos0);
      ASSERT_TRUE(cudnn_attention_supports<bf16>(s));
      for (idx i = 0; i < s.Tq; ++i)
        for (idx j = 0; j < s.Tk; ++j)
          ASSERT_EQ(s.neighborhood.visible(s.q_pos0 + i, s.k_pos0 + j), j <= i) << "i " << i << " j " << j;
    }
}

}  // namespace
}  // namespace nexus
