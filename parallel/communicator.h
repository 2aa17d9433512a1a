// The MPI process group: the control plane of every run (bootstrap, ranks and groups, agreeing on
// failures and small values) and the data plane on CPU buffers (parallel/data_plane.h). Owns MPI's
// lifetime and knows each rank's place (global and node-local).
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "parallel/data_plane.h"

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

// MPI counts are int: larger messages travel in pieces of at most this many bytes.
inline constexpr std::size_t kMessagePieceBytes = std::size_t(1) << 30;

// A group of ranks. Constructed from an MPI_Comm it is a view that owns nothing (world, self);
// split() returns one that owns its MPI_Comm, shared by its copies and freed with the last.
class Communicator final : public DataPlane {
 public:
  explicit Communicator(MPI_Comm comm);
  static Communicator world() { return Communicator(MPI_COMM_WORLD); }
  // This process alone: the single-rank reference that distributed results are compared with.
  static Communicator self() { return Communicator(MPI_COMM_SELF); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // Rank among the processes on this node (MPI_Comm_split_type SHARED): valid under mpirun and srun.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  bool is_root() const { return rank_ == 0; }

  // The data plane's all-reduce sends large buffers in buckets of this many bytes, all in flight
  // at once (non-blocking), so a multi-GB delta buffer never needs one giant message.
  void set_bucket_bytes(std::size_t bytes);

  // Control plane: small values agreed over the group.
  double sum(double value) const;
  std::int64_t sum(std::int64_t value) const;
  double max(double value) const;
  // True on every rank iff `ok` is true on every rank: how a failure on one rank fails all.
  bool all(bool ok) const;
  void broadcast(void* data, std::size_t bytes, int root = 0) const;
  void barrier() const;
  // The ranks with the same `color` (>= 0) form a new group, ordered by `key` (ties by rank here):
  // e.g. cp groups of a dp x cp world, cp-inner, are split(rank / cp, rank). Collective.
  Communicator split(int color, int key) const;

  // Non-blocking point-to-point of raw bytes, in pieces of at most `piece_bytes` (sender and
  // receiver must use the same size and piece). Messages with the same (peer, tag) match in order.
  // The data plane's typed isend/irecv use this with the default piece.
  Request isend_bytes(const void* data, std::size_t bytes, int dest, int tag,
                      std::size_t piece_bytes = kMessagePieceBytes) const;
  Request irecv_bytes(void* data, std::size_t bytes, int source, int tag,
                      std::size_t piece_bytes = kMessagePieceBytes) const;

  // Ends every process of the job with `code` after printing `message` (on this rank's stderr).
  [[noreturn]] void abort(const std::string& message, int code = 1) const;

  // From now on a blocking MPI call of this process (a collective, or the wait for a transfer)
  // that has not returned after `timeout` ends the process: one line on stderr naming `rank` and
  // the call, then a non-zero exit, which makes mpirun or srun end the other ranks. A peer that
  // died ends the job anyway (the launcher notices); this is for a peer that hangs (stuck I/O, a
  // deadlock), where every other rank would otherwise wait forever. A thread watches
  // (parallel/comm_watchdog.h, as for NCCL); MPI cannot be interrupted, so ending the process is
  // the only way out. Call from the thread that makes the MPI calls; a later call replaces the
  // timeout.
  static void watch_blocking_calls(std::chrono::seconds timeout, int rank);

 private:
  void do_allreduce_sum(void* data, idx count, DType t) const override;
  Request do_iallreduce_sum(void* data, idx count, DType t) const override;
  Request do_ireduce_scatter_sum(void* data, std::span<const idx> counts, void* recv, DType t) const override;
  void do_allgather(const void* send, void* recv, idx count, DType t) const override;
  void do_reduce_scatter_sum(const void* send, void* recv, idx count, DType t) const override;
  Request do_isend(const void* data, idx count, DType t, int dest, int tag) const override;
  Request do_irecv(void* data, idx count, DType t, int source, int tag) const override;

  MPI_Comm comm_;
  std::shared_ptr<MPI_Comm> owned_;  // set when this group owns comm_ (split): frees it with the last copy
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::size_t bucket_bytes_ = std::size_t(64) << 20;
};

}  // namespace nexus
