// `nexus inspect CHECKPOINT`: what a checkpoint holds, after verifying all of it.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "model/memory_need.h"
#include "trainer/commands.h"
#include "trainer/checkpoint.h"
#include "trainer/options.h"

namespace nexus {

namespace {

const char* kInspectUsage =
    "Usage: nexus inspect CHECKPOINT\n"
    "       nexus inspect --receptive-field CONFIG [--seq-len T] [--out FILE.png]   (see its --help)\n"
    "  Verifies CHECKPOINT (a step_*.h5 file) and prints its step, tokens seen, data position,\n"
    "  the run's configuration, and every tensor's shape and L2 norm with the L2 norms of its\n"
    "  AdamW moments (exp_avg m, exp_avg_sq v).\n";

double l2_norm(const float* x, idx n) {
  double s = 0;
  for (idx i = 0; i < n; ++i) s += double(x[i]) * double(x[i]);
  return std::sqrt(s);
}

std::string shape_string(const std::vector<idx>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

int command_inspect(int argc, char** argv) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  if (!args.empty() && args[0].rfind("--receptive-field", 0) == 0) {
    // "--receptive-field=CONFIG" or "--receptive-field CONFIG": hand the rest on, CONFIG positional.
    std::vector<std::string> rest = {"inspect"};
    if (args[0].size() > 18 && args[0][17] == '=') rest.push_back(args[0].substr(18));
    rest.insert(rest.end(), args.begin() + 1, args.end());
    std::vector<char*> ptrs;
    for (std::string& a : rest) ptrs.push_back(a.data());
    return command_receptive_field(static_cast<int>(ptrs.size()), ptrs.data());
  }
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    std::printf("%s", kInspectUsage);
    return 0;
  }
  if (args.size() != 1 || (args[0].size() > 1 && args[0][0] == '-'))
    throw InspectError(std::string("nexus inspect: expected exactly one checkpoint file\n") + kInspectUsage);
  const std::string& path = args[0];

  CheckpointMeta meta;
  RunOptions options;
  std::vector<float> params, exp_avg, exp_avg_sq;
  try {
    meta = read_checkpoint_meta(path);
    try {
      options = parse_ini(meta.config_ini, "the config stored in " + path);
    } catch (const ConfigError& e) {
      throw InspectError(std::string("nexus inspect: ") + e.what());
    }
    const ParamTable table(options.model);
    const std::size_t n = static_cast<std::size_t>(table.total());
    require_memory("nexus inspect " + path, weights_memory_need(options.model, 3));  // weights + 2 moments
    params.resize(n);
    exp_avg.resize(n);
    exp_avg_sq.resize(n);
    // The architecture is the stored one, so this is a full verification of the file.
    meta = load_checkpoint(path, options.model, table, params.data(), exp_avg.data(), exp_avg_sq.data());
  } catch (const CheckpointError& e) {
    throw InspectError(std::string("nexus inspect: ") + e.what());
  }

  const ParamTable table(options.model);
  std::printf("checkpoint       %s (verified)\n", path.c_str());
  std::printf("format_version   %d\n", meta.format_version);
  std::printf("step             %lld\n", static_cast<long long>(meta.step));
  std::printf("tokens_seen      %lld\n", static_cast<long long>(meta.tokens_seen));
  std::printf("optimizer_steps  %lld\n", static_cast<long long>(meta.optimizer_steps));
  std::printf("bad_steps        %lld\n", static_cast<long long>(meta.bad_steps));
  std::printf("seed             %llu\n", static_cast<unsigned long long>(meta.seed));
  std::printf("loader_position  %s\n", meta.loader_position.c_str());
  std::printf("\nconfig:\n%s\n", meta.config_ini.c_str());
  std::printf("tensors: %zu, %lld parameters\n", table.params().size(), static_cast<long long>(table.total()));
  std::printf("%-48s %-16s %14s %14s %14s\n", "name", "shape", "|param|", "|exp_avg|", "|exp_avg_sq|");
  for (const ParamInfo& p : table.params()) {
    const std::size_t at = static_cast<std::size_t>(p.offset);
    std::printf("%-48s %-16s %14.6e %14.6e %14.6e\n", p.name.c_str(), shape_string(p.shape).c_str(),
                l2_norm(params.data() + at, p.numel), l2_norm(exp_avg.data() + at, p.numel),
                l2_norm(exp_avg_sq.data() + at, p.numel));
  }
  std::printf("%-48s %-16s %14.6e %14.6e %14.6e\n", "total", "", l2_norm(params.data(), table.total()),
              l2_norm(exp_avg.data(), table.total()), l2_norm(exp_avg_sq.data(), table.total()));
  std::fflush(stdout);
  return 0;
}

}  // namespace nexus
