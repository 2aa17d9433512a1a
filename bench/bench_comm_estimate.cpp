// A model of the communication of one training step on GPUs (no GPU, no MPI needed): bytes per
// rank and link for dp and cp on a config, from the code's own sizes (ParamTable for the
// parameter count, mamba_cp_bytes_sent for the Mamba-2 state passing, ring attention's K/V
// traffic as parallel/ring_attention.cpp sends it), the time each takes at NVLink and InfiniBand
// bandwidths, and the Ring Attention overlap condition (block >= F/B, Liu et al. 2023). An
// ESTIMATE: bench/results/2026-12-07-comm-estimate.md explains the assumptions.
//
//   build/bench/bench_comm_estimate [configs/350m.ini] [--world 32] [--gpus-per-node 8]
//                                   [--seq-len T] [--global-batch G] [--model.KEY=VALUE ...]
#include <algorithm>
#include <cstdio>
#include <string>

#include "bench/args.h"
#include "model/mamba_layer_cp.h"
#include "model/params.h"

using namespace nexus;

namespace {

// H100 SXM: dense bf16 tensor-core peak, NVLink 4 per direction, one 400 Gb/s NIC per GPU.
constexpr double kPeakFlops = 989e12;
constexpr double kAchieved = 0.4;  // the fraction of peak a training step sustains (assumed)
constexpr double kNvlink = 450e9;  // bytes/s per direction
constexpr double kInfiniband = 400e9 / 8;
constexpr double kDeltaBytes = 4;  // deltas and master weights are fp32 (DESIGN.md section 8)
constexpr double kKvBytes = 2;     // K/V and dK/dV are bf16 activations on the GPU
constexpr double kStateBytes = 4;  // Mamba-2 states and summaries are fp32 (its conv halos: kKvBytes)

double ms(double bytes, double bandwidth) { return 1e3 * bytes / bandwidth; }

}  // namespace

int main(int argc, char** argv) {
  idx world = 32, gpus_per_node = 8, seq_len = 0, global_batch = 0;
  const bench::BenchArgs args = bench::parse_args(argc, argv,
      {{"--world", &world}, {"--gpus-per-node", &gpus_per_node}, {"--seq-len", &seq_len}, {"--global-batch", &global_batch}});
  const ModelConfig& c = args.options.model;
  const idx T = seq_len ? seq_len : args.options.train.seq_len;
  const idx G = global_batch ? global_batch : world;  // one sequence per dp replica per micro-batch at least
  const ParamTable table(c);
  const double N = double(table.total());
  // The deltas the backward finishes last (the bottom of the table): the bucket that goes out when
  // the backward is over, whose reduction nothing is left to hide.
  const double E = double(table.at("model.embed_tokens.weight").numel);
  idx attention = 0;
  for (idx l = 0; l < c.n_layers; ++l) attention += c.is_attention(l) ? 1 : 0;
  const idx mamba = c.n_layers - attention;

  std::printf("ESTIMATE (a model, not a measurement): %s, %.1fM parameters, %lld layers (%lld attention, "
              "%lld Mamba-2), T = %lld, global batch %lld sequences, world %lld GPUs (%lld per node)\n",
              args.config.c_str(), N / 1e6, (long long)c.n_layers, (long long)attention, (long long)mamba,
              (long long)T, (long long)G, (long long)world, (long long)gpus_per_node);
  std::printf("Link bandwidths per direction: NVLink %.0f GB/s, InfiniBand %.0f GB/s (400 Gb/s); compute %.0f%% of "
              "%.0f TFLOP/s bf16\n\n",
              kNvlink / 1e9, kInfiniband / 1e9, 100 * kAchieved, kPeakFlops / 1e12);

  std::printf("| dp | cp | deltas all-reduce MB / rank / step | ZeRO-1 reduce-scatter + all-gather MB | ring K/V MB / "
              "rank / micro-batch | Mamba-2 states MB / rank / micro-batch | micro-batches / step | dp link | dp ms | "
              "cp ms / step (NVLink) | compute ms / step | dp ms exposed, zero 0 overlapped | dp ms exposed, zero 1 "
              "overlapped + all-gather |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (idx cp = 1; cp <= world && cp <= gpus_per_node; cp *= 2) {
    if (world % cp || T % (2 * cp)) continue;
    const idx dp = world / cp, P = world;
    // Deltas are summed over the whole world (dp x cp): a ring all-reduce sends 2(P-1)/P of them.
    const double allreduce = 2.0 * double(P - 1) / double(P) * N * kDeltaBytes;
    // ZeRO-1: reduce-scatter of the deltas, all-gather of the updated weights, (P-1)/P each.
    const double zero1 = 2.0 * double(P - 1) / double(P) * N * kDeltaBytes;
    // Ring attention per attention layer and sequence: K and V of this rank's T/cp tokens go to the
    // cp-1 others forward, again backward, and dK/dV come back: 3(cp-1) hops of 2 T/cp Hkv d.
    const double kv = 3.0 * double(cp - 1) * 2.0 * double(T / cp) * double(c.n_kv_heads * c.head_dim) * kKvBytes *
                      double(attention);
    double states = 0;  // the busiest rank's
    for (int r = 0; r < int(cp); ++r)
      states = std::max(states, double(mamba_cp_bytes_sent(c, 1, int(cp), r, std::size_t(kKvBytes),
                                                           std::size_t(kStateBytes))));
    states *= double(mamba);
    const idx micro = G / dp > 0 ? G / dp : 1;
    const bool dp_crosses_nodes = world > gpus_per_node;
    const double dp_bw = dp_crosses_nodes ? kInfiniband : kNvlink;
    // 6 N per token (forward + backward) for the weights; this rank's share of the step's tokens.
    const double compute = 6.0 * N * double(G * T) / double(P) / (kAchieved * kPeakFlops);
    // Overlapped reduction (optim/delta_reduction.h): the buckets go out during the last
    // micro-batch's backward (4 N per token on this rank's T / cp tokens) and hide behind it; the
    // embedding's bucket, finished last, is exposed whole, and whatever the backward is too short
    // to hide. Zero 1 reduce-scatters (half the all-reduce's bytes) and then all-gathers the
    // weights after the step, exposed.
    const double backward_ms = 1e3 * 4.0 * N * double(T / cp) / (kAchieved * kPeakFlops);
    const auto exposed = [&](double total_bytes, double last_bytes) {
      const double all = ms(total_bytes, dp_bw), last = ms(last_bytes, dp_bw);
      return last + std::max(0.0, all - last - backward_ms);
    };
    const double half = double(P - 1) / double(P) * kDeltaBytes;  // bytes per element, one half
    const double exposed0 = exposed(allreduce, 2.0 * half * E);
    const double exposed1 = exposed(half * N, half * E) + ms(half * N, dp_bw);
    std::printf("| %lld | %lld | %.1f | %.1f | %.1f | %.2f | %lld | %s | %.1f | %.2f | %.1f | %.1f | %.1f |\n",
                (long long)dp, (long long)cp, allreduce / 1e6, zero1 / 1e6, kv / 1e6, states / 1e6, (long long)micro,
                dp_crosses_nodes ? "IB" : "NVLink", ms(allreduce, dp_bw), ms(double(micro) * (kv + states), kNvlink),
                1e3 * compute, exposed0, exposed1);
  }

  // Overlap: one hop computes a block of c queries x c keys, 4 c^2 H d FLOPs (QK^T and PV), while
  // the next K/V block, 2 c Hkv d e bytes, travels. Hidden when 4 c^2 H d / F >= 2 c Hkv d e / B:
  //   c >= (F / B) * Hkv e / (2 H)    (= F / B for the paper's MHA in bf16: Hkv = H, e = 2)
  // With the causal zigzag a hop computes about half a block, so c must be twice that.
  const double factor = double(c.n_kv_heads) * kKvBytes / (2.0 * double(c.n_heads));
  std::printf("\nRing Attention overlap (forward; backward computes ~2.5x as much for 2x the bytes, so it overlaps "
              "sooner): c = tokens per rank per hop = T / cp; H = %lld, Hkv = %lld, e = %.0f bytes\n\n",
              (long long)c.n_heads, (long long)c.n_kv_heads, kKvBytes);
  std::printf("| link | F (FLOP/s) | B (bytes/s) | F/B (MHA, paper) | c_min full block = F/B x Hkv e / 2H | "
              "c_min causal zigzag (x2) |\n|---|---|---|---|---|---|\n");
  for (const auto& [name, bw] : {std::pair<const char*, double>{"NVLink", kNvlink}, {"IB 400 Gb/s", kInfiniband}}) {
    for (double f : {kPeakFlops, kAchieved * kPeakFlops}) {
      const double fb = f / bw;
      std::printf("| %s | %.3g | %.3g | %.0f | %.0f | %.0f |\n", name, f, bw, fb, fb * factor, 2 * fb * factor);
    }
  }
  std::printf("\nc at this T: ");
  for (idx cp = 2; cp <= gpus_per_node; cp *= 2) std::printf("cp %lld -> %lld  ", (long long)cp, (long long)(T / cp));
  std::printf("\n");
  return 0;
}
