// The CPU backend: every op of the catalogue, with exactly its public signature, in namespace
// nexus::cpu. Each op's forward and backward live side by side in kernels/cpu/<op>.cpp, as
// templates instantiated for float (training) and double (finite-difference gradient checks).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/shapes.h"

namespace nexus::cpu {
#include "kernels/op_declarations.inc"

// Memory for kernels/device_memory.h: the CPU's device memory is host memory (kDeviceAlign-aligned),
// so copies to and from the host are memcpy.
void* allocate_bytes(std::size_t bytes);
void free_bytes(void* p) noexcept;
void copy_bytes(const Exec& ex, void* dst, const void* src, std::size_t bytes);
void zero_bytes(const Exec& ex, void* dst, std::size_t bytes);
}  // namespace nexus::cpu
