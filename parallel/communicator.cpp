#include "parallel/communicator.h"

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
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
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
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

void Communicator::barrier() const { check(MPI_Barrier(comm_), "MPI_Barrier"); }

void Communicator::abort(const std::string& message, int code) const {
  std::fprintf(stderr, "nexus: rank %d: %s\n", rank_, message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace nexus
