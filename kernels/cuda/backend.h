// The CUDA backend: the op catalogue (kernels/op_declarations.inc) in namespace nexus::cuda, of
// which kernels/cuda/*.cu define the ops this backend has so far (kernels/ops.h routes exactly
// those with NEXUS_ROUTE_CUDA; the others refuse a CUDA context naming the op), and its device
// memory. Included by host C++ and by nvcc alike: no CUDA types in the signatures (the stream is
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

// How many CUDA devices this process sees (0 when there is no driver or no GPU), and why none
// when there are none (the CUDA runtime's error text).
int visible_devices(const char** why_none = nullptr);
}  // namespace nexus::cuda
