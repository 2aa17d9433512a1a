// The process mesh of a run: world = dp x cp, cp-inner (DESIGN.md section 4). The ranks of one
// sequence are neighbours (rank = dp_rank * cp + cp_rank), so a cp group sits on one node when cp
// divides the ranks per node. The mesh owns the groups; model/ and parallel/ borrow their data
// planes, the trainer uses the control planes.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>

#include "parallel/communicator.h"
#include "parallel/transport.h"

namespace nexus {

class Mesh {
 public:
  // Collective over `world`. Throws std::invalid_argument unless cp >= 1 divides world.size().
  // The data planes are the MPI groups themselves (host buffers: the CPU backend).
  Mesh(const Communicator& world, idx cp);
  // The same groups with data planes for buffers on ex.device carried by `transport`: mpi (the
  // groups, as above), staged (host staging buffers of `staging_bytes`, the run's largest message
  // rounded up as the caller likes; the same on every rank) or nccl (one NCCL communicator per
  // group, on the current CUDA device: select_local_gpu first; `nccl_timeout` bounds each of its
  // operations). Collective over `world`.
  Mesh(const Communicator& world, idx cp, DataTransport transport, Exec ex, std::size_t staging_bytes,
       std::chrono::seconds nccl_timeout = std::chrono::seconds(300));
  ~Mesh();
  // The data planes borrow the groups: a Mesh stays where it was made.
  Mesh(const Mesh&) = delete;
  Mesh& operator=(const Mesh&) = delete;

  idx dp() const { return dp_; }
  idx cp() const { return cp_; }
  idx dp_rank() const { return dp_rank_; }
  idx cp_rank() const { return cp_rank_; }
  DataTransport transport() const { return transport_; }

  // Control planes (MPI): agreeing on stops and failures, small values, broadcasts.
  const Communicator& world() const { return world_; }
  const Communicator& cp_group() const { return cp_group_; }
  const Communicator& dp_group() const { return dp_group_; }

  // Data planes: deltas are summed over the whole world (every rank holds a share of the global
  // batch's tokens), sequences are shared over the cp group, ZeRO-1 shards over the dp group.
  const DataPlane& world_data() const { return plane(world_plane_, world_); }
  const DataPlane& cp_data() const { return plane(cp_plane_, cp_group_); }
  const DataPlane& dp_data() const { return plane(dp_plane_, dp_group_); }

 private:
  static const DataPlane& plane(const std::unique_ptr<DataPlane>& own, const Communicator& group) {
    return own ? *own : static_cast<const DataPlane&>(group);
  }

  Communicator world_;
  idx dp_, cp_, dp_rank_, cp_rank_;
  Communicator cp_group_;  // the cp ranks of this rank's sequence
  Communicator dp_group_;  // the ranks holding the same zigzag part (same cp_rank) of other sequences
  DataTransport transport_ = DataTransport::mpi;
  // Null for mpi: the groups above are the data planes.
  std::unique_ptr<DataPlane> world_plane_, cp_plane_, dp_plane_;
};

}  // namespace nexus
