// Context parallelism on one sequence: run under `mpirun -np CP` (every rank of the world is one
// cp group, dp = 1). Times forward + backward of a config at sequence length T split over the
// ranks, and prints one JSON line with tokens/s, per-rank memory (activation arena and peak RSS),
// the bytes each rank sends per step (Mamba-2 state passing and ring attention K/V and dK/dV,
// both measured, with the ring's kernel calls and the hops its neighborhood let it skip), and the
// longest T whose per-rank training memory (weights, deltas, AdamW moments, activation arena)
// fits --budget-gib.
//
//   mpirun -np 2 build/bench/bench_context_parallel [configs/small.ini] [--seq-len T] [--iters N]
//                                                   [--budget-gib G] [--model.key=value ...]
#include <chrono>
#include <limits>
#include <new>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "data/zigzag.h"
#include "kernels/cpu/blas_runtime.h"
#include "model/model.h"
#include "parallel/communicator.h"
#include "trainer/metrics.h"
#include "trainer/options.h"

using namespace nexus;

namespace {

// Weights, deltas and the two AdamW moments (fp32), plus the activation arena, per rank.
// A layout too large to even reserve address space for is over any budget below this machine's
// memory (the arena is reserved, not touched, so only its size is tested here).
double training_bytes(const ModelConfig& c, idx T_local, const Communicator& cp) {
  try {
    const Model<float> m(c, {1, T_local}, &cp);
    return 4.0 * 4.0 * double(m.num_params()) + double(m.arena_bytes());
  } catch (const std::bad_alloc&) {
    return std::numeric_limits<double>::infinity();
  }
}

}  // namespace

int main(int argc, char** argv) {
  select_blas_core(argv);
  MpiRuntime mpi(&argc, &argv);
  const Communicator world = Communicator::world();
  std::string config = "configs/small.ini";
  idx seq_len = 0, iters = 2;
  double budget_gib = 4.0;
  std::vector<std::string> args = {"--config", ""};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (a == "--seq-len") seq_len = std::stoll(next());
    else if (a == "--iters") iters = std::stoll(next());
    else if (a == "--budget-gib") budget_gib = std::stod(next());
    else if (a.rfind("--model.", 0) == 0) args.push_back(a);
    else config = a;
  }
  args[1] = config;
  const RunOptions opts = parse_command_line(args).options;
  const ModelConfig& c = opts.model;
  const idx cp = world.size(), T = seq_len > 0 ? seq_len : opts.train.seq_len;
  const idx local = T / cp;

  Model<float> model(c, {1, local}, &world);
  model.init(1);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(T)), targets(tokens.size());
  std::mt19937 rng(2);
  std::uniform_int_distribution<std::int32_t> tok(0, std::int32_t(c.vocab_size - 1));
  for (auto& t : tokens) t = tok(rng);
  for (auto& t : targets) t = tok(rng);
  std::vector<std::int32_t> my_tokens(static_cast<std::size_t>(local)), my_targets(my_tokens.size());
  zigzag_slice(tokens.data(), 1, T, cp, world.rank(), my_tokens.data());
  zigzag_slice(targets.data(), 1, T, cp, world.rank(), my_targets.data());

  double seconds = 0;
  for (idx it = -1; it < iters; ++it) {  // iteration -1 warms up
    world.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    model.forward(my_tokens.data(), my_targets.data());
    model.backward(1.0 / double(T));
    world.barrier();
    if (it >= 0) seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  // Ring traffic of the last step (forward + backward, every attention layer), the most of any rank.
  const RingStats& ring = model.ring_stats();
  const double ring_bytes = world.max(double(ring.bytes_sent));

  // Longest T (a multiple of 256 * cp) whose training memory fits the budget on each rank.
  const double budget = budget_gib * double(1ull << 30);
  idx lo = 0, hi = 256;
  while (training_bytes(c, hi * 256, world) <= budget && hi < (1 << 20)) hi *= 2;
  while (hi - lo > 1) {
    const idx mid = (lo + hi) / 2;
    (training_bytes(c, mid * 256, world) <= budget ? lo : hi) = mid;
  }
  const double peak_rss = world.max(peak_rss_mib());
  if (world.is_root()) {
    nlohmann::json j{{"bench", "context_parallel_forward_backward"},
                     {"config", config},
                     {"cp", cp},
                     {"seq_len", T},
                     {"threads_per_rank", std::getenv("OMP_NUM_THREADS") ? std::getenv("OMP_NUM_THREADS") : "default"},
                     {"step_ms", 1e3 * seconds / double(iters)},
                     {"tokens_per_s", double(T * iters) / seconds},
                     {"arena_mib_per_rank", double(model.arena_bytes()) / (1 << 20)},
                     {"peak_rss_mib_per_rank", peak_rss},
                     {"mamba_bytes_sent_per_rank", model.mamba_bytes_sent()},
                     {"attention_neighborhood", c.attention_neighborhood},
                     {"ring_bytes_sent_per_rank", ring_bytes},
                     {"ring_block_calls_per_rank", ring.block_calls},
                     {"ring_hops_skipped_per_rank", ring.hops_skipped},
                     {"budget_gib_per_rank", budget_gib},
                     {"max_seq_len_in_budget", lo * 256 * cp}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}
