// Config validation and the parameter table: Bamba names, shapes, layout, init rules.
#include <gtest/gtest.h>

#include <cmath>

#include "model/params.h"
#include "config_test_util.h"

namespace nexus {
namespace {

using test::error_of;

TEST(ModelConfig, DefaultPatternPutsAttentionInTheMiddleOfEachBlockOfEight) {
  ModelConfig c;
  c.n_layers = 32;
  EXPECT_EQ(c.layer_pattern(), "MMMMAMMMMMMMAMMMMMMMAMMMMMMMAMMM");
  EXPECT_EQ(c.attention_layer_count(), 4);
}

TEST(ModelConfig, InvalidCombinationsNameTheField) {
  ModelConfig c;
  c.n_heads = 6;
  c.n_kv_heads = 4;
  EXPECT_NE(error_of(c).find("model.n_heads = 6 is not a multiple of model.n_kv_heads = 4"), std::string::npos)
      << error_of(c);
  c = ModelConfig{};
  c.pattern = "MMA";
  EXPECT_NE(error_of(c).find("model.pattern"), std::string::npos);
  c.n_layers = 3;
  c.pattern = "MXA";
  EXPECT_NE(error_of(c).find("'X' at layer 1"), std::string::npos) << error_of(c);
  c = ModelConfig{};
  c.mamba_headdim = 48;  // d_inner 256 is not a multiple
  EXPECT_NE(error_of(c).find("model.mamba_headdim = 48"), std::string::npos) << error_of(c);
  c = ModelConfig{};
  c.d_model = 0;
  EXPECT_NE(error_of(c).find("model.d_model = 0"), std::string::npos);
  EXPECT_EQ(error_of(ModelConfig{}), "");
}

TEST(ParamTable, BambaNamesShapesAndContiguousLayout) {
  ModelConfig c;  // defaults: 8 layers, MMMMAMMM
  ParamTable t(c);
  idx expected_offset = 0;
  for (const ParamInfo& p : t.params()) {
    EXPECT_EQ(p.offset, expected_offset) << p.name;
    expected_offset += p.numel;
  }
  EXPECT_EQ(t.total(), expected_offset);
  const ParamInfo& in = t.at("model.layers.0.mamba.in_proj.weight");
  EXPECT_EQ(in.shape, (std::vector<idx>{2 * c.d_inner() + 2 * c.mamba_ngroups * c.mamba_d_state + c.mamba_heads(),
                                        c.d_model}));
  EXPECT_EQ(t.at("model.layers.0.mamba.conv1d.weight").shape, (std::vector<idx>{c.conv_dim(), 1, c.mamba_d_conv}));
  EXPECT_EQ(t.at("model.layers.4.self_attn.k_proj.weight").shape,
            (std::vector<idx>{c.n_kv_heads * c.head_dim, c.d_model}));
  EXPECT_EQ(t.find("model.layers.4.mamba.in_proj.weight"), nullptr);
  EXPECT_EQ(t.find("model.layers.3.self_attn.q_proj.weight"), nullptr);
  // gate and up adjacent: the MLP multiplies them as one [2F, D] matrix.
  EXPECT_EQ(t.at("model.layers.2.feed_forward.up_proj.weight").offset,
            t.at("model.layers.2.feed_forward.gate_proj.weight").offset + c.mlp_hidden * c.d_model);
  EXPECT_FALSE(t.at("model.layers.0.mamba.A_log").decay);
  EXPECT_FALSE(t.at("model.layers.0.mamba.dt_bias").decay);
  EXPECT_FALSE(t.at("model.layers.0.mamba.D").decay);
  EXPECT_FALSE(t.at("model.final_layernorm.weight").decay);
  EXPECT_TRUE(t.at("lm_head.weight").decay);
  EXPECT_THROW(t.at("model.nonexistent"), std::out_of_range);
}

TEST(ParamTable, InitialisationFollowsMambaSsm) {
  ModelConfig c;
  c.n_layers = 8;
  ParamTable t(c);
  std::vector<double> w(std::size_t(t.total()));
  init_parameters(w.data(), t, c, 42);
  const ParamInfo& a = t.at("model.layers.1.mamba.A_log");
  const ParamInfo& dtb = t.at("model.layers.1.mamba.dt_bias");
  for (idx h = 0; h < a.numel; ++h) {
    const double A = std::exp(w[std::size_t(a.offset + h)]);
    EXPECT_GE(A, 1.0);
    EXPECT_LE(A, 16.0);
    const double dt = std::log1p(std::exp(w[std::size_t(dtb.offset + h)]));  // softplus(dt_bias)
    EXPECT_GE(dt, 1e-3 * (1 - 1e-9));
    EXPECT_LE(dt, 1e-1 * (1 + 1e-9));
  }
  EXPECT_EQ(w[std::size_t(t.at("model.layers.1.mamba.D").offset)], 1.0);
  // Output projections: std 0.02 / sqrt(2 L) = 0.005; input projections 0.02.
  auto std_of = [&](const std::string& name) {
    const ParamInfo& p = t.at(name);
    double s = 0;
    for (idx i = 0; i < p.numel; ++i) s += w[std::size_t(p.offset + i)] * w[std::size_t(p.offset + i)];
    return std::sqrt(s / double(p.numel));
  };
  EXPECT_NEAR(std_of("model.layers.1.mamba.out_proj.weight"), 0.005, 0.0005);
  EXPECT_NEAR(std_of("model.layers.1.mamba.in_proj.weight"), 0.02, 0.001);
  // Same seed, same values regardless of anything else; different seed differs.
  std::vector<double> w2(w.size());
  init_parameters(w2.data(), t, c, 42);
  EXPECT_EQ(w, w2);
  init_parameters(w2.data(), t, c, 43);
  EXPECT_NE(w, w2);
}

}  // namespace
}  // namespace nexus
