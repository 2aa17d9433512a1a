#include "model/params.h"

#include <cmath>
#include <random>
#include <stdexcept>

#include "model/checked_math.h"

namespace nexus {

ParamTable::ParamTable(const ModelConfig& c) {
  c.validate();
  const idx D = c.d_model, V = c.vocab_size, F = c.mlp_hidden;
  add("model.embed_tokens.weight", {V, D}, Init::Normal, true);
  for (idx i = 0; i < c.n_layers; ++i) {
    const std::string layer = "model.layers." + std::to_string(i) + ".";
    add(layer + "input_layernorm.weight", {D}, Init::Ones, false);
    if (c.is_attention(i)) {
      const std::string a = layer + "self_attn.";
      add(a + "q_proj.weight", {c.n_heads * c.head_dim, D}, Init::Normal, true);
      add(a + "k_proj.weight", {c.n_kv_heads * c.head_dim, D}, Init::Normal, true);
      add(a + "v_proj.weight", {c.n_kv_heads * c.head_dim, D}, Init::Normal, true);
      add(a + "o_proj.weight", {D, c.n_heads * c.head_dim}, Init::NormalOut, true);
    } else {
      const std::string m = layer + "mamba.";
      add(m + "in_proj.weight", {c.in_proj_dim(), D}, Init::Normal, true);
      add(m + "conv1d.weight", {c.conv_dim(), 1, c.mamba_d_conv}, Init::ConvUniform, true);
      add(m + "conv1d.bias", {c.conv_dim()}, Init::ConvUniform, false);
      add(m + "dt_bias", {c.mamba_heads()}, Init::DtBias, false);
      add(m + "A_log", {c.mamba_heads()}, Init::ALog, false);
      add(m + "D", {c.mamba_heads()}, Init::Ones, false);
      add(m + "norm.weight", {c.d_inner()}, Init::Ones, false);
      add(m + "out_proj.weight", {D, c.d_inner()}, Init::NormalOut, true);
    }
    add(layer + "pre_ff_layernorm.weight", {D}, Init::Ones, false);
    // gate_proj and up_proj adjacent: the MLP runs them as one [2F, D] GEMM.
    add(layer + "feed_forward.gate_proj.weight", {F, D}, Init::Normal, true);
    add(layer + "feed_forward.up_proj.weight", {F, D}, Init::Normal, true);
    add(layer + "feed_forward.down_proj.weight", {D, F}, Init::NormalOut, true);
  }
  add("model.final_layernorm.weight", {D}, Init::Ones, false);
  if (!c.tie_embeddings) add("lm_head.weight", {V, D}, Init::Normal, true);
}

void ParamTable::add(std::string name, std::vector<idx> shape, Init init, bool decay) {
  ParamInfo p;
  p.name = std::move(name);
  p.numel = 1;
  for (idx s : shape) p.numel = checked_mul(p.numel, s, "parameter tensor size");
  p.shape = std::move(shape);
  p.offset = total_;
  p.init = init;
  p.decay = decay;
  total_ = checked_add(total_, p.numel, "parameter count");
  params_.push_back(std::move(p));
}

const ParamInfo* ParamTable::find(const std::string& name) const {
  for (const auto& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

const ParamInfo& ParamTable::at(const std::string& name) const {
  if (const ParamInfo* p = find(name)) return *p;
  throw std::out_of_range("parameter table has no tensor named '" + name + "'");
}

namespace {

// FNV-1a: a stable per-name stream id, so a tensor's initial values do not depend on its position.
std::uint64_t name_hash(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

}  // namespace

template <typename T>
void init_parameters(T* params, const ParamTable& table, const ModelConfig& c, std::uint64_t seed) {
  const double out_std = c.init_std / std::sqrt(2.0 * double(c.n_layers));
  for (const ParamInfo& p : table.params()) {
    std::mt19937_64 rng(seed ^ name_hash(p.name));
    T* w = params + p.offset;
    auto fill = [&](auto&& draw) {
      for (idx i = 0; i < p.numel; ++i) w[i] = T(draw());
    };
    switch (p.init) {
      case Init::Normal: {
        std::normal_distribution<double> n(0.0, c.init_std);
        fill([&] { return n(rng); });
        break;
      }
      case Init::NormalOut: {
        std::normal_distribution<double> n(0.0, out_std);
        fill([&] { return n(rng); });
        break;
      }
      case Init::Ones: fill([] { return 1.0; }); break;
      case Init::ConvUniform: {
        const double bound = 1.0 / std::sqrt(double(c.mamba_d_conv));
        std::uniform_real_distribution<double> u(-bound, bound);
        fill([&] { return u(rng); });
        break;
      }
      case Init::ALog: {
        std::uniform_real_distribution<double> u(1.0, 16.0);
        fill([&] { return std::log(u(rng)); });
        break;
      }
      case Init::DtBias: {
        // mamba_ssm: dt = exp(U(log 1e-3, log 1e-1)) floored at 1e-4; dt_bias = softplus^-1(dt).
        std::uniform_real_distribution<double> u(std::log(1e-3), std::log(1e-1));
        fill([&] {
          const double dt = std::max(std::exp(u(rng)), 1e-4);
          return dt + std::log(-std::expm1(-dt));
        });
        break;
      }
    }
  }
}

template void init_parameters<float>(float*, const ParamTable&, const ModelConfig&, std::uint64_t);
template void init_parameters<double>(double*, const ParamTable&, const ModelConfig&, std::uint64_t);

}  // namespace nexus
