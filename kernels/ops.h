// Every primitive Nexus computes with, and the seam between the layers above and the backends.
//
// The op signatures are declared once, in kernels/op_declarations.inc (read it for what each op
// computes). Each backend includes that list into its own namespace and implements it: the CPU
// in nexus::cpu (kernels/cpu/backend.h, one file per op in kernels/cpu/), a CUDA backend in
// nexus::cuda (kernels/cuda/backend.h, kernels/cuda/<op>.cu). The public op nexus::<op> is a
// function object defined below by one NEXUS_ROUTE line: it takes the same arguments, looks at
// ex.device and forwards the call unchanged to that backend's <op> (the CUDA backend has every op). So the signature exists in
// one place (a backend definition that drifts from it is a different template, so the build fails
// at link time on the missing backend op), and adding a backend touches the route macro once,
// never a caller.
//
// A device with no backend in this build throws std::runtime_error("<op>: this build has no
// CUDA backend") before anything touches the pointers. A call with bf16 data (pointers or
// values) on the CPU throws "<op>: bf16 compute runs on the CUDA backend only (the CPU computes in
// fp32)": the CPU has no bf16 kernels, and the route never instantiates cpu::op for bf16, so a
// bf16 caller (Model<bf16>) compiles and links in every build.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "kernels/cpu/backend.h"
#if NEXUS_HAS_CUDA
#include "kernels/cuda/backend.h"
#endif
#include "kernels/shapes.h"
#include "kernels/types.h"

namespace nexus {

namespace detail {
// Throws std::runtime_error naming the op and the device this build cannot run it on.
[[noreturn]] void no_backend(const char* op, Device device);
// Throws std::runtime_error: "<op>: bf16 compute runs on the CUDA backend only (the CPU computes
// in fp32)".
[[noreturn]] void bf16_on_cpu(const char* op);

template <typename A>
inline constexpr bool is_bf16_arg = std::is_same_v<A, bf16> || std::is_same_v<A, bf16*> || std::is_same_v<A, const bf16*>;
// True when a call passes bf16 data (a bf16 pointer or value): the CPU has no bf16 kernels, so
// the route must not even instantiate cpu::op for it (cpu::op<bf16> is declared, never defined).
template <typename... Args>
inline constexpr bool has_bf16_arg = (is_bf16_arg<std::remove_cvref_t<Args>> || ...);
}  // namespace detail

// Where a call that is not for the CPU goes: the CUDA backend in a build with CUDA (it has every
// op), the "no backend" error otherwise.
#if NEXUS_HAS_CUDA
#define NEXUS_ROUTE_OFF_CPU(op) return cuda::op(ex, std::forward<Args>(args)...)
#else
#define NEXUS_ROUTE_OFF_CPU(op) detail::no_backend(#op, ex.device)
#endif

// The public op `op`: nexus::op(ex, args...) runs <backend>::op(ex, args...) for ex.device.
// The return type is the backend declaration's, so a bf16 call (whose CPU branch is discarded)
// returns what every other call of the op returns.
#define NEXUS_ROUTE(op)                                                                          \
  struct op##_route {                                                                            \
    template <typename... Args>                                                                  \
    auto operator()(const Exec& ex, Args&&... args) const                                        \
        -> decltype(cpu::op(ex, std::forward<Args>(args)...)) {                                  \
      if constexpr (detail::has_bf16_arg<Args...>) {                                             \
        if (ex.device == Device::cpu) detail::bf16_on_cpu(#op);                                  \
      } else {                                                                                   \
        if (ex.device == Device::cpu) return cpu::op(ex, std::forward<Args>(args)...);           \
      }                                                                                          \
      NEXUS_ROUTE_OFF_CPU(op);                                                                   \
    }                                                                                            \
  };                                                                                             \
  inline constexpr op##_route op {}

NEXUS_ROUTE(embedding_forward);
NEXUS_ROUTE(embedding_backward);
NEXUS_ROUTE(residual_rmsnorm_forward);
NEXUS_ROUTE(rmsnorm_backward);
NEXUS_ROUTE(matmul_forward);
NEXUS_ROUTE(matmul_backward);
NEXUS_ROUTE(swiglu_forward);
NEXUS_ROUTE(swiglu_backward);
NEXUS_ROUTE(rope_forward);
NEXUS_ROUTE(rope_backward);
NEXUS_ROUTE(attention_forward);
NEXUS_ROUTE(attention_backward);
NEXUS_ROUTE(attention_merge);
NEXUS_ROUTE(conv1d_silu_forward);
NEXUS_ROUTE(conv1d_silu_backward);
NEXUS_ROUTE(ssd_forward);
NEXUS_ROUTE(ssd_backward);
NEXUS_ROUTE(ssd_state_output_forward);
NEXUS_ROUTE(ssd_state_output_backward);
NEXUS_ROUTE(decayed_state_update);
NEXUS_ROUTE(gated_rmsnorm_forward);
NEXUS_ROUTE(gated_rmsnorm_backward);
NEXUS_ROUTE(cross_entropy_forward);
NEXUS_ROUTE(cross_entropy_backward);
NEXUS_ROUTE(count_targets);
NEXUS_ROUTE(fill_constant);
NEXUS_ROUTE(copy_values);
NEXUS_ROUTE(scale_inplace);
NEXUS_ROUTE(axpy);
NEXUS_ROUTE(copy_widened);
NEXUS_ROUTE(add_widened);
NEXUS_ROUTE(add_narrowed);
NEXUS_ROUTE(copy_strided);
NEXUS_ROUTE(add_strided);
NEXUS_ROUTE(sum_of_squares);
NEXUS_ROUTE(all_finite);
NEXUS_ROUTE(adamw_update);
NEXUS_ROUTE(conv1d_silu_step);
NEXUS_ROUTE(ssd_step);
NEXUS_ROUTE(attention_decode_paged);

#undef NEXUS_ROUTE
#undef NEXUS_ROUTE_OFF_CPU

// Scratch of ssd_forward / ssd_backward in elements of T: a property of the shape and the element
// type (every backend that computes in T sizes its workspace to fit this), so a host query, not
// an op. float and double fit the CPU's layout and the CUDA one; bf16 (GPU only) the CUDA one.
template <typename T>
idx ssd_workspace(const SsdShape& s);

}  // namespace nexus
