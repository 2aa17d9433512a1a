// `nexus export`: a checkpoint (or an export) to a Hugging Face folder.
#include <cstdio>
#include <string>

#include "trainer/commands.h"
#include "trainer/export.h"

namespace nexus {

namespace {

const char* kExportUsage =
    "Usage: nexus export CHECKPOINT --out DIR [--dtype bf16|fp32] [--max-shard-bytes N] [--allow-lossy]\n"
    "  Writes a Hugging Face folder (config.json, model.safetensors, generation_config.json) that\n"
    "  transformers' BambaForCausalLM.from_pretrained(DIR) loads.\n"
    "  CHECKPOINT          a step_*.h5 file, a checkpoint directory (its latest), or an export folder\n"
    "  --out DIR           the folder to write (created if needed)\n"
    "  --dtype bf16|fp32   tensor type in the safetensors files (default bf16, round-to-nearest-even)\n"
    "  --max-shard-bytes N split the weights into shards of at most N bytes (default 5 GiB)\n"
    "  --allow-lossy       export a model whose attention neighborhoods are not full although\n"
    "                      transformers cannot express them (they stay in config.json under\n"
    "                      \"nexus\" for nexus eval/generate; transformers attends to every position)\n";

[[noreturn]] void usage_error(const std::string& what) {
  throw ExportError("nexus export: " + what + "\n" + kExportUsage);
}

}  // namespace

int command_export(int argc, char** argv) {
  std::string source, out_dir;
  ExportDtype dtype = ExportDtype::BF16;
  std::int64_t max_shard_bytes = kDefaultMaxShardBytes;
  bool allow_lossy = false;
  for (const CommandArg& a : split_command_args<ExportError>(argc, argv, {"--out", "--dtype", "--max-shard-bytes"},
                                                             "nexus export: ", std::string("\n") + kExportUsage)) {
    if (a.key == "--help") {
      std::printf("%s", kExportUsage);
      return 0;
    } else if (a.key == "--allow-lossy") {
      if (!a.value.empty()) usage_error("--allow-lossy takes no value");
      allow_lossy = true;
    } else if (a.key == "--out") {
      out_dir = a.value;
    } else if (a.key == "--dtype") {
      dtype = parse_export_dtype(a.value);
    } else if (a.key == "--max-shard-bytes") {
      std::size_t used = 0;
      try {
        max_shard_bytes = std::stoll(a.value, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != a.value.size() || a.value.empty() || max_shard_bytes <= 0)
        usage_error("--max-shard-bytes " + a.value + " is not a positive integer");
    } else if (!a.key.empty()) {
      usage_error("unknown option " + a.key);
    } else if (source.empty()) {
      source = a.value;
    } else {
      usage_error("one CHECKPOINT expected, got " + source + " and " + a.value);
    }
  }
  if (source.empty()) usage_error("needs a CHECKPOINT");
  if (out_dir.empty()) usage_error("needs --out DIR");

  const LoadedModel model = load_model_files(source);
  const ParamTable table(model.config);
  const ExportResult r = export_hf(model.config, table, model.params.data(), out_dir, dtype, max_shard_bytes,
                                     allow_lossy);
  std::printf("exported %s\n  %lld parameters, %lld bytes of %s tensors\n", model.description.c_str(),
              (long long)table.total(), (long long)r.tensor_bytes, dtype == ExportDtype::BF16 ? "bf16" : "fp32");
  for (const std::string& f : r.files) std::printf("  wrote %s\n", f.c_str());
  for (const std::string& w : r.warnings) std::fprintf(stderr, "nexus export: warning: %s\n", w.c_str());
  std::printf("load with: BambaForCausalLM.from_pretrained(\"%s\")\n", out_dir.c_str());
  return 0;
}

}  // namespace nexus
