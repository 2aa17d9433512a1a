// The [runtime] section made real before any work: the device the run computes on and the
// threads each rank uses.
#pragma once

#include "kernels/types.h"
#include "model/memory_need.h"
#include "trainer/options.h"

namespace nexus {

// Throws OptionsError when runtime.device names a device this build or this machine cannot use
// (cuda on a build without the CUDA backend, or with no GPU visible) or runtime.dtype a precision
// the trainer does not run, before anything is allocated. Sets the OpenMP thread count when
// runtime.threads > 0, and runtime.memory_limit as the cap of available_memory().
void apply_runtime(const RuntimeOptions& runtime);

// The execution context of runtime.device (the GPU the process has selected, default stream).
Exec runtime_exec(const RuntimeOptions& runtime);

// The execution context of a command's --device (`what` names the command in errors): cpu, or
// cuda after the same checks as runtime.device = cuda. Throws OptionsError otherwise.
Exec command_exec(const std::string& device, const std::string& what);

// require_memory (model/memory_need.h) against ex's device: the machine's memory on the CPU, the
// GPU's free memory on a GPU. Throws ConfigError naming `what` and the shortfall.
void require_device_memory(const std::string& what, const MemoryNeed& need, const Exec& ex);

// The dense GEMM rate MFU is measured against on ex's device (GFLOP/s, measured here): SGEMM on
// the CPU, cuBLASLt bf16 with fp32 accumulation on a GPU.
double gemm_peak_gflops(const Exec& ex);

// What a run on ex's device may still take: available_memory() on the CPU, the GPU's free memory
// (cudaMemGetInfo) on a GPU, where one rank owns one GPU.
MemoryAvailable device_memory_available(const Exec& ex);

// The most device memory this process has held on ex's device (MiB; 0 on the CPU, whose memory
// the resident-set peak already reports).
double device_peak_mib(const Exec& ex);

}  // namespace nexus
