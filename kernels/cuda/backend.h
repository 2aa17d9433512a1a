// The CUDA backend: the op catalogue (kernels/op_declarations.inc) in namespace nexus::cuda,
// every op defined by kernels/cuda/*.cu (kernels/ops.h routes a CUDA context's calls here), and
// its device memory. Included by host C++ and by nvcc alike: no CUDA types in the signatures (the stream is
// ex.stream, a cudaStream_t kept opaque).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/shapes.h"

namespace nexus::cuda {
#include "kernels/op_declarations.inc"

// Memory for kernels/device_memory.h: cudaMalloc'd, copies and zeroing ordered on ex.stream
// (copies finish before they return).
void* allocate_bytes(std::size_t bytes);
void free_bytes(void* p) noexcept;
void copy_to_device(const Exec& ex, void* dst, const void* src, std::size_t bytes);
void copy_to_host(const Exec& ex, void* dst, const void* src, std::size_t bytes);
void zero_bytes(const Exec& ex, void* dst, std::size_t bytes);

// Device memory this process holds through allocate_bytes (every DeviceBuffer and the backend's
// scratch), now and at most so far: the figure a step reports as its peak GPU memory (cuBLASLt,
// NCCL and the CUDA context hold a little more outside it).
std::size_t allocated_bytes();
std::size_t peak_allocated_bytes();
// Free memory on the current GPU (cudaMemGetInfo): what a run's memory check compares against.
std::size_t free_device_bytes();

// The dense bf16 GEMM rate (GFLOP/s) cuBLASLt sustains on n x n x n products over about
// `seconds`: the peak the run's MFU is measured against.
double measure_gemm_peak_gflops(idx n = 8192, double seconds = 0.3);

// Timing events for kernels/stream_timer.h (cudaEvent_t kept opaque): recorded on ex.stream;
// timing_event_seconds waits for `stop` and gives the stream's time from `start` to it.
void* timing_event_create();
void timing_event_destroy(void* event) noexcept;
void timing_event_record(const Exec& ex, void* event);
double timing_event_seconds(void* start, void* stop);

// How many CUDA devices this process sees (0 when there is no driver or no GPU), and why none
// when there are none (the CUDA runtime's error text).
int visible_devices(const char** why_none = nullptr);
}  // namespace nexus::cuda
