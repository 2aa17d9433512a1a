#include "trainer/runtime.h"

#include <omp.h>

#include <string>

#if NEXUS_HAS_CUDA
#include "kernels/cuda/backend.h"
#endif
#include "kernels/cpu/blas_runtime.h"
#include "model/memory_need.h"

namespace nexus {

namespace {

// Throws OptionsError (prefixed by `what`) unless this build and machine can run on a GPU.
void require_cuda(const std::string& what) {
#if NEXUS_HAS_CUDA
  const char* why = "";
  if (cuda::visible_devices(&why) == 0)
    throw OptionsError(what + ": no CUDA device is visible (" + why + "); use cpu, or run where a GPU is");
#else
  throw OptionsError(what + ": this build of nexus has no CUDA backend (it was configured without a CUDA compiler); "
                     "use cpu");
#endif
}

}  // namespace

void apply_runtime(const RuntimeOptions& runtime) {
  if (runtime.device == "cuda") require_cuda("runtime.device = cuda");
  if (runtime.threads > 0) omp_set_num_threads(int(runtime.threads));
  if (!runtime.memory_limit.empty())
    set_memory_limit(parse_bytes(runtime.memory_limit).value_or(0), "runtime.memory_limit = " + runtime.memory_limit);
}

Exec command_exec(const std::string& device, const std::string& what) {
  if (device == "cpu") return Exec{};
  if (device != "cuda") throw OptionsError(what + ": --device " + device + " is not one of cpu, cuda");
  require_cuda(what + " --device cuda");
  return Exec{Device::cuda, nullptr};
}

void require_device_memory(const std::string& what, const MemoryNeed& need, const Exec& ex) {
  if (ex.device == Device::cpu) return require_memory(what, need);
  const std::string shortfall = memory_shortfall(what, need, 1, device_memory_available(ex));
  if (!shortfall.empty()) throw ConfigError(shortfall);
}

Exec runtime_exec(const RuntimeOptions& runtime) {
  return runtime.device == "cuda" ? Exec{Device::cuda, nullptr} : Exec{};
}

double gemm_peak_gflops(const Exec& ex) {
#if NEXUS_HAS_CUDA
  if (ex.device == Device::cuda) return cuda::measure_gemm_peak_gflops();
#endif
  (void)ex;
  return measure_gemm_peak_gflops(512, 0.2);
}

MemoryAvailable device_memory_available(const Exec& ex) {
#if NEXUS_HAS_CUDA
  if (ex.device == Device::cuda) return MemoryAvailable{cuda::free_device_bytes(), "the GPU's free memory (cudaMemGetInfo)"};
#endif
  (void)ex;
  return available_memory();
}

double device_peak_mib(const Exec& ex) {
#if NEXUS_HAS_CUDA
  if (ex.device == Device::cuda) return double(cuda::peak_allocated_bytes()) / double(1 << 20);
#endif
  (void)ex;
  return 0;
}

}  // namespace nexus
