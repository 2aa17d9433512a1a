#include "trainer/plan.h"

#include <algorithm>

#include "model/checked_math.h"
#include "model/inference.h"

namespace nexus {

namespace {

// nvidia-smi's total memory of each card (what the allocator can see at most).
struct KnownDevice {
  const char* name;
  std::size_t bytes;
};
constexpr KnownDevice kGpus[] = {{"h100-80g", std::size_t(81559) << 20}, {"h200", std::size_t(143771) << 20}};

}  // namespace

idx optimizer_shards(const RunOptions& o, const BatchLayout& layout) {
  // ZeRO-1 shards the moments over every rank of the run (DistributedAdamW), none on one rank.
  return o.parallel.zero == 1 && layout.world > 1 ? layout.world : 1;
}

std::size_t checkpoint_host_staging(const RunOptions& o, const BatchLayout& layout, bool root) {
  const std::size_t whole = weights_memory_need(o.model).parameters;  // n fp32
  const bool sharded = optimizer_shards(o, layout) > 1;
  if (o.runtime.device != "cuda") return root && sharded ? saturating_mul(whole, 2) : 0;
  return root || !sharded ? saturating_mul(whole, 3) : whole;
}

MemoryNeed run_memory_need(const RunOptions& o, const BatchLayout& layout) {
  MemoryNeed need = training_memory_need(o.model, BatchShape{layout.micro_batch, o.train.seq_len / layout.cp},
                                         int(layout.cp), int(optimizer_shards(o, layout)));
  // The loader's batch of whole sequences (tokens and targets, int32) and its zigzag copy.
  need.other = saturating_mul(std::size_t(layout.micro_batch) * std::size_t(o.train.seq_len), 2 * sizeof(std::int32_t) * 2);
  return need;
}

PlanTarget plan_target(const std::string& device, const std::string& memory, idx ranks_per_machine) {
  PlanTarget t;
  t.name = device;
  if (device == "cpu") {
    const MemoryAvailable here = available_memory();
    t.budget = here.bytes == SIZE_MAX ? SIZE_MAX : here.bytes / std::size_t(std::max<idx>(ranks_per_machine, 1));
    t.budget_source = here.source + (ranks_per_machine > 1 ? ", split over " + std::to_string(ranks_per_machine) +
                                                                 " ranks on this machine"
                                                           : "");
  } else {
    const auto* known = std::find_if(std::begin(kGpus), std::end(kGpus),
                                     [&](const KnownDevice& d) { return device == d.name; });
    if (known == std::end(kGpus))
      throw OptionsError("nexus plan: --device " + device + " is not one of cpu, h100-80g, h200");
    t.gpu = true;
    t.budget = known->bytes;
    t.budget_source = device + " (nvidia-smi total " + gib(known->bytes) + ")";
    t.runtime = kGpuRuntimeReserve;
    t.runtime_source = "CUDA context, cuBLAS workspaces, allocator slack (assumed)";
  }
  if (!memory.empty()) {
    const auto bytes = parse_bytes(memory);
    if (!bytes) throw OptionsError("nexus plan: --memory " + memory + " is not " + kBytesSyntax);
    t.budget = *bytes;
    t.budget_source = "--memory " + memory;
  }
  return t;
}

std::size_t TrainingPlan::total() const {
  std::size_t sum = 0;
  for (std::size_t part : {weights, master, deltas, moments, arena.total(), loader, runtime}) sum = saturating_add(sum, part);
  return sum;
}

TrainingPlan plan_training(const RunOptions& o, const PlanTarget& target, idx seq_len, idx world) {
  RunOptions at = o;
  at.train.seq_len = seq_len;
  if (target.gpu) at.runtime.device = "cuda";  // the plan is for the target, whatever the INI says
  const BatchLayout layout = batch_layout(at, world > 0 ? world : at.parallel.cp);
  TrainingPlan p;
  p.seq_len = seq_len;
  p.cp = layout.cp;
  p.world = layout.world;
  p.local_len = seq_len / layout.cp;
  p.micro_batch = layout.micro_batch;
  p.runtime = target.runtime;
  const BatchShape shape{layout.micro_batch, p.local_len};
  const MemoryNeed need = run_memory_need(at, layout);  // what train() checks
  p.shards = optimizer_shards(at, layout);
  p.loader = need.other;
  p.root_staging = checkpoint_host_staging(at, layout, true);
  p.deltas = need.deltas;
  p.moments = need.optimizer;
  if (target.gpu) {
    p.weights = need.parameters / 2;  // bf16 compute weights
    // The fp32 master copy: whole, or under ZeRO-1 the shard this rank integrates (the moments' size).
    p.master = p.shards > 1 ? need.optimizer / 2 : need.parameters;
    p.arena = Model<bf16>::activation_breakdown(at.model, shape, int(layout.cp));
  } else {
    p.weights = need.parameters;
    p.arena = Model<float>::activation_breakdown(at.model, shape, int(layout.cp));
  }
  return p;
}

idx longest_fitting_seq_len(const RunOptions& o, const PlanTarget& target, idx world) {
  const idx cp = o.parallel.cp;
  // Under cp each rank holds two zigzag chunks of at least d_conv - 1 tokens.
  const idx unit = cp > 1 ? 2 * cp : 1;
  const idx first = cp > 1 ? unit * std::max<idx>(1, o.model.mamba_d_conv - 1) : 1;
  // The options' own bounds: train.seq_len and micro_batch * seq_len.
  const idx last = std::min<idx>(idx(1) << 24, (idx(1) << 28) / o.train.micro_batch) / unit * unit;
  auto fits = [&](idx T) { return plan_training(o, target, T, world).total() <= target.budget; };
  if (!fits(first)) return 0;
  if (fits(last)) return last;
  idx lo = first / unit, hi = last / unit;  // fits(lo * unit), !fits(hi * unit)
  while (hi - lo > 1) {
    const idx mid = lo + (hi - lo) / 2;
    (fits(mid * unit) ? lo : hi) = mid;
  }
  return lo * unit;
}

std::size_t GenerationPlan::total() const {
  return saturating_add(saturating_add(weights, kv_cache), saturating_add(mamba_state, runtime));
}

GenerationPlan plan_generation(const ModelConfig& c, const PlanTarget& target, idx context, idx batch) {
  constexpr idx kBlockTokens = 16;  // as nexus generate
  GenerationPlan g;
  g.context = context;
  g.batch = batch;
  g.kv_blocks = kv_blocks_needed(c, context, batch, kBlockTokens);
  g.runtime = target.runtime;
  const MemoryNeed weights = weights_memory_need(c);
  g.weights = target.gpu ? weights.parameters / 2 : weights.parameters;
  auto cache = [&](idx blocks) {
    return target.gpu ? InferenceSession<bf16>::cache_bytes(c, batch, kBlockTokens, blocks)
                      : InferenceSession<float>::cache_bytes(c, batch, kBlockTokens, blocks);
  };
  g.mamba_state = cache(0);
  g.kv_cache = cache(g.kv_blocks) - g.mamba_state;
  return g;
}

}  // namespace nexus
