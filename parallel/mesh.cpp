#include "parallel/mesh.h"

#include <stdexcept>
#include <string>

#include "parallel/staged_data_plane.h"
#if NEXUS_HAS_NCCL
#include "parallel/nccl_data_plane.h"
#endif

namespace nexus {

namespace {

idx checked_cp(const Communicator& world, idx cp) {
  if (cp < 1 || world.size() % cp != 0)
    throw std::invalid_argument("parallel.cp = " + std::to_string(cp) + " must be >= 1 and divide the " +
                                std::to_string(world.size()) + " ranks of the job");
  return cp;
}

std::unique_ptr<DataPlane> data_plane(const Communicator& group, DataTransport transport, const Exec& ex,
                                      std::size_t staging_bytes, std::chrono::seconds nccl_timeout) {
  switch (transport) {
    case DataTransport::mpi: return nullptr;
    case DataTransport::staged: return std::make_unique<StagedDataPlane>(group, ex, staging_bytes);
    case DataTransport::nccl:
#if NEXUS_HAS_NCCL
      return std::make_unique<NcclDataPlane>(group, ex, nccl_timeout);
#else
      (void)nccl_timeout;
      throw std::invalid_argument("Mesh: the nccl data plane is not in this build (NCCL was not found when it was "
                                  "configured); expected the staged transport");
#endif
  }
  throw std::invalid_argument("Mesh: unknown data transport " + std::to_string(int(transport)));
}

}  // namespace

Mesh::Mesh(const Communicator& world, idx cp)
    : world_(world),
      dp_(world.size() / checked_cp(world, cp)),
      cp_(cp),
      dp_rank_(world.rank() / cp),
      cp_rank_(world.rank() % cp),
      cp_group_(world.split(int(dp_rank_), world.rank())),
      dp_group_(world.split(int(cp_rank_), world.rank())) {}

// Every rank builds the same planes in the same order (world, cp, dp): NCCL communicators are
// created collectively over each group.
Mesh::Mesh(const Communicator& world, idx cp, DataTransport transport, Exec ex, std::size_t staging_bytes,
           std::chrono::seconds nccl_timeout)
    : Mesh(world, cp) {
  transport_ = transport;
  world_plane_ = data_plane(world_, transport, ex, staging_bytes, nccl_timeout);
  cp_plane_ = data_plane(cp_group_, transport, ex, staging_bytes, nccl_timeout);
  dp_plane_ = data_plane(dp_group_, transport, ex, staging_bytes, nccl_timeout);
}

Mesh::~Mesh() = default;

}  // namespace nexus
