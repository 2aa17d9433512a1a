// Attention neighborhoods across export: a non-full neighborhood is refused unless --allow-lossy
// (transformers' Bamba attends to every earlier position), nothing is written when refused, and
// the neighborhood travels in config.json under "nexus" and comes back when the folder is loaded.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/params.h"
#include "support/model_configs.h"
#include "trainer/export.h"
#include "support/temp_dir.h"

namespace nexus {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::TempDir;

ModelConfig config(const std::string& neighborhood) {
  ModelConfig c = test::small_hybrid({.vocab_size = 40, .d_model = 32, .pattern = "MAMA", .mlp_hidden = 48,
                                      .n_heads = 2, .n_kv_heads = 1, .head_dim = 16});
  c.attention_neighborhood = neighborhood;
  return c;
}

json read_json(const fs::path& p) {
  std::ifstream f(p);
  return json::parse(f);
}

TEST(ExportNeighborhood, NonFullIsRefusedWithoutAllowLossyAndNothingIsWritten) {
  const ModelConfig c = config("sliding:64,log");
  const ParamTable t(c);
  const std::vector<float> p(static_cast<std::size_t>(t.total()), 0.5f);
  TempDir dir;
  const std::string out = (dir / "hf").string();
  try {
    export_hf(c, t, p.data(), out);
    FAIL() << "expected ExportError";
  } catch (const ExportError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.attention_neighborhood = \"sliding:64,log\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("--allow-lossy"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(out));
}

TEST(ExportNeighborhood, AllowLossyWritesItUnderTheNexusKeyAndLoadingRestoresIt) {
  const ModelConfig c = config("sink:4+sliding:64,block:128");
  const ParamTable t(c);
  std::vector<float> p(static_cast<std::size_t>(t.total()));
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = float(i % 97) / 97.0f;
  TempDir dir;
  const ExportResult r = export_hf(c, t, p.data(), dir.str(), ExportDtype::F32, kDefaultMaxShardBytes, true);
  bool warned = false;
  for (const std::string& w : r.warnings) warned = warned || w.find("transformers") != std::string::npos;
  EXPECT_TRUE(warned);
  const json j = read_json(dir / "config.json");
  EXPECT_EQ(j.at("nexus").at("attention_neighborhood"), "sink:4+sliding:64,block:128");
  const LoadedModel m = load_model_files(dir.str());
  EXPECT_EQ(m.config.attention_neighborhood, "sink:4+sliding:64,block:128");
  EXPECT_EQ(m.config.neighborhood_of(3).kind, Neighborhood::kBlock);
  EXPECT_EQ(m.params, p);
}

TEST(ExportNeighborhood, FullIsWrittenTooAndAConfigWithoutTheKeyIsFull) {
  const ModelConfig c = config("full");
  json j = bamba_config_json(c, ExportDtype::F32);
  EXPECT_EQ(j.at("nexus").at("attention_neighborhood"), "full");
  j.erase("nexus");  // transformers' own config.json
  EXPECT_EQ(model_config_from_bamba_json(j, "config.json").attention_neighborhood, "full");
}

TEST(ExportNeighborhood, ABadNeighborhoodInConfigJsonIsNamed) {
  json j = bamba_config_json(config("full"), ExportDtype::F32);
  j["nexus"]["attention_neighborhood"] = "sliding:0";
  try {
    (void)model_config_from_bamba_json(j, "dir/config.json");
    FAIL() << "expected ExportError";
  } catch (const ExportError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("dir/config.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("sliding:0"), std::string::npos) << msg;
  }
  j["nexus"]["attention_neighborhood"] = 5;
  EXPECT_THROW((void)model_config_from_bamba_json(j, "config.json"), ExportError);
  j["nexus"] = "sliding:4";
  EXPECT_THROW((void)model_config_from_bamba_json(j, "config.json"), ExportError);
}

}  // namespace
}  // namespace nexus
