// Times the attention kernels alone (attention_forward + attention_backward, fp32) under one
// neighborhood at one sequence length, with a model config's head shapes, and prints one JSON
// line: wall and process-CPU time, tokens/s, the mean number of keys a query reads, the GFLOP/s
// those pairs amount to, and peak RSS. Per-token cost flat in T is what sliding and block promise.
//
//   build/bench/bench_attention [configs/small.ini] [--seq-len T] [--iters N] [--warmup W]
//                               [--model.attention_neighborhood=sliding:512]
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "bench/args.h"
#include "kernels/cpu/blas_runtime.h"
#include "kernels/ops.h"
#include "model/neighborhood_spec.h"
#include "trainer/metrics.h"
#include "trainer/options.h"

using namespace nexus;

namespace {

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  select_blas_core(argv);
  idx iters = 1, seq_len = 2048, warmup = 1;
  const auto [config, opts] =
      bench::parse_args(argc, argv, {{"--iters", &iters}, {"--seq-len", &seq_len}, {"--warmup", &warmup}});
  const ModelConfig& c = opts.model;
  idx first_attention = 0;
  while (!c.is_attention(first_attention)) ++first_attention;
  AttentionShape s{1, seq_len, seq_len, c.n_heads, c.n_kv_heads, c.head_dim, 0, 0, true,
                   c.neighborhood_of(first_attention)};
  const auto n = [](idx count) { return static_cast<std::size_t>(count); };
  const idx nq = seq_len * c.n_heads * c.head_dim, nk = seq_len * c.n_kv_heads * c.head_dim;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> q(n(nq)), k(n(nk)), v(n(nk)), dout(n(nq));
  for (auto* x : {&q, &k, &v, &dout})
    for (float& e : *x) e = u(rng);
  std::vector<float> out(n(nq)), lse(n(seq_len * c.n_heads)), dq(n(nq)), dk(n(nk)), dv(n(nk));

  double wall = 0, cpu = 0;
  for (idx it = -warmup; it < iters; ++it) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_seconds();
    attention_forward(Exec{}, out.data(), lse.data(), q.data(), k.data(), v.data(), s);
    attention_backward(Exec{}, dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(), out.data(),
                       lse.data(), s);
    if (it >= 0) {
      wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      cpu += cpu_seconds() - c0;
    }
  }
  // Forward: QK^T and PV over the visible pairs; backward: S recomputed, dP, dV, dK, dQ. 2 flops
  // per multiply-add, per query head.
  const double keys = mean_visible_keys(s.neighborhood, seq_len);
  const double pair_flops = 2.0 * double(c.head_dim) * double(c.n_heads) * keys * double(seq_len);
  const double flops = 7.0 * pair_flops * double(iters);
  nlohmann::json j{{"bench", "attention_forward_backward"},
                   {"config", config},
                   {"attention_neighborhood", format_neighborhood(s.neighborhood)},
                   {"seq_len", seq_len},
                   {"heads", c.n_heads},
                   {"kv_heads", c.n_kv_heads},
                   {"head_dim", c.head_dim},
                   {"threads", omp_get_max_threads()},
                   {"ms", 1e3 * wall / double(iters)},
                   {"cpu_ms", 1e3 * cpu / double(iters)},
                   {"tokens_per_s", double(seq_len * iters) / wall},
                   {"us_per_token_cpu", 1e6 * cpu / double(seq_len * iters)},
                   {"mean_visible_keys", keys},
                   {"gflops", flops / wall / 1e9},
                   {"peak_rss_mib", peak_rss_mib()}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}
