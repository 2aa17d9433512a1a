// One training pass (forward + backward) of a Model under a recompute setting, kept bit for bit,
// and the comparison the recomputation tests make against the `none` run: recomputation runs the
// same kernels on the same inputs, so the loss and every gradient must be identical to the bit.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "model/model.h"
#include "support/model_configs.h"

namespace nexus::test {

// A small hybrid (GQA, two Mamba groups) with attention at the letters 'A' of `pattern` and SSD
// chunks of `chunk` tokens.
inline ModelConfig recompute_test_config(const std::string& pattern, idx chunk) {
  ModelConfig c = tiny_hybrid(idx(pattern.size()), chunk);
  c.pattern = pattern;
  return c;
}

template <typename T>
struct PassResult {
  std::vector<double> losses;               // [passes] summed loss of each pass
  std::vector<std::vector<accum_t<T>>> deltas;  // [passes][num_params] the deltas after each pass
  std::size_t arena_bytes = 0;
  std::size_t mamba_bytes_sent = 0;  // of the last pass
  RingStats ring{};                  // of the last pass
};

// Builds Model<T> for `c` with `recompute`, perturbs its initial weights (seeded, the same for
// every setting), and runs one forward + backward per batch, zeroing the deltas in between, so a
// buffer left stale by one pass would show in the next.
template <typename T>
PassResult<T> run_passes(ModelConfig c, const std::string& recompute, BatchShape shape, const DataPlane* cp,
                         const std::vector<std::vector<std::int32_t>>& tokens,
                         const std::vector<std::vector<std::int32_t>>& targets) {
  c.recompute = parse_recompute(recompute);
  Model<T> m(c, shape, cp);
  m.init(5);
  std::mt19937_64 rng(6);
  std::uniform_real_distribution<double> u(-0.2, 0.2);
  for (idx i = 0; i < m.num_params(); ++i) m.params()[i] += T(u(rng));
  PassResult<T> r;
  r.arena_bytes = m.arena_bytes();
  for (std::size_t pass = 0; pass < tokens.size(); ++pass) {
    m.zero_deltas();
    r.losses.push_back(m.forward(tokens[pass].data(), targets[pass].data()).sum);
    m.backward(1.0);
    r.deltas.emplace_back(m.deltas(), m.deltas() + m.num_params());
  }
  r.mamba_bytes_sent = m.mamba_bytes_sent();
  r.ring = m.ring_stats();
  return r;
}

// memcmp, not a tolerance: any reordering of arithmetic would show.
template <typename T>
void expect_bit_identical(const PassResult<T>& got, const PassResult<T>& want, const std::string& label) {
  ASSERT_EQ(got.losses.size(), want.losses.size());
  for (std::size_t pass = 0; pass < want.losses.size(); ++pass) {
    EXPECT_EQ(std::memcmp(&got.losses[pass], &want.losses[pass], sizeof(double)), 0)
        << label << ": loss of pass " << pass << " " << got.losses[pass] << " vs " << want.losses[pass];
    const auto& g = got.deltas[pass];
    const auto& w = want.deltas[pass];
    ASSERT_EQ(g.size(), w.size());
    std::size_t differing = 0, first = g.size();
    for (std::size_t i = 0; i < g.size(); ++i)
      if (std::memcmp(&g[i], &w[i], sizeof(g[i])) != 0) {
        if (differing++ == 0) first = i;
      }
    EXPECT_EQ(differing, 0u) << label << ": " << differing << " gradients differ in pass " << pass
                             << ", the first at " << first;
  }
}

// Seeded batches [B, T] (some targets ignored), one per pass.
inline void make_batches(idx vocab, idx count, std::size_t n, std::uint64_t seed,
                         std::vector<std::vector<std::int32_t>>& tokens,
                         std::vector<std::vector<std::int32_t>>& targets) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int32_t> tok(0, std::int32_t(vocab - 1));
  tokens.assign(n, std::vector<std::int32_t>(std::size_t(count)));
  targets = tokens;
  for (std::size_t p = 0; p < n; ++p)
    for (std::size_t i = 0; i < std::size_t(count); ++i) {
      tokens[p][i] = tok(rng);
      targets[p][i] = i % 7 == 2 ? -1 : tok(rng);
    }
}

// Every setting the tests hold to `none`: each kind alone, all, and the mixed lists (whole-layer
// recomputation of one mixer kind beside block recomputation of the other).
inline const std::vector<std::string>& recompute_settings() {
  static const std::vector<std::string> s = {"attention", "mamba", "mlp", "all", "mamba,mlp", "attention,mlp",
                                             "attention,mamba"};
  return s;
}

}  // namespace nexus::test
