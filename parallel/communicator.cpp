#include "parallel/communicator.h"

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

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

}  // namespace

Request::Request(Request&& other) noexcept : pieces_(std::move(other.pieces_)) { other.pieces_.clear(); }

Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    if (!pieces_.empty()) MPI_Waitall(int(pieces_.size()), pieces_.data(), MPI_STATUSES_IGNORE);
    pieces_ = std::move(other.pieces_);
    other.pieces_.clear();
  }
  return *this;
}

Request::~Request() {
  // No throwing here: an error at this point has nowhere to go, and the buffer is safe either way.
  if (!pieces_.empty()) MPI_Waitall(int(pieces_.size()), pieces_.data(), MPI_STATUSES_IGNORE);
}

void Request::wait() {
  if (pieces_.empty()) return;
  check(MPI_Waitall(int(pieces_.size()), pieces_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
  pieces_.clear();
}

bool Request::test() {
  if (pieces_.empty()) return true;
  int done = 0;
  check(MPI_Testall(int(pieces_.size()), pieces_.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
  if (done) pieces_.clear();
  return done != 0;
}

void wait_all(std::span<Request> requests) {
  std::vector<MPI_Request> all;
  for (Request& r : requests) all.insert(all.end(), r.pieces_.begin(), r.pieces_.end());
  if (!all.empty()) check(MPI_Waitall(int(all.size()), all.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
  for (Request& r : requests) r.pieces_.clear();
}

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

void Communicator::allreduce_sum(float* data, idx count, std::size_t bucket_bytes) const {
  if (size_ == 1 || count == 0) return;
  const idx bucket = std::max<idx>(1, idx(bucket_bytes / sizeof(float)));
  std::vector<MPI_Request> requests;
  requests.reserve(std::size_t((count + bucket - 1) / bucket));
  for (idx begin = 0; begin < count; begin += bucket) {
    const int n = int(std::min(bucket, count - begin));
    requests.emplace_back();
    check(MPI_Iallreduce(MPI_IN_PLACE, data + begin, n, MPI_FLOAT, MPI_SUM, comm_, &requests.back()),
          "MPI_Iallreduce");
  }
  check(MPI_Waitall(int(requests.size()), requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
}

void Communicator::allreduce_sum(double* data, idx count) const {
  if (size_ == 1 || count == 0) return;
  check(MPI_Allreduce(MPI_IN_PLACE, data, int(count), MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce");
}

double Communicator::sum(double value) const {
  allreduce_sum(&value, 1);
  return value;
}

std::int64_t Communicator::sum(std::int64_t value) const {
  check(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT64_T, MPI_SUM, comm_), "MPI_Allreduce");
  return value;
}

double Communicator::max(double value) const {
  check(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_MAX, comm_), "MPI_Allreduce");
  return value;
}

bool Communicator::all(bool ok) const {
  int v = ok ? 1 : 0;
  check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LAND, comm_), "MPI_Allreduce");
  return v != 0;
}

void Communicator::broadcast(void* data, std::size_t bytes, int root) const {
  // MPI counts are int: a multi-GB model goes in 1 GiB pieces.
  constexpr std::size_t piece = std::size_t(1) << 30;
  auto* p = static_cast<unsigned char*>(data);
  for (std::size_t done = 0; done < bytes; done += piece)
    check(MPI_Bcast(p + done, int(std::min(piece, bytes - done)), MPI_BYTE, root, comm_), "MPI_Bcast");
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
  Request r;
  const auto* p = static_cast<const unsigned char*>(data);
  post_pieces(r.pieces_, bytes, piece_bytes, [&](std::size_t at, int n, MPI_Request* req) {
    check(MPI_Isend(p + at, n, MPI_BYTE, dest, tag, comm_, req), "MPI_Isend");
  });
  return r;
}

Request Communicator::irecv_bytes(void* data, std::size_t bytes, int source, int tag,
                                  std::size_t piece_bytes) const {
  Request r;
  auto* p = static_cast<unsigned char*>(data);
  post_pieces(r.pieces_, bytes, piece_bytes, [&](std::size_t at, int n, MPI_Request* req) {
    check(MPI_Irecv(p + at, n, MPI_BYTE, source, tag, comm_, req), "MPI_Irecv");
  });
  return r;
}

void Communicator::barrier() const { check(MPI_Barrier(comm_), "MPI_Barrier"); }

void Communicator::abort(const std::string& message, int code) const {
  std::fprintf(stderr, "nexus: rank %d: %s\n", rank_, message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

void Communicator::allgather_bytes(const void* send, std::size_t bytes, void* recv) const {
  if (bytes > std::size_t(std::numeric_limits<int>::max()))
    throw std::invalid_argument("Communicator::allgather: block of " + std::to_string(bytes) +
                                " bytes exceeds an int count");
  check(MPI_Allgather(send, int(bytes), MPI_BYTE, recv, int(bytes), MPI_BYTE, comm_), "MPI_Allgather");
}

}  // namespace nexus
