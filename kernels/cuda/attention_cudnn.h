// cuDNN's fused scaled-dot-product attention as an alternative implementation of
// attention_forward / attention_backward (kernels/op_declarations.inc), selected per run by
// model.attention_impl = cudnn. Not an op of the catalogue: the catalogue has one implementation per
// backend, and this one covers only part of the contract. cudnn_attention_unsupported says which
// calls it covers; the model runs every other call through the own kernel.
//
// The support decision is plain host code with no CUDA in it, so the trainer, the model and the
// CPU tests ask it in any build; the two entries exist only where NEXUS_HAS_CUDNN is set (the CUDA
// backend built with cuDNN 9 and the cudnn-frontend headers: see CMakeLists.txt).
#pragma once

#include <type_traits>

#include "kernels/shapes.h"
#include "kernels/types.h"

namespace nexus::cuda {

#if NEXUS_HAS_CUDNN
inline constexpr bool kCudnnAttentionBuilt = true;
#else
inline constexpr bool kCudnnAttentionBuilt = false;
#endif

// The largest head_dim taken. cuDNN 9's bf16 backward goes to 256 on Hopper but only to 128 on
// Ampere and Blackwell; this decision is made without a device, so the bound that holds on all.
inline constexpr idx kCudnnAttentionMaxHeadDim = 128;

// Why cuDNN's fused attention cannot run attention_forward / attention_backward<T> on shape s
// exactly as the own kernel would, or nullptr when it can. cuDNN computes in bf16 (or fp16) with
// fp32 statistics, takes head_dim a multiple of 8, and masks either nothing or the causal triangle
// aligned at the top left (key j visible to query i iff j <= i): our causal full neighborhood
// when the queries and keys start at the same position and are as many. Ring blocks (offset
// positions, Tq != Tk) and other neighborhoods (sliding, dilated, log, block) are not expressible.
template <typename T>
const char* cudnn_attention_unsupported(const AttentionShape& s) {
  if constexpr (!std::is_same_v<T, bf16>) {
    return "cuDNN's fused attention computes in bf16 only (this run's activations are not bf16)";
  } else {
    if (s.B <= 0 || s.Tq <= 0 || s.Tk <= 0) return "empty shape";
    if (s.n_heads <= 0 || s.n_kv_heads <= 0 || s.n_heads % s.n_kv_heads != 0)
      return "n_heads is not a positive multiple of n_kv_heads";
    if (s.head_dim % 8 != 0 || s.head_dim <= 0 || s.head_dim > kCudnnAttentionMaxHeadDim)
      return "head_dim is not a multiple of 8 in [8, 128]";
    if (!s.causal) return nullptr;
    if (!s.neighborhood.is_full()) return "the neighborhood is not full (cuDNN masks only the causal triangle)";
    if (s.q_pos0 != s.k_pos0 || s.Tq != s.Tk)
      return "queries and keys are offset blocks (ring attention, a cached prefix): cuDNN's causal mask is the "
             "diagonal of one square block";
    return nullptr;
  }
}
template <typename T>
bool cudnn_attention_supports(const AttentionShape& s) {
  return cudnn_attention_unsupported<T>(s) == nullptr;
}

#if NEXUS_HAS_CUDNN
// Exactly attention_forward / attention_backward for the shapes cudnn_attention_supports<bf16>
// accepts (std::invalid_argument otherwise, and for a pointer not 16-byte aligned): out, lse
// ([B,Tq,Hq], natural-log log-sum-exp of the scaled scores) overwritten; dq, dk, dv ACCUMULATE.
// One cuDNN graph per (device, stream, shape, direction), built on first use and kept; cuDNN's
// workspace and the staging buffers come from the stream's scratch. The backward asks cuDNN for
// its deterministic algorithm, so repeated runs give the same bits; before cuDNN 9.25 that
// algorithm materialises dP, a workspace of 2 B n_heads Tq Tk bytes (rounded up to 64-row tiles),
// kept in the scratch like the rest. The staging adds dq, dk, dv in bf16 and the fp32 statistics.
void cudnn_attention_forward(const Exec& ex, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                             const AttentionShape& s);
void cudnn_attention_backward(const Exec& ex, bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q,
                              const bf16* k, const bf16* v, const bf16* out, const float* lse, const AttentionShape& s);
#endif

}  // namespace nexus::cuda
