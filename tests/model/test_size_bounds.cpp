// Sizes from users cannot overflow: every model size has an explicit bound (refused with the key
// and the range), derived sizes use checked arithmetic, and the memory a run needs is computed
// from the model's own sizing code without allocating it. The inputs are the ones that corrupted
// memory or hung before (fault injection under ASan/UBSan).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>

#include "model/checked_math.h"
#include "model/inference.h"
#include "model/memory_need.h"
#include "model/model.h"
#include "config_test_util.h"

namespace nexus {
namespace {

using test::error_of;

constexpr idx kTwo62 = idx(1) << 62;

TEST(SizeBounds, AbsurdSizesAreRefusedNamingTheKeyAndTheRange) {
  struct Case {
    idx ModelConfig::*field;
    idx value;
    const char* expected;
  };
  const Case cases[] = {
      {&ModelConfig::n_layers, 1000000000, "model.n_layers = 1000000000 is out of range: expected 1 to 1024"},
      {&ModelConfig::n_layers, idx(1) << 31, "model.n_layers = 2147483648 is out of range"},
      {&ModelConfig::d_model, 1000000000, "model.d_model = 1000000000 is out of range: expected 1 to 65536"},
      {&ModelConfig::vocab_size, 2000000000, "model.vocab_size = 2000000000 is out of range"},
      {&ModelConfig::mlp_hidden, 1000000000, "model.mlp_hidden = 1000000000 is out of range"},
      {&ModelConfig::mamba_expand, std::numeric_limits<idx>::max(), "model.mamba_expand = 9223372036854775807 is out of range"},
      {&ModelConfig::mamba_expand, kTwo62, "model.mamba_expand = 4611686018427387904 is out of range"},
      {&ModelConfig::mamba_d_conv, kTwo62, "model.mamba_d_conv = 4611686018427387904 is out of range"},
      {&ModelConfig::head_dim, kTwo62, "model.head_dim = 4611686018427387904 is out of range"},
      {&ModelConfig::mamba_d_state, kTwo62, "model.mamba_d_state"},
      {&ModelConfig::mamba_headdim, kTwo62, "model.mamba_headdim"},
      {&ModelConfig::mamba_ngroups, kTwo62, "model.mamba_ngroups"},
      {&ModelConfig::mamba_chunk, kTwo62, "model.mamba_chunk"},
      {&ModelConfig::n_heads, kTwo62, "model.n_heads"},
      {&ModelConfig::n_kv_heads, kTwo62, "model.n_kv_heads"},
  };
  for (const Case& k : cases) {
    ModelConfig c;
    c.*k.field = k.value;
    const std::string e = error_of(c);
    EXPECT_NE(e.find(k.expected), std::string::npos) << e;
    EXPECT_THROW(ParamTable{c}, ConfigError) << k.expected;  // nothing is laid out either
  }
  // An attention size is refused even when no layer uses attention: a stored config must not
  // carry a value that would wrap if a later pattern used it.
  ModelConfig all_mamba;
  all_mamba.pattern = std::string(8, 'M');
  all_mamba.head_dim = kTwo62;
  EXPECT_NE(error_of(all_mamba).find("model.head_dim"), std::string::npos);
}

TEST(SizeBounds, TheLayerPatternIsNeverBuiltForAnAbsurdLayerCount) {
  // Before: layer_pattern() built a 1e8-letter string, and is_attention() copied it per layer.
  ModelConfig c;
  c.n_layers = 100000000;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_NE(error_of(c).find("model.n_layers = 100000000 is out of range"), std::string::npos);
  EXPECT_THROW(c.layer_pattern(), ConfigError);
  EXPECT_TRUE(c.is_attention(12));  // constant time on the default pattern, no string
  EXPECT_EQ(c.attention_layer_count(), (100000000 + 3) / 8);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 1.0);
  // The counting formula agrees with the pattern it stands for.
  for (idx n = 1; n <= 40; ++n) {
    ModelConfig d;
    d.n_layers = n;
    const std::string p = d.layer_pattern();
    EXPECT_EQ(d.attention_layer_count(), idx(std::count(p.begin(), p.end(), 'A'))) << n;
    for (idx i = 0; i < n; ++i) EXPECT_EQ(d.is_attention(i), p[std::size_t(i)] == 'A');
  }
}

TEST(SizeBounds, CheckedArithmeticRefusesWrapping) {
  EXPECT_EQ(mul_no_overflow(idx(1) << 31, idx(1) << 31), idx(1) << 62);
  EXPECT_FALSE(mul_no_overflow(idx(1) << 32, idx(1) << 31).has_value());
  EXPECT_FALSE(mul_no_overflow(-1, 2).has_value());
  EXPECT_FALSE(add_no_overflow(std::numeric_limits<idx>::max(), 1).has_value());
  EXPECT_THROW(checked_mul(std::numeric_limits<idx>::max(), 2, "x"), std::overflow_error);
  EXPECT_EQ(checked_mul(16, 2, "x"), 32);
  // A config that skipped validate() fails loudly instead of wrapping: 2^62 * 2 is not 0.
  ModelConfig c;
  c.mamba_expand = kTwo62;
  c.d_model = 4;
  EXPECT_THROW(c.d_inner(), std::overflow_error);
}

TEST(SizeBounds, EverySizeAtItsBoundStillComputesWithoutOverflow) {
  // The bounds are what keeps the products small: with every size at its maximum the sizes
  // and the memory figure are exact (no saturation), and absurd (the memory check refuses).
  ModelConfig c;
  for (const ModelSizeBound& b : kModelSizeBounds) c.*b.field = b.max;
  c.mamba_headdim = 1024;  // d_inner = 16 * 65536 is a multiple; heads 1024 = ngroups
  ASSERT_EQ(error_of(c), "");
  const ParamTable table(c);
  EXPECT_GT(table.total(), idx(1) << 40);
  const MemoryNeed need = training_memory_need(c, BatchShape{1, 4096});
  EXPECT_EQ(need.parameters, std::size_t(table.total()) * sizeof(float));
  EXPECT_LT(need.total(), SIZE_MAX);
  MemoryAvailable plenty;
  plenty.bytes = std::size_t(64) << 30;
  plenty.source = "test";
  const std::string refusal = memory_shortfall("this run", need, 1, plenty);
  EXPECT_NE(refusal.find("GiB (parameters "), std::string::npos) << refusal;
  EXPECT_NE(refusal.find("only 64.00 GiB is available (test)"), std::string::npos) << refusal;
}

TEST(SizeBounds, MemoryNeedIsWhatTheModelAllocates) {
  // The reference is a real Model: its arena and buffers, measured after construction.
  ModelConfig c;
  c.vocab_size = 97;
  c.d_model = 64;
  c.n_layers = 6;
  c.mlp_hidden = 96;
  for (const BatchShape shape : {BatchShape{1, 8}, BatchShape{3, 40}}) {
    const Model<float> model(c, shape);
    const MemoryNeed need = training_memory_need(c, shape);
    EXPECT_EQ(need.activations, model.arena_bytes());
    EXPECT_EQ(need.parameters, std::size_t(model.num_params()) * sizeof(float));
    EXPECT_EQ(need.deltas, need.parameters);
    EXPECT_EQ(need.optimizer, 2 * need.parameters);
    EXPECT_EQ(need.total(), 4 * need.parameters + need.activations);
  }
  EXPECT_EQ(weights_memory_need(c, 3).total(), 3 * std::size_t(ParamTable(c).total()) * sizeof(float));
}

TEST(SizeBounds, InferenceCacheBytesMatchTheSessionsFormulas) {
  ModelConfig c;
  c.vocab_size = 50;
  c.d_model = 32;
  c.n_layers = 8;  // MMMMAMMM
  c.mlp_hidden = 48;
  const idx kvdim = c.n_kv_heads * c.head_dim;
  // Independent count: 7 Mamba layers (conv window + SSM state), 1 attention layer (K and V pools).
  const std::size_t mamba = std::size_t(2 * (c.mamba_d_conv - 1) * c.conv_dim() + 2 * c.d_inner() * c.mamba_d_state);
  const std::size_t attention = std::size_t(2 * 5 * 16 * kvdim);
  EXPECT_EQ(InferenceSession<float>::cache_bytes(c, 2, 16, 5), (7 * mamba + attention) * sizeof(float));
  EXPECT_THROW(InferenceSession<float>::cache_bytes(c, 1, 16, std::numeric_limits<idx>::max() / 4), std::overflow_error);
}

TEST(SizeBounds, AvailableMemoryIsReadFromTheSystem) {
  const MemoryAvailable a = available_memory();
  EXPECT_GT(a.bytes, std::size_t(1) << 20) << a.source;  // a machine running tests has more than 1 MiB free
  EXPECT_FALSE(a.source.empty());
}

}  // namespace
}  // namespace nexus
