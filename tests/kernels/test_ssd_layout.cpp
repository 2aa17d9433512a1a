// The index arithmetic of the CUDA SSD kernels (kernels/cuda/ssd_layout.h), on the CPU: chunks
// cover the sequence exactly as the CPU kernel's do, the workspace pieces are aligned, disjoint
// and fit in ssd_workspace for every element type, and the odd tile strides spread a tile's rows
// over distinct shared-memory banks.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <utility>
#include <vector>

#include "kernels/cuda/ssd_layout.h"
#include "kernels/ops.h"

namespace nexus {
namespace {

using namespace cuda::ssd;

const SsdShape kShapes[] = {
    {1, 32, 2, 5, 1, 3, 8}, {2, 45, 4, 7, 2, 6, 16}, {2, 130, 2, 12, 2, 10, 64},     {1, 5, 3, 3, 1, 4, 16},
    {1, 0, 2, 4, 1, 4, 16}, {3, 1, 1, 1, 1, 1, 1},   {1, 2048, 24, 64, 1, 128, 128}, {1, 7, 2, 3, 1, 2, 0},
};

TEST(CudaSsdLayout, ChunksCoverTheSequenceOnceInOrder) {
  for (const SsdShape& s : kShapes) {
    const idx q = chunk_size(s), nc = num_chunks(s);
    EXPECT_GE(q, 1);
    EXPECT_LE(q, std::max<idx>(1, s.Q));
    idx next = 0;
    for (idx c = 0; c < nc; ++c) {
      EXPECT_EQ(c * q, next) << "chunk " << c;
      const idx L = chunk_len(s, c);
      EXPECT_GE(L, 1);
      EXPECT_LE(L, q);
      if (c + 1 < nc) {
        EXPECT_EQ(L, q);
      }
      next += L;
    }
    EXPECT_EQ(next, s.Tn);
  }
}

TEST(CudaSsdLayout, TilesCoverAChunk) {
  for (const idx n : {idx(0), idx(1), idx(15), idx(16), idx(17), idx(128), idx(130)}) {
    const idx t = num_tiles(n);
    EXPECT_GE(t * kTile, n);
    EXPECT_LT((t - 1) * kTile, std::max<idx>(n, 1));
  }
  EXPECT_EQ(kThreads, unsigned(kTile * kTile));
}

TEST(CudaSsdLayout, WorkspacePiecesAreAlignedDisjointAndFit) {
  for (const SsdShape& s : kShapes)
    for (const idx acc : {idx(4), idx(8)}) {
      const Layout lay(s, acc);
      const idx bh = s.B * s.H, nc = lay.nc, pn = s.P * s.N;
      const std::vector<std::pair<idx, idx>> pieces = {
          {lay.dt, bh * s.Tn * acc},        {lay.acs, bh * s.Tn * acc},       {lay.cdec, bh * nc * acc},
          {lay.dtsum, bh * nc * 8},         {lay.states, bh * nc * pn * acc}, {lay.dstates, bh * nc * pn * acc},
          {lay.partials, bh * nc * 3 * acc}};
      idx end = 0;
      for (const auto& [at, bytes] : pieces) {
        EXPECT_EQ(at % 256, 0);
        EXPECT_GE(at, end);  // in order, no overlap
        end = at + bytes;
      }
      EXPECT_LE(end, lay.bytes);
      // Every element type's workspace: bf16 and float with fp32 accumulators, double with fp64.
      if (acc == 4) {
        EXPECT_LE(lay.bytes, ssd_workspace<bf16>(s) * idx(sizeof(bf16)));
        EXPECT_LE(lay.bytes, ssd_workspace<float>(s) * idx(sizeof(float)));
        // Exactly the CUDA layout for bf16 (no CPU kernel), not twice it (the former 2-byte sizing).
        EXPECT_EQ(ssd_workspace<bf16>(s) * idx(sizeof(bf16)), lay.bytes);
      } else {
        EXPECT_LE(lay.bytes, ssd_workspace<double>(s) * idx(sizeof(double)));
      }
    }
}

TEST(CudaSsdLayout, OddStridesPutATilesRowsInDistinctBanks) {
  for (const idx n : {idx(1), idx(2), idx(16), idx(32), idx(33), idx(64), idx(128)}) {
    const idx ld = odd_stride(n);
    EXPECT_GE(ld, n);
    EXPECT_LE(ld, n + 1);
    for (const idx words : {idx(1), idx(2)}) {  // 4- and 8-byte elements
      std::set<idx> banks;
      for (idx r = 0; r < kTile; ++r) banks.insert(r * ld * words % 32);
      EXPECT_EQ(banks.size(), std::size_t(kTile)) << "n=" << n << " words=" << words;
    }
  }
}

TEST(CudaSsdLayout, SharedMemoryGrowsWithTheShape) {
  const SsdShape small{1, 64, 2, 8, 1, 8, 64}, wide{1, 64, 2, 64, 1, 128, 64};
  for (auto f : {output_smem_elements, head_grad_smem_elements, group_grad_smem_elements}) {
    EXPECT_GT(f(small), 0);
    EXPECT_GT(f(wide), f(small));
  }
  // The model's shape (P 64, N 128, Q 128) stays within an sm_80 block in fp32 and fp64.
  const SsdShape model{1, 2048, 24, 64, 1, 128, 128};
  for (auto f : {output_smem_elements, head_grad_smem_elements, group_grad_smem_elements})
    EXPECT_LE(f(model) * 8, 163 * 1024);
}

}  // namespace
}  // namespace nexus
