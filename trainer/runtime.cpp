#include "trainer/runtime.h"

#include <omp.h>

#include "model/memory_need.h"

namespace nexus {

void apply_runtime(const RuntimeOptions& runtime) {
  if (runtime.device == "cuda")
    throw OptionsError("runtime.device = cuda: this build of nexus has no CUDA backend (it was configured "
                       "without a CUDA compiler); use runtime.device = cpu");
  if (runtime.threads > 0) omp_set_num_threads(int(runtime.threads));
  if (!runtime.memory_limit.empty())
    set_memory_limit(parse_bytes(runtime.memory_limit).value_or(0), "runtime.memory_limit = " + runtime.memory_limit);
}

}  // namespace nexus
