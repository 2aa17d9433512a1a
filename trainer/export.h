// Export to a Hugging Face folder that `BambaForCausalLM.from_pretrained(dir)` loads, and the
// reverse: a model (config + flat parameters) from an exported folder or an HDF5 checkpoint.
//
//   out_dir/config.json              BambaConfig: model_type "bamba", attn_layer_indices, sizes
//   out_dir/generation_config.json
//   out_dir/model.safetensors        every ParamTable tensor under its (Bamba) name, bf16 or fp32
// or, when the tensors exceed max_shard_bytes:
//   out_dir/model-00001-of-0000N.safetensors ... and model.safetensors.index.json
//     {"metadata": {"total_size": bytes}, "weight_map": {name: file}}
//
// Our parameter names and shapes are Bamba's (ParamTable), including conv1d.weight [conv_dim, 1, K].
#pragma once

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/params.h"

namespace nexus {

// A model that cannot be exported faithfully (the Bamba math would differ from ours), or a
// config.json that does not describe a model we can run. A ConfigError: a clean exit with the
// message.
struct ExportError : ConfigError {
  using ConfigError::ConfigError;
};

enum class ExportDtype { BF16, F32 };

inline constexpr std::int64_t kDefaultMaxShardBytes = std::int64_t(5) << 30;  // 5 GiB, HF's default
// BambaConfig's own default: RoPE has no learned positions, so nothing in the weights bounds it.
inline constexpr std::int64_t kExportMaxPositions = 262144;

struct ExportResult {
  std::vector<std::string> files;     // paths written, config first
  std::vector<std::string> warnings;  // e.g. vLLM compatibility notes; the model itself is exact
  std::int64_t tensor_bytes = 0;      // total_size: the tensors' data bytes
};

// config.json's content for `config` (throws ExportError when Bamba cannot express the model).
// `warnings` (optional) receives compatibility notes. The attention neighborhoods are written under
// the Nexus key "nexus": {"attention_neighborhood": ...}; transformers' Bamba has no such notion
// (every attention layer is full causal), so a non-full neighborhood is refused unless
// `allow_lossy`, and then exported with a warning that transformers will compute other logits.
nlohmann::ordered_json bamba_config_json(const ModelConfig& config, ExportDtype dtype,
                                         std::vector<std::string>* warnings = nullptr, bool allow_lossy = false);

// The inverse: a ModelConfig from a BambaConfig JSON (as transformers writes it too; with the
// neighborhoods from the "nexus" key when present, else full). Throws
// ExportError naming the field for a missing or unsupported value (biases, other activations,
// other RoPE types, ...). `origin` names the file in messages.
ModelConfig model_config_from_bamba_json(const nlohmann::json& j, const std::string& origin);

// Writes the folder (created if needed). The safetensors files are written under temporary
// names and renamed; weight files of an earlier export into the same folder that this export does
// not rewrite (other shard counts) are removed so the folder holds exactly one model.
ExportResult export_hf(const ModelConfig& config, const ParamTable& table, const float* params,
                       const std::string& out_dir, ExportDtype dtype = ExportDtype::BF16,
                       std::int64_t max_shard_bytes = kDefaultMaxShardBytes, bool allow_lossy = false);

ExportDtype parse_export_dtype(const std::string& text);  // "bf16" | "fp32" (also "bfloat16", "float32", "f32")

struct LoadedModel {
  ModelConfig config;
  std::vector<float> params;  // ParamTable(config) layout
  std::string description;    // where it came from, e.g. "checkpoint runs/x/step_00000100.h5 (step 100)"
};

// `path` is one of:
//  - a folder with config.json (an export, ours or transformers'): config.json -> ModelConfig,
//    model.safetensors or the sharded index -> params (bf16 widened exactly);
//  - an HDF5 checkpoint file;
//  - a checkpoint directory: its `latest`, or else the newest step file that verifies.
// Throws ExportError / SafetensorsError / CheckpointError naming the file and the problem
// (missing or extra tensor, wrong shape, ...).
LoadedModel load_model_files(const std::string& path);



// Bad usage of `nexus eval`.
struct EvalError : ConfigError {
  using ConfigError::ConfigError;
};

// A little-endian float32 C-order .npy file (format 1.0) that numpy.load reads. Throws
// ExportError naming the file on an I/O error.
void write_npy(const std::string& path, const float* data, const std::vector<idx>& shape);

}  // namespace nexus
