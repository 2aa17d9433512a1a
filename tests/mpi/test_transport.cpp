// The choice of data plane (parallel.transport) and a Mesh built with each transport the CPU can
// run: the staged planes with Exec{cpu} must give the MPI groups' results (the GPU code path of a
// several-rank run, minus the device copies).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mpi/world.h"
#include "parallel/mesh.h"

namespace nexus {
namespace {

std::string error_of(std::string_view option, Device device, bool have_nccl, GpuPlacement gpus) {
  try {
    choose_transport(option, device, have_nccl, gpus);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Transport, AutoIsMpiOnTheCpuAndNcclOnlyWithOneRankPerGpu) {
  const GpuPlacement own{8, 1}, shared{1, 4}, none{0, 1};
  EXPECT_EQ(choose_transport("auto", Device::cpu, true, none), DataTransport::mpi);
  EXPECT_EQ(choose_transport("mpi", Device::cpu, false, none), DataTransport::mpi);
  EXPECT_EQ(choose_transport("auto", Device::cuda, true, own), DataTransport::nccl);
  EXPECT_EQ(choose_transport("auto", Device::cuda, false, own), DataTransport::staged);
  EXPECT_EQ(choose_transport("auto", Device::cuda, true, shared), DataTransport::staged);
  EXPECT_EQ(choose_transport("staged", Device::cuda, true, own), DataTransport::staged);
  EXPECT_EQ(choose_transport("staged", Device::cuda, false, shared), DataTransport::staged);
  EXPECT_EQ(choose_transport("nccl", Device::cuda, true, own), DataTransport::nccl);
  EXPECT_STREQ(transport_name(DataTransport::staged), "staged");
}

TEST(Transport, ImpossibleChoicesNameTheKeyTheValueAndWhatIsExpected) {
  const GpuPlacement own{2, 1}, shared{1, 2}, none{0, 1};
  EXPECT_NE(error_of("gloo", Device::cpu, true, own).find("parallel.transport = \"gloo\" is not one of auto, mpi, "
                                                           "staged, nccl"),
            std::string::npos);
  EXPECT_NE(error_of("nccl", Device::cpu, true, own).find("needs runtime.device = cuda"), std::string::npos);
  EXPECT_NE(error_of("staged", Device::cpu, true, own).find("needs runtime.device = cuda"), std::string::npos);
  EXPECT_NE(error_of("mpi", Device::cuda, true, own).find("CUDA-aware"), std::string::npos);
  EXPECT_NE(error_of("nccl", Device::cuda, false, own).find("this build has no NCCL"), std::string::npos);
  EXPECT_NE(error_of("nccl", Device::cuda, true, shared).find("2 ranks of one node share a GPU"), std::string::npos);
  EXPECT_NE(error_of("auto", Device::cuda, true, none).find("no GPU is visible"), std::string::npos);
#if NEXUS_HAS_NCCL
  EXPECT_TRUE(nccl_built());
#else
  EXPECT_FALSE(nccl_built());
#endif
}

// Every data plane of a staged mesh against the same mesh's MPI groups, on every cp the world allows.
TEST(Mesh, StagedPlanesEqualTheMpiGroups) {
  const Communicator& w = test::world();
  for (idx cp = 1; cp <= w.size(); ++cp) {
    if (w.size() % cp != 0) continue;
    const Mesh mesh(w, cp, DataTransport::staged, Exec{}, 24);  // 24 bytes: several pieces per message
    EXPECT_EQ(mesh.transport(), DataTransport::staged);
    const std::pair<const DataPlane*, const Communicator*> planes[] = {
        {&mesh.world_data(), &mesh.world()}, {&mesh.cp_data(), &mesh.cp_group()}, {&mesh.dp_data(), &mesh.dp_group()}};
    for (const auto& [staged, group] : planes) {
      EXPECT_NE(static_cast<const DataPlane*>(group), staged);
      EXPECT_EQ(staged->size(), group->size());
      EXPECT_EQ(staged->rank(), group->rank());
      std::vector<std::int64_t> a(11), b;
      for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::int64_t(i) * 1000 + w.rank();
      b = a;
      staged->allreduce_sum(a.data(), idx(a.size()));
      group->allreduce_sum(b.data(), idx(b.size()));
      EXPECT_EQ(a, b) << "cp " << cp;
      const int P = group->size(), r = group->rank();
      std::vector<double> sent(7, double(r)), got(7, -1.0);
      Request reqs[2] = {staged->irecv(got.data(), 7, (r - 1 + P) % P, 3), staged->isend(sent.data(), 7, (r + 1) % P, 3)};
      wait_all(reqs);
      EXPECT_EQ(got, std::vector<double>(7, double((r - 1 + P) % P))) << "cp " << cp;
    }
  }
}

TEST(Mesh, MpiTransportKeepsTheGroupsAsDataPlanes) {
  const Communicator& w = test::world();
  const Mesh mesh(w, 1, DataTransport::mpi, Exec{}, 0);
  EXPECT_EQ(&mesh.world_data(), static_cast<const DataPlane*>(&mesh.world()));
  EXPECT_EQ(&mesh.cp_data(), static_cast<const DataPlane*>(&mesh.cp_group()));
  EXPECT_EQ(&mesh.dp_data(), static_cast<const DataPlane*>(&mesh.dp_group()));
  EXPECT_EQ(Mesh(w, 1).transport(), DataTransport::mpi);
  // NCCL moves GPU buffers only (and a build without it says so): refused on every rank alike.
  EXPECT_THROW(Mesh(w, 1, DataTransport::nccl, Exec{}, 0), std::invalid_argument);
}

}  // namespace
}  // namespace nexus
