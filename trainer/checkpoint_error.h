// The one error type of the checkpoint layers (durable file I/O, the HDF5 wrapper, the format):
// what() names the file and the problem.
#pragma once

#include <stdexcept>

namespace nexus {

struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace nexus
