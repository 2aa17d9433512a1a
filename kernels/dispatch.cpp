// The errors a route raises: no backend in this build for the device an op was asked to run on,
// or bf16 data on the CPU (which has no bf16 kernels).
#include <stdexcept>
#include <string>

#include "kernels/ops.h"

namespace nexus::detail {

void no_backend(const char* op, Device device) {
  throw std::runtime_error(std::string(op) + ": this build has no " +
                           (device == Device::cuda ? std::string("CUDA") : std::string(device_name(device))) +
                           " backend");
}

void bf16_on_cpu(const char* op) {
  throw std::runtime_error(std::string(op) + ": bf16 compute runs on the CUDA backend only (the CPU computes in fp32)");
}

}  // namespace nexus::detail
