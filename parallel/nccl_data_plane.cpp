#include "parallel/nccl_data_plane.h"

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "parallel/comm_watchdog.h"

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

// The events that mark the end of operations on the comm stream: made when none is free, kept,
// and reused, so a step makes none once the first has made the most it ever has in flight. A
// slot has two holders while its operation may be in flight: the request (or the collective
// that enqueues the caller's wait on it) and the watchdog (until it saw the event happen); it is
// reused only once both let go, so neither ever reads a later operation's record.
class EventPool {
 public:
  EventPool() = default;
  EventPool(const EventPool&) = delete;
  EventPool& operator=(const EventPool&) = delete;
  ~EventPool() {
    for (const Slot& s : slots_) cudaEventDestroy(s.event);
  }
  // A free slot (a new one if none is), held twice; its id.
  cudaError_t acquire(std::uint64_t* id) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.empty()) {
      cudaEvent_t ev = nullptr;
      if (const cudaError_t e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming); e != cudaSuccess) return e;
      slots_.push_back(Slot{ev, 0});
      free_.push_back(slots_.size() - 1);
    }
    *id = free_.back();
    free_.pop_back();
    slots_[*id].holders = 2;
    return cudaSuccess;
  }
  cudaEvent_t event(std::uint64_t id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return slots_[id].event;
  }
  void release(std::uint64_t id) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--slots_[id].holders == 0) free_.push_back(id);
  }

 private:
  struct Slot {
    cudaEvent_t event;
    int holders;
  };
  mutable std::mutex mutex_;   // the watchdog's thread reads slots while the issuing thread grows them
  std::deque<Slot> slots_;     // a deque: growing it moves no slot
  std::vector<std::uint64_t> free_;
};

// Operations launched together whose end one event marks: the sends and receives of one
// ncclGroupEnd, or one iallreduce. Shared by their requests; the last one lets the slot go.
struct Batch {
  EventPool* pool;
  std::uint64_t slot = 0;
  bool launched = false;
  explicit Batch(EventPool* p) : pool(p) {}
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  ~Batch() {
    if (launched) pool->release(slot);
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
  int device = 0;
  cudaStream_t caller = nullptr;       // ex.stream
  cudaStream_t comm_stream = nullptr;  // every NCCL op of this plane
  cudaEvent_t ready = nullptr;         // caller stream: the data of the next op is written
  std::chrono::seconds timeout{300};
  std::string who;      // "rank W (group rank r of n)", for messages
  bool aborted = false;
  // The issuing thread's NCCL calls on `comm` and the watchdog's error check take turns.
  std::mutex comm_mutex;
  EventPool events;
  std::vector<QueuedOp> queue;          // posted, not yet launched
  std::shared_ptr<Batch> open_batch;    // the batch `queue` will launch as
  std::unique_ptr<CommWatchdog> watchdog;  // stopped first, before anything it reads goes

  ~State() {
    watchdog.reset();
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
    if (comm_stream) cudaStreamDestroy(comm_stream);
  }

  // Aborts the communicator (so no kernel of it spins on) and throws naming the call. The
  // watchdog stops first: it must not read the communicator while it goes.
  [[noreturn]] void fail(const std::string& call, const std::string& why) {
    watchdog.reset();
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

  // The communicator's asynchronous state (ncclSuccess, ncclInProgress or an error).
  ncclResult_t async_state(const char* call) {
    ncclResult_t st = ncclSuccess;
    ncclResult_t q;
    {
      std::lock_guard<std::mutex> lock(comm_mutex);
      q = ncclCommGetAsyncError(comm, &st);
    }
    if (q != ncclSuccess) fail(std::string("ncclCommGetAsyncError during ") + call, ncclGetErrorString(q));
    return st;
  }

  // One NCCL call's result: on a nonblocking communicator ncclInProgress means "enqueued, poll the
  // communicator until it is ready for the next call". Bounded by `timeout` on the host: this
  // wait is for the enqueue (connection setup included), not for the operation itself.
  void nccl(ncclResult_t rc, const char* call) {
    if (rc == ncclSuccess) return;
    if (rc != ncclInProgress) fail(call, ncclGetErrorString(rc));
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const ncclResult_t st = async_state(call);
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
    const ncclResult_t st = async_state(call);
    if (st != ncclSuccess && st != ncclInProgress) fail(call, ncclGetErrorString(st));
    return false;
  }

  // The comm stream waits for what the caller's stream has enqueued so far.
  void after_caller() {
    cuda(cudaEventRecord(ready, caller), "cudaEventRecord");
    cuda(cudaStreamWaitEvent(comm_stream, ready, 0), "cudaStreamWaitEvent");
  }

  // Marks the end of what was just launched on the comm stream with a slot's event (held twice,
  // see EventPool), which the watchdog then watches.
  std::uint64_t mark(const char* call) {
    std::uint64_t slot = 0;
    cuda(events.acquire(&slot), "cudaEventCreateWithFlags");
    cuda(cudaEventRecord(events.event(slot), comm_stream), "cudaEventRecord");
    watchdog->launched(slot, call);
    return slot;
  }

  // The caller's stream waits for `slot`'s event: later work on it sees the operation's result;
  // the host does not wait.
  void caller_waits(std::uint64_t slot) {
    cuda(cudaStreamWaitEvent(caller, events.event(slot), 0), "cudaStreamWaitEvent");
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
    // The group is closed whatever happens inside it: an open group would capture this thread's
    // next NCCL calls, on any communicator.
    ncclResult_t start, first = ncclSuccess, end = ncclSuccess;
    const char* failed = nullptr;
    {
      std::lock_guard<std::mutex> lock(comm_mutex);
      start = ncclGroupStart();
      if (start == ncclSuccess || start == ncclInProgress) {
        for (const QueuedOp& op : ops) {
          const ncclResult_t rc = op.send ? ncclSend(op.data, op.count, op.type, op.peer, comm, comm_stream)
                                          : ncclRecv(op.data, op.count, op.type, op.peer, comm, comm_stream);
          if (rc != ncclSuccess && rc != ncclInProgress && !failed) {
            first = rc;
            failed = op.send ? "ncclSend" : "ncclRecv";
          }
        }
        end = ncclGroupEnd();
      }
    }
    nccl(start, "ncclGroupStart");
    if (failed) fail(failed, ncclGetErrorString(first));
    nccl(end, "ncclGroupEnd (sends and receives)");
    batch->slot = mark("ncclSend/ncclRecv");
    batch->launched = true;
  }

  // A collective: queued point-to-point first (the same order on every rank), then the op on the
  // comm stream after the caller's work. Returns the slot marking its end, held for the caller.
  template <typename Launch>
  std::uint64_t collective(const char* call, Launch launch) {
    require_usable(call);
    flush();
    after_caller();
    ncclResult_t rc;
    {
      std::lock_guard<std::mutex> lock(comm_mutex);
      rc = launch();
    }
    nccl(rc, call);
    return mark(call);
  }

  // A blocking collective, stream-ordered: the caller's stream waits for it, the host does not.
  template <typename Launch>
  void blocking(const char* call, Launch launch) {
    const std::uint64_t slot = collective(call, launch);
    caller_waits(slot);
    events.release(slot);
  }

  // The watchdog's end of the run (on its thread): this rank's line on stderr, the communicator
  // aborted so that its kernels stop spinning and the peers see an error, and the process ended
  // with a failure status (mpirun/srun end the other ranks). Not an exception: the issuing thread
  // may be blocked inside a CUDA call that waits for a kernel that never ends.
  [[noreturn]] void die(const std::string& message) {
    const std::string last = last_error(comm);
    const std::string line = message + (last.empty() ? "" : " (NCCL: " + last + ")") + "; ending the process\n";
    std::fputs(line.c_str(), stderr);
    std::fflush(stderr);
    // The abort is the last thing that could hang (it may wait for NCCL's own threads): it gets
    // a few seconds.
    std::thread([] {
      std::this_thread::sleep_for(std::chrono::seconds(10));
      std::_Exit(EXIT_FAILURE);
    }).detach();
    ncclCommAbort(comm);
    std::_Exit(EXIT_FAILURE);
  }

  void start_watchdog() {
    CommWatchdog::Hooks hooks;
    hooks.on_start = [this] {
      if (const cudaError_t e = cudaSetDevice(device); e != cudaSuccess)
        throw std::runtime_error(std::string("cudaSetDevice: ") + cudaGetErrorString(e));
    };
    hooks.complete = [this](std::uint64_t slot) {
      const cudaError_t e = cudaEventQuery(events.event(slot));
      if (e == cudaSuccess) return true;
      if (e == cudaErrorNotReady) return false;
      // CUDA errors are sticky: a fault in any kernel of this process's context (compute or NCCL)
      // shows in the next query, so this names the operation it surfaced under, not its cause.
      throw std::runtime_error(std::string("a CUDA error surfaced while waiting for it (cudaEventQuery): ") +
                               cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                               "); the failing kernel may be any on this GPU, compute or NCCL");
    };
    hooks.async_error = [this]() -> std::string {
      // Skipped while the issuing thread is inside an NCCL call: checked again next round, and a
      // hung operation is still caught by its deadline.
      std::unique_lock<std::mutex> lock(comm_mutex, std::try_to_lock);
      if (!lock.owns_lock()) return {};
      ncclResult_t st = ncclSuccess;
      const ncclResult_t q = ncclCommGetAsyncError(comm, &st);
      if (q != ncclSuccess) return std::string("ncclCommGetAsyncError: ") + ncclGetErrorString(q);
      if (st == ncclSuccess || st == ncclInProgress) return {};
      return ncclGetErrorString(st);
    };
    hooks.retired = [this](std::uint64_t slot) { events.release(slot); };
    hooks.fatal = [this](const std::string& message) { die(message); };
    watchdog = std::make_unique<CommWatchdog>("NCCL data plane, " + who,
                                              std::chrono::duration_cast<std::chrono::milliseconds>(timeout),
                                              std::move(hooks));
  }
};

namespace {

// A request on a batch: complete when the batch's event has happened. wait() launches the batch
// if it is still queued and makes the caller's stream wait for it; the host does not wait.
class NcclPending final : public Request::Pending {
 public:
  NcclPending(std::shared_ptr<NcclDataPlane::State> state, std::shared_ptr<Batch> batch, const char* call)
      : state_(std::move(state)), batch_(std::move(batch)), call_(call) {}
  void wait() override {
    if (!batch_) return;
    launch();
    state_->caller_waits(batch_->slot);
    batch_.reset();
  }
  bool test() override {
    if (!batch_) return true;
    launch();
    if (!state_->happened(state_->events.event(batch_->slot), call_)) return false;
    batch_.reset();  // ended: later work on the caller's stream sees it without a wait
    return true;
  }

 private:
  void launch() {
    state_->require_usable(call_);
    if (!batch_->launched) state_->flush();
  }
  std::shared_ptr<NcclDataPlane::State> state_;  // first: outlives batch_, whose slot is in its pool
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
  if (timeout.count() <= 0)
    throw std::invalid_argument("NcclDataPlane: " + s.who + ": a timeout of " + std::to_string(timeout.count()) +
                                " s; expected at least 1 s");

  // Read by NCCL as it initialises (ncclGetUniqueId or the first communicator); see the header.
  setenv("NCCL_LAUNCH_ORDER_IMPLICIT", "1", /*overwrite=*/0);
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
    s.cuda(cudaGetDevice(&s.device), "cudaGetDevice");
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    s.nccl(ncclCommInitRankConfig(&s.comm, size_, id, rank_, &config), "ncclCommInitRankConfig");
    s.cuda(cudaStreamCreateWithFlags(&s.comm_stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    s.cuda(cudaEventCreateWithFlags(&s.ready, cudaEventDisableTiming), "cudaEventCreateWithFlags");
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
  s.start_watchdog();
}

NcclDataPlane::~NcclDataPlane() = default;

std::chrono::seconds NcclDataPlane::timeout() const { return state_->timeout; }

void NcclDataPlane::do_allreduce_sum(void* data, idx count, DType t) const {
  if (count <= 0) return;
  state_->blocking("ncclAllReduce", [&] {
    return ncclAllReduce(data, data, std::size_t(count), nccl_type(t), ncclSum, state_->comm, state_->comm_stream);
  });
}

template <typename Launch>
Request NcclDataPlane::nonblocking_collective(const char* call, Launch launch) const {
  auto batch = std::make_shared<Batch>(&state_->events);
  batch->slot = state_->collective(call, launch);
  batch->launched = true;
  return Request(std::make_unique<NcclPending>(state_, std::move(batch), call));
}

Request NcclDataPlane::do_iallreduce_sum(void* data, idx count, DType t) const {
  if (count <= 0) return Request();
  const State& s = *state_;
  return nonblocking_collective("ncclAllReduce", [&] {
    return ncclAllReduce(data, data, std::size_t(count), nccl_type(t), ncclSum, s.comm, s.comm_stream);
  });
}

// NCCL has no reduce-scatter with a count per rank: one reduce per rank that receives something,
// onto that rank, launched as one group (data is only read). A ring reduce carries its piece
// over every link but the root's outgoing one, as the ring reduce-scatter carries it, so the
// bytes per link are those of one reduce-scatter.
Request NcclDataPlane::do_ireduce_scatter_sum(void* data, std::span<const idx> counts, void* recv,
                                              DType t) const {
  idx total = 0;
  for (const idx c : counts) total += c;
  if (total == 0) return Request();
  const State& s = *state_;
  return nonblocking_collective("ncclReduce", [&] {
    // As flush(): the group is closed whatever happens inside it, and an op's failure is the result.
    const ncclResult_t start = ncclGroupStart();
    if (start != ncclSuccess && start != ncclInProgress) return start;
    ncclResult_t first = ncclSuccess;
    std::size_t offset = 0;  // bytes: rank q's part begins at send + offset
    for (int q = 0; q < size_; ++q) {
      const std::size_t n = std::size_t(counts[std::size_t(q)]);
      if (n > 0) {
        // recvbuff is written on the root only.
        const ncclResult_t rc = ncclReduce(static_cast<const unsigned char*>(data) + offset, recv, n, nccl_type(t),
                                           ncclSum, q, s.comm, s.comm_stream);
        if (rc != ncclSuccess && rc != ncclInProgress && first == ncclSuccess) first = rc;
      }
      offset += n * dtype_bytes(t);
    }
    const ncclResult_t end = ncclGroupEnd();
    return first != ncclSuccess ? first : end;
  });
}

void NcclDataPlane::do_allgather(const void* send, void* recv, idx count, DType t) const {
  if (count <= 0) return;
  state_->blocking("ncclAllGather", [&] {
    return ncclAllGather(send, recv, std::size_t(count), nccl_type(t), state_->comm, state_->comm_stream);
  });
}

void NcclDataPlane::do_reduce_scatter_sum(const void* send, void* recv, idx count, DType t) const {
  if (count <= 0) return;
  state_->blocking("ncclReduceScatter", [&] {
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
  if (!s.open_batch) s.open_batch = std::make_shared<Batch>(&s.events);
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
