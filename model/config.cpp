#include "model/config.h"

#include <algorithm>

#include "model/checked_math.h"
#include "model/neighborhood_spec.h"

namespace nexus {

namespace {

[[noreturn]] void fail(const std::string& what) { throw ConfigError("invalid model config: " + what); }

void require_positive(const char* field, idx value) {
  if (value <= 0) fail(std::string("model.") + field + " = " + std::to_string(value) + " must be positive");
}

// A pattern for a message: at most 64 letters, so a bad value cannot flood the terminal.
std::string pattern_excerpt(const std::string& p) {
  std::string out = "\"";
  out.append(p, 0, std::min<std::size_t>(p.size(), 64));
  if (p.size() <= 64) return out += '"';
  out += "...\" (";
  out += std::to_string(p.size());
  return out += " letters)";
}

void require_multiple(const char* field, idx value, const char* of_field, idx of_value) {
  if (of_value <= 0 || value % of_value != 0)
    fail(std::string("model.") + field + " = " + std::to_string(value) + " is not a multiple of model." +
         of_field + " = " + std::to_string(of_value));
}

}  // namespace

idx ModelConfig::d_inner() const { return checked_mul(mamba_expand, d_model, "d_inner = mamba_expand * d_model"); }

idx ModelConfig::conv_dim() const {
  const idx groups = checked_mul(2 * mamba_ngroups, mamba_d_state, "2 * mamba_ngroups * mamba_d_state");
  return checked_add(d_inner(), groups, "conv_dim = d_inner + 2 * mamba_ngroups * mamba_d_state");
}

idx ModelConfig::in_proj_dim() const {
  return checked_add(checked_add(d_inner(), conv_dim(), "d_inner + conv_dim"), mamba_heads(),
                     "in_proj_dim = d_inner + conv_dim + mamba heads");
}

std::string ModelConfig::layer_pattern() const {
  if (!pattern.empty()) return pattern;
  if (n_layers > kMaxLayers)  // never build a gigabyte string for a bad value
    fail("model.n_layers = " + std::to_string(n_layers) + " is out of range: expected 1 to " +
         std::to_string(kMaxLayers));
  std::string p(static_cast<std::size_t>(std::max<idx>(n_layers, 0)), 'M');
  for (std::size_t i = 0; i < p.size(); ++i)
    if (i % 8 == 4) p[i] = 'A';
  return p;
}

idx ModelConfig::attention_layer_count() const {
  if (!pattern.empty()) return static_cast<idx>(std::count(pattern.begin(), pattern.end(), 'A'));
  // Default pattern: layers 4, 12, 20, ... (i % 8 == 4).
  return n_layers > 4 ? (n_layers - 4 + 7) / 8 : 0;
}

std::vector<Neighborhood> ModelConfig::layer_neighborhoods() const {
  const std::vector<Neighborhood> attention = parse_neighborhood_list(attention_neighborhood, attention_layer_count());
  std::vector<Neighborhood> out(static_cast<std::size_t>(n_layers));
  std::size_t ordinal = 0;
  for (idx i = 0; i < n_layers; ++i)
    if (is_attention(i)) out[static_cast<std::size_t>(i)] = attention[ordinal++];
  return out;
}

void ModelConfig::validate() const {
  // Bounds first: every check and derived size below multiplies these fields. Zero and negative
  // values of sizes a model does not use (e.g. attention sizes of an all-Mamba model) are left to
  // the checks that apply, as before; an absurd value is refused whatever it is for.
  for (const ModelSizeBound& b : kModelSizeBounds)
    if (this->*b.field > b.max)
      fail(std::string(b.key) + " = " + std::to_string(this->*b.field) + " is out of range: expected 1 to " +
           std::to_string(b.max));
  require_positive("vocab_size", vocab_size);
  require_positive("d_model", d_model);
  require_positive("n_layers", n_layers);
  require_positive("mlp_hidden", mlp_hidden);
  if (!pattern.empty()) {
    if (static_cast<idx>(pattern.size()) != n_layers)
      fail("model.pattern = " + pattern_excerpt(pattern) + " has " + std::to_string(pattern.size()) +
           " letters but model.n_layers = " + std::to_string(n_layers));
    const auto bad = pattern.find_first_not_of("MA");
    if (bad != std::string::npos)
      fail("model.pattern = " + pattern_excerpt(pattern) + " has '" + pattern[bad] + "' at layer " + std::to_string(bad) +
           "; expected only 'M' (Mamba-2) or 'A' (attention)");
  }
  if (attention_layer_count() > 0) {
    require_positive("n_heads", n_heads);
    require_positive("n_kv_heads", n_kv_heads);
    require_positive("head_dim", head_dim);
    require_multiple("n_heads", n_heads, "n_kv_heads", n_kv_heads);
    if (head_dim % 4 != 0)
      fail("model.head_dim = " + std::to_string(head_dim) +
           " must be a multiple of 4 (RoPE rotates half of each head's dims in pairs)");
    if (rope_theta <= 0) fail("model.rope_theta = " + std::to_string(rope_theta) + " must be positive");
  }
  parse_neighborhood_list(attention_neighborhood, attention_layer_count());  // throws naming the key
  if (attention_impl != "nexus" && attention_impl != "cudnn")
    fail("model.attention_impl = \"" + attention_impl + "\" is not one of nexus, cudnn");
  if (attention_layer_count() > 0) {
  }
  if (attention_layer_count() < n_layers) {
    require_positive("mamba_expand", mamba_expand);
    require_positive("mamba_headdim", mamba_headdim);
    require_positive("mamba_ngroups", mamba_ngroups);
    require_positive("mamba_d_state", mamba_d_state);
    require_positive("mamba_d_conv", mamba_d_conv);
    require_positive("mamba_chunk", mamba_chunk);
    if (d_inner() % mamba_headdim != 0)
      fail("d_inner = model.mamba_expand * model.d_model = " + std::to_string(d_inner()) +
           " is not a multiple of model.mamba_headdim = " + std::to_string(mamba_headdim));
    require_multiple("mamba heads (d_inner / mamba_headdim)", mamba_heads(), "mamba_ngroups", mamba_ngroups);
  }
  if (!(norm_eps > 0)) fail("model.norm_eps = " + std::to_string(norm_eps) + " must be positive");
  if (!(init_std > 0)) fail("model.init_std = " + std::to_string(init_std) + " must be positive");
}

}  // namespace nexus
