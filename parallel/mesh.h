// The process mesh of a run: world = dp x cp, cp-inner (DESIGN.md section 4). The ranks of one
// sequence are neighbours (rank = dp_rank * cp + cp_rank), so a cp group sits on one node when cp
// divides the ranks per node. The mesh owns the groups; model/ and parallel/ borrow their data
// planes, the trainer uses the control planes.
#pragma once

#include "parallel/communicator.h"

namespace nexus {

class Mesh {
 public:
  // Collective over `world`. Throws std::invalid_argument unless cp >= 1 divides world.size().
  Mesh(const Communicator& world, idx cp);

  idx dp() const { return dp_; }
  idx cp() const { return cp_; }
  idx dp_rank() const { return dp_rank_; }
  idx cp_rank() const { return cp_rank_; }

  // Control planes (MPI): agreeing on stops and failures, small values, broadcasts.
  const Communicator& world() const { return world_; }
  const Communicator& cp_group() const { return cp_group_; }
  const Communicator& dp_group() const { return dp_group_; }

  // Data planes: deltas are summed over the whole world (every rank holds a share of the global
  // batch's tokens), sequences are shared over the cp group, ZeRO-1 shards over the dp group.
  const DataPlane& world_data() const { return world_; }
  const DataPlane& cp_data() const { return cp_group_; }
  const DataPlane& dp_data() const { return dp_group_; }

 private:
  Communicator world_;
  idx dp_, cp_, dp_rank_, cp_rank_;
  Communicator cp_group_;  // the cp ranks of this rank's sequence
  Communicator dp_group_;  // the ranks holding the same zigzag part (same cp_rank) of other sequences
};

}  // namespace nexus
