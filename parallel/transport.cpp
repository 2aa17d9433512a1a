#include "parallel/transport.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#if NEXUS_HAS_CUDA
#include <cuda_runtime.h>
#endif

namespace nexus {

const char* transport_name(DataTransport t) {
  switch (t) {
    case DataTransport::mpi: return "mpi";
    case DataTransport::staged: return "staged";
    case DataTransport::nccl: return "nccl";
  }
  return "?";
}

bool nccl_built() {
#if NEXUS_HAS_NCCL
  return true;
#else
  return false;
#endif
}

DataTransport choose_transport(std::string_view option, Device device, bool have_nccl, const GpuPlacement& gpus) {
  const std::string value = "parallel.transport = " + std::string(option);
  if (option != "auto" && option != "mpi" && option != "staged" && option != "nccl")
    throw std::invalid_argument("parallel.transport = \"" + std::string(option) +
                                "\" is not one of auto, mpi, staged, nccl");
  if (device == Device::cpu) {
    if (option == "auto" || option == "mpi") return DataTransport::mpi;
    throw std::invalid_argument(value + " needs runtime.device = cuda (on the CPU: auto or mpi)");
  }
  if (option == "mpi")
    throw std::invalid_argument(value + " with runtime.device = cuda would hand device pointers to MPI, which needs "
                                        "a CUDA-aware MPI; expected auto, staged or nccl");
  if (gpus.visible < 1)
    throw std::invalid_argument(value + " with runtime.device = cuda, but no GPU is visible to this rank");
  const bool shared = gpus.ranks_per_gpu > 1;
  if (option == "staged") return DataTransport::staged;
  if (option == "auto") return have_nccl && !shared ? DataTransport::nccl : DataTransport::staged;
  if (!have_nccl)
    throw std::invalid_argument(value + ": this build has no NCCL (not found next to the CUDA toolkit when it was "
                                        "configured); expected auto or staged, or rebuild with NCCL");
  if (shared)
    throw std::invalid_argument(value + ": " + std::to_string(gpus.ranks_per_gpu) +
                                " ranks of one node share a GPU (" + std::to_string(gpus.visible) +
                                " visible), and NCCL refuses two ranks on one GPU; expected one rank per GPU "
                                "(srun --gpus-per-task=1), or parallel.transport = staged or auto");
  return DataTransport::nccl;
}

GpuPlacement select_local_gpu(const Communicator& world) {
#if NEXUS_HAS_CUDA
  GpuPlacement placement;
  // Collective below: a rank that cannot pick a GPU must still take part, then everybody throws.
  std::string problem;
  std::array<char, 16> uuid{};
  int count = 0;
  if (const cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
    problem = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
    cudaGetLastError();
    count = 0;
  } else if (count == 0) {
    problem = "no GPU visible";
  } else {
    const int device = world.local_rank() % count;
    cudaDeviceProp prop{};
    if (const cudaError_t e1 = cudaSetDevice(device); e1 != cudaSuccess)
      problem = "cudaSetDevice(" + std::to_string(device) + "): " + cudaGetErrorString(e1);
    else if (const cudaError_t e2 = cudaGetDeviceProperties(&prop, device); e2 != cudaSuccess)
      problem = "cudaGetDeviceProperties(" + std::to_string(device) + "): " + cudaGetErrorString(e2);
    else
      std::memcpy(uuid.data(), prop.uuid.bytes, uuid.size());
  }
  placement.visible = count;
  if (!world.all(problem.empty()))
    throw std::runtime_error("select_local_gpu: rank " + std::to_string(world.rank()) + " (local rank " +
                             std::to_string(world.local_rank()) + "): " +
                             (problem.empty() ? "another rank could not select a GPU" : problem));
  // (host name, GPU UUID) of every rank: ranks on one host with the same UUID share a GPU.
  constexpr std::size_t kHost = 64;
  std::vector<char> mine(kHost + uuid.size(), 0);
  gethostname(mine.data(), kHost - 1);
  std::memcpy(mine.data() + kHost, uuid.data(), uuid.size());
  std::vector<char> all(mine.size() * std::size_t(world.size()));
  world.allgather(mine.data(), idx(mine.size()), all.data());
  std::map<std::string, int> ranks_on;
  for (int r = 0; r < world.size(); ++r)
    ++ranks_on[std::string(all.data() + std::size_t(r) * mine.size(), mine.size())];
  for (const auto& [gpu, ranks] : ranks_on) placement.ranks_per_gpu = std::max(placement.ranks_per_gpu, ranks);
  return placement;
#else
  throw std::runtime_error("select_local_gpu: rank " + std::to_string(world.rank()) +
                           ": this build has no CUDA backend (configure with the CUDA toolkit, NEXUS_CUDA=ON)");
#endif
}

DataTransport select_local_gpu(const Communicator& world, std::string_view option) {
  return choose_transport(option, Device::cuda, nccl_built(), select_local_gpu(world));
}

}  // namespace nexus
