// Options for in-process training runs in tests: configs/tiny.ini plus overrides, writing into a
// fresh temporary run directory.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "trainer/options.h"
#include "trainer/train.h"

namespace nexus::test {

inline std::string temp_run_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("nexus_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  return dir.string();
}

inline RunOptions tiny_run(const std::string& out_dir, std::vector<std::string> overrides) {
  std::vector<std::string> args{"--config", std::string(NEXUS_SOURCE_DIR) + "/configs/tiny.ini",
                                "--train.out_dir=" + out_dir};
  args.insert(args.end(), overrides.begin(), overrides.end());
  return parse_command_line(args).options;
}

// A run's result with a host copy of its final weights, which train() makes only when asked.
struct TrainedRun : TrainResult {
  std::vector<float> params;
};
inline TrainedRun train_keeping_weights(const RunOptions& o, const Communicator& comm, const std::string& resume = "") {
  TrainedRun run;
  static_cast<TrainResult&>(run) = train(o, comm, resume, &run.params);
  return run;
}

}  // namespace nexus::test
