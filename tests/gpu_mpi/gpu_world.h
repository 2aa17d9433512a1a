// What gpu_mpi_main sets up before any GPU + MPI test runs: the job's communicator and the GPU this
// rank was placed on (parallel/transport.h's node-local selection).
#pragma once

#include "parallel/communicator.h"
#include "parallel/transport.h"

namespace nexus::test {
const Communicator& gpu_world();
const GpuPlacement& gpu_placement();
}  // namespace nexus::test
