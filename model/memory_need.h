// "Will this run fit?": the memory a run needs, computed from the model's own sizing code (the
// parameter table and the activation arena's layout pass), compared with the memory this process
// may still take, before anything big is allocated. An absurd configuration is refused with both
// figures instead of ending in std::bad_alloc, the OOM killer or swap.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "model/config.h"
#include "model/model.h"

namespace nexus {

// Bytes by purpose; every sum saturates at SIZE_MAX (sizes of absurd configs do not wrap).
struct MemoryNeed {
  std::size_t parameters = 0;   // fp32 weights
  std::size_t deltas = 0;       // fp32 gradient accumulators
  std::size_t optimizer = 0;    // AdamW exp_avg + exp_avg_sq
  std::size_t activations = 0;  // the activation arena (or an inference session's caches)
  std::size_t other = 0;        // e.g. a second copy of the weights while loading
  std::size_t total() const;
  // "parameters 1.00 GiB + deltas 1.00 GiB + ..." (the nonzero parts only).
  std::string breakdown() const;
};

// Model<float> + AdamW on one rank of a context-parallel group of `cp_size` ranks. With
// `optimizer_shards` > 1 (ZeRO-1, optim/distributed_adamw.h) the moments are this rank's shard
// (the largest, parallel/flat_shard.h), and the deltas gain the shard's reduce-scatter buffer.
MemoryNeed training_memory_need(const ModelConfig& config, BatchShape shape, int cp_size = 1, int optimizer_shards = 1);
// fp32 weights of `config` (parameters only), `copies` times.
MemoryNeed weights_memory_need(const ModelConfig& config, int copies = 1);

// How much more memory this process may take: the smallest of MemAvailable (/proc/meminfo), the
// cgroup's limit minus its usage (v2 memory.max, v1 memory.limit_in_bytes) and the address-space
// limit (ulimit -v) minus the address space in use. `source` names the one that binds.
struct MemoryAvailable {
  std::size_t bytes = SIZE_MAX;
  std::string source = "no limit found";
};
// Also below a cap set with set_memory_limit (runtime.memory_limit), when one is set, less what
// this process already holds (VmRSS).
MemoryAvailable available_memory();
// Caps the memory this process may hold in all (0: no cap) for the rest of its life; `source` names
// the setting in messages, e.g. "runtime.memory_limit = 512MiB".
void set_memory_limit(std::size_t bytes, const std::string& source);

// A size such as "512MiB", "80GiB", "141GB" or "1048576" (bytes): binary units KiB MiB GiB TiB,
// decimal units KB MB GB TB, an optional "B" alone; fractions allowed ("1.5GiB"). nullopt when
// the text is not one, or is zero or beyond SIZE_MAX.
std::optional<std::size_t> parse_bytes(const std::string& text);
inline constexpr const char* kBytesSyntax = "a size such as 512MiB, 80GiB or 141GB (binary KiB..TiB, decimal KB..TB)";

// This process's resident memory now (VmRSS) and at its peak so far (VmHWM), from /proc/self/status;
// 0 where that file is missing.
std::size_t resident_bytes();
std::size_t peak_resident_bytes();

// "12.50 GiB"
std::string gib(std::size_t bytes);

// The refusal message when `processes` processes on this machine, each needing `need`, do not
// fit in `available`; empty when they do. `what` names the run, e.g. "nexus train".
std::string memory_shortfall(const std::string& what, const MemoryNeed& need, int processes,
                             const MemoryAvailable& available);
// Throws ConfigError with memory_shortfall's message when it is not empty.
void require_memory(const std::string& what, const MemoryNeed& need, int processes = 1);

}  // namespace nexus
