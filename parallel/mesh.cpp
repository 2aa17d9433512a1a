#include "parallel/mesh.h"

#include <stdexcept>
#include <string>

namespace nexus {

namespace {

idx checked_cp(const Communicator& world, idx cp) {
  if (cp < 1 || world.size() % cp != 0)
    throw std::invalid_argument("parallel.cp = " + std::to_string(cp) + " must be >= 1 and divide the " +
                                std::to_string(world.size()) + " ranks of the job");
  return cp;
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

}  // namespace nexus
