// The command line the single-process benchmarks share: `[config.ini] [--model.KEY=VALUE ...]`
// plus integer flags of their own (`--iters N`), so each benchmark names only its flags.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/options.h"

namespace nexus::bench {

struct IntFlag {
  const char* name;  // e.g. "--iters"
  idx* value;        // holds the default; the flag's value replaces it
};

struct BenchArgs {
  std::string config;  // the config file's path, which the benchmark's report names
  RunOptions options;  // of that file, with the --model.* overrides applied
};

// Stores each flag's value where it points; the config file is configs/small.ini unless named.
inline BenchArgs parse_args(int argc, char** argv, const std::vector<IntFlag>& flags) {
  std::string config = "configs/small.ini";
  std::vector<std::string> overrides;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const IntFlag* flag = nullptr;
    for (const IntFlag& f : flags)
      if (a == f.name) flag = &f;
    if (flag) {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      *flag->value = std::stoll(argv[++i]);
    } else if (a.rfind("--model.", 0) == 0) {
      overrides.push_back(a);
    } else {
      config = a;
    }
  }
  std::vector<std::string> args = {"--config", config};
  args.insert(args.end(), overrides.begin(), overrides.end());
  return {config, parse_command_line(args).options};
}

}  // namespace nexus::bench
