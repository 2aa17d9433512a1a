// `nexus plan`: the memory one rank of a run holds, by purpose, and the longest sequence that fits
// a budget, from the sizing code the run allocates with (trainer/plan.h), without running a step.
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/cpu/blas_runtime.h"
#include "kernels/ops.h"
#include "model/checked_math.h"
#include "trainer/commands.h"
#include "trainer/plan.h"

namespace nexus {

namespace {

const char* kUsage =
    "Usage: nexus plan [--config FILE] [--section.key=value ...] [--device cpu|h100-80g|h200] [--memory SIZE]\n"
    "                  [--world N] [--generate-context N] [--generate-batch N]\n"
    "  Prints the memory one rank holds to train the configured run (train.seq_len, train.micro_batch,\n"
    "  parallel.cp, parallel.zero, train.recompute), by purpose, the same for every recompute setting,\n"
    "  the longest train.seq_len that fits the budget, and the memory to generate with a context of N tokens.\n"
    "  --device D          cpu (default: fp32, the process measured here), h100-80g or h200 (bf16\n"
    "                      activations and compute weights, fp32 master weights, deltas and moments)\n"
    "  --memory SIZE       the budget per rank, e.g. 80GiB (default: the device's memory; cpu: what\n"
    "                      this machine has available, split over the parallel.cp ranks of a group)\n"
    "  --world N           the run's ranks, dp x parallel.cp (default parallel.cp: one group, dp 1); per\n"
    "                      rank it matters only under parallel.zero = 1, which shards the AdamW moments\n"
    "                      (and on a GPU the fp32 master weights) over all N ranks\n"
    "  --generate-context N  tokens of context per sequence for the generation plan (default train.seq_len)\n"
    "  --generate-batch N    sequences decoded together (default 1)\n";

[[noreturn]] void usage_error(const std::string& message) {
  throw OptionsError("nexus plan: " + message + "\n" + kUsage);
}

idx positive_flag(const std::string& flag, const std::string& value) {
  std::size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value.size() || v <= 0 || v > (1LL << 30))
    usage_error(flag + " " + value + " is not a positive integer up to 2^30");
  return idx(v);
}

// "12.3 MiB": the unit that keeps a few digits (gib() prints small parts as 0.00 GiB).
std::string human(std::size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

std::string shard_note(const TrainingPlan& p) {
  if (p.shards > 1)
    return "this rank's shard of " + std::to_string(p.shards) + " (ZeRO-1 over all " + std::to_string(p.world) + " ranks)";
  return "whole on every rank (parallel.zero = 0 or one rank)";
}

void row(const char* what, std::size_t bytes, const std::string& note = "") {
  std::printf("  %-38s %11s %16zu B%s%s\n", what, human(bytes).c_str(), bytes, note.empty() ? "" : "  ", note.c_str());
}

std::string fit_text(std::size_t total, std::size_t budget) {
  if (budget == SIZE_MAX) return "no budget";
  return total <= budget ? "fits, " + human(budget - total) + " to spare"
                         : "does NOT fit: over by " + human(total - budget);
}

void print_training(const TrainingPlan& p, const PlanTarget& t, const std::string& recompute) {
  std::printf("\ntraining at train.seq_len = %lld (%lld tokens per rank, cp %lld), micro_batch %lld, recompute %s\n",
              (long long)p.seq_len, (long long)p.local_len, (long long)p.cp, (long long)p.micro_batch,
              recompute.c_str());
  row(t.gpu ? "weights (bf16 compute copy)" : "weights (fp32)", p.weights);
  if (t.gpu) row("master weights (fp32)", p.master, shard_note(p));
  row("deltas (fp32 gradients)", p.deltas, p.shards > 1 ? "and the shard's reduce-scatter buffer" : "");
  row("AdamW moments (fp32 x 2)", p.moments, shard_note(p));
  row("activation arena", p.arena.total(), t.gpu ? "bf16 activations, fp32 statistics" : "fp32");
  row("  the batch (int32 tokens, targets)", p.arena.batch);
  row("  residual stream and norm outputs", p.arena.residuals);
  row("  attention layers' activations", p.arena.attention);
  row("  Mamba layers' activations", p.arena.mamba);
  row("  MLP activations", p.arena.mlp);
  row("  recompute set (shared)", p.arena.recompute);
  row("  final norm, logits, loss", p.arena.head);
  row("  backward workspaces", p.arena.backward);
  row("  comm buffers (cp halos/states, ring)", p.arena.comm);
  row("loader batches (int32)", p.loader);
  row("runtime", p.runtime, t.runtime_source);
  row("total per rank", p.total(), fit_text(p.total(), t.budget));
  if (p.root_staging > 0)
    row("rank 0 while a checkpoint moves", p.root_staging,
        std::string(t.gpu ? "host memory: both moments and the fp32 weights, whole"
                          : "host memory: both moments, whole") +
            (t.gpu ? "" : ": rank 0 then holds " + human(saturating_add(p.total(), p.root_staging)) + ", " +
                              fit_text(saturating_add(p.total(), p.root_staging), t.budget)));
}

// What would make a plan that does not fit fit, smallest change first: another recompute setting;
// recompute all with a larger cp group (activations per rank shrink, the model state does not);
// and, unless parallel.zero is 1 already, recompute all with ZeRO-1 (parallel.zero = 1) from the
// plan's cp up. Every candidate is a full plan_training, with the plan's dp kept (world = dp x cp).
void print_remedies(const RunOptions& o, const PlanTarget& t, const TrainingPlan& p) {
  if (p.total() <= t.budget) return;
  std::printf("to fit:\n");
  const std::size_t state = p.weights + p.master + p.deltas + p.moments;
  if (state + p.runtime > t.budget)
    std::printf("  the model state alone (weights, master, deltas, moments: %s) is over the budget\n",
                human(state).c_str());
  for (const char* setting : {"mlp", "mamba", "mamba,mlp", "all"}) {
    RunOptions r = o;
    r.model.recompute = parse_recompute(setting);
    const TrainingPlan q = plan_training(r, t, p.seq_len, p.world);
    if (q.total() <= t.budget) {
      std::printf("  train.recompute = %s (total %s)\n", setting, human(q.total()).c_str());
      return;
    }
  }
  const idx dp = p.world / p.cp;
  bool found = false;  // the smallest cp as configured, then (when not already) with ZeRO-1
  for (const idx zero : {o.parallel.zero, idx(1)}) {
    const bool adds_zero = zero > o.parallel.zero;
    for (idx cp = adds_zero ? o.parallel.cp : 2 * o.parallel.cp; cp <= 1024; cp *= 2) {
      RunOptions r = o;
      r.model.recompute = parse_recompute("all");
      r.parallel.cp = cp;
      r.parallel.zero = zero;
      const idx T = (p.seq_len + 2 * cp - 1) / (2 * cp) * (2 * cp);
      const TrainingPlan q = plan_training(r, t, T, dp * cp);
      if (q.total() > t.budget) continue;
      std::string with_zero =
          adds_zero ? ", parallel.zero = 1 (ZeRO-1 over " + std::to_string(q.shards) + " ranks)" : "";
      if (dp > 1) with_zero += " (world " + std::to_string(q.world) + " = dp " + std::to_string(dp) + " x cp)";
      std::printf("  %strain.recompute = all, parallel.cp = %lld%s: total %s per rank at seq_len %lld\n",
                  found ? "or " : "", (long long)cp, with_zero.c_str(), human(q.total()).c_str(), (long long)T);
      found = true;
      break;
    }
    if (zero == 1) break;
  }
  if (found) return;
  std::printf("  nothing up to parallel.cp = 1024 with recompute all and ZeRO-1: shorten train.seq_len\n");
}

// The process's own memory as `nexus train` has it once its kernels ran: binary, libraries, MPI,
// and the BLAS's per-thread packing buffers, which a GEMM touches in proportion to its row count
// (up to the library's block size). So warm up with the run's row count and its widest GEMM input
// and output (the packing saturates well below 1024 of either), then read VmRSS; the warm-up's own matrices are
// freed (unmapped) before.
std::size_t measure_cpu_runtime(const RunOptions& o) {
  // The threads one rank runs with: runtime.threads, else its share of the cores (mpirun binds
  // the cp ranks of a group, which share a machine, to their own cores).
  const idx threads = o.runtime.threads > 0 ? o.runtime.threads : std::max<idx>(1, omp_get_num_procs() / o.parallel.cp);
  omp_set_num_threads(int(threads));
  measure_gemm_peak_gflops(512, 0.2);  // as train() does
  const ModelConfig& c = o.model;
  const idx rows = std::min<idx>(o.train.micro_batch * (o.train.seq_len / o.parallel.cp), idx(1) << 15);
  const idx depth = std::min<idx>(1024, std::max({c.d_model, c.mlp_hidden, c.d_inner(), c.n_heads * c.head_dim}));
  const idx width = std::min<idx>(512, std::max({2 * c.mlp_hidden, c.in_proj_dim(), c.vocab_size}));
  {
    std::vector<float> inp(std::size_t(rows * depth), 0.5f), w(std::size_t(width * depth), 0.25f),
        out(std::size_t(rows * width)), dinp(inp.size()), dw(w.size());
    matmul_forward(Exec{}, out.data(), inp.data(), w.data(), rows, depth, width);
    matmul_backward(Exec{}, dinp.data(), dw.data(), out.data(), inp.data(), w.data(), rows, depth, width, false);
  }
  return resident_bytes();
}

}  // namespace

int command_plan(int argc, char** argv) {
  std::string device = "cpu", memory;
  idx gen_context = 0, gen_batch = 1, world = 0;
  std::vector<std::string> rest;
  for (const CommandArg& a : split_command_args<OptionsError>(
           argc, argv, {"--device", "--memory", "--world", "--generate-context", "--generate-batch", "--config"},
           "nexus plan: ", std::string("\n") + kUsage)) {
    if (a.key == "--help") {
      std::printf("%s", kUsage);
      return 0;
    } else if (a.key == "--device") {
      device = a.value;
    } else if (a.key == "--memory") {
      memory = a.value;
    } else if (a.key == "--world") {
      world = positive_flag(a.key, a.value);
    } else if (a.key == "--generate-context") {
      gen_context = positive_flag(a.key, a.value);
    } else if (a.key == "--generate-batch") {
      gen_batch = positive_flag(a.key, a.value);
    } else if (a.key == "--resume") {
      usage_error("--resume does not apply: a plan runs nothing");
    } else if (a.key.empty()) {
      rest.push_back(a.value);
    } else {
      rest.push_back(a.key + (a.value.empty() ? "" : "=" + a.value));
    }
  }
  const CommandLine cl = parse_command_line(rest);
  const RunOptions& o = cl.options;
  if (world == 0) world = o.parallel.cp;
  if (world % o.parallel.cp != 0)
    usage_error("--world " + std::to_string(world) + " is not a multiple of parallel.cp = " + std::to_string(o.parallel.cp));
  PlanTarget target = plan_target(device, memory, o.parallel.cp);
  if (!target.gpu) {
    target.runtime = measure_cpu_runtime(o);
    target.runtime_source = "this process measured (binary, libraries, MPI, BLAS buffers after a warm-up GEMM)";
  }
  std::printf("# nexus plan: %s, device %s, train.recompute = %s\n", cl.config_file.empty() ? "defaults" : cl.config_file.c_str(),
              target.name.c_str(), recompute_text(o.model.recompute).c_str());
  std::printf("ranks: world %lld = dp %lld x cp %lld, parallel.zero = %lld\n", (long long)world,
              (long long)(world / o.parallel.cp), (long long)o.parallel.cp, (long long)o.parallel.zero);
  std::printf("budget per rank: %s (%s)\n", target.budget == SIZE_MAX ? "none" : human(target.budget).c_str(),
              target.budget_source.c_str());
  if (target.gpu)
    std::printf("assumes: bf16 activations and compute weights, fp32 statistics, master weights, deltas and AdamW "
                "moments (ZeRO-1 shards the master weights and moments); one rank per GPU\n");

  const TrainingPlan plan = plan_training(o, target, o.train.seq_len, world);
  print_training(plan, target, recompute_text(o.model.recompute));
  print_remedies(o, target, plan);

  std::printf("\nevery recompute setting at train.seq_len = %lld:\n", (long long)o.train.seq_len);
  std::printf("  %-16s %12s %12s %12s  %s\n", "train.recompute", "arena", "total", "longest", "seq_len that fits");
  for (const char* setting : {"none", "attention", "mamba", "mlp", "mamba,mlp", "all"}) {
    RunOptions r = o;
    r.model.recompute = parse_recompute(setting);
    const TrainingPlan q = plan_training(r, target, o.train.seq_len, world);
    std::printf("  %-16s %12s %12s %12lld\n", setting, human(q.arena.total()).c_str(), human(q.total()).c_str(),
                (long long)longest_fitting_seq_len(r, target, world));
  }

  const GenerationPlan gen = plan_generation(o.model, target, gen_context ? gen_context : o.train.seq_len, gen_batch);
  std::printf("\ngeneration: %lld sequences x %lld tokens of context\n", (long long)gen.batch, (long long)gen.context);
  row(target.gpu ? "weights (bf16)" : "weights (fp32)", gen.weights);
  row("KV cache (attention layers)", gen.kv_cache, std::to_string(gen.kv_blocks) + " blocks of 16 tokens");
  row("Mamba conv and SSM states", gen.mamba_state);
  row("runtime", gen.runtime, target.runtime_source);
  row("total", gen.total(), fit_text(gen.total(), target.budget));

  // Machine-readable lines (tests, scripts).
  std::printf("\npredicted peak per rank: %zu bytes\n", plan.total());
  std::printf("activation arena: %zu bytes\n", plan.arena.total());
  std::printf("longest train.seq_len that fits: %lld\n", (long long)longest_fitting_seq_len(o, target, world));
  return 0;
}

}  // namespace nexus
