// The GPU's dense bf16 GEMM rate as cuBLASLt delivers it (bf16 inputs, fp32 accumulation: the
// training precision), measured rather than taken from a data sheet: the MFU a run reports is then
// against what this GPU, at its clocks and power limit, actually sustains -- as the CPU's MFU is
// against its measured SGEMM. The buffers are allocated here, once, at setup, never in a step.
#include <cuda_runtime.h>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/device_memory.h"

namespace nexus::cuda {

double measure_gemm_peak_gflops(idx n, double seconds) {
  const Exec ex{Device::cuda, nullptr};
  DeviceBuffer<bf16> a(ex, n * n), b(ex, n * n), c(ex, n * n);
  a.zero();  // zeros multiply at the same rate as anything else on tensor cores
  b.zero();
  matmul_forward(ex, c.data(), a.data(), b.data(), n, n, n);  // warm-up: cuBLASLt's heuristic, clocks up
  cudaEvent_t start, stop;
  NEXUS_CUDA_CHECK(cudaEventCreate(&start));
  NEXUS_CUDA_CHECK(cudaEventCreate(&stop));
  double elapsed = 0;
  idx reps = 0;
  for (idx batch = 1; elapsed < seconds && batch <= (idx(1) << 16); batch *= 2) {
    NEXUS_CUDA_CHECK(cudaEventRecord(start, stream_of(ex)));
    for (idx i = 0; i < batch; ++i) matmul_forward(ex, c.data(), a.data(), b.data(), n, n, n);
    NEXUS_CUDA_CHECK(cudaEventRecord(stop, stream_of(ex)));
    NEXUS_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    NEXUS_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    elapsed = 1e-3 * ms;
    reps = batch;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 2.0 * double(n) * double(n) * double(n) * double(reps) / elapsed / 1e9;
}

}  // namespace nexus::cuda
