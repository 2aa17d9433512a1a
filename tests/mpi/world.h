#pragma once
#include <cstdint>
#include <string>

#include "parallel/communicator.h"
namespace nexus::test {
// The job's communicator, set up by mpi_main before any test runs.
const Communicator& world();

// `s` as the root of `comm` has it, on every rank of `comm` (e.g. the path of the checkpoint the
// root wrote).
inline std::string broadcast_string(const Communicator& comm, std::string s) {
  std::int64_t len = std::int64_t(s.size());
  comm.broadcast(&len, sizeof len);
  s.resize(std::size_t(len));
  comm.broadcast(s.data(), s.size());
  return s;
}
}  // namespace nexus::test
