// The NCCL data plane: collectives and point-to-point on device buffers, one NCCL communicator per
// group, built only when NCCL was found at configure time (NEXUS_HAS_NCCL; parallel/transport.h
// says whether). MPI stays the control plane: it carries the ncclUniqueId and agrees on failures.
//
// Streams. Every operation runs on this plane's own communication stream, ordered against the
// caller's stream (ex.stream) by events, as PyTorch's ProcessGroupNCCL does:
//   caller stream: ... kernels that write the data ... [record ready] ........ [wait done] ...
//   comm stream:                               [wait ready] NCCL op [record done]
// so the op reads data the caller's kernels finished writing, and the caller's later kernels see
// its result. Completion is stream-ordered, never a host wait: a collective returns once it is
// enqueued and the caller's stream waits for its `done`; iallreduce_sum and ireduce_scatter_sum
// return a Request whose wait() does the same (test() asks whether `done` has happened); a
// point-to-point Request's wait() makes the caller's stream wait for its batch. So the host runs
// ahead and the GPU overlaps compute with communication. The results are visible to later work
// on the caller's stream; a host read needs that stream synchronized first (copy_to_host and
// HostMirror do).
// Buffers: "untouched until wait() returns" (data_plane.h) means by the host and by other
// streams; kernels the caller enqueues on its stream after wait() are ordered after the transfer,
// and freeing a buffer after wait() is safe (cudaFree synchronizes the device). The same holds for
// a Request destroyed unwaited: its destructor's wait() orders the caller's stream after it.
// Several planes (the world's delta buckets, a cp group's ring and halo traffic) run at once on
// one GPU, each on its own stream. NCCL kernels block until their peers arrive, so two
// communicators whose kernels the GPU schedules in different orders on two ranks can deadlock;
// every rank issues its operations in the same program order, and NCCL_LAUNCH_ORDER_IMPLICIT=1
// (NCCL >= 2.26) makes NCCL order the kernels of different communicators on a device by that host
// order. The plane sets it before the first communicator is made, unless the environment sets it.
// The `done` events come from a pool that grows to the most operations ever in flight (about one
// per delta bucket of a step) and is reused, so a step creates no event.
//
// Point-to-point ops are grouped. NCCL runs the ops of one communicator one after another, and a
// send blocks until its receive is posted: a ring whose every rank launched its send alone would
// wait forever. So isend/irecv only queue; the queue is launched as one
// ncclGroupStart/ncclSend/ncclRecv/ncclGroupEnd when a request of it is first tested or waited on,
// or before the next collective, and a request completes with its group. A rank's sends and
// receives posted between two such points must therefore form complete exchanges with its peers'
// (every send's receive posted in the peer's matching group), as a halo exchange or one ring step
// does. Tags are not used: NCCL matches the messages between two ranks in posting order.
//
// Errors. Every NCCL and CUDA call is checked where it is made; an error there aborts the
// communicator (ncclCommAbort) and throws std::runtime_error naming the call, the rank and NCCL's
// reason, and an aborted plane refuses further work. The communicator is nonblocking
// (ncclConfig_t blocking = 0): enqueueing polls ncclCommGetAsyncError until NCCL is ready, at most
// `timeout`. What happens on the GPU afterwards (a peer gone, a transfer that never ends) no host
// wait sees, so a watchdog thread (parallel/comm_watchdog.h) checks every 50 ms the
// communicator's asynchronous error and how long the oldest unfinished operation has run. On an
// error, or an operation outstanding longer than `timeout`, it writes one line to stderr (world
// rank, group rank, the NCCL call, NCCL's reason), aborts the communicator and ends the process
// with EXIT_FAILURE: the issuing thread may be blocked in a CUDA call waiting on a kernel that
// never ends, so only ending the process is sure to end the run, on every rank (mpirun and srun
// end the others; PyTorch's TORCH_NCCL_ASYNC_ERROR_HANDLING does the same). Checkpoints are
// published by atomic rename, so none is left half-written.
#pragma once

#include <chrono>
#include <memory>

#include "parallel/communicator.h"

namespace nexus {

class NcclDataPlane final : public DataPlane {
 public:
  // Collective over `group`: rank 0 of the group makes the ncclUniqueId, the group's MPI broadcast
  // hands it out, and every rank joins the communicator on its current CUDA device (call
  // select_local_gpu first). Throws on every rank when any rank could not join. `timeout` (at
  // least 1 s) bounds every operation: how long the watchdog lets one stay unfinished.
  NcclDataPlane(const Communicator& group, Exec ex, std::chrono::seconds timeout = std::chrono::seconds(300));
  ~NcclDataPlane() override;
  NcclDataPlane(const NcclDataPlane&) = delete;
  NcclDataPlane& operator=(const NcclDataPlane&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::chrono::seconds timeout() const;

  struct State;  // the communicator, streams, events, watchdog and queued sends/receives (shared with requests)

 private:
  void do_allreduce_sum(void* data, idx count, DType t) const override;
  Request do_iallreduce_sum(void* data, idx count, DType t) const override;
  Request do_ireduce_scatter_sum(void* data, std::span<const idx> counts, void* recv,
                                 DType t) const override;
  // A collective whose Request's wait() orders the caller's stream after it (the host never waits).
  template <typename Launch>
  Request nonblocking_collective(const char* call, Launch launch) const;
  void do_allgather(const void* send, void* recv, idx count, DType t) const override;
  void do_reduce_scatter_sum(const void* send, void* recv, idx count, DType t) const override;
  Request do_isend(const void* data, idx count, DType t, int dest, int tag) const override;
  Request do_irecv(void* data, idx count, DType t, int source, int tag) const override;
  Request post(void* data, idx count, DType t, int peer, bool send) const;

  int rank_, size_;
  std::shared_ptr<State> state_;
};

}  // namespace nexus
