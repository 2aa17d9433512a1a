// The architecture of a hybrid Mamba-2 / attention model (Hugging Face BambaConfig-compatible).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/neighborhood.h"
#include "kernels/types.h"
#include "model/recompute.h"

namespace nexus {

// Thrown for an invalid or inconsistent configuration; what() names the field and the value.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ModelConfig {
  idx vocab_size = 256;
  idx d_model = 128;
  idx n_layers = 8;
  // One letter per layer: 'M' Mamba-2 mixer, 'A' attention. Empty means the default pattern,
  // attention where i % 8 == 4 (MMMMAMMM for 8 layers).
  std::string pattern;
  idx mlp_hidden = 256;  // SwiGLU width (Bamba intermediate_size)

  idx n_heads = 4;
  idx n_kv_heads = 2;
  idx head_dim = 32;
  double rope_theta = 10000.0;
  // Which earlier positions each attention layer reads (model/neighborhood_spec.h): one entry for
  // every attention layer, or a comma-separated list with one per attention layer in order.
  std::string attention_neighborhood = "full";
  // Not architecture: which implementation computes attention on a GPU (model/attention_impl.h):
  // "nexus" (the own kernels) or "cudnn" (cuDNN's fused attention where it can express the call,
  // the own kernels elsewhere). The CPU ignores it. Checkpoints do not compare it.
  std::string attention_impl = "nexus";

  idx mamba_expand = 2;     // d_inner = expand * d_model
  idx mamba_headdim = 32;   // P; mamba heads H = d_inner / P
  idx mamba_ngroups = 1;    // G
  idx mamba_d_state = 16;   // N
  idx mamba_d_conv = 4;     // K
  idx mamba_chunk = 64;     // SSD chunk size Q

  double norm_eps = 1e-5;
  bool tie_embeddings = false;
  double init_std = 0.02;

  // Not architecture: how a training pass trades compute for activation memory (model/recompute.h).
  // Set from train.recompute; the arena's layout and Model::activation_bytes follow it.
  Recompute recompute{};

  // Derived sizes, computed with checked multiplication (std::overflow_error instead of a wrapped
  // value; validate() bounds every field so that a validated config never gets there).
  idx d_inner() const;                                         // expand * d_model
  idx mamba_heads() const { return d_inner() / mamba_headdim; }
  idx conv_dim() const;                                        // d_inner + 2 G N: x | B | C
  idx in_proj_dim() const;                                     // d_inner + conv_dim + heads: z | xBC | dt
  idx rotary_dim() const { return head_dim / 2; }              // Bamba: 0.5
  // The resolved pattern (default filled in); always n_layers letters.
  std::string layer_pattern() const;
  // Constant time: neither copies nor builds the pattern (a layer loop calls it per layer).
  bool is_attention(idx layer) const {
    return pattern.empty() ? layer % 8 == 4 : pattern[static_cast<std::size_t>(layer)] == 'A';
  }
  idx attention_layer_count() const;
  // [n_layers] every layer's neighborhood, parsed once: attention layers' from
  // attention_neighborhood, full for Mamba layers (which have none).
  std::vector<Neighborhood> layer_neighborhoods() const;
  // The neighborhood of attention layer `layer` (an index into the pattern; 'A' there).
  Neighborhood neighborhood_of(idx layer) const { return layer_neighborhoods()[static_cast<std::size_t>(layer)]; }

  // Throws ConfigError naming the first invalid field, e.g. "model.n_heads = 6 is not a multiple
  // of model.n_kv_heads = 4" or "model.n_layers = 1000000000 is out of range: expected 1 to 1024".
  // Every size is checked against kModelSizeBounds first, so no later product can overflow.
  void validate() const;
};

// The largest value each size may take. Far beyond any model trained today (the largest open
// models have vocabularies of ~256k, hidden sizes of ~16k, ~128 layers), and small enough that
// every product the model forms (e.g. vocab_size * d_model, layers * in_proj_dim * d_model) stays
// below 2^63 with a wide margin. The memory check (model/memory_need.h) refuses the big ones.
inline constexpr idx kMaxLayers = 1024;
struct ModelSizeBound {
  const char* key;  // "model.d_model"
  idx ModelConfig::*field;
  idx max;
};
inline constexpr ModelSizeBound kModelSizeBounds[] = {
    {"model.vocab_size", &ModelConfig::vocab_size, idx(1) << 24},
    {"model.d_model", &ModelConfig::d_model, idx(1) << 16},
    {"model.n_layers", &ModelConfig::n_layers, kMaxLayers},
    {"model.mlp_hidden", &ModelConfig::mlp_hidden, idx(1) << 18},
    {"model.n_heads", &ModelConfig::n_heads, 1024},
    {"model.n_kv_heads", &ModelConfig::n_kv_heads, 1024},
    {"model.head_dim", &ModelConfig::head_dim, 1024},
    {"model.mamba_expand", &ModelConfig::mamba_expand, 16},
    {"model.mamba_headdim", &ModelConfig::mamba_headdim, 1024},
    {"model.mamba_ngroups", &ModelConfig::mamba_ngroups, 1024},
    {"model.mamba_d_state", &ModelConfig::mamba_d_state, 1024},
    {"model.mamba_d_conv", &ModelConfig::mamba_d_conv, 256},
    {"model.mamba_chunk", &ModelConfig::mamba_chunk, 4096},
};

}  // namespace nexus
