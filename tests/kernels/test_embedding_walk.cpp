// The GPU embedding backward's per-column walk (kernels/cuda/embedding_walk.h), run on the CPU:
// batched reads with repeated rows folded into registers must give exactly the sequential loop's
// bits, for token runs that repeat within a batch, across batches, and end mid-batch.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cuda/embedding_walk.h"

namespace nexus::embedding {
namespace {

TEST(EmbeddingWalk, EqualsTheSequentialLoopBitForBit) {
  std::mt19937_64 rng(7);
  for (const idx V : {idx(1), idx(2), idx(5), idx(100)})
    for (const idx N : {idx(0), idx(1), idx(7), idx(8), idx(9), idx(63), idx(200)}) {
      const idx D = 3;
      std::uniform_int_distribution<std::int32_t> pick(0, std::int32_t(V - 1));
      std::uniform_real_distribution<float> value(-1.0f, 1.0f);
      std::vector<std::int32_t> tokens(static_cast<std::size_t>(N));
      for (auto& t : tokens) t = pick(rng);
      std::vector<float> dout(static_cast<std::size_t>(N * D)), start(static_cast<std::size_t>(V * D));
      for (auto& x : dout) x = value(rng);
      for (auto& x : start) x = value(rng);
      std::vector<float> want = start, got = start;
      for (idx n = 0; n < N; ++n)
        for (idx d = 0; d < D; ++d) want[std::size_t(tokens[std::size_t(n)] * D + d)] += dout[std::size_t(n * D + d)];
      for (idx d = 0; d < D; ++d) add_column_in_token_order(got.data(), tokens.data(), dout.data(), N, D, d);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << "V=" << V << " N=" << N;
    }
}

}  // namespace
}  // namespace nexus::embedding
