// The single-process subcommands of `nexus`, one file each (trainer/cmd_<name>.cpp). argv[0] is
// the subcommand's name. Bad usage and unusable inputs throw a ConfigError subclass (main prints
// the message and exits 2); each returns 0 on success. Run them on one rank: main dispatches them
// on rank 0 only when launched under mpirun.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

namespace nexus {

// One argument of a subcommand: an option ("--out DIR" or "--out=DIR" both give
// key "--out", value "DIR"; "--help"/"-h" give key "--help") or a positional (empty key).
struct CommandArg {
  std::string key;
  std::string value;
};
// Splits argv[1, argc) (argv[0] is the subcommand). Options named in `valued` take a value; any
// other "--x" comes back with an empty value for the caller to reject. A valued option with no
// value left throws `Error` (a ConfigError type) with "<prefix><option> needs a value<suffix>".
template <typename Error>
std::vector<CommandArg> split_command_args(int argc, char** argv, const std::vector<std::string>& valued,
                                           const std::string& prefix, const std::string& suffix) {
  std::vector<CommandArg> out;
  for (int i = 1; i < argc; ++i) {
    CommandArg a{argv[i], ""};
    if (a.key.rfind("--", 0) != 0 && a.key != "-h") {
      out.push_back({"", a.key});
      continue;
    }
    const auto eq = a.key.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      a.value = a.key.substr(eq + 1);
      a.key.resize(eq);
    }
    if (a.key == "-h") a.key = "--help";
    const bool takes_value = std::find(valued.begin(), valued.end(), a.key) != valued.end();
    if (takes_value && !inline_value) {
      if (i + 1 >= argc) throw Error(prefix + a.key + " needs a value" + suffix);
      a.value = argv[++i];
    }
    out.push_back(std::move(a));
  }
  return out;
}

// `nexus eval --model PATH (--tokens 1,2,3 | --text TEXT) [--logits-out FILE.npy]`: one forward
// pass of Model<float> over the sequence (batch 1, each token's target the next token); prints
// the mean next-token loss and writes the logits [T, V] as a float32 .npy.
int command_eval(int argc, char** argv);

// `nexus export CHECKPOINT --out DIR [--dtype bf16|fp32] [--max-shard-bytes N]`: a Hugging Face
// Bamba folder from anything load_model_files takes.
int command_export(int argc, char** argv);

// `nexus inspect CHECKPOINT`: step, tokens, config, and every tensor's name, shape and L2 norm
// with the norms of its optimizer moments.
int command_inspect(int argc, char** argv);
// `nexus inspect --receptive-field CONFIG [--seq-len T] [--out FILE.png]`: per layer, how far
// back information reaches the last position, with the closed form checked, and a PNG plot.
int command_receptive_field(int argc, char** argv);

// `nexus generate --model PATH (--prompt TEXT | --tokens IDS) --max-new-tokens N [--temperature T]
// [--top-k K] [--seed S]`: recurrent decoding (InferenceSession) with a paged KV cache.
int command_generate(int argc, char** argv);

// `nexus plan [--config FILE] [--section.key=value ...] [--device cpu|h100-80g|h200] [--memory SIZE] [--world N]`:
// the memory one rank holds to train and generate, by purpose, and the longest sequence that fits.
int command_plan(int argc, char** argv);

}  // namespace nexus
