// Activation recomputation on one rank: for every setting the loss and every gradient are
// bit-identical to the run without it, over two passes (stale shared buffers would show in the
// second), and the arena shrinks as planned; the option's parser names bad values.
#include <gtest/gtest.h>

#include "model/model.h"
#include "support/recompute_run.h"

namespace nexus {
namespace {

// Pattern MMAMMMAM: attention in the middle and near the end, so whole-layer recomputation of one
// kind runs next to block recomputation of the other in both directions; T = 20 over chunks of 8
// (two full chunks and a ragged one).
ModelConfig hybrid_config() { return test::recompute_test_config("MMAMMMAM", 8); }

template <typename T>
void check_every_setting() {
  const ModelConfig c = hybrid_config();
  const BatchShape shape{2, 20};
  std::vector<std::vector<std::int32_t>> tokens, targets;
  test::make_batches(c.vocab_size, shape.B * shape.T, 2, 11, tokens, targets);
  const auto none = test::run_passes<T>(c, "none", shape, nullptr, tokens, targets);
  for (const std::string& setting : test::recompute_settings()) {
    const auto got = test::run_passes<T>(c, setting, shape, nullptr, tokens, targets);
    test::expect_bit_identical(got, none, setting);
    EXPECT_LT(got.arena_bytes, none.arena_bytes) << setting;
  }
}

TEST(Recompute, FloatIsBitIdenticalToNoneForEverySetting) { check_every_setting<float>(); }
TEST(Recompute, DoubleIsBitIdenticalToNoneForEverySetting) { check_every_setting<double>(); }

TEST(Recompute, ArenaIsPlannedForTheSettingAndMeasuredExactly) {
  ModelConfig c = hybrid_config();
  const BatchShape shape{2, 64};
  std::size_t previous = SIZE_MAX;
  for (const char* setting : {"none", "mamba", "mamba,mlp", "all"}) {
    c.recompute = parse_recompute(setting);
    const Model<float> m(c, shape);
    const ArenaBreakdown parts = Model<float>::activation_breakdown(c, shape);
    EXPECT_EQ(m.arena_bytes(), parts.total()) << setting;
    EXPECT_EQ(m.arena_bytes(), Model<float>::activation_bytes(c, shape)) << setting;
    EXPECT_LT(m.arena_bytes(), previous) << setting << " keeps less than the setting before it";
    previous = m.arena_bytes();
    EXPECT_EQ(parts.mamba == 0, c.recompute.mamba) << setting;
    EXPECT_EQ(parts.mlp == 0, c.recompute.mlp) << setting;
    EXPECT_EQ(parts.recompute > 0, c.recompute.any()) << setting;
  }
  // Everything recomputed: each layer keeps only its residual input [N, D].
  const std::size_t row = std::size_t(shape.B * shape.T * c.d_model) * sizeof(float);
  EXPECT_EQ(Model<float>::activation_breakdown(c, shape).residuals, std::size_t(c.n_layers) * row);
  // The bf16 measure: the same layout with 2-byte activations (statistics stay 4 bytes).
  const ArenaBreakdown half = Model<bf16>::activation_breakdown(c, shape);
  EXPECT_EQ(half.residuals, std::size_t(c.n_layers) * row / 2);
  EXPECT_LT(half.total(), Model<float>::activation_bytes(c, shape));
}

TEST(Recompute, ParsesSettingsAndNamesBadValues) {
  EXPECT_EQ(parse_recompute("none"), Recompute{});
  EXPECT_EQ(parse_recompute("all"), (Recompute{true, true, true}));
  EXPECT_EQ(parse_recompute("mlp,attention"), (Recompute{true, false, true}));
  EXPECT_EQ(recompute_text(parse_recompute("mlp,mamba")), "mamba,mlp");
  EXPECT_EQ(recompute_text(parse_recompute("attention,mamba,mlp")), "all");
  for (const char* bad : {"", "mamba,", "attn", "mlp,mlp", "None", "all,mlp"}) {
    try {
      parse_recompute(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("train.recompute = \"" + std::string(bad) + "\""), std::string::npos) << what;
      EXPECT_NE(what.find("none, all, or a comma-separated list of attention, mamba, mlp"), std::string::npos) << what;
    }
  }
}

}  // namespace
}  // namespace nexus
