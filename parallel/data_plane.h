// The data plane: the collectives and point-to-point transfers that move tensors between ranks
// (gradient all-reduce, ring attention's K/V, Mamba-2 state summaries). It is an interface so
// that model/ and parallel/ never name the transport: MPI on CPU buffers (parallel/communicator.h),
// GPU buffers staged through the host around MPI, or NCCL on GPU buffers implement it.
// The control plane (bootstrap, groups, agreeing on failures and small values) stays MPI and is
// not part of this interface.
//
// Every operation names its element type, so an implementation can map it to its own (MPI
// datatypes, ncclDataType_t) and an NCCL one can reduce bf16 natively. bf16 moves bit for bit
// everywhere (point to point, all-gather); a bf16 *sum* runs on NCCL only: the MPI communicator
// (and the staged plane around it) refuses it, as no caller sums bf16 (gradients, statistics and
// states are accum_t<bf16> = fp32). Operations on one group must be issued in the same order on
// every rank of the group.
//
// Buffers live on the plane's device (host memory for the MPI plane, ex.device for the staged and
// NCCL planes): a host variable goes over the control plane (the MPI Communicator), never here.
//
// Completion is stream-ordered. An operation (or a Request's wait()) returns once its result is
// ordered before all later work on the caller's stream (the plane's Exec::stream); it may return
// before the data has moved (the NCCL plane: the host does not wait, so the GPU overlaps the
// transfer with compute). The results are visible to later work on the caller's stream; host
// reads need the stream synchronized (HostMirror / copy_to_host do). Planes that complete on the
// host (MPI, staged) meet this contract as well.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/types.h"

namespace nexus {

enum class DType : std::uint8_t { u8, i32, i64, f32, f64, bf16 };

std::size_t dtype_bytes(DType t);

template <typename T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DType::f32;
  else if constexpr (std::is_same_v<T, double>) return DType::f64;
  else if constexpr (std::is_same_v<T, std::int32_t>) return DType::i32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return DType::i64;
  else if constexpr (std::is_same_v<T, bf16>) return DType::bf16;
  else {
    static_assert(sizeof(T) == 1 && std::is_trivially_copyable_v<T>, "no DType for this element type");
    return DType::u8;
  }
}

// A non-blocking transfer in flight. Move-only. The buffer must stay untouched until wait()
// returns: untouched by the host and by other streams; kernels on the caller's stream enqueued
// after wait() are ordered after the transfer (see "Completion" above), so they may read and
// write it. The destructor waits (as wait() does) for a transfer still in flight, so a buffer is
// never written behind the back of code that unwound past its request.
class Request {
 public:
  // What an implementation keeps for one transfer.
  struct Pending {
    virtual ~Pending() = default;
    virtual void wait() = 0;
    virtual bool test() = 0;
  };

  Request() = default;
  explicit Request(std::unique_ptr<Pending> pending) : pending_(std::move(pending)) {}
  Request(Request&&) noexcept = default;
  Request& operator=(Request&& other) noexcept {
    if (this != &other) {
      finish_quietly();
      pending_ = std::move(other.pending_);
    }
    return *this;
  }
  ~Request() { finish_quietly(); }

  void wait() {
    if (pending_) pending_->wait();
    pending_.reset();
  }
  // True once complete (the data has moved: no wait on any stream is needed). Calling it between
  // compute phases also lets the transport progress a large transfer, which otherwise may only
  // move inside wait().
  bool test() {
    if (pending_ && pending_->test()) pending_.reset();
    return !pending_;
  }

 private:
  // No throwing from a destructor: an error at this point has nowhere to go, and the buffer is
  // safe either way once the transfer has ended.
  void finish_quietly() noexcept {
    if (!pending_) return;
    try {
      pending_->wait();
    } catch (...) {
    }
    pending_.reset();
  }
  std::unique_ptr<Pending> pending_;
};

// Completes every request.
void wait_all(std::span<Request> requests);

class DataPlane {
 public:
  virtual ~DataPlane() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // In place: data[count] = the sum over the group's ranks.
  template <typename T>
  void allreduce_sum(T* data, idx count) const {
    do_allreduce_sum(data, count, dtype_of<T>());
  }
  // allreduce_sum, started now and complete when the Request is: the caller keeps computing while
  // the transport moves the data (gradient buckets during the backward pass). `data` must not be
  // touched until then (by the host or another stream; see Request). A transport without a
  // non-blocking path completes it before returning.
  template <typename T>
  Request iallreduce_sum(T* data, idx count) const {
    return do_iallreduce_sum(data, count, dtype_of<T>());
  }
  // recv[size * count] = every rank's send[count], in rank order. send must not overlap recv.
  template <typename T>
  void allgather(const T* send, idx count, T* recv) const {
    do_allgather(send, recv, count, dtype_of<T>());
  }
  // recv[count] = the sum over ranks of their send[rank() * count, (rank() + 1) * count): the
  // reduce-scatter of send[size * count] (ZeRO-1's gradient step).
  template <typename T>
  void reduce_scatter_sum(const T* send, idx count, T* recv) const {
    do_reduce_scatter_sum(send, recv, count, dtype_of<T>());
  }
  // The reduce-scatter with a count per rank, non-blocking: recv[counts[rank()]] = the sum over
  // ranks of their data[first, first + counts[rank()]), first = counts[0] + ... + counts[rank() - 1].
  // data holds the sum of the counts; it is this rank's input and the plane's to use: its values
  // are unspecified afterwards (the MPI plane sums in it). It must not overlap recv. A count may be
  // 0 (that rank receives nothing). Started now and complete when the Request is, as
  // iallreduce_sum: ZeRO-1's delta buckets during the backward, each bucket's piece of a shard
  // summed on the shard's owner (optim/delta_reduction.h). `counts` is read before this
  // returns. Throws std::invalid_argument unless counts has size() entries, none negative.
  template <typename T>
  Request ireduce_scatter_sum(T* data, std::span<const idx> counts, T* recv) const {
    if (idx(counts.size()) != size())
      throw std::invalid_argument("ireduce_scatter_sum: " + std::to_string(counts.size()) + " counts for a group of " +
                                  std::to_string(size()) + " ranks");
    for (const idx c : counts)
      if (c < 0) throw std::invalid_argument("ireduce_scatter_sum: a count of " + std::to_string(c));
    return do_ireduce_scatter_sum(data, counts, recv, dtype_of<T>());
  }
  // Non-blocking point-to-point. Messages with the same (peer, tag) match in order. Callers must
  // also post the messages between two ranks in the same order on both sides regardless of tag:
  // the NCCL plane ignores tags (NCCL matches a pair's messages by order) and launches the sends and
  // receives posted since its last wait as one group, so a ring posts a step's receives with its
  // sends before waiting on any.
  template <typename T>
  Request isend(const T* data, idx count, int dest, int tag) const {
    return do_isend(data, count, dtype_of<T>(), dest, tag);
  }
  template <typename T>
  Request irecv(T* data, idx count, int source, int tag) const {
    return do_irecv(data, count, dtype_of<T>(), source, tag);
  }

 protected:
  virtual void do_allreduce_sum(void* data, idx count, DType t) const = 0;
  // Default: the blocking all-reduce, then an already-complete Request.
  virtual Request do_iallreduce_sum(void* data, idx count, DType t) const {
    do_allreduce_sum(data, count, t);
    return Request();
  }
  virtual void do_allgather(const void* send, void* recv, idx count, DType t) const = 0;
  virtual void do_reduce_scatter_sum(const void* send, void* recv, idx count, DType t) const = 0;
  virtual Request do_ireduce_scatter_sum(void* data, std::span<const idx> counts, void* recv,
                                        DType t) const = 0;
  virtual Request do_isend(const void* data, idx count, DType t, int dest, int tag) const = 0;
  virtual Request do_irecv(void* data, idx count, DType t, int source, int tag) const = 0;
};

}  // namespace nexus
