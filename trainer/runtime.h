// The [runtime] section made real before any work: the device the run computes on and the
// threads each rank uses.
#pragma once

#include "trainer/options.h"

namespace nexus {

// Throws OptionsError when runtime.device names a device this build or this machine cannot use
// (cuda on a build without the CUDA backend), before anything is allocated. Sets the OpenMP
// thread count when runtime.threads > 0, and runtime.memory_limit as the cap of available_memory().
void apply_runtime(const RuntimeOptions& runtime);

}  // namespace nexus
