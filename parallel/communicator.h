// The process group: MPI on CPU buffers. Owns MPI's lifetime, knows each rank's place (global and
// node-local), and provides the few collectives training needs.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>

#include "kernels/ops.h"

namespace nexus {

// MPI's lifetime: construct once at the top of main (thread level FUNNELED: only the main thread
// calls MPI); the destructor finalises.
class MpiRuntime {
 public:
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;
};

// A group of ranks (a view of an MPI communicator it does not own).
class Communicator {
 public:
  explicit Communicator(MPI_Comm comm);
  static Communicator world() { return Communicator(MPI_COMM_WORLD); }
  // This process alone: the single-rank reference that distributed results are compared with.
  static Communicator self() { return Communicator(MPI_COMM_SELF); }

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Rank among the processes on this node (MPI_Comm_split_type SHARED): valid under mpirun and srun.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  bool is_root() const { return rank_ == 0; }

  // In-place sum over all ranks. Large buffers go in buckets of `bucket_bytes`, all in flight at
  // once (non-blocking), so a multi-GB delta buffer never needs one giant message.
  void allreduce_sum(float* data, idx count, std::size_t bucket_bytes = std::size_t(64) << 20) const;
  void allreduce_sum(double* data, idx count) const;
  double sum(double value) const;
  std::int64_t sum(std::int64_t value) const;
  double max(double value) const;
  // True on every rank iff `ok` is true on every rank: how a failure on one rank fails all.
  bool all(bool ok) const;
  void broadcast(void* data, std::size_t bytes, int root = 0) const;
  void barrier() const;
  // Ends every process of the job with `code` after printing `message` (on this rank's stderr).
  [[noreturn]] void abort(const std::string& message, int code = 1) const;

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};

}  // namespace nexus
