// GoogleTest main for tests that run under mpirun: every rank runs every test, and the process
// exit code is non-zero on all ranks if any test failed on any rank, so one rank's failure fails
// the whole run (and ctest sees it).
#include <gtest/gtest.h>

#include "kernels/cpu/blas_runtime.h"
#include "mpi/world.h"
#include "parallel/communicator.h"

namespace nexus::test {
namespace {
Communicator* g_world = nullptr;
}
const Communicator& world() { return *g_world; }
}  // namespace nexus::test

int main(int argc, char** argv) {
  nexus::select_blas_core(argv);
  nexus::MpiRuntime mpi(&argc, &argv);
  nexus::Communicator comm = nexus::Communicator::world();
  nexus::test::g_world = &comm;
  ::testing::InitGoogleTest(&argc, argv);
  if (comm.rank() != 0) {
    // Only rank 0 prints progress; other ranks still report their failures.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const bool ok = RUN_ALL_TESTS() == 0;
  if (!ok) std::fprintf(stderr, "rank %d: tests failed\n", comm.rank());
  const bool all_ok = comm.all(ok);
  return all_ok ? 0 : 1;
}
