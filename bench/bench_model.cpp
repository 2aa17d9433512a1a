// Times evaluate + differentiate (forward + backward) of a model config on random tokens and
// prints one JSON line: tokens/s, achieved model GFLOP/s, the sgemm GFLOP/s measured in the same
// run, their ratio, and memory.
//
//   build/bench/bench_model [configs/small.ini] [--batch B] [--iters N] [--seq-len T] [--warmup W]
//                        [--model.key=value ...]
//
// --model.* overrides the config (e.g. --model.attention_neighborhood=sliding:512; see
// bench/neighborhood_sweep.sh).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "bench/args.h"
#include "kernels/cpu/blas_runtime.h"
#include "model/model.h"
#include "trainer/metrics.h"
#include "trainer/options.h"

using namespace nexus;

int main(int argc, char** argv) {
  select_blas_core(argv);
  idx batch = 1, iters = 3, seq_len = 0, warmup = 1;
  const auto [config, opts] = bench::parse_args(
      argc, argv, {{"--batch", &batch}, {"--iters", &iters}, {"--seq-len", &seq_len}, {"--warmup", &warmup}});
  const BatchShape shape{batch, seq_len > 0 ? seq_len : opts.train.seq_len};
  const double sgemm_gflops = measure_gemm_peak_gflops();

  Model<float> model(opts.model, shape);
  model.init(1);
  std::mt19937 rng(2);
  std::uniform_int_distribution<std::int32_t> tok(0, std::int32_t(opts.model.vocab_size - 1));
  std::vector<std::int32_t> tokens(std::size_t(shape.B * shape.T)), targets(tokens.size());
  for (auto& t : tokens) t = tok(rng);
  for (auto& t : targets) t = tok(rng);

  using clock = std::chrono::steady_clock;
  double fwd_s = 0, bwd_s = 0;
  for (idx it = -warmup; it < iters; ++it) {  // iterations < 0 warm up caches and the thread pool
    const auto t0 = clock::now();
    const LossSum loss = model.forward(tokens.data(), targets.data());
    const auto t1 = clock::now();
    model.backward(1.0 / double(loss.count));
    const auto t2 = clock::now();
    if (it >= 0) {
      fwd_s += std::chrono::duration<double>(t1 - t0).count();
      bwd_s += std::chrono::duration<double>(t2 - t1).count();
    }
  }
  const double tokens_timed = double(shape.B * shape.T * iters);
  const double step_flops = 3.0 * model.forward_flops_per_token() * tokens_timed;
  const double gflops = step_flops / (fwd_s + bwd_s) / 1e9;
  nlohmann::json j{{"bench", "model_forward_backward"},
                   {"config", config},
                   {"params", model.num_params()},
                   {"attention_neighborhood", opts.model.attention_neighborhood},
                   {"batch", shape.B},
                   {"seq_len", shape.T},
                   {"threads", omp_get_max_threads()},
                   {"forward_ms", 1e3 * fwd_s / double(iters)},
                   {"backward_ms", 1e3 * bwd_s / double(iters)},
                   {"tokens_per_s", tokens_timed / (fwd_s + bwd_s)},
                   {"model_gflops", gflops},
                   {"sgemm_gflops", sgemm_gflops},
                   {"gemm_ratio", gflops / sgemm_gflops},
                   {"arena_mib", double(model.arena_bytes()) / (1 << 20)},
                   {"peak_rss_mib", peak_rss_mib()}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}
