// GoogleTest main for the GPU + MPI suites (run under mpirun): every rank must see a GPU, or every
// rank exits 77 (ctest: skipped) saying why; each rank then takes its node-local GPU, rank 0 says
// how the ranks sit on the GPUs, and the exit code is non-zero on every rank if any test failed on
// any rank.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "gpu_mpi/gpu_world.h"
#include "kernels/cuda/backend.h"

namespace nexus::test {
namespace {
const Communicator* g_world = nullptr;
GpuPlacement g_gpus;
}  // namespace
const Communicator& gpu_world() { return *g_world; }
const GpuPlacement& gpu_placement() { return g_gpus; }
}  // namespace nexus::test

int main(int argc, char** argv) {
  nexus::MpiRuntime mpi(&argc, &argv);
  const nexus::Communicator world = nexus::Communicator::world();
  nexus::test::g_world = &world;
  ::testing::InitGoogleTest(&argc, argv);
  const char* why = "";
  const bool have_gpu = nexus::cuda::visible_devices(&why) > 0;
  if (!world.all(have_gpu)) {
    const std::string reason =
        have_gpu ? "another rank sees no CUDA device" : std::string("no CUDA device visible: ") + why;
    std::printf("SKIPPED (rank %d): %s; these tests need a GPU on every rank\n", world.rank(), reason.c_str());
    return 77;
  }
  nexus::test::g_gpus = nexus::select_local_gpu(world);
  if (world.is_root())
    std::printf("%d ranks, %d GPU(s) visible per rank, at most %d rank(s) per GPU\n", world.size(),
                nexus::test::g_gpus.visible, nexus::test::g_gpus.ranks_per_gpu);
  if (world.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const bool ok = RUN_ALL_TESTS() == 0;
  if (!ok) std::fprintf(stderr, "rank %d: tests failed\n", world.rank());
  return world.all(ok) ? 0 : 1;
}
