// The architecture of a hybrid Mamba-2 / attention model (Hugging Face BambaConfig-compatible).
#pragma once

#include <stdexcept>
#include <string>

#include "kernels/neighborhood.h"
#include "kernels/ops.h"

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

  idx mamba_expand = 2;     // d_inner = expand * d_model
  idx mamba_headdim = 32;   // P; mamba heads H = d_inner / P
  idx mamba_ngroups = 1;    // G
  idx mamba_d_state = 16;   // N
  idx mamba_d_conv = 4;     // K
  idx mamba_chunk = 64;     // SSD chunk size Q

  double norm_eps = 1e-5;
  bool tie_embeddings = false;
  double init_std = 0.02;

  // Derived sizes.
  idx d_inner() const { return mamba_expand * d_model; }
  idx mamba_heads() const { return d_inner() / mamba_headdim; }
  idx conv_dim() const { return d_inner() + 2 * mamba_ngroups * mamba_d_state; }  // x | B | C
  idx in_proj_dim() const { return d_inner() + conv_dim() + mamba_heads(); }     // z | xBC | dt
  idx rotary_dim() const { return head_dim / 2; }                                  // Bamba: 0.5
  // The resolved pattern (default filled in); always n_layers letters.
  std::string layer_pattern() const;
  bool is_attention(idx layer) const { return layer_pattern()[static_cast<std::size_t>(layer)] == 'A'; }
  idx attention_layer_count() const;
  // The neighborhood of attention layer `layer` (an index into the pattern; 'A' there).
  Neighborhood neighborhood_of(idx layer) const;

  // Throws ConfigError naming the first invalid field, e.g. "model.n_heads = 6 is not a multiple
  // of model.n_kv_heads = 4".
  void validate() const;
};

}  // namespace nexus
