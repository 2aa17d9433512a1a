// `nexus inspect --receptive-field CONFIG`: how far back information can have travelled after each
// layer of a config's pattern (model/receptive_field.h), the closed form where the stack has one,
// and a PNG plot (trainer/plot_receptive_field.py, matplotlib).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/neighborhood_spec.h"
#include "model/receptive_field.h"
#include "trainer/commands.h"
#include "trainer/options.h"

namespace nexus {

namespace {

const char* kUsage =
    "Usage: nexus inspect --receptive-field CONFIG [--seq-len T] [--out FILE.png] [--model.key=value ...]\n"
    "  Prints, for each layer of CONFIG's pattern, how far back the last position of a T-token\n"
    "  sequence can have received information (attention layers read their neighborhood, Mamba-2\n"
    "  layers the whole prefix), checks the closed form of attention-only stacks, and plots it.\n"
    "  --seq-len T   sequence length (default: the config's train.seq_len)\n"
    "  --out FILE    the PNG to write (default receptive_field.png); FILE with .jsonl holds the numbers\n";

struct ReceptiveFieldError : ConfigError {
  using ConfigError::ConfigError;
};

[[noreturn]] void usage_error(const std::string& what) {
  throw ReceptiveFieldError("nexus inspect --receptive-field: " + what + "\n" + kUsage);
}

// The closed form of an attention-only stack whose layers share one neighborhood, as text ("" when
// there is none), and in `holds` whether every layer's computed field agrees with it.
std::string closed_form(const ModelConfig& c, idx T, const std::vector<LayerReach>& r, bool& holds) {
  holds = true;
  if (c.attention_layer_count() != c.n_layers) return "";
  const std::vector<Neighborhood> per_layer = c.layer_neighborhoods();
  const Neighborhood n = per_layer[0];
  for (const Neighborhood& other : per_layer)
    if (!(other == n)) return "";
  if (n.sink > 0) return "";
  const idx L = c.n_layers;
  switch (n.kind) {
    case Neighborhood::kSliding:
    case Neighborhood::kDilated: {
      const idx step = n.kind == Neighborhood::kSliding ? n.width - 1 : (n.width - 1) * n.dilation;
      for (idx l = 0; l < L; ++l) holds = holds && r[std::size_t(l)].reach == std::min((l + 1) * step, T - 1);
      return "reach after l layers = min(l * " + std::to_string(step) + ", T - 1)";
    }
    case Neighborhood::kLog: {
      // After l layers: every distance with at most l binary ones, so all of [0, T-1] after floor(log2 T).
      const idx layers = std::max<idx>(1, std::bit_width(static_cast<std::uint64_t>(T)) - 1);
      for (idx l = 0; l < L; ++l) holds = holds && r[std::size_t(l)].whole_prefix == (l + 1 >= layers || T == 1);
      return "whole prefix after floor(log2 T) = " + std::to_string(layers) + " layers";
    }
    case Neighborhood::kFull:
      for (idx l = 0; l < L; ++l) holds = holds && r[std::size_t(l)].whole_prefix;
      return "whole prefix after 1 layer";
    default:
      return "";
  }
}

}  // namespace

int command_receptive_field(int argc, char** argv) {
  std::string config, out = "receptive_field.png";
  idx T = 0;
  std::vector<std::string> overrides;
  for (const CommandArg& a : split_command_args<ReceptiveFieldError>(argc, argv, {"--seq-len", "--out"},
                                                                     "nexus inspect --receptive-field: ",
                                                                     std::string("\n") + kUsage)) {
    if (a.key == "--help") {
      std::printf("%s", kUsage);
      return 0;
    } else if (a.key == "--seq-len") {
      char* end = nullptr;
      T = std::strtoll(a.value.c_str(), &end, 10);
      if (a.value.empty() || *end != '\0' || T < 1) usage_error("--seq-len " + a.value + " is not a positive integer");
    } else if (a.key == "--out") {
      out = a.value;
    } else if (a.key.rfind("--model.", 0) == 0) {
      overrides.push_back(a.key + "=" + a.value);
    } else if (!a.key.empty()) {
      usage_error("unknown option " + a.key);
    } else if (config.empty()) {
      config = a.value;
    } else {
      usage_error("one CONFIG expected, got " + config + " and " + a.value);
    }
  }
  if (config.empty()) usage_error("needs a CONFIG (an INI file such as configs/small.ini)");
  std::vector<std::string> args = {"--config", config};
  args.insert(args.end(), overrides.begin(), overrides.end());
  const RunOptions options = parse_command_line(args).options;
  const ModelConfig& c = options.model;
  if (T == 0) T = options.train.seq_len;

  constexpr idx kBins = 256;
  const std::vector<LayerReach> r = receptive_field(c, T, kBins);
  std::printf("receptive field of position T-1 = %lld (T = %lld) after each layer of %s\n", (long long)(T - 1),
              (long long)T, config.c_str());
  std::printf("%-6s %-6s %-24s %10s %10s %9s\n", "layer", "mixer", "neighborhood", "reach", "reached", "coverage");
  for (const LayerReach& l : r)
    std::printf("%-6lld %-6s %-24s %10lld %10lld %8.2f%%\n", (long long)l.layer, l.mixer == 'A' ? "attn" : "mamba",
                l.neighborhood.c_str(), (long long)l.reach, (long long)l.reached, 100.0 * double(l.reached) / double(T));
  bool holds = true;
  const std::string form = closed_form(c, T, r, holds);
  if (!form.empty()) std::printf("closed form: %s: %s\n", form.c_str(), holds ? "matches" : "DOES NOT MATCH");

  const std::string data = out + ".jsonl";
  {
    std::ofstream f(data);
    if (!f) throw ReceptiveFieldError("nexus inspect --receptive-field: cannot write " + data);
    for (const LayerReach& l : r)
      f << nlohmann::json{{"layer", l.layer},   {"mixer", std::string(1, l.mixer)}, {"neighborhood", l.neighborhood},
                          {"reach", l.reach},   {"reached", l.reached},             {"T", T},
                          {"density", l.density}}
               .dump()
        << "\n";
    if (!f) throw ReceptiveFieldError("nexus inspect --receptive-field: cannot write " + data);
  }
  std::fflush(stdout);
  // The script's #!/usr/bin/python3 is Debian's, with python3-matplotlib (as plot_metrics.py).
  const std::string command = "'" NEXUS_SOURCE_DIR "/trainer/plot_receptive_field.py' '" + data + "' --out '" + out +
                              "' --title '" + config + "'";
  if (std::system(command.c_str()) != 0)
    throw ReceptiveFieldError("nexus inspect --receptive-field: the plot failed (" + command +
                              "; needs /usr/bin/python3 with python3-matplotlib, which launch/setup.sh installs); the numbers "
                              "are in " + data);
  std::printf("wrote %s (numbers in %s)\n", out.c_str(), data.c_str());
  return holds ? 0 : 1;
}

}  // namespace nexus
