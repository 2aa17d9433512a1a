// Activation recomputation: which blocks of each layer keep only their input in the forward pass
// and run their forward again in the backward pass, trading one more forward of those blocks for
// the memory of their internal activations. The recomputed forward runs the same kernels on the
// same inputs, so losses and gradients stay bit-identical to no recomputation.
//
// A layer whose mixer and MLP are both recomputed keeps only its residual input [N, D]: the
// backward rebuilds its norms, mixer and MLP from it. A layer with one block recomputed keeps its
// residual stream points and norm outputs (the blocks' inputs) and rebuilds that block's internals.
#pragma once

#include <string>

namespace nexus {

struct Recompute {
  bool attention = false;  // attention mixers (q, k, v, attention output, lse)
  bool mamba = false;      // Mamba-2 mixers (in_proj output, conv output, SSD output, gated norm)
  bool mlp = false;        // SwiGLU MLPs (gate|up, activation)

  bool any() const { return attention || mamba || mlp; }
  bool mixer(bool attention_layer) const { return attention_layer ? attention : mamba; }
  // Mixer and MLP both recomputed: the layer keeps only its residual input.
  bool whole_layer(bool attention_layer) const { return mixer(attention_layer) && mlp; }
  bool operator==(const Recompute&) const = default;
};

// "none", "attention", "mamba", "mlp", "all", or a comma-separated list of attention, mamba, mlp
// (e.g. "mamba,mlp"). Throws ConfigError naming train.recompute, the value and the allowed values.
Recompute parse_recompute(const std::string& text);
// The canonical text: "none", "all", or the chosen kinds in the order attention, mamba, mlp.
std::string recompute_text(const Recompute& r);

}  // namespace nexus
