#include "parallel/nccl_data_plane.h"

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace nexus {

namespace {

using Clock = std::chrono::steady_clock;

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::u8: return ncclUint8;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
  }
  throw std::invalid_argument("no NCCL datatype for element type " + std::to_string(int(t)));
}

// NCCL's description of the last error (of `comm`, or of this thread's last call for null); may be empty.
std::string last_error(ncclComm_t comm) {
  const char* text = ncclGetLastError(comm);
  return text ? text : "";
}

int world_rank() {
  int r = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// The sends and receives launched together by one ncclGroupEnd, and the event that marks their end.
struct Batch {
  cudaEvent_t done = nullptr;
  bool launched = false;
  ~Batch() {
    if (done) cudaEventDestroy(done);
  }
};

struct QueuedOp {
  bool send;
  void* data;
  std::size_t count;
  ncclDataType_t type;
  int peer;
};

}  // namespace

struct NcclDataPlane::State {
  ncclComm_t comm = nullptr;
  cudaStream_t caller = nullptr;       // ex.stream
  cudaStream_t comm_stream = nullptr;  // every NCCL op of this plane
  cudaEvent_t ready = nullptr;         // caller stream: the data of the next op is written
  cudaEvent_t done = nullptr;          // comm stream: the last collective ended
  std::chrono::seconds timeout{300};
  std::string who;      // "rank W (group rank r of n)", for messages
  bool aborted = false;
  std::vector<QueuedOp> queue;          // posted, not yet launched
  std::shared_ptr<Batch> open_batch;    // the batch `queue` will launch as

  ~State() {
    if (comm) {
      // A clean end flushes and frees the communicator with its peers; after an error elsewhere
      // (unwinding) the peers may never get there, so abort instead of waiting on them.
      bool finalized = false;
      if (std::uncaught_exceptions() == 0) {
        const ncclResult_t f = ncclCommFinalize(comm);
        ncclResult_t st = f;
        const auto deadline = Clock::now() + timeout;
        while (st == ncclInProgress && Clock::now() < deadline) {
          std::this_thread::yield();
          if (ncclCommGetAsyncError(comm, &st) != ncclSuccess) break;
        }
        finalized = st == ncclSuccess;
      }
      if (finalized)
        ncclCommDestroy(comm);
      else
        ncclCommAbort(comm);
    }
    if (ready) cudaEventDestroy(ready);
    if (done) cudaEventDestroy(done);
    if (comm_stream) cudaStreamDestroy(comm_stream);
  }

  // Aborts the communicator (so no kernel of it spins on) and throws naming the call.
  [[noreturn]] void fail(const std::string& call, const std::string& why) {
    const std::string last = comm ? last_error(comm) : "";
    if (comm && !aborted) ncclCommAbort(comm);
    comm = nullptr;
    aborted = true;
    throw std::runtime_error("NCCL data plane, " + who + ": " + call + " failed: " + why +
                             (last.empty() ? "" : " (" + last + ")"));
  }

  void require_usable(const char* call) {
    if (aborted) throw std::runtime_error("NCCL data plane, " + who + ": " + call + " after the communicator was aborted");
  }

  void cuda(cudaError_t e, const char* call) {
    if (e != cudaSuccess) fail(call, std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")");
  }

  // One NCCL call's result: on a nonblocking communicator ncclInProgress means "enqueued, poll the
  // communicator until it is ready for the next call".
  void nccl(ncclResult_t rc, const char* call) {
    if (rc == ncclSuccess) return;
    if (rc != ncclInProgress) fail(call, ncclGetErrorString(rc));
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      ncclResult_t st = ncclSuccess;
      const ncclResult_t q = ncclCommGetAsyncError(comm, &st);
      if (q != ncclSuccess) fail(std::string("ncclCommGetAsyncError after ") + call, ncclGetErrorString(q));
      if (st == ncclSuccess) return;
      if (st != ncclInProgress) fail(call, ncclGetErrorString(st));
      if (Clock::now() > deadline) fail(call, "not ready after " + std::to_string(timeout.count()) + " s");
      std::this_thread::yield();
    }
  }

  // Whether `ev` has happened; an asynchronous NCCL error (a peer gone, a failed transfer) throws.
  bool happened(cudaEvent_t ev, const char* call) {
    const cudaError_t e = cudaEventQuery(ev);
    if (e == cudaSuccess) return true;
    if (e != cudaErrorNotReady) cuda(e, call);
    ncclResult_t st = ncclSuccess;
    const ncclResult_t q = ncclCommGetAsyncError(comm, &st);
    if (q != ncclSuccess) fail(std::string("ncclCommGetAsyncError during ") + call, ncclGetErrorString(q));
    if (st != ncclSuccess && st != ncclInProgress) fail(call, ncclGetErrorString(st));
    return false;
  }

  // Waits on the host for `ev`, polling for errors, at most `timeout`.
  void wait_for(cudaEvent_t ev, const char* call) {
    const auto deadline = Clock::now() + timeout;
    while (!happened(ev, call)) {
      if (Clock::now() > deadline)
        fail(call, "not complete after " + std::to_string(timeout.count()) +
                       " s (a peer stopped calling, or died without NCCL noticing)");
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  // The comm stream waits for what the caller's stream has enqueued so far.
  void after_caller() {
    cuda(cudaEventRecord(ready, caller), "cudaEventRecord");
    cuda(cudaStreamWaitEvent(comm_stream, ready, 0), "cudaStreamWaitEvent");
  }

  // Launches the queued sends and receives as one group.
  void flush() {
    if (queue.empty()) return;
    std::vector<QueuedOp> ops = std::move(queue);
    queue.clear();
    std::shared_ptr<Batch> batch = std::move(open_batch);
    open_batch.reset();
    // `ready` was last recorded when the last of these was posted: every one's data is written.
    cuda(cudaStreamWaitEvent(comm_stream, ready, 0), "cudaStreamWaitEvent");
    nccl(ncclGroupStart(), "ncclGroupStart");
    // The group is closed whatever happens inside it: an open group would capture this thread's
    // next NCCL calls, on any communicator.
    ncclResult_t first = ncclSuccess;
    const char* failed = nullptr;
    for (const QueuedOp& op : ops) {
      const ncclResult_t rc = op.send ? ncclSend(op.data, op.count, op.type, op.peer, comm, comm_stream)
                                      : ncclRecv(op.data, op.count, op.type, op.peer, comm, comm_stream);
      if (rc != ncclSuccess && rc != ncclInProgress && !failed) {
        first = rc;
        failed = op.send ? "ncclSend" : "ncclRecv";
      }
    }
    const ncclResult_t end = ncclGroupEnd();
    if (failed) fail(failed, ncclGetErrorString(first));
    nccl(end, "ncclGroupEnd (sends and receives)");
    cuda(cudaEventRecord(batch->done, comm_stream), "cudaEventRecord");
    batch->launched = true;
  }

  // A collective: queued point-to-point first (the same order on every rank), then the op on the
  // comm stream after the caller's work; the caller's stream, and the host, wait for it.
  template <typename Launch>
  void collective(const char* call, Launch launch) {
    require_usable(call);
    flush();
    after_caller();
    nccl(launch(), call);
    cuda(cudaEventRecord(done, comm_stream), "cudaEventRecord");
    cuda(cudaStreamWaitEvent(caller, done, 0), "cudaStreamWaitEvent");
    wait_for(done, call);
  }
};

namespace {

// One queued send or receive: completes with its batch.
class NcclPending final : public Request::Pending {
 public:
  NcclPending(std::shared_ptr<NcclDataPlane::State> state, std::shared_ptr<Batch> batch, const char* call)
      : state_(std::move(state)), batch_(std::move(batch)), call_(call) {}
  void wait() override {
    if (!batch_) return;
    launch();
    state_->wait_for(batch_->done, call_);
    finish();
  }
  bool test() override {
    if (!batch_) return true;
    launch();
    if (!state_->happened(batch_->done, call_)) return false;
    finish();
    return true;
  }

 private:
  void launch() {
    state_->require_usable(call_);
    if (!batch_->launched) state_->flush();
  }
  // Later kernels on the caller's stream read what arrived.
  void finish() {
    state_->cuda(cudaStreamWaitEvent(state_->caller, batch_->done, 0), "cudaStreamWaitEvent");
    batch_.reset();
  }
  std::shared_ptr<NcclDataPlane::State> state_;
  std::shared_ptr<Batch> batch_;
  const char* call_;
};

}  // namespace

NcclDataPlane::NcclDataPlane(const Communicator& group, Exec ex, std::chrono::seconds timeout)
    : rank_(group.rank()), size_(group.size()), state_(std::make_shared<State>()) {
  State& s = *state_;
  s.timeout = timeout;
  s.caller = static_cast<cudaStream_t>(ex.stream);
  s.who = "rank " + std::to_string(world_rank()) + " (group rank " + std::to_string(rank_) + " of " +
          std::to_string(size_) + ")";
  if (ex.device != Device::cuda)
    throw std::invalid_argument("NcclDataPlane: " + s.who + ": the execution context is on " +
                                device_name(ex.device) + "; NCCL moves GPU buffers (runtime.device = cuda)");

  // Every rank takes part in the broadcast and the agreement whatever failed before them, so a
  // failure on one rank is an exception on all, not a hang in the others' broadcast.
  ncclUniqueId id{};
  std::string problem;
  if (rank_ == 0) {
    if (const ncclResult_t rc = ncclGetUniqueId(&id); rc != ncclSuccess)
      problem = std::string("ncclGetUniqueId: ") + ncclGetErrorString(rc) + " (" + last_error(nullptr) + ")";
  }
  group.broadcast(&id, sizeof id, 0);
  if (!group.all(problem.empty()))
    throw std::runtime_error("NcclDataPlane: " + s.who + ": " + (problem.empty() ? "rank 0 could not make an ncclUniqueId" : problem));
  try {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    s.nccl(ncclCommInitRankConfig(&s.comm, size_, id, rank_, &config), "ncclCommInitRankConfig");
    s.cuda(cudaStreamCreateWithFlags(&s.comm_stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    s.cuda(cudaEventCreateWithFlags(&s.ready, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    s.cuda(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  } catch (const std::exception& e) {
    problem = e.what();
  }
  if (!group.all(problem.empty())) {
    if (s.comm) {
      ncclCommAbort(s.comm);
      s.comm = nullptr;
    }
    throw std::runtime_error(problem.empty() ? "NcclDataPlane: " + s.who + ": another rank of the group could not "
                                                                           "join the NCCL communicator"
                                             : problem);
  }
}

NcclDataPlane::~NcclDataPlane() = default;

void NcclDataPlane::do_allreduce_sum(void* data, idx count, DType t) const {
  if (count <= 0) return;
  state_->collective("ncclAllReduce", [&] {
    return ncclAllReduce(data, data, std::size_t(count), nccl_type(t), ncclSum, state_->comm, state_->comm_stream);
  });
}

void NcclDataPlane::do_allgather(const void* send, void* recv, idx count, DType t) const {
  if (count <= 0) return;
  state_->collective("ncclAllGather", [&] {
    return ncclAllGather(send, recv, std::size_t(count), nccl_type(t), state_->comm, state_->comm_stream);
  });
}

void NcclDataPlane::do_reduce_scatter_sum(const void* send, void* recv, idx count, DType t) const {
  if (count <= 0) return;
  state_->collective("ncclReduceScatter", [&] {
    return ncclReduceScatter(send, recv, std::size_t(count), nccl_type(t), ncclSum, state_->comm,
                             state_->comm_stream);
  });
}

Request NcclDataPlane::post(void* data, idx count, DType t, int peer, bool send) const {
  const char* call = send ? "ncclSend" : "ncclRecv";
  State& s = *state_;
  s.require_usable(call);
  if (count <= 0) return Request();  // nothing moves, on either side
  if (peer < 0 || peer >= size_)
    throw std::invalid_argument("NCCL data plane, " + s.who + ": " + call + " peer " + std::to_string(peer) +
                                " is not a rank of the group");
  if (!s.open_batch) {
    auto batch = std::make_shared<Batch>();
    s.cuda(cudaEventCreateWithFlags(&batch->done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    s.open_batch = std::move(batch);
  }
  // Marks the caller's stream here: the batch's launch waits for everything enqueued up to the
  // last post, and no further (the kernels the caller enqueues while the transfer is in flight).
  s.cuda(cudaEventRecord(s.ready, s.caller), "cudaEventRecord");
  s.queue.push_back(QueuedOp{send, data, std::size_t(count), nccl_type(t), peer});
  return Request(std::make_unique<NcclPending>(state_, s.open_batch, call));
}

Request NcclDataPlane::do_isend(const void* data, idx count, DType t, int dest, int /*tag*/) const {
  // NCCL reads a send buffer only; ncclSend takes it as const void*.
  return post(const_cast<void*>(data), count, t, dest, true);
}

Request NcclDataPlane::do_irecv(void* data, idx count, DType t, int source, int /*tag*/) const {
  return post(data, count, t, source, false);
}

}  // namespace nexus
