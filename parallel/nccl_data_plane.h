// The NCCL data plane: collectives and point-to-point on device buffers, one NCCL communicator per
// group, built only when NCCL was found at configure time (NEXUS_HAS_NCCL; parallel/transport.h
// says whether). MPI stays the control plane: it carries the ncclUniqueId and agrees on failures.
//
// Streams. Every operation runs on this plane's own communication stream, ordered against the
// caller's stream (ex.stream) by events:
//   caller stream: ... kernels that write the data ... [record ready] ........ [wait done] ...
//   comm stream:                               [wait ready] NCCL op [record done]
// so the op reads data the caller's kernels finished writing, and the caller's later kernels see
// its result. Collectives return once done (the host waits for `done`, like the MPI plane, which
// returns complete): a caller may read the result at once by any means. isend/irecv return at once;
// the transfer runs on the comm stream until Request::wait().
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
// Errors. Every NCCL and CUDA call is checked; the communicator is nonblocking (ncclConfig_t
// blocking = 0), so waiting polls ncclCommGetAsyncError, and an error, or no progress within
// `timeout`, aborts the communicator (ncclCommAbort) and throws std::runtime_error naming the
// call, the rank and NCCL's reason: a failure on one rank (a dead peer shows as a remote error on
// the others) ends the run with an exception on every rank instead of a hang. An aborted plane
// refuses further work.
#pragma once

#include <chrono>
#include <memory>

#include "parallel/communicator.h"

namespace nexus {

class NcclDataPlane final : public DataPlane {
 public:
  // Collective over `group`: rank 0 of the group makes the ncclUniqueId, the group's MPI broadcast
  // hands it out, and every rank joins the communicator on its current CUDA device (call
  // select_local_gpu first). Throws on every rank when any rank could not join.
  NcclDataPlane(const Communicator& group, Exec ex, std::chrono::seconds timeout = std::chrono::seconds(300));
  ~NcclDataPlane() override;
  NcclDataPlane(const NcclDataPlane&) = delete;
  NcclDataPlane& operator=(const NcclDataPlane&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  struct State;  // the communicator, streams and queued sends/receives (shared with requests)

 private:
  void do_allreduce_sum(void* data, idx count, DType t) const override;
  void do_allgather(const void* send, void* recv, idx count, DType t) const override;
  void do_reduce_scatter_sum(const void* send, void* recv, idx count, DType t) const override;
  Request do_isend(const void* data, idx count, DType t, int dest, int tag) const override;
  Request do_irecv(void* data, idx count, DType t, int source, int tag) const override;
  Request post(void* data, idx count, DType t, int peer, bool send) const;

  int rank_, size_;
  std::shared_ptr<State> state_;
};

}  // namespace nexus
