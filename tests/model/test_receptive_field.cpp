// Receptive fields against their closed forms on attention-only stacks (sliding grows linearly
// with depth, dilated with a growing dilation geometrically, log reaches the whole prefix in
// floor(log2 T) layers), against brute force over the rule written out for mixed neighborhoods,
// and through Mamba-2 layers, which see the whole prefix.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include "model/neighborhood_spec.h"
#include "model/receptive_field.h"
#include "support/naive_neighborhood.h"

namespace nexus {
namespace {

ModelConfig stack(const std::string& pattern, const std::string& neighborhood) {
  ModelConfig c;
  c.n_layers = static_cast<idx>(pattern.size());
  c.pattern = pattern;
  c.attention_neighborhood = neighborhood;
  return c;
}

TEST(ReceptiveField, SlidingGrowsLinearlyWithDepth) {
  const idx T = 4096, W = 100;
  const auto r = receptive_field(stack("AAAAAA", "sliding:100"), T);
  for (idx l = 0; l < 6; ++l) {
    EXPECT_EQ(r[std::size_t(l)].reach, (l + 1) * (W - 1)) << "after " << l + 1 << " layers";
    EXPECT_EQ(r[std::size_t(l)].reached, (l + 1) * (W - 1) + 1);  // contiguous
  }
}

// Dilation W^l at layer l (WaveNet): every distance below W^L is a base-W number of L digits, so
// after L layers the field is exactly the last W^L positions.
TEST(ReceptiveField, DilatedWithGrowingDilationGrowsGeometrically) {
  const idx T = 5000;
  const auto r = receptive_field(stack("AAAAA", "dilated:3:1,dilated:3:3,dilated:3:9,dilated:3:27,dilated:3:81"), T);
  idx span = 1;
  for (idx l = 0; l < 5; ++l) {
    span *= 3;
    EXPECT_EQ(r[std::size_t(l)].reach, span - 1) << "after " << l + 1 << " layers";
    EXPECT_EQ(r[std::size_t(l)].reached, span);
  }
  // One fixed dilation: L (W-1) D back, with gaps: L (W-1) + 1 positions.
  const auto fixed = receptive_field(stack("AAAA", "dilated:4:10"), T);
  EXPECT_EQ(fixed[3].reach, 4 * 3 * 10);
  EXPECT_EQ(fixed[3].reached, 4 * 3 + 1);
}

// After l log layers the distances reached are the sums of l terms each 0 or a power of two: the
// numbers with at most l binary ones. So the whole prefix [0, T-1] is reached after exactly
// floor(log2 T) layers (the most ones any d < T has), and not one layer earlier.
TEST(ReceptiveField, LogReachesTheWholePrefixInLog2TLayers) {
  for (idx T : {idx(2), idx(1000), idx(1024), idx(1025), idx(3000)}) {
    const idx layers = std::bit_width(std::uint64_t(T)) - 1;  // floor(log2 T)
    const std::string pattern(std::size_t(layers + 1), 'A');
    const auto r = receptive_field(stack(pattern, "log"), T);
    EXPECT_TRUE(r[std::size_t(layers - 1)].whole_prefix) << "T=" << T;
    if (layers >= 2) {
      EXPECT_FALSE(r[std::size_t(layers - 2)].whole_prefix) << "T=" << T;
    }
    for (idx l = 1; l <= layers + 1; ++l) {
      idx expected = 0;
      for (idx d = 0; d < T; ++d) expected += std::popcount(std::uint64_t(d)) <= l ? 1 : 0;
      EXPECT_EQ(r[std::size_t(l - 1)].reached, expected) << "T=" << T << " after " << l << " layers";
    }
  }
}

// A Mamba-2 layer anywhere in the stack makes everything above it see the whole prefix.
TEST(ReceptiveField, MambaLayersSeeTheWholePrefix) {
  const auto r = receptive_field(stack("AMA", "sliding:8"), 500);
  EXPECT_EQ(r[0].reach, 7);
  EXPECT_FALSE(r[0].whole_prefix);
  EXPECT_TRUE(r[1].whole_prefix);
  EXPECT_TRUE(r[2].whole_prefix);
  EXPECT_EQ(r[1].mixer, 'M');
  EXPECT_EQ(r[2].neighborhood, "sliding:8");
}

// Mixed rules (block, sink, log, dilated) against composing the enumerated rule pair by pair.
TEST(ReceptiveField, MixedStackMatchesBruteForce) {
  const idx T = 300;
  const ModelConfig c = stack("AAAA", "block:37,sink:5+sliding:9,log,dilated:3:7");
  const auto r = receptive_field(c, T);
  for (idx top = 0; top < 4; ++top) {
    std::vector<char> s(std::size_t(T), 0);
    s[std::size_t(T - 1)] = 1;
    for (idx i = top; i >= 0; --i) {
      const Neighborhood nb = c.neighborhood_of(i);
      std::vector<char> next(std::size_t(T), 0);
      for (idx u = 0; u < T; ++u)
        if (s[std::size_t(u)])
          for (idx k = 0; k <= u; ++k)
            if (test::naive_visible(nb, u, k)) next[std::size_t(k)] = 1;
      s = next;
    }
    idx reached = 0, first = -1;
    for (idx p = 0; p < T; ++p)
      if (s[std::size_t(p)]) {
        ++reached;
        if (first < 0) first = p;
      }
    EXPECT_EQ(r[std::size_t(top)].reached, reached) << "layer " << top;
    EXPECT_EQ(r[std::size_t(top)].reach, T - 1 - first) << "layer " << top;
  }
}

}  // namespace
}  // namespace nexus
