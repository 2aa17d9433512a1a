// Memory planning: what one rank of a training or generation run holds, by purpose, from the sizing
// code the run itself allocates with (the parameter table, the activation arena's layout pass,
// InferenceSession::cache_bytes), and the longest sequence that fits a budget. train() checks
// run_memory_need before it allocates; `nexus plan` prints the rest without running a step.
#pragma once

#include <cstddef>
#include <string>

#include "model/memory_need.h"
#include "model/model.h"
#include "trainer/options.h"

namespace nexus {

// Model<float> + AdamW + activation arena (under o.model.recompute) + the loader's batches of one
// rank of `layout`: what `nexus train` allocates on the CPU.
MemoryNeed run_memory_need(const RunOptions& o, const BatchLayout& layout);
// The ranks DistributedAdamW shards the optimizer state over in `layout`: all of them under
// parallel.zero = 1 (1 on a world of one rank), else 1.
idx optimizer_shards(const RunOptions& o, const BatchLayout& layout);
// Host memory a rank holds beyond run_memory_need while a checkpoint is saved or loaded
// (trainer/checkpoint_cadence.cpp), on the root (`root`) or another rank. On the CPU only ZeRO-1
// stages: the root gathers both moments whole (2 n floats); the weights are read in place. On a
// GPU every checkpoint goes through host memory: the moments staged whole (on the root, or on
// every rank under zero 0, which receives the root's broadcast into it) plus the fp32 weights
// (a host mirror of fp32 weights, or the bf16 run's master gathered with the moments), 3 n
// floats; a ZeRO-1 rank other than the root only mirrors the weights it loads (n floats).
std::size_t checkpoint_host_staging(const RunOptions& o, const BatchLayout& layout, bool root);

// The device a plan is for. On a GPU the run keeps bf16 activations and compute weights and fp32
// master weights, deltas and AdamW moments (kernels/types.h: accum_t<bf16> = float).
struct PlanTarget {
  std::string name = "cpu";       // cpu | h100-80g | h200
  bool gpu = false;
  std::size_t budget = SIZE_MAX;  // bytes one rank may use, runtime included
  std::string budget_source;      // where `budget` comes from, for the report
  std::size_t runtime = 0;        // the process's or GPU runtime's own memory
  std::string runtime_source;
};
// `device`: cpu, h100-80g or h200 (nvidia-smi's totals: 81559 MiB, 143771 MiB). `memory`: a size
// (parse_bytes) that replaces the device's budget; empty: the device's, or for cpu what this
// machine has available split over `ranks_per_machine`. Throws OptionsError naming the flag.
// The runtime is left 0 for cpu (the caller measures it) and set to kGpuRuntimeReserve on a GPU.
PlanTarget plan_target(const std::string& device, const std::string& memory, idx ranks_per_machine);
// CUDA context, cuBLAS workspaces and allocator slack: an assumption, not a measurement.
inline constexpr std::size_t kGpuRuntimeReserve = std::size_t(1) << 30;

struct TrainingPlan {
  idx seq_len = 0, local_len = 0, micro_batch = 0, cp = 1;
  idx world = 1;   // the run's ranks, dp x cp
  idx shards = 1;  // the ranks the optimizer state is sharded over: world under parallel.zero = 1, else 1
  std::size_t weights = 0;  // compute weights: fp32 on cpu (also the master copy), bf16 on a GPU
  std::size_t master = 0;   // fp32 master weights (GPU only): this rank's shard under ZeRO-1
  std::size_t deltas = 0;   // fp32 gradient accumulators, plus the shard's reduce-scatter buffer under ZeRO-1
  std::size_t moments = 0;  // AdamW exp_avg + exp_avg_sq, fp32: whole, or this rank's shard under ZeRO-1
  ArenaBreakdown arena;     // the activation arena at the target's activation type
  std::size_t loader = 0;   // the loader's batch and its zigzag copy (int32 tokens and targets)
  std::size_t runtime = 0;  // target.runtime
  std::size_t total() const;  // saturating
  // Not in total(): rank 0's host memory while a checkpoint moves (checkpoint_host_staging).
  std::size_t root_staging = 0;
};
// The plan at train.seq_len = seq_len (whole sequences; a rank holds seq_len / parallel.cp) for one
// rank of a run of `world` ranks (dp = world / parallel.cp replicas; 0: world = parallel.cp, one
// group). The data-parallel degree changes nothing per rank except under parallel.zero = 1, where
// the moments (and on a GPU the fp32 master weights) are sharded over all `world` ranks, as
// DistributedAdamW shards them. Throws OptionsError (batch_layout's) when the options do not
// split over `world` ranks.
TrainingPlan plan_training(const RunOptions& o, const PlanTarget& target, idx seq_len, idx world = 0);
// The longest train.seq_len (a multiple of 2 * parallel.cp under context parallelism) whose plan
// fits target.budget, by bisection over the layout pass; 0 when not even the shortest fits.
idx longest_fitting_seq_len(const RunOptions& o, const PlanTarget& target, idx world = 0);

struct GenerationPlan {
  idx context = 0, batch = 0, kv_blocks = 0;
  std::size_t weights = 0;      // fp32 (cpu) or bf16 (GPU)
  std::size_t kv_cache = 0;     // paged K/V pools of the attention layers
  std::size_t mamba_state = 0;  // conv windows and SSM states of the Mamba layers
  std::size_t runtime = 0;
  std::size_t total() const;
};
// `batch` sequences of `context` tokens each, in KV blocks of 16 tokens as `nexus generate` uses.
GenerationPlan plan_generation(const ModelConfig& c, const PlanTarget& target, idx context, idx batch);

}  // namespace nexus
