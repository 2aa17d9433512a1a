// Contiguous shards of a flat buffer over a group of ranks: ZeRO-1's layout of the optimizer state
// (optim/distributed_adamw.h). With block = n / ranks, rank r holds [r * block, (r + 1) * block),
// and the last rank also holds the tail [ranks * block, n) of n % ranks (< ranks) elements.
//
// Why floor and a tail rather than ceil(n / ranks) and padding: the optimizer's blocking
// reduce-scatter and its all-gather take equal counts (MPI's _block variants, NCCL's only form)
// and read or write ranks * count contiguous elements, so equal ceil-sized shards would need the
// model's delta and parameter buffers padded past n. Equal floor-sized blocks fit inside them; the
// tail (fewer elements than ranks) travels by itself there, and the last rank holds at most
// ranks - 1 more elements than the others. (The overlapped reduction's buckets give each rank its
// own count, DataPlane::ireduce_scatter_sum, so the tail needs nothing special there.)
#pragma once

#include <stdexcept>
#include <string>

#include "kernels/types.h"

namespace nexus {

struct FlatShard {
  idx offset = 0;  // first element of the flat buffer this rank holds
  idx numel = 0;   // block, or block + tail on the last rank
  idx block = 0;   // the equal part every rank holds: n / ranks
  idx tail = 0;    // n % ranks: the elements after ranks * block, held by the last rank
  bool operator==(const FlatShard&) const = default;
};

// Rank `rank`'s shard of a buffer of n elements over `ranks` ranks. Throws std::invalid_argument
// unless n >= 0 and 0 <= rank < ranks.
inline FlatShard flat_shard(idx n, idx ranks, idx rank) {
  if (n < 0 || ranks < 1 || rank < 0 || rank >= ranks)
    throw std::invalid_argument("flat_shard: n = " + std::to_string(n) + ", rank " + std::to_string(rank) + " of " +
                                std::to_string(ranks) + ": expected n >= 0 and 0 <= rank < ranks");
  FlatShard s;
  s.block = n / ranks;
  s.tail = n % ranks;
  s.offset = rank * s.block;
  s.numel = s.block + (rank == ranks - 1 ? s.tail : 0);
  return s;
}

// The most elements any rank holds (the last rank's): what a memory check counts per rank.
inline idx largest_flat_shard(idx n, idx ranks) { return flat_shard(n, ranks, ranks - 1).numel; }

}  // namespace nexus
