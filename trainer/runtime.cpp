#include "trainer/runtime.h"

#include <omp.h>

#include <string>

#if NEXUS_HAS_CUDA
#include "kernels/cuda/backend.h"
#endif
#include "model/memory_need.h"

namespace nexus {

void apply_runtime(const RuntimeOptions& runtime) {
  if (runtime.device == "cuda") {
#if NEXUS_HAS_CUDA
    const char* why = "";
    if (cuda::visible_devices(&why) == 0)
      throw OptionsError(std::string("runtime.device = cuda: no CUDA device is visible (") + why +
                         "); use runtime.device = cpu, or run where a GPU is");
    throw OptionsError("runtime.device = cuda: the CUDA backend has device memory, the buffer ops and AdamW, but "
                       "not yet the layer kernels a training step needs; use runtime.device = cpu");
#else
    throw OptionsError("runtime.device = cuda: this build of nexus has no CUDA backend (it was configured "
                       "without a CUDA compiler); use runtime.device = cpu");
#endif
  }
  if (runtime.threads > 0) omp_set_num_threads(int(runtime.threads));
  if (!runtime.memory_limit.empty())
    set_memory_limit(parse_bytes(runtime.memory_limit).value_or(0), "runtime.memory_limit = " + runtime.memory_limit);
}

}  // namespace nexus
