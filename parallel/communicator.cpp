#include "parallel/communicator.h"

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel/comm_watchdog.h"

namespace nexus {

namespace {

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw std::runtime_error(std::string(what) + " failed: " + std::string(msg, std::size_t(len)));
  }
}

// The blocking calls of this process, as Communicator::watch_blocking_calls watches them: one
// thread makes them, one at a time, so they end in the order they began.
struct BlockingCalls {
  std::unique_ptr<CommWatchdog> watchdog;  // set (or replaced) by watch_blocking_calls, between calls
  std::uint64_t began = 0;                 // the issuing thread's own count
  std::atomic<std::uint64_t> ended{0};     // read by the watchdog's thread
};
BlockingCalls& blocking_calls() {
  static BlockingCalls calls;
  return calls;
}

// One blocking MPI call, `what`, watched while it runs: check(call(), what).
template <typename Call>
void blocking(const char* what, Call call) {
  BlockingCalls& b = blocking_calls();
  if (!b.watchdog) return check(call(), what);
  const std::uint64_t id = ++b.began;
  b.watchdog->launched(id, what);
  const int rc = call();
  b.ended.store(id, std::memory_order_release);
  check(rc, what);
}

// One request per piece of at most `piece` bytes (MPI counts are int).
template <typename Post>
void post_pieces(std::vector<MPI_Request>& pieces, std::size_t bytes, std::size_t piece, Post post) {
  if (piece == 0 || piece > std::size_t(std::numeric_limits<int>::max()))
    throw std::invalid_argument("message piece of " + std::to_string(piece) + " bytes is not in [1, INT_MAX]");
  pieces.reserve((bytes + piece - 1) / piece);
  for (std::size_t done = 0; done < bytes; done += piece) {
    pieces.push_back(MPI_REQUEST_NULL);
    post(done, int(std::min(piece, bytes - done)), &pieces.back());
  }
}

// The MPI requests of one transfer (one per piece), and for a reduce-scatter the part of the
// all-reduced buffer that is copied to the receiver once they complete.
class MpiPending final : public Request::Pending {
 public:
  std::vector<MPI_Request> pieces;
  const void* part = nullptr;  // [part_bytes] in the all-reduced buffer
  void* part_to = nullptr;     // [part_bytes] the caller's receive buffer
  std::size_t part_bytes = 0;  // 0 once delivered, or when there is nothing to deliver
  ~MpiPending() override {
    if (!pieces.empty()) MPI_Waitall(int(pieces.size()), pieces.data(), MPI_STATUSES_IGNORE);
    deliver();
  }
  void wait() override {
    if (!pieces.empty()) {
      blocking("MPI_Waitall", [&] { return MPI_Waitall(int(pieces.size()), pieces.data(), MPI_STATUSES_IGNORE); });
      pieces.clear();
    }
    deliver();
  }
  bool test() override {
    if (!pieces.empty()) {
      int done = 0;
      check(MPI_Testall(int(pieces.size()), pieces.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
      if (!done) return false;
      pieces.clear();
    }
    deliver();
    return true;
  }

 private:
  void deliver() {
    if (part_bytes > 0) std::memcpy(part_to, part, part_bytes);
    part_bytes = 0;
  }
};

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::u8: return MPI_UINT8_T;  // MPI_BYTE has no arithmetic: MPI_SUM on it is undefined
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::bf16: return MPI_UINT16_T;  // MPI has no bf16: its 16 bits travel unchanged
  }
  throw std::invalid_argument("no MPI datatype for element type " + std::to_string(int(t)));
}

// The datatype of an MPI_SUM. bf16 travels as MPI_UINT16_T, whose sum would add the bits as
// integers; no caller sums bf16 (what is summed is accum_t<bf16> = fp32), so it is refused on
// every group size rather than given a user-defined operation nothing uses.
MPI_Datatype mpi_sum_type(DType t, const char* what) {
  if (t == DType::bf16)
    throw std::invalid_argument(std::string(what) +
                                ": the MPI data plane does not sum bf16 (sum in fp32, accum_t<bf16>, or over NCCL)");
  return mpi_type(t);
}

// MPI counts are int: one collective call must carry fewer than 2^31 elements.
int mpi_count(idx count, const char* what) {
  if (count < 0 || count > idx(std::numeric_limits<int>::max()))
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(count) +
                                " elements do not fit one MPI call (at most INT_MAX)");
  return int(count);
}

}  // namespace

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int provided = 0;
  check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  // Errors come back as codes (and become exceptions) instead of aborting inside MPI.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

Communicator::Communicator(MPI_Comm comm) : comm_(comm) {
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  MPI_Comm node;
  check(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node), "MPI_Comm_split_type");
  MPI_Comm_rank(node, &local_rank_);
  MPI_Comm_size(node, &local_size_);
  MPI_Comm_free(&node);
}

void Communicator::set_bucket_bytes(std::size_t bytes) {
  if (bytes == 0) throw std::invalid_argument("Communicator::set_bucket_bytes: a bucket of 0 bytes");
  bucket_bytes_ = bytes;
}

void Communicator::do_allreduce_sum(void* data, idx count, DType t) const { do_iallreduce_sum(data, count, t).wait(); }

namespace {

// data[count] all-reduced in place in buckets of at most bucket_bytes, all in flight at once.
std::unique_ptr<MpiPending> iallreduce_in_buckets(void* data, idx count, DType t, MPI_Datatype type,
                                                  std::size_t bucket_bytes, MPI_Comm comm) {
  const std::size_t elem = dtype_bytes(t);
  const idx bucket = std::max<idx>(1, idx(bucket_bytes / elem));
  auto pending = std::make_unique<MpiPending>();
  pending->pieces.reserve(std::size_t((count + bucket - 1) / bucket));
  auto* p = static_cast<unsigned char*>(data);
  for (idx begin = 0; begin < count; begin += bucket) {
    const int n = mpi_count(std::min(bucket, count - begin), "all-reduce bucket");
    pending->pieces.push_back(MPI_REQUEST_NULL);
    check(MPI_Iallreduce(MPI_IN_PLACE, p + std::size_t(begin) * elem, n, type, MPI_SUM, comm, &pending->pieces.back()),
          "MPI_Iallreduce");
  }
  return pending;
}

}  // namespace

Request Communicator::do_iallreduce_sum(void* data, idx count, DType t) const {
  const MPI_Datatype type = mpi_sum_type(t, "all-reduce");  // refused on every group size
  if (size_ == 1 || count == 0) return Request();
  return Request(iallreduce_in_buckets(data, count, t, type, bucket_bytes_, comm_));
}

// An all-reduce of the whole of data, whose part is then copied to recv: twice the bytes of a
// reduce-scatter, but Open MPI's non-blocking reduce-scatter (libnbc) reduces everything onto rank
// 0 and scatters from there, so every byte crosses rank 0, where its all-reduce is a ring.
Request Communicator::do_ireduce_scatter_sum(void* data, std::span<const idx> counts, void* recv, DType t) const {
  const MPI_Datatype type = mpi_sum_type(t, "reduce-scatter");
  const std::size_t elem = dtype_bytes(t);
  idx total = 0, first = 0;
  for (int q = 0; q < size_; ++q) {
    if (q < rank_) first += counts[std::size_t(q)];
    total += counts[std::size_t(q)];
  }
  const std::size_t part_bytes = std::size_t(counts[std::size_t(rank_)]) * elem;
  const auto* part = static_cast<const unsigned char*>(data) + std::size_t(first) * elem;
  if (size_ == 1 || total == 0) {
    if (part_bytes > 0) std::memcpy(recv, part, part_bytes);
    return Request();
  }
  std::unique_ptr<MpiPending> pending = iallreduce_in_buckets(data, total, t, type, bucket_bytes_, comm_);
  pending->part = part;
  pending->part_to = recv;
  pending->part_bytes = part_bytes;
  return Request(std::move(pending));
}

void Communicator::do_allgather(const void* send, void* recv, idx count, DType t) const {
  const int n = mpi_count(count, "all-gather block");
  blocking("MPI_Allgather", [&] { return MPI_Allgather(send, n, mpi_type(t), recv, n, mpi_type(t), comm_); });
}

void Communicator::do_reduce_scatter_sum(const void* send, void* recv, idx count, DType t) const {
  const MPI_Datatype type = mpi_sum_type(t, "reduce-scatter");
  const int n = mpi_count(count, "reduce-scatter block");
  blocking("MPI_Reduce_scatter_block", [&] { return MPI_Reduce_scatter_block(send, recv, n, type, MPI_SUM, comm_); });
}

Request Communicator::do_isend(const void* data, idx count, DType t, int dest, int tag) const {
  return isend_bytes(data, std::size_t(count) * dtype_bytes(t), dest, tag);
}

Request Communicator::do_irecv(void* data, idx count, DType t, int source, int tag) const {
  return irecv_bytes(data, std::size_t(count) * dtype_bytes(t), source, tag);
}

double Communicator::sum(double value) const {
  blocking("MPI_Allreduce", [&] { return MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_SUM, comm_); });
  return value;
}

std::int64_t Communicator::sum(std::int64_t value) const {
  blocking("MPI_Allreduce", [&] { return MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT64_T, MPI_SUM, comm_); });
  return value;
}

double Communicator::max(double value) const {
  blocking("MPI_Allreduce", [&] { return MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_MAX, comm_); });
  return value;
}

bool Communicator::all(bool ok) const {
  int v = ok ? 1 : 0;
  blocking("MPI_Allreduce", [&] { return MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LAND, comm_); });
  return v != 0;
}

void Communicator::broadcast(void* data, std::size_t bytes, int root) const {
  // MPI counts are int: a multi-GB model goes in 1 GiB pieces.
  constexpr std::size_t piece = std::size_t(1) << 30;
  auto* p = static_cast<unsigned char*>(data);
  for (std::size_t done = 0; done < bytes; done += piece)
    blocking("MPI_Bcast", [&] { return MPI_Bcast(p + done, int(std::min(piece, bytes - done)), MPI_BYTE, root, comm_); });
}

Communicator Communicator::split(int color, int key) const {
  // MPI_UNDEFINED (negative) would leave this rank without a group: not a Communicator.
  if (color < 0) throw std::invalid_argument("Communicator::split: color " + std::to_string(color) + " < 0");
  MPI_Comm comm = MPI_COMM_NULL;
  check(MPI_Comm_split(comm_, color, key, &comm), "MPI_Comm_split");
  // Owned from here on, so that a throw below still frees it. After MPI_Finalize nothing may be
  // freed (a Communicator outliving MpiRuntime).
  std::shared_ptr<MPI_Comm> owned(new MPI_Comm(comm), [](MPI_Comm* c) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(c);
    delete c;
  });
  check(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  Communicator group(comm);
  group.owned_ = std::move(owned);
  return group;
}

Request Communicator::isend_bytes(const void* data, std::size_t bytes, int dest, int tag,
                                  std::size_t piece_bytes) const {
  auto pending = std::make_unique<MpiPending>();
  const auto* p = static_cast<const unsigned char*>(data);
  post_pieces(pending->pieces, bytes, piece_bytes, [&](std::size_t at, int n, MPI_Request* req) {
    check(MPI_Isend(p + at, n, MPI_BYTE, dest, tag, comm_, req), "MPI_Isend");
  });
  return Request(std::move(pending));
}

Request Communicator::irecv_bytes(void* data, std::size_t bytes, int source, int tag,
                                  std::size_t piece_bytes) const {
  auto pending = std::make_unique<MpiPending>();
  auto* p = static_cast<unsigned char*>(data);
  post_pieces(pending->pieces, bytes, piece_bytes, [&](std::size_t at, int n, MPI_Request* req) {
    check(MPI_Irecv(p + at, n, MPI_BYTE, source, tag, comm_, req), "MPI_Irecv");
  });
  return Request(std::move(pending));
}

void Communicator::barrier() const {
  blocking("MPI_Barrier", [&] { return MPI_Barrier(comm_); });
}

void Communicator::watch_blocking_calls(std::chrono::seconds timeout, int rank) {
  BlockingCalls& b = blocking_calls();
  b.watchdog.reset();  // between calls (this thread makes them): the old watch simply stops
  CommWatchdog::Hooks hooks;
  hooks.complete = [&b](std::uint64_t id) { return id <= b.ended.load(std::memory_order_acquire); };
  hooks.async_error = [] { return std::string(); };  // MPI reports errors where the call returns
  hooks.fatal = [](const std::string& message) {
    std::fprintf(stderr, "nexus: %s\n", message.c_str());
    std::fflush(stderr);
    std::_Exit(EXIT_FAILURE);
  };
  b.watchdog = std::make_unique<CommWatchdog>("MPI, rank " + std::to_string(rank), timeout, std::move(hooks),
                                              std::chrono::milliseconds(100));
}

void Communicator::abort(const std::string& message, int code) const {
  std::fprintf(stderr, "nexus: rank %d: %s\n", rank_, message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace nexus
