// The error a route raises when this build has no backend for the device an op was asked to run on.
#include <stdexcept>
#include <string>

#include "kernels/ops.h"

namespace nexus::detail {

void no_backend(const char* op, Device device) {
#if NEXUS_HAS_CUDA
  if (device == Device::cuda)
    throw std::runtime_error(std::string(op) + ": the CUDA backend has no kernel for this op yet");
#endif
  throw std::runtime_error(std::string(op) + ": this build has no " +
                           (device == Device::cuda ? std::string("CUDA") : std::string(device_name(device))) +
                           " backend");
}

}  // namespace nexus::detail
