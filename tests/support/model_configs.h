// The small hybrid models the test suites build. Each suite picks its own sizes (distinct sizes so
// a swapped field shows, sizes that fit finite differences, a chunk that splits a sequence a given
// way); what they share is the shape: Mamba heads as wide as attention heads and an 8-wide SSD
// state, which keeps every tensor small. Only the sizes a suite chooses are named at its call.
#pragma once

#include <string>

#include "model/config.h"

namespace nexus::test {

struct SmallHybrid {
  idx vocab_size = 0;
  idx d_model = 0;
  idx n_layers = 0;  // read only when `pattern` is empty (the default pattern over n_layers)
  std::string pattern{};  // ({}: GCC 12 flags an omitted member that has no initializer)
  idx mlp_hidden = 0;
  idx n_heads = 0;
  idx n_kv_heads = 0;
  idx head_dim = 0;  // also the Mamba head size
  idx mamba_ngroups = ModelConfig{}.mamba_ngroups;
  idx mamba_chunk = ModelConfig{}.mamba_chunk;
  double init_std = ModelConfig{}.init_std;
};

inline ModelConfig small_hybrid(const SmallHybrid& s) {
  ModelConfig c;
  c.vocab_size = s.vocab_size;
  c.d_model = s.d_model;
  c.n_layers = s.pattern.empty() ? s.n_layers : idx(s.pattern.size());
  c.pattern = s.pattern;
  c.mlp_hidden = s.mlp_hidden;
  c.n_heads = s.n_heads;
  c.n_kv_heads = s.n_kv_heads;
  c.head_dim = s.head_dim;
  c.mamba_headdim = s.head_dim;
  c.mamba_ngroups = s.mamba_ngroups;
  c.mamba_d_state = 8;
  c.mamba_chunk = s.mamba_chunk;
  c.init_std = s.init_std;
  return c;
}

// The hybrid the whole-model, context-parallel and recomputation tests share, in the default
// pattern over `n_layers`: GQA, two Mamba groups, init_std 0.3 (O(1) activations, so deep layers
// get gradients well above finite-difference noise), small enough for finite differences on every
// tensor.
inline ModelConfig tiny_hybrid(idx n_layers, idx mamba_chunk) {
  return small_hybrid({.vocab_size = 29, .d_model = 16, .n_layers = n_layers, .mlp_hidden = 24, .n_heads = 4,
                       .n_kv_heads = 2, .head_dim = 8, .mamba_ngroups = 2, .mamba_chunk = mamba_chunk,
                       .init_std = 0.3});
}

}  // namespace nexus::test
