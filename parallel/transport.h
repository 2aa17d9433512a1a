// Which data plane carries a run's tensors (parallel.transport), and the GPU each rank computes on.
//   mpi:    the MPI Communicator on host buffers: the CPU backend's plane.
//   staged: device buffers copied to host memory around the MPI operations
//           (parallel/staged_data_plane.h): any GPU count, no NCCL, no CUDA-aware MPI.
//   nccl:   NCCL on device buffers (parallel/nccl_data_plane.h): one rank per GPU.
//   auto:   mpi on the CPU; on a GPU nccl when this build has it and no two ranks of a node share
//           a GPU, else staged.
#pragma once

#include <string>
#include <string_view>

#include "kernels/types.h"
#include "parallel/communicator.h"

namespace nexus {

enum class DataTransport { mpi, staged, nccl };

const char* transport_name(DataTransport t);

// Whether this build has the NCCL data plane (NCCL found next to the CUDA toolkit).
bool nccl_built();

// Where this node's GPUs stand, seen by one rank: the devices it sees and the most ranks of one
// node that selected the same GPU (1 when every rank has its own).
struct GpuPlacement {
  int visible = 0;
  int ranks_per_gpu = 1;
};

// parallel.transport = `option` for a run on `device`. Throws std::invalid_argument naming the key,
// the value and what is expected when the option is not one of auto, mpi, staged, nccl, or asks
// for what cannot run: staged or nccl on the CPU; mpi on a GPU (MPI would be handed device
// pointers: that needs a CUDA-aware MPI, which is not assumed); nccl in a build without NCCL; nccl
// with two ranks on one GPU (NCCL refuses it); any GPU transport with no GPU visible.
DataTransport choose_transport(std::string_view option, Device device, bool have_nccl, const GpuPlacement& gpus);

// Collective over `world`: makes GPU (node-local rank mod visible devices) current for this
// process (cudaSetDevice) and tells how the node's ranks ended up on its GPUs, comparing the GPUs'
// UUIDs over the node, so that CUDA_VISIBLE_DEVICES narrowed per task by Slurm
// (--gpus-per-task=1: every rank sees "device 0", each a different GPU) counts as one rank per
// GPU. Throws std::runtime_error when this build has no CUDA backend or no GPU is visible.
GpuPlacement select_local_gpu(const Communicator& world);

// The transport for a GPU run: select_local_gpu, then choose_transport on its placement (so with
// parallel.transport = nccl it refuses, naming the counts, when ranks share a GPU). Collective.
DataTransport select_local_gpu(const Communicator& world, std::string_view option);

}  // namespace nexus
