#include "model/layers.h"

namespace nexus {

template <typename P>
LayerTensors<P> layer_tensors(P base, const ParamTable& table, const ModelConfig& c, idx layer) {
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  auto at = [&](const std::string& name) { return base + table.at(prefix + name).offset; };
  LayerTensors<P> t;
  t.input_norm = at("input_layernorm.weight");
  t.ff_norm = at("pre_ff_layernorm.weight");
  if (c.is_attention(layer)) {
    t.attn = {at("self_attn.q_proj.weight"), at("self_attn.k_proj.weight"), at("self_attn.v_proj.weight"),
              at("self_attn.o_proj.weight")};
  } else {
    t.mamba = {at("mamba.in_proj.weight"), at("mamba.conv1d.weight"), at("mamba.conv1d.bias"),
               at("mamba.dt_bias"),        at("mamba.A_log"),         at("mamba.D"),
               at("mamba.norm.weight"),    at("mamba.out_proj.weight")};
  }
  t.mlp = {at("feed_forward.gate_proj.weight"), at("feed_forward.down_proj.weight")};
  return t;
}

template LayerTensors<const float*> layer_tensors(const float*, const ParamTable&, const ModelConfig&, idx);
template LayerTensors<float*> layer_tensors(float*, const ParamTable&, const ModelConfig&, idx);
template LayerTensors<const double*> layer_tensors(const double*, const ParamTable&, const ModelConfig&, idx);
template LayerTensors<double*> layer_tensors(double*, const ParamTable&, const ModelConfig&, idx);
template LayerTensors<const bf16*> layer_tensors(const bf16*, const ParamTable&, const ModelConfig&, idx);

}  // namespace nexus
