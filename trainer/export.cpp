#include "trainer/export.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "data/byte_tokenizer.h"
#include "model/memory_need.h"
#include "trainer/checkpoint.h"
#include "trainer/options.h"
#include "trainer/safetensors.h"

namespace nexus {

namespace fs = std::filesystem;
using ordered_json = nlohmann::ordered_json;

namespace {

const char* kIndexName = "model.safetensors.index.json";
const char* kSingleName = "model.safetensors";

std::string shard_name(std::size_t i, std::size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

bool is_weight_file_name(const std::string& name) {
  static const std::regex shard(R"(model-\d{5}-of-\d{5}\.safetensors)");
  return name == kSingleName || name == kIndexName || std::regex_match(name, shard);
}

// Text files go through a temporary name too, so a reader never sees half a config.json.
void write_text_file(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw ExportError("cannot write " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw ExportError("cannot rename " + tmp.string() + " to " + path.string() + ": " + ec.message());
}

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw ExportError("cannot open " + path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json parse_json_file(const fs::path& path) {
  try {
    return nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw ExportError(path.string() + " is not valid JSON: " + e.what());
  }
}

std::string shape_string(const std::vector<idx>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// BambaConfig fields read back: absent keys take BambaConfig's defaults, because transformers'
// save_pretrained writes only the fields that differ from them.
struct JsonReader {
  const nlohmann::json& j;
  const std::string& origin;

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw ExportError(origin + ": " + key + " " + what);
  }
  const nlohmann::json* get(const std::string& key) const {
    const auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  idx integer(const std::string& key, idx fallback) const {
    const nlohmann::json* v = get(key);
    if (!v) return fallback;
    if (v->is_number_integer()) return v->get<idx>();
    // Some writers store integral sizes as 2.0.
    if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>()) return static_cast<idx>(v->get<double>());
    fail(key, "= " + v->dump() + " is not an integer");
  }
  double number(const std::string& key, double fallback) const {
    const nlohmann::json* v = get(key);
    if (!v) return fallback;
    if (!v->is_number()) fail(key, "= " + v->dump() + " is not a number");
    return v->get<double>();
  }
  // A size read into `field`: an integer within the field's bound (kModelSizeBounds), named by its
  // config.json key, checked before anything is computed from it.
  idx size(const std::string& key, idx fallback, idx ModelConfig::*field) const {
    const idx v = integer(key, fallback);
    for (const ModelSizeBound& b : kModelSizeBounds)
      if (b.field == field && (v < 1 || v > b.max))
        fail(key, "= " + std::to_string(v) + " is out of range: expected 1 to " + std::to_string(b.max) + " (" + b.key + ")");
    return v;
  }
  bool boolean(const std::string& key, bool fallback) const {
    const nlohmann::json* v = get(key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(key, "= " + v->dump() + " is not true or false");
    return v->get<bool>();
  }
  void require_bool(const std::string& key, bool fallback, bool supported, const std::string& why) const {
    if (boolean(key, fallback) != supported) fail(key, "= " + std::string(supported ? "false" : "true") + " is not supported: " + why);
  }
};

}  // namespace

ExportDtype parse_export_dtype(const std::string& text) {
  if (text == "bf16" || text == "bfloat16") return ExportDtype::BF16;
  if (text == "fp32" || text == "f32" || text == "float32") return ExportDtype::F32;
  throw ExportError("--dtype " + text + " is not bf16 or fp32");
}

nlohmann::ordered_json bamba_config_json(const ModelConfig& c, ExportDtype dtype, std::vector<std::string>* warnings,
                                         bool allow_lossy) {
  c.validate();
  bool all_full = true;
  for (const Neighborhood& n : c.layer_neighborhoods()) all_full = all_full && n.is_full();
  if (!all_full && !allow_lossy)
    throw ExportError("cannot export: model.attention_neighborhood = \"" + c.attention_neighborhood +
                      "\" restricts which positions attention reads, which transformers' BambaForCausalLM cannot "
                      "express (it attends to every earlier position), so it would compute different logits; pass "
                      "--allow-lossy to export anyway (the neighborhood is kept in config.json under "
                      "\"nexus\" for nexus eval/generate)");
  if (!all_full && warnings)
    warnings->push_back("model.attention_neighborhood = \"" + c.attention_neighborhood +
                        "\" is kept in config.json under \"nexus\" for nexus eval/generate, but transformers and "
                        "vLLM ignore it: they attend to every earlier position and their logits will differ");
  // BambaConfig's own checks, which it makes even when no layer uses them.
  if (c.n_heads <= 0 || c.n_kv_heads <= 0 || c.head_dim <= 0 || c.n_heads % c.n_kv_heads != 0)
    throw ExportError("cannot export: BambaConfig needs positive attention sizes with num_attention_heads a multiple "
                      "of num_key_value_heads, got model.n_heads = " + std::to_string(c.n_heads) +
                      ", model.n_kv_heads = " + std::to_string(c.n_kv_heads) + ", model.head_dim = " +
                      std::to_string(c.head_dim));
  if (c.mamba_expand <= 0 || c.mamba_headdim <= 0 || c.d_inner() % c.mamba_headdim != 0)
    throw ExportError("cannot export: BambaConfig needs mamba_n_heads * mamba_d_head = mamba_expand * hidden_size, "
                      "got model.mamba_expand = " + std::to_string(c.mamba_expand) + ", model.mamba_headdim = " +
                      std::to_string(c.mamba_headdim));
  if (warnings && c.head_dim * c.n_heads != c.d_model)
    warnings->push_back("head_dim = " + std::to_string(c.head_dim) + " differs from hidden_size / num_attention_heads = " +
                        std::to_string(c.d_model / c.n_heads) +
                        ": transformers reads head_dim from config.json, but vLLM's Bamba derives it from hidden_size "
                        "and will not load this model");

  std::vector<idx> attn;
  for (idx i = 0; i < c.n_layers; ++i)
    if (c.is_attention(i)) attn.push_back(i);
  const char* torch_dtype = dtype == ExportDtype::BF16 ? "bfloat16" : "float32";
  ordered_json j;
  j["architectures"] = {"BambaForCausalLM"};
  j["model_type"] = "bamba";
  j["vocab_size"] = c.vocab_size;
  j["tie_word_embeddings"] = c.tie_embeddings;
  j["hidden_size"] = c.d_model;
  j["intermediate_size"] = c.mlp_hidden;
  j["num_hidden_layers"] = c.n_layers;
  j["attn_layer_indices"] = attn;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["mlp_bias"] = false;
  j["rms_norm_eps"] = c.norm_eps;
  j["initializer_range"] = c.init_std;
  j["max_position_embeddings"] = kExportMaxPositions;
  // transformers < 5 reads rope_theta; 5 reads rope_parameters (and folds a top-level rope_theta
  // into it). partial_rotary_factor is fixed at 0.5 by BambaConfig; stated for readers.
  j["rope_theta"] = c.rope_theta;
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", c.rope_theta}, {"partial_rotary_factor", 0.5}};
  j["mamba_n_heads"] = c.mamba_heads();
  j["mamba_d_head"] = c.mamba_headdim;
  j["mamba_n_groups"] = c.mamba_ngroups;
  j["mamba_d_state"] = c.mamba_d_state;
  j["mamba_d_conv"] = c.mamba_d_conv;
  j["mamba_expand"] = c.mamba_expand;
  j["mamba_chunk_size"] = c.mamba_chunk;
  j["mamba_conv_bias"] = true;
  j["mamba_proj_bias"] = false;
  j["z_loss_coefficient"] = 0.0;
  j["use_cache"] = true;
  j["num_logits_to_keep"] = 1;
  // No padding row: BambaConfig's default pad_token_id = 0 would be a real token for us.
  j["pad_token_id"] = nullptr;
  j["bos_token_id"] = nullptr;
  if (c.vocab_size >= kByteVocabSize)
    j["eos_token_id"] = kByteEot;  // the byte tokenizer's end-of-text
  else
    j["eos_token_id"] = nullptr;
  j["torch_dtype"] = torch_dtype;  // transformers < 5
  j["dtype"] = torch_dtype;        // transformers >= 5
  j["nexus"] = {{"attention_neighborhood", c.attention_neighborhood}};  // ignored by transformers
  return j;
}

ModelConfig model_config_from_bamba_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object()) throw ExportError(origin + " is not a JSON object");
  const JsonReader r{j, origin};
  const nlohmann::json* type = r.get("model_type");
  if (!type || *type != "bamba")
    throw ExportError(origin + ": model_type is " + (type ? type->dump() : std::string("missing")) +
                      ", expected \"bamba\" (BambaForCausalLM)");
  if (const nlohmann::json* act = r.get("hidden_act"); act && *act != "silu")
    r.fail("hidden_act", "= " + act->dump() + " is not supported (only \"silu\")");
  r.require_bool("mamba_conv_bias", true, true, "Nexus' conv1d always has a bias");
  r.require_bool("mamba_proj_bias", false, false, "Nexus' in_proj/out_proj have no bias");
  r.require_bool("attention_bias", false, false, "Nexus' attention projections have no bias");
  r.require_bool("mlp_bias", false, false, "Nexus' MLP has no bias");

  ModelConfig c;
  c.vocab_size = r.size("vocab_size", 128000, &ModelConfig::vocab_size);
  c.tie_embeddings = r.boolean("tie_word_embeddings", false);
  c.d_model = r.size("hidden_size", 4096, &ModelConfig::d_model);
  c.mlp_hidden = r.size("intermediate_size", 14336, &ModelConfig::mlp_hidden);
  c.n_layers = r.size("num_hidden_layers", 32, &ModelConfig::n_layers);
  c.n_heads = r.size("num_attention_heads", 32, &ModelConfig::n_heads);
  c.n_kv_heads = r.size("num_key_value_heads", c.n_heads, &ModelConfig::n_kv_heads);
  c.head_dim = r.size("head_dim", c.d_model / c.n_heads, &ModelConfig::head_dim);
  c.norm_eps = r.number("rms_norm_eps", 1e-5);
  c.init_std = r.number("initializer_range", 0.02);

  c.rope_theta = r.number("rope_theta", 10000.0);
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const nlohmann::json* rope = r.get(key);
    if (!rope) continue;
    if (!rope->is_object()) r.fail(key, "= " + rope->dump() + " is not an object");
    const JsonReader rr{*rope, origin};
    for (const char* type_key : {"rope_type", "type"})
      if (const nlohmann::json* t = rr.get(type_key); t && *t != "default")
        r.fail(key, "has " + std::string(type_key) + " = " + t->dump() + "; only \"default\" RoPE is supported");
    c.rope_theta = rr.number("rope_theta", c.rope_theta);
    if (rr.number("partial_rotary_factor", 0.5) != 0.5)
      r.fail(key, "has partial_rotary_factor = " + rope->at("partial_rotary_factor").dump() + "; Bamba fixes 0.5");
  }

  c.mamba_expand = r.size("mamba_expand", 2, &ModelConfig::mamba_expand);
  // At most d_inner heads (each at least one channel wide); d_inner is bounded by its factors.
  const idx mamba_heads = r.integer("mamba_n_heads", 128);
  if (mamba_heads <= 0 || mamba_heads > c.mamba_expand * c.d_model)
    r.fail("mamba_n_heads", "= " + std::to_string(mamba_heads) + " is out of range: expected 1 to mamba_expand * hidden_size = " +
                                std::to_string(c.mamba_expand * c.d_model));
  const nlohmann::json* d_head = r.get("mamba_d_head");
  c.mamba_headdim = d_head && !(d_head->is_string() && *d_head == "auto")
                        ? r.size("mamba_d_head", 0, &ModelConfig::mamba_headdim)
                        : c.mamba_expand * c.d_model / mamba_heads;
  if (mamba_heads * c.mamba_headdim != c.mamba_expand * c.d_model)
    r.fail("mamba_n_heads", "= " + std::to_string(mamba_heads) + " times mamba_d_head = " + std::to_string(c.mamba_headdim) +
                                " is not mamba_expand * hidden_size = " + std::to_string(c.mamba_expand * c.d_model));
  c.mamba_ngroups = r.size("mamba_n_groups", 1, &ModelConfig::mamba_ngroups);
  c.mamba_d_state = r.size("mamba_d_state", 256, &ModelConfig::mamba_d_state);
  c.mamba_d_conv = r.size("mamba_d_conv", 4, &ModelConfig::mamba_d_conv);
  c.mamba_chunk = r.size("mamba_chunk_size", 256, &ModelConfig::mamba_chunk);

  c.pattern.assign(static_cast<std::size_t>(c.n_layers), 'M');
  if (const nlohmann::json* attn = r.get("attn_layer_indices")) {
    if (!attn->is_array()) r.fail("attn_layer_indices", "= " + attn->dump() + " is not a list");
    for (const auto& v : *attn) {
      if (!v.is_number_integer() || v.get<idx>() < 0 || v.get<idx>() >= c.n_layers)
        r.fail("attn_layer_indices", "has " + v.dump() + ", not a layer index below num_hidden_layers = " +
                                         std::to_string(c.n_layers));
      c.pattern[static_cast<std::size_t>(v.get<idx>())] = 'A';
    }
  }
  if (const nlohmann::json* nexus = r.get("nexus")) {
    if (!nexus->is_object()) r.fail("nexus", "= " + nexus->dump() + " is not an object");
    if (const auto it = nexus->find("attention_neighborhood"); it != nexus->end()) {
      if (!it->is_string())
        r.fail("nexus", "has attention_neighborhood = " + it->dump() + ", not a string such as \"sliding:512\"");
      c.attention_neighborhood = it->get<std::string>();
    }
  }
  try {
    c.validate();
  } catch (const ConfigError& e) {
    throw ExportError(origin + ": " + e.what());
  }
  return c;
}

ExportResult export_hf(const ModelConfig& config, const ParamTable& table, const float* params,
                       const std::string& out_dir, ExportDtype dtype, std::int64_t max_shard_bytes, bool allow_lossy) {
  ExportResult result;
  const ordered_json cfg = bamba_config_json(config, dtype, &result.warnings, allow_lossy);
  if (ParamTable(config).total() != table.total())
    throw ExportError("export: the parameter table (" + std::to_string(table.total()) +
                      " values) does not belong to this model config (" + std::to_string(ParamTable(config).total()) + ")");
  if (max_shard_bytes <= 0) throw ExportError("--max-shard-bytes " + std::to_string(max_shard_bytes) + " must be positive");
  const TensorDtype tdtype = dtype == ExportDtype::BF16 ? TensorDtype::BF16 : TensorDtype::F32;

  // Greedy shards in table order, as transformers' save_pretrained does: a tensor that would
  // overflow the current shard starts the next one; a tensor alone larger than the limit gets a
  // shard of its own.
  std::vector<std::vector<TensorToWrite>> shards(1);
  std::int64_t shard_bytes = 0;
  for (const ParamInfo& p : table.params()) {
    TensorToWrite t{p.name, std::vector<std::int64_t>(p.shape.begin(), p.shape.end()), params + p.offset, tdtype};
    const std::int64_t bytes = tensor_bytes(t.shape, tdtype);
    if (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(std::move(t));
    shard_bytes += bytes;
    result.tensor_bytes += bytes;
    idx bad = 0;
    for (idx i = 0; i < p.numel; ++i) bad += std::isfinite(params[p.offset + i]) ? 0 : 1;
    if (bad) result.warnings.push_back(p.name + " has " + std::to_string(bad) + " non-finite values");
  }

  const fs::path dir(out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) throw ExportError("cannot create the export folder " + out_dir + ": " + ec.message());

  std::set<std::string> written;
  auto add = [&](const std::string& name) {
    written.insert(name);
    result.files.push_back((dir / name).string());
  };
  write_text_file(dir / "config.json", cfg.dump(2) + "\n");
  add("config.json");
  ordered_json weight_map = ordered_json::object();
  for (std::size_t s = 0; s < shards.size(); ++s) {
    const std::string name = shards.size() == 1 ? kSingleName : shard_name(s, shards.size());
    write_safetensors((dir / name).string(), shards[s]);
    for (const TensorToWrite& t : shards[s]) weight_map[t.name] = name;
    add(name);
  }
  if (shards.size() > 1) {
    const ordered_json index = {{"metadata", {{"total_size", result.tensor_bytes}}}, {"weight_map", weight_map}};
    write_text_file(dir / kIndexName, index.dump(2) + "\n");
    add(kIndexName);
  }
  ordered_json gen = {{"_from_model_config", true}};
  if (!cfg["eos_token_id"].is_null()) {
    gen["eos_token_id"] = cfg["eos_token_id"];
    gen["pad_token_id"] = cfg["eos_token_id"];
  }
  write_text_file(dir / "generation_config.json", gen.dump(2) + "\n");
  add("generation_config.json");

  // A folder must hold one model: drop weight files of an earlier export with another layout.
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && is_weight_file_name(name) && !written.count(name)) fs::remove(entry.path(), ec);
  }
  return result;
}

namespace {

// A weight file that verifies but holds NaN or inf (a bad export, a diverged run) would make every
// output NaN: refuse it at load, naming the tensor and the first bad element.
void require_finite(const std::string& file, const ParamInfo& p, const float* params) {
  const float* w = params + p.offset;
  for (idx i = 0; i < p.numel; ++i)
    if (!std::isfinite(w[i]))
      throw ExportError(file + ": tensor " + p.name + " has a non-finite value (" + std::to_string(w[i]) + ") at element " +
                        std::to_string(i) + " of " + std::to_string(p.numel) + "; refusing to load it");
}

LoadedModel load_export_dir(const fs::path& dir) {
  const fs::path config_path = dir / "config.json";
  LoadedModel m;
  m.config = model_config_from_bamba_json(parse_json_file(config_path), config_path.string());
  const ParamTable table(m.config);

  // name -> file holding it
  std::map<std::string, std::string> where;
  std::vector<std::string> files;
  if (fs::exists(dir / kSingleName)) {
    files.push_back(kSingleName);
  } else if (fs::exists(dir / kIndexName)) {
    const fs::path index_path = dir / kIndexName;
    const nlohmann::json index = parse_json_file(index_path);
    const auto wm = index.find("weight_map");
    if (wm == index.end() || !wm->is_object()) throw ExportError(index_path.string() + " has no \"weight_map\" object");
    std::set<std::string> seen;
    for (const auto& [name, file] : wm->items()) {
      if (!file.is_string()) throw ExportError(index_path.string() + ": weight_map entry " + name + " is not a file name");
      where[name] = file.get<std::string>();
      if (seen.insert(file.get<std::string>()).second) files.push_back(file.get<std::string>());
    }
  } else {
    throw ExportError("export folder " + dir.string() + " has neither " + kSingleName + " nor " + kIndexName);
  }
  std::map<std::string, SafetensorsFile> open;
  for (const std::string& f : files) open.emplace(f, SafetensorsFile((dir / f).string()));

  // Every tensor the config implies must be in the files' headers with its shape before the
  // weights are allocated: a config.json that disagrees with the files (e.g. only
  // {"model_type": "bamba"}, whose defaults describe a 9B model) is refused without allocating.
  std::set<std::string> expected;
  std::vector<const SafetensorsFile*> holder;
  for (const ParamInfo& p : table.params()) {
    expected.insert(p.name);
    const std::string file = files.size() == 1 && where.empty() ? files[0] : where.count(p.name) ? where[p.name] : "";
    if (file.empty())
      throw ExportError((dir / kIndexName).string() + " has no entry for tensor " + p.name);
    const auto it = open.find(file);
    if (it == open.end()) throw ExportError((dir / kIndexName).string() + " maps " + p.name + " to " + file + ", not a listed file");
    const SafetensorsFile& st = it->second;
    const SafetensorsEntry* e = st.find(p.name);
    if (!e) throw ExportError(st.path() + " has no tensor " + p.name + " (the config.json describes a model that has it)");
    const std::vector<idx> shape(e->shape.begin(), e->shape.end());
    if (shape != p.shape)
      throw ExportError(st.path() + ": tensor " + p.name + " has shape " + shape_string(shape) + ", config.json implies " +
                        shape_string(p.shape));
    holder.push_back(&st);
  }
  for (const auto& [f, st] : open)
    for (const SafetensorsEntry& e : st.tensors()) {
      // transformers may store the tied head alongside the embedding; it is the same tensor.
      if (expected.count(e.name) || (m.config.tie_embeddings && e.name == "lm_head.weight")) continue;
      throw ExportError(st.path() + " has tensor " + e.name + ", which the model described by config.json does not have");
    }

  require_memory("loading " + dir.string(), weights_memory_need(m.config));
  m.params.assign(static_cast<std::size_t>(table.total()), 0.0f);
  for (std::size_t i = 0; i < table.params().size(); ++i) {
    const ParamInfo& p = table.params()[i];
    holder[i]->read(p.name, m.params.data() + p.offset);  // verifies the tensor's checksum when stored
    require_finite(holder[i]->path(), p, m.params.data());
  }
  m.description = "export " + dir.string();
  return m;
}

LoadedModel load_checkpoint_file(const std::string& file) {
  const CheckpointMeta meta = read_checkpoint_meta(file);
  LoadedModel m;
  m.config = parse_ini(meta.config_ini, file + " (stored config)").model;
  const ParamTable table(m.config);
  const auto n = static_cast<std::size_t>(table.total());
  require_memory("loading " + file, weights_memory_need(m.config));
  m.params.assign(n, 0.0f);
  // Null optimizer buffers: load_checkpoint still verifies those tensors' checksums but keeps
  // only the weights, so a model needs 1x its size in memory, not 3x.
  load_checkpoint(file, m.config, table, m.params.data(), nullptr, nullptr);
  for (const ParamInfo& p : table.params()) require_finite(file, p, m.params.data());
  m.description = "checkpoint " + file + " (step " + std::to_string(meta.step) + ")";
  return m;
}

}  // namespace

LoadedModel load_model_files(const std::string& path) {
  const fs::path p(path);
  std::error_code ec;
  if (!fs::exists(p, ec)) throw ExportError("model path " + path + " does not exist");
  if (fs::is_directory(p)) {
    if (fs::exists(p / "config.json")) return load_export_dir(p);
    std::vector<std::string> notes;
    const std::string file = resolve_checkpoint(path, path, notes);
    if (file.empty())
      throw ExportError(path + " is neither an export folder (no config.json) nor a checkpoint directory (no step_*.h5)");
    LoadedModel m = load_checkpoint_file(file);
    for (const std::string& note : notes) m.description += "\n  note: " + note;
    return m;
  }
  // config.json or a weight file of an export stands for its folder.
  const std::string name = p.filename().string();
  if (name == "config.json" || is_weight_file_name(name)) return load_export_dir(p.parent_path().empty() ? "." : p.parent_path());
  return load_checkpoint_file(path);
}

}  // namespace nexus
