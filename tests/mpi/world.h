#pragma once
#include "parallel/communicator.h"
namespace nexus::test {
// The job's communicator, set up by mpi_main before any test runs.
const Communicator& world();
}  // namespace nexus::test
