// The process group: MPI on CPU buffers. Owns MPI's lifetime, knows each rank's place (global and
// node-local), and provides the few collectives training needs.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/types.h"

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

// A non-blocking transfer (one or more MPI requests, one per piece). Move-only. The buffer must
// stay untouched until wait() returns; the destructor waits for a transfer still in flight, so a
// buffer is never written behind the back of code that unwound past its request.
class Request {
 public:
  Request() = default;
  Request(Request&& other) noexcept;
  Request& operator=(Request&& other) noexcept;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  ~Request();

  void wait();
  // True once complete. Calling it between compute phases also lets MPI progress a large
  // (rendezvous) transfer, which otherwise may only move inside wait().
  bool test();

 private:
  friend class Communicator;
  friend void wait_all(std::span<Request> requests);
  std::vector<MPI_Request> pieces_;
};

// Completes every request (in one MPI_Waitall).
void wait_all(std::span<Request> requests);

// A group of ranks. Constructed from an MPI_Comm it is a view that owns nothing (world, self);
// split() returns one that owns its MPI_Comm, shared by its copies and freed with the last.
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
  // The ranks with the same `color` (>= 0) form a new group, ordered by `key` (ties by rank here):
  // e.g. cp groups of a dp x cp world, cp-inner, are split(rank / cp, rank). Collective.
  Communicator split(int color, int key) const;

  // Non-blocking point-to-point of raw bytes, in pieces of at most `piece_bytes` (sender and
  // receiver must use the same size and piece). Messages with the same (peer, tag) match in order.
  Request isend_bytes(const void* data, std::size_t bytes, int dest, int tag,
                      std::size_t piece_bytes = kMessagePieceBytes) const;
  Request irecv_bytes(void* data, std::size_t bytes, int source, int tag,
                      std::size_t piece_bytes = kMessagePieceBytes) const;
  template <typename T>
  Request isend(const T* data, idx count, int dest, int tag) const {
    static_assert(std::is_trivially_copyable_v<T>);
    return isend_bytes(data, std::size_t(count) * sizeof(T), dest, tag);
  }
  template <typename T>
  Request irecv(T* data, idx count, int source, int tag) const {
    static_assert(std::is_trivially_copyable_v<T>);
    return irecv_bytes(data, std::size_t(count) * sizeof(T), source, tag);
  }

  // Ends every process of the job with `code` after printing `message` (on this rank's stderr).
  [[noreturn]] void abort(const std::string& message, int code = 1) const;

  // Every rank's block of `bytes` (the same on all ranks), concatenated in rank order into
  // recv[size * bytes]; send must not overlap recv. Collective. A block must fit an int count.
  void allgather_bytes(const void* send, std::size_t bytes, void* recv) const;
  template <typename T>
  void allgather(const T* send, idx count, T* recv) const {
    static_assert(std::is_trivially_copyable_v<T>);
    allgather_bytes(send, std::size_t(count) * sizeof(T), recv);
  }

 private:
  MPI_Comm comm_;
  std::shared_ptr<MPI_Comm> owned_;  // set when this group owns comm_ (split): frees it with the last copy
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};

}  // namespace nexus
