// Shared by the export test suites: a small model with every size distinct, random parameters,
// running a subcommand in process, reading a file whole.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "model/params.h"
#include "support/model_configs.h"

namespace nexus::test {

// Three layers (Mamba, attention, Mamba) with every size distinct, so a swapped field shows.
inline ModelConfig small_config() {
  ModelConfig c = small_hybrid({.vocab_size = 67, .d_model = 32, .pattern = "MAM", .mlp_hidden = 48, .n_heads = 2,
                                .n_kv_heads = 1, .head_dim = 16, .mamba_chunk = 8});
  c.rope_theta = 5000.0;
  c.mamba_d_conv = 3;
  c.norm_eps = 1e-6;
  return c;
}

// Initialised, then every value perturbed, so norms and D are not all ones and rounding shows.
inline std::vector<float> random_params(const ModelConfig& c, const ParamTable& t, std::uint64_t seed) {
  std::vector<float> p(static_cast<std::size_t>(t.total()));
  init_parameters(p.data(), t, c, seed);
  std::mt19937_64 rng(seed + 1);
  std::normal_distribution<double> n(0.0, 0.05);
  for (float& x : p) x = float(x + n(rng));
  return p;
}

// A small model with random parameters.
struct SmallModel {
  ModelConfig c;
  ParamTable t;
  std::vector<float> p;
  explicit SmallModel(std::uint64_t seed, const ModelConfig& config = small_config())
      : c(config), t(c), p(random_params(c, t, seed)) {}
};

// Runs a command function with argv built from `args` (args[0] is the subcommand).
inline int run_command(int (*command)(int, char**), std::vector<std::string> args) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return command(int(argv.size()), argv.data());
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A file with the given header text and `data_size` zero bytes of data, padded as the format asks.
inline void write_raw(const std::filesystem::path& p, std::string header, std::size_t data_size, bool pad = true) {
  if (pad) header.append((8 - header.size() % 8) % 8, ' ');
  std::ofstream out(p, std::ios::binary);
  const std::uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << std::string(data_size, '\0');
}

}  // namespace nexus::test
