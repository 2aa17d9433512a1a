// Export to a Hugging Face folder: safetensors writer and reader, bf16 rounding, config.json,
// sharding, and loading a model back from an export or a checkpoint. The file-format checks parse
// the bytes here, independently of the reader under test.
#include <gtest/gtest.h>

#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "model/model.h"
#include "trainer/commands.h"
#include "trainer/checkpoint.h"
#include "trainer/export.h"
#include "trainer/options.h"
#include "trainer/safetensors.h"
#include "support/reference_crc32.h"
#include "support/temp_dir.h"
#include "export_test_util.h"

namespace nexus {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::reference_crc32;
using test::TempDir;
using test::small_config;
using test::random_params;
using test::SmallModel;
using test::run_command;
using test::slurp;
using test::write_raw;

// Independent reference for fp32 -> bf16: of the two bf16 values around x (truncation and the
// next one up in magnitude), the nearer in exact double arithmetic, ties to the even bit pattern.
std::uint16_t reference_bf16(float x) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
  const auto lo = static_cast<std::uint16_t>(bits >> 16);
  const auto hi = static_cast<std::uint16_t>(lo + 1);
  const double vlo = double(std::bit_cast<float>(std::uint32_t(lo) << 16));
  // The step above the largest finite bf16 goes to inf; measure it as the value 2^128 would be.
  const bool hi_is_inf = (hi & 0x7FFF) == 0x7F80;
  const double vhi = hi_is_inf ? std::copysign(std::ldexp(1.0, 128), double(x))
                               : double(std::bit_cast<float>(std::uint32_t(hi) << 16));
  const double dlo = std::abs(double(x) - vlo), dhi = std::abs(double(x) - vhi);
  if (dlo < dhi) return lo;
  if (dhi < dlo) return hi;
  return (lo & 1) ? hi : lo;
}

std::uint16_t bf16_of(std::uint32_t float_bits) { return float_to_bf16(std::bit_cast<float>(float_bits)); }

TEST(Bf16, RoundToNearestEvenCases) {
  EXPECT_EQ(bf16_of(0x3F800000), 0x3F80);  // 1.0 exact
  EXPECT_EQ(bf16_of(0x3F807FFF), 0x3F80);  // just below half an ulp: down
  EXPECT_EQ(bf16_of(0x3F808000), 0x3F80);  // exactly half, even neighbour below
  EXPECT_EQ(bf16_of(0x3F808001), 0x3F81);  // just above half: up
  EXPECT_EQ(bf16_of(0x3F818000), 0x3F82);  // exactly half, even neighbour above
  EXPECT_EQ(bf16_of(0xBF818000), 0xBF82);  // the same for negatives (magnitude rounds)
  EXPECT_EQ(bf16_of(0x3FFFFFFF), 0x4000);  // carry out of the mantissa into the exponent: 2.0
  EXPECT_EQ(bf16_of(0x00008000), 0x0000);  // subnormal tie to even (zero)
  EXPECT_EQ(bf16_of(0x00018000), 0x0002);  // subnormal tie to even (up)
  EXPECT_EQ(bf16_of(0x80000000), 0x8000);  // -0 keeps its sign
  EXPECT_EQ(bf16_of(0x7F7F7FFF), 0x7F7F);  // largest bf16 stays finite
  EXPECT_EQ(bf16_of(0x7F7FFFFF), 0x7F80);  // FLT_MAX is past the last bf16's half ulp: inf
  EXPECT_EQ(bf16_of(0xFF7FFFFF), 0xFF80);
}

TEST(Bf16, InfAndNan) {
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(float_to_bf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  // NaNs stay NaNs with their sign, including one whose payload is only in the dropped bits
  // (plain rounding would turn 0x7F800001 into inf).
  for (std::uint32_t nan : {0x7FC00000u, 0x7F800001u, 0x7FBFFFFFu, 0xFF800001u, 0xFFC00000u}) {
    const std::uint16_t b = bf16_of(nan);
    EXPECT_TRUE(std::isnan(bf16_to_float(b))) << std::hex << nan << " -> " << b;
    EXPECT_EQ(b >> 15, nan >> 31) << std::hex << nan;
  }
}

TEST(Bf16, MatchesReferenceAndRoundTrips) {
  // Every bf16 pattern widens and narrows back to itself.
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const float f = bf16_to_float(static_cast<std::uint16_t>(b));
    ASSERT_EQ(std::bit_cast<std::uint32_t>(f), b << 16);
    if (!std::isnan(f)) {
      ASSERT_EQ(float_to_bf16(f), b);
    }
  }
  // Random finite floats over the whole exponent range against the reference.
  std::mt19937 rng(7);
  for (int i = 0; i < 2000000; ++i) {
    const auto bits = static_cast<std::uint32_t>(rng());
    const float x = std::bit_cast<float>(bits);
    if (!std::isfinite(x)) continue;
    ASSERT_EQ(float_to_bf16(x), reference_bf16(x)) << std::hex << bits;
  }
}

// The bytes of a file: header length, header JSON (parsed here), data section.
struct RawFile {
  std::uint64_t n = 0;
  std::string header_text;
  json header;
  std::int64_t data_size = 0;
  std::string data;
};

RawFile parse_raw(const fs::path& p) {
  const std::string bytes = slurp(p);
  RawFile r;
  EXPECT_GE(bytes.size(), 8u);
  std::memcpy(&r.n, bytes.data(), 8);
  r.header_text = bytes.substr(8, r.n);
  r.header = json::parse(r.header_text);
  r.data = bytes.substr(8 + r.n);
  r.data_size = static_cast<std::int64_t>(r.data.size());
  return r;
}

// Checks the format rules on the raw bytes; returns the tensor names in header order.
std::vector<std::string> check_format_rules(const fs::path& p) {
  const RawFile r = parse_raw(p);
  EXPECT_EQ((8 + r.n) % 8, 0u) << p << ": data must start 8-byte aligned";
  const std::size_t json_end = r.header_text.find_last_of('}');
  EXPECT_EQ(r.header_text.find_first_not_of(' ', json_end + 1), std::string::npos) << "padding must be spaces";
  // {"format": "pt"} (what transformers expects) plus one CRC-32 per tensor of its stored bytes,
  // checked here against the independent bitwise CRC.
  EXPECT_EQ(r.header["__metadata__"]["format"], "pt");
  EXPECT_EQ(r.header["__metadata__"].size(), r.header.size());  // format + one per tensor
  for (const auto& [name, e] : r.header.items()) {
    if (name == "__metadata__") continue;
    const std::int64_t b = e["data_offsets"][0], end = e["data_offsets"][1];
    char want[16];
    std::snprintf(want, sizeof want, "%08x", reference_crc32(r.data.data() + b, std::size_t(end - b)));
    EXPECT_EQ(r.header["__metadata__"]["nexus.crc32:" + name], want) << name;
  }
  // nlohmann's json sorts keys; the data order is recovered from the offsets.
  std::vector<std::pair<std::int64_t, std::int64_t>> ranges;
  std::vector<std::string> names;
  for (const auto& [name, e] : r.header.items()) {
    if (name == "__metadata__") continue;
    const std::int64_t b = e["data_offsets"][0], end = e["data_offsets"][1];
    std::int64_t numel = 1;
    for (std::int64_t d : e["shape"]) numel *= d;
    const std::int64_t elem = e["dtype"] == "BF16" ? 2 : (e["dtype"] == "F32" ? 4 : -1);
    EXPECT_EQ(end - b, numel * elem) << name;
    ranges.push_back({b, end});
    names.push_back(name);
  }
  std::sort(ranges.begin(), ranges.end());
  std::int64_t pos = 0;
  for (const auto& [b, e] : ranges) {
    EXPECT_EQ(b, pos) << p << ": hole or overlap in data offsets";
    pos = e;
  }
  EXPECT_EQ(pos, r.data_size) << p << ": offsets must cover the data section exactly";
  // Header order is data order: the header text lists tensors with increasing offsets.
  std::vector<std::pair<std::size_t, std::int64_t>> text_order;
  for (const auto& [name, e] : r.header.items())
    if (name != "__metadata__") text_order.push_back({r.header_text.find("\"" + name + "\""), e["data_offsets"][0]});
  std::sort(text_order.begin(), text_order.end());
  for (std::size_t i = 1; i < text_order.size(); ++i) EXPECT_LT(text_order[i - 1].second, text_order[i].second);
  return names;
}

TEST(Export, Fp32TensorsExactWithBambaNamesAndShapes) {
  const SmallModel model(11);
  const auto& [c, t, p] = model;
  TempDir dir;
  const ExportResult r = export_hf(c, t, p.data(), dir.str(), ExportDtype::F32);
  EXPECT_TRUE(r.warnings.empty());
  EXPECT_TRUE(fs::exists(dir / "config.json"));
  EXPECT_TRUE(fs::exists(dir / "generation_config.json"));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));

  const std::vector<std::string> raw_names = check_format_rules(dir / "model.safetensors");
  EXPECT_EQ(raw_names.size(), t.params().size());

  const SafetensorsFile st((dir / "model.safetensors").string());
  ASSERT_EQ(st.tensors().size(), t.params().size());
  EXPECT_EQ(st.metadata().at("format"), "pt");
  std::int64_t bytes = 0;
  for (std::size_t i = 0; i < t.params().size(); ++i) {
    const ParamInfo& info = t.params()[i];
    const SafetensorsEntry& e = st.tensors()[i];
    EXPECT_EQ(e.name, info.name);  // table order
    EXPECT_EQ(e.dtype, TensorDtype::F32);
    EXPECT_EQ(std::vector<idx>(e.shape.begin(), e.shape.end()), info.shape) << info.name;
    const std::vector<float> v = st.read(info.name);
    ASSERT_EQ(v.size(), std::size_t(info.numel));
    for (idx k = 0; k < info.numel; ++k) ASSERT_EQ(v[k], p[info.offset + k]) << info.name << "[" << k << "]";
    bytes += info.numel * 4;
  }
  EXPECT_EQ(r.tensor_bytes, bytes);
  // Bamba's names and HF shapes, spelled out independently of params.cpp.
  const auto shape_of = [&](const std::string& n) {
    const SafetensorsEntry* e = st.find(n);
    EXPECT_NE(e, nullptr) << n;
    return e ? e->shape : std::vector<std::int64_t>{};
  };
  const std::int64_t conv_dim = 64 + 2 * 8, in_proj = 64 + conv_dim + 4;
  EXPECT_EQ(shape_of("model.embed_tokens.weight"), (std::vector<std::int64_t>{67, 32}));
  EXPECT_EQ(shape_of("model.layers.0.mamba.in_proj.weight"), (std::vector<std::int64_t>{in_proj, 32}));
  EXPECT_EQ(shape_of("model.layers.0.mamba.conv1d.weight"), (std::vector<std::int64_t>{conv_dim, 1, 3}));
  EXPECT_EQ(shape_of("model.layers.0.mamba.conv1d.bias"), (std::vector<std::int64_t>{conv_dim}));
  EXPECT_EQ(shape_of("model.layers.2.mamba.A_log"), (std::vector<std::int64_t>{4}));
  EXPECT_EQ(shape_of("model.layers.2.mamba.norm.weight"), (std::vector<std::int64_t>{64}));
  EXPECT_EQ(shape_of("model.layers.1.self_attn.k_proj.weight"), (std::vector<std::int64_t>{16, 32}));
  EXPECT_EQ(shape_of("model.layers.1.feed_forward.down_proj.weight"), (std::vector<std::int64_t>{32, 48}));
  EXPECT_EQ(shape_of("model.final_layernorm.weight"), (std::vector<std::int64_t>{32}));
  EXPECT_EQ(shape_of("lm_head.weight"), (std::vector<std::int64_t>{67, 32}));
}

TEST(Export, Bf16TensorsRoundedToNearestEven) {
  ModelConfig c = small_config();
  c.tie_embeddings = true;
  const ParamTable t(c);
  const std::vector<float> p = random_params(c, t, 12);
  TempDir dir;
  export_hf(c, t, p.data(), dir.str());  // bf16 is the default
  check_format_rules(dir / "model.safetensors");
  const RawFile raw = parse_raw(dir / "model.safetensors");
  EXPECT_EQ(raw.header.count("lm_head.weight"), 0u) << "tied head is not stored";
  for (const ParamInfo& info : t.params()) {
    const json& e = raw.header.at(info.name);
    EXPECT_EQ(e["dtype"], "BF16");
    const std::size_t begin = e["data_offsets"][0];
    for (idx k = 0; k < info.numel; ++k) {
      std::uint16_t b;
      std::memcpy(&b, raw.data.data() + begin + 2 * k, 2);
      ASSERT_EQ(b, reference_bf16(p[info.offset + k])) << info.name << "[" << k << "]";
    }
  }
  const SafetensorsFile st((dir / "model.safetensors").string());
  const ParamInfo& emb = t.at("model.embed_tokens.weight");
  const std::vector<float> v = st.read(emb.name);
  for (idx k = 0; k < emb.numel; ++k)
    EXPECT_LE(std::abs(v[k] - p[emb.offset + k]), std::abs(p[emb.offset + k]) * 0x1p-8f);  // half a bf16 ulp
}

TEST(Export, ConfigJsonHasEveryBambaField) {
  const SmallModel model(13);
  const auto& [c, t, p] = model;
  TempDir dir;
  export_hf(c, t, p.data(), dir.str(), ExportDtype::F32);
  const json j = json::parse(slurp(dir / "config.json"));
  EXPECT_EQ(j["model_type"], "bamba");
  EXPECT_EQ(j["architectures"], json::array({"BambaForCausalLM"}));
  EXPECT_EQ(j["attn_layer_indices"], json::array({1}));
  EXPECT_EQ(j["vocab_size"], 67);
  EXPECT_EQ(j["hidden_size"], 32);
  EXPECT_EQ(j["intermediate_size"], 48);
  EXPECT_EQ(j["num_hidden_layers"], 3);
  EXPECT_EQ(j["num_attention_heads"], 2);
  EXPECT_EQ(j["num_key_value_heads"], 1);
  EXPECT_EQ(j["head_dim"], 16);
  EXPECT_EQ(j["mamba_n_heads"], 4);  // d_inner 64 / headdim 16
  EXPECT_EQ(j["mamba_d_head"], 16);
  EXPECT_EQ(j["mamba_n_groups"], 1);
  EXPECT_EQ(j["mamba_d_state"], 8);
  EXPECT_EQ(j["mamba_d_conv"], 3);
  EXPECT_EQ(j["mamba_expand"], 2);
  EXPECT_EQ(j["mamba_chunk_size"], 8);
  EXPECT_EQ(j["mamba_conv_bias"], true);
  EXPECT_EQ(j["mamba_proj_bias"], false);
  EXPECT_EQ(j["rms_norm_eps"], 1e-6);
  EXPECT_EQ(j["rope_theta"], 5000.0);
  EXPECT_EQ(j["rope_parameters"]["rope_theta"], 5000.0);
  EXPECT_EQ(j["rope_parameters"]["rope_type"], "default");
  EXPECT_EQ(j["tie_word_embeddings"], false);
  EXPECT_EQ(j["hidden_act"], "silu");
  EXPECT_EQ(j["attention_bias"], false);
  EXPECT_EQ(j["mlp_bias"], false);
  EXPECT_EQ(j["torch_dtype"], "float32");
  EXPECT_GT(j["max_position_embeddings"].get<std::int64_t>(), 0);
  EXPECT_TRUE(j["eos_token_id"].is_null()) << "vocab 67 has no byte end-of-text";
  const json g = json::parse(slurp(dir / "generation_config.json"));
  EXPECT_TRUE(g.is_object());

  // config.json reads back to the same architecture.
  const ModelConfig back = model_config_from_bamba_json(j, "config.json");
  EXPECT_EQ(back.layer_pattern(), "MAM");
  EXPECT_EQ(back.vocab_size, c.vocab_size);
  EXPECT_EQ(back.d_model, c.d_model);
  EXPECT_EQ(back.mlp_hidden, c.mlp_hidden);
  EXPECT_EQ(back.n_heads, c.n_heads);
  EXPECT_EQ(back.n_kv_heads, c.n_kv_heads);
  EXPECT_EQ(back.head_dim, c.head_dim);
  EXPECT_EQ(back.rope_theta, c.rope_theta);
  EXPECT_EQ(back.mamba_expand, c.mamba_expand);
  EXPECT_EQ(back.mamba_headdim, c.mamba_headdim);
  EXPECT_EQ(back.mamba_ngroups, c.mamba_ngroups);
  EXPECT_EQ(back.mamba_d_state, c.mamba_d_state);
  EXPECT_EQ(back.mamba_d_conv, c.mamba_d_conv);
  EXPECT_EQ(back.mamba_chunk, c.mamba_chunk);
  EXPECT_EQ(back.norm_eps, c.norm_eps);
  EXPECT_EQ(back.tie_embeddings, c.tie_embeddings);
}

TEST(Export, ByteVocabGetsEndOfText) {
  ModelConfig c = small_config();
  c.vocab_size = 320;
  const json j = bamba_config_json(c, ExportDtype::BF16);
  EXPECT_EQ(j["eos_token_id"], 256);
  EXPECT_EQ(j["torch_dtype"], "bfloat16");
}

// mamba_ngroups > 1 is Bamba's mamba_n_groups (the gated norm is per group in both) and reads back.
TEST(Export, ExportsGroupsAndWarnsForVllm) {
  ModelConfig c = small_config();
  c.mamba_ngroups = 2;
  const json jg = bamba_config_json(c, ExportDtype::BF16);
  EXPECT_EQ(jg["mamba_n_groups"], 2);
  EXPECT_EQ(model_config_from_bamba_json(jg, "config.json").mamba_ngroups, 2);
  c = small_config();
  c.head_dim = 8;  // 2 heads * 8 != d_model 32
  std::vector<std::string> warnings;
  const json j = bamba_config_json(c, ExportDtype::BF16, &warnings);
  EXPECT_EQ(j["head_dim"], 8);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("head_dim"), std::string::npos);
}

TEST(Export, ShardsWithConsistentIndexAndStaleFilesRemoved) {
  const SmallModel model(14);
  const auto& [c, t, p] = model;
  TempDir dir;
  const std::int64_t max_bytes = 6000;
  const ExportResult r = export_hf(c, t, p.data(), dir.str(), ExportDtype::F32, max_bytes);
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  const json index = json::parse(slurp(dir / "model.safetensors.index.json"));
  std::int64_t total = 0;
  for (const ParamInfo& info : t.params()) total += info.numel * 4;
  EXPECT_EQ(index["metadata"]["total_size"], total);
  EXPECT_EQ(r.tensor_bytes, total);
  const json& wm = index["weight_map"];
  EXPECT_EQ(wm.size(), t.params().size());
  std::set<std::string> files;
  for (const auto& [name, file] : wm.items()) {
    EXPECT_NE(t.find(name), nullptr) << name;
    files.insert(file.get<std::string>());
  }
  ASSERT_GT(files.size(), 2u);
  const std::regex pattern(R"(model-(\d{5})-of-(\d{5})\.safetensors)");
  std::set<std::string> seen;
  for (const std::string& f : files) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(f, m, pattern)) << f;
    EXPECT_EQ(std::stoul(m[2]), files.size()) << f;
    const std::vector<std::string> names = check_format_rules(dir / f);
    std::int64_t bytes = 0;
    for (const std::string& n : names) {
      EXPECT_EQ(wm[n], f) << n << " is in " << f << " but the index says " << wm[n];
      EXPECT_TRUE(seen.insert(n).second) << n << " stored twice";
      bytes += t.at(n).numel * 4;
    }
    EXPECT_TRUE(bytes <= max_bytes || names.size() == 1) << f << " holds " << bytes << " bytes";
    const SafetensorsFile st((dir / f).string());
    for (const std::string& n : names) {
      const std::vector<float> v = st.read(n);
      const ParamInfo& info = t.at(n);
      for (idx k = 0; k < info.numel; ++k) ASSERT_EQ(v[k], p[info.offset + k]) << n;
    }
  }
  EXPECT_EQ(seen.size(), t.params().size());

  // The sharded folder loads back exactly.
  const LoadedModel m = load_model_files(dir.str());
  EXPECT_EQ(m.params, p);

  // Exporting one file into the same folder leaves no shard or index behind.
  export_hf(c, t, p.data(), dir.str(), ExportDtype::F32);
  for (const auto& entry : fs::directory_iterator(dir.str()))
    EXPECT_FALSE(std::regex_match(entry.path().filename().string(), pattern)) << entry.path();
  EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
  EXPECT_EQ(load_model_files(dir.str()).params, p);
}

TEST(Export, LoadModelFilesRoundTripFromExport) {
  const SmallModel model(15);
  const auto& [c, t, p] = model;
  TempDir dir;
  export_hf(c, t, p.data(), (dir / "fp32").string(), ExportDtype::F32);
  export_hf(c, t, p.data(), (dir / "bf16").string(), ExportDtype::BF16);
  const LoadedModel f = load_model_files((dir / "fp32").string());
  EXPECT_EQ(f.config.layer_pattern(), "MAM");
  EXPECT_EQ(ParamTable(f.config).total(), t.total());
  EXPECT_EQ(f.params, p);
  // A weight file or config.json stands for its folder.
  EXPECT_EQ(load_model_files((dir / "fp32" / "model.safetensors").string()).params, p);
  const LoadedModel b = load_model_files((dir / "bf16" / "config.json").string());
  ASSERT_EQ(b.params.size(), p.size());
  for (std::size_t i = 0; i < p.size(); ++i)
    ASSERT_EQ(std::bit_cast<std::uint32_t>(b.params[i]), std::uint32_t(reference_bf16(p[i])) << 16) << i;

  // The loaded model computes what the source parameters compute.
  const std::vector<std::int32_t> tokens = {1, 5, 9, 66, 0, 3, 3, 7, 12, 40, 2};
  std::vector<std::int32_t> targets(tokens.begin() + 1, tokens.end());
  targets.push_back(-1);
  Model<float> a(c, {1, idx(tokens.size())}), l(f.config, {1, idx(tokens.size())});
  std::copy(p.begin(), p.end(), a.params());
  std::copy(f.params.begin(), f.params.end(), l.params());
  EXPECT_EQ(a.forward(tokens.data(), targets.data()).sum, l.forward(tokens.data(), targets.data()).sum);
}

TEST(Export, LoadModelFilesRefusesMismatches) {
  const SmallModel model(16);
  const auto& [c, t, p] = model;
  TempDir dir;
  export_hf(c, t, p.data(), dir.str(), ExportDtype::F32);
  const auto expect_error = [&](const std::string& needle) {
    try {
      load_model_files(dir.str());
      ADD_FAILURE() << "loaded; expected an error mentioning " << needle;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  json j = json::parse(slurp(dir / "config.json"));
  json changed = j;
  changed["intermediate_size"] = 40;
  std::ofstream(dir / "config.json") << changed.dump();
  expect_error("feed_forward.gate_proj.weight");  // wrong shape, named
  changed = j;
  changed["num_hidden_layers"] = 2;
  std::ofstream(dir / "config.json") << changed.dump();
  expect_error("model.layers.2.");  // tensors the described model does not have
  changed = j;
  changed["hidden_act"] = "gelu";
  std::ofstream(dir / "config.json") << changed.dump();
  expect_error("hidden_act");
  changed = j;
  changed["model_type"] = "llama";
  std::ofstream(dir / "config.json") << changed.dump();
  expect_error("model_type");
  std::ofstream(dir / "config.json") << j.dump();
  fs::remove(dir / "model.safetensors");
  expect_error("model.safetensors");

  TempDir empty;
  try {
    load_model_files(empty.str());
    ADD_FAILURE() << "an empty folder loaded";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(empty.str()), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_model_files((empty / "missing").string()), ExportError);
}

TEST(Export, LoadModelFilesFromCheckpoint) {
  RunOptions o;
  o.model = small_config();
  const ParamTable t(o.model);
  const std::vector<float> p = random_params(o.model, t, 17);
  const std::vector<float> zeros(p.size(), 0.0f);
  TempDir dir;
  CheckpointMeta meta;
  meta.step = 42;
  meta.config_ini = to_ini(o);
  const std::string file = save_checkpoint(dir.str(), meta, t, p.data(), zeros.data(), zeros.data(), 0);
  for (const std::string& path : {file, dir.str()}) {
    const LoadedModel m = load_model_files(path);
    EXPECT_EQ(m.config.layer_pattern(), "MAM") << path;
    EXPECT_EQ(m.params, p) << path;
    EXPECT_NE(m.description.find("step 42"), std::string::npos) << m.description;
  }
  // Checkpoint -> export -> load: the same parameters.
  const std::string out_dir = (dir / "hf").string();
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(run_command(command_export, {"export", file, "--out", out_dir, "--dtype=fp32"}), 0);
  const std::string printed = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(printed.find("config.json"), std::string::npos) << printed;
  EXPECT_EQ(load_model_files(out_dir).params, p);
}


void expect_rejected(const fs::path& p, const std::string& needle) {
  try {
    SafetensorsFile st(p.string());
    ADD_FAILURE() << p << " accepted; expected an error mentioning " << needle;
  } catch (const SafetensorsError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(p.string()), std::string::npos) << "error does not name the file: " << what;
    EXPECT_NE(what.find(needle), std::string::npos) << what;
  }
}

TEST(Safetensors, RejectsCorruptAndTruncatedFiles) {
  TempDir dir;
  // A valid file, then damaged copies.
  const std::vector<float> a = {1, 2, 3}, b = {4, 5};
  const fs::path good = dir / "good.safetensors";
  write_safetensors(good.string(), {{"a", {3}, a.data(), TensorDtype::F32}, {"b", {2}, b.data(), TensorDtype::BF16}});
  {
    const SafetensorsFile st(good.string());
    EXPECT_EQ(st.read("a"), a);
    EXPECT_EQ(st.read("b"), b);
    EXPECT_EQ(st.data_start() % 8, 0);
  }
  const std::string bytes = slurp(good);

  const fs::path truncated = dir / "truncated.safetensors";
  std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() - 1);
  expect_rejected(truncated, "truncated");
  const fs::path stub = dir / "stub.safetensors";
  std::ofstream(stub, std::ios::binary) << bytes.substr(0, 5);
  expect_rejected(stub, "truncated");
  const fs::path cut_header = dir / "cut_header.safetensors";
  std::ofstream(cut_header, std::ios::binary) << bytes.substr(0, 20);
  expect_rejected(cut_header, "header length");
  const fs::path trailing = dir / "trailing.safetensors";
  std::ofstream(trailing, std::ios::binary) << bytes << "xx";
  expect_rejected(trailing, "trailing");
  const fs::path garbage = dir / "garbage.safetensors";
  std::string g = bytes;
  g[8] = '#';  // the header's opening brace
  std::ofstream(garbage, std::ios::binary) << g;
  expect_rejected(garbage, "JSON");

  write_raw(dir / "hole.safetensors",
            R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}})",
            24);
  expect_rejected(dir / "hole.safetensors", "tensor y");
  write_raw(dir / "overlap.safetensors",
            R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            12);
  expect_rejected(dir / "overlap.safetensors", "overlaps");
  write_raw(dir / "size.safetensors", R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8);
  expect_rejected(dir / "size.safetensors", "tensor x");
  write_raw(dir / "dtype.safetensors", R"({"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4);
  expect_rejected(dir / "dtype.safetensors", "F16");
  write_raw(dir / "beyond.safetensors", R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8);
  expect_rejected(dir / "beyond.safetensors", "tensor x");
  write_raw(dir / "notobject.safetensors", R"([1,2])", 0);
  expect_rejected(dir / "notobject.safetensors", "object");
  // The reader itself does not insist on padding or metadata: an unpadded, metadata-free file
  // with a scalar is valid safetensors.
  write_raw(dir / "scalar.safetensors", R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})", 4, false);
  EXPECT_EQ(SafetensorsFile((dir / "scalar.safetensors").string()).read("s"), std::vector<float>{0.0f});
  EXPECT_THROW(write_safetensors((dir / "dup.safetensors").string(),
                                 {{"a", {3}, a.data(), TensorDtype::F32}, {"a", {3}, a.data(), TensorDtype::F32}}),
               SafetensorsError);
}

TEST(Npy, HeaderAndData) {
  TempDir dir;
  const std::vector<float> v = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -0.5f};
  write_npy((dir / "x.npy").string(), v.data(), {2, 3});
  const std::string bytes = slurp(dir / "x.npy");
  ASSERT_EQ(bytes.substr(0, 6), "\x93NUMPY");
  EXPECT_EQ(bytes[6], 1);
  EXPECT_EQ(bytes[7], 0);
  const std::size_t hlen = std::size_t(std::uint8_t(bytes[8])) | (std::size_t(std::uint8_t(bytes[9])) << 8);
  EXPECT_EQ((10 + hlen) % 64, 0u);
  const std::string header = bytes.substr(10, hlen);
  EXPECT_NE(header.find("'descr': '<f4'"), std::string::npos) << header;
  EXPECT_NE(header.find("'fortran_order': False"), std::string::npos) << header;
  EXPECT_NE(header.find("'shape': (2, 3)"), std::string::npos) << header;
  EXPECT_EQ(header.back(), '\n');
  ASSERT_EQ(bytes.size(), 10 + hlen + v.size() * 4);
  std::vector<float> back(v.size());
  std::memcpy(back.data(), bytes.data() + 10 + hlen, v.size() * 4);
  EXPECT_EQ(back, v);
}

TEST(Commands, EvalWritesLogitsOfTheSequence) {
  const SmallModel model(18);
  const auto& [c, t, p] = model;
  TempDir dir;
  export_hf(c, t, p.data(), (dir / "m").string(), ExportDtype::F32);
  const std::string npy = (dir / "logits.npy").string();
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(run_command(command_eval, {"eval", "--model", (dir / "m").string(), "--tokens", "3, 1,4,1,5,9,2,6",
                                       "--logits-out", npy}),
            0);
  const std::string printed = ::testing::internal::GetCapturedStdout();

  const std::vector<std::int32_t> tokens = {3, 1, 4, 1, 5, 9, 2, 6};
  const std::vector<std::int32_t> targets = {1, 4, 1, 5, 9, 2, 6, -1};
  Model<float> m(c, {1, 8});
  std::copy(p.begin(), p.end(), m.params());
  const LossSum loss = m.forward(tokens.data(), targets.data());
  char expect[64];
  std::snprintf(expect, sizeof expect, "loss: %.6f", loss.sum / 7.0);
  EXPECT_NE(printed.find(expect), std::string::npos) << printed << "\nexpected " << expect;
  const std::string bytes = slurp(npy);
  const std::size_t hlen = std::size_t(std::uint8_t(bytes[8])) | (std::size_t(std::uint8_t(bytes[9])) << 8);
  EXPECT_NE(bytes.find("'shape': (8, 67)"), std::string::npos);
  ASSERT_EQ(bytes.size(), 10 + hlen + 8 * 67 * 4);
  EXPECT_EQ(std::memcmp(bytes.data() + 10 + hlen, m.logits(), 8 * 67 * 4), 0);
}

TEST(Commands, UsageErrorsAreConfigErrors) {
  const auto run = run_command;
  EXPECT_THROW(run(command_export, {"export", "x.h5"}), ConfigError);               // no --out
  EXPECT_THROW(run(command_export, {"export", "--out", "d"}), ConfigError);         // no checkpoint
  EXPECT_THROW(run(command_export, {"export", "a", "--out", "d", "--dtype", "fp8"}), ConfigError);
  EXPECT_THROW(run(command_export, {"export", "a", "--out", "d", "--max-shard-bytes", "1k"}), ConfigError);
  EXPECT_THROW(run(command_export, {"export", "a", "--out", "d", "--bogus"}), ConfigError);
  EXPECT_THROW(run(command_eval, {"eval", "--tokens", "1,2"}), ConfigError);         // no --model
  EXPECT_THROW(run(command_eval, {"eval", "--model", "m"}), ConfigError);            // no sequence
  EXPECT_THROW(run(command_eval, {"eval", "--model", "m", "--tokens", "1", "--text", "a"}), ConfigError);
  EXPECT_THROW(run(command_eval, {"eval", "--model"}), ConfigError);  // option without its value
  EXPECT_THROW(run(command_eval, {"eval", "--model", "m", "--tokens", "1,x"}), ConfigError);
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(run(command_export, {"export", "-h"}), 0);
  EXPECT_NE(::testing::internal::GetCapturedStdout().find("Usage: nexus export"), std::string::npos);
}

}  // namespace
}  // namespace nexus
