// Attention mixer (Bamba's BambaAttention): GQA without biases, RoPE on the first half of each
// head's dims at global positions, flash attention over the layer's neighborhood, o_proj.
#include <type_traits>

#include "kernels/cuda/attention_cudnn.h"
#include "model/attention_impl.h"
#include "model/layers.h"
#include "parallel/ring_attention.h"
#include "parallel/zigzag.h"

#include <stdexcept>

namespace nexus {

namespace {

AttentionShape local_shape(const ModelConfig& c, idx B, idx Tn, idx pos0, const Neighborhood& nb) {
  return AttentionShape{B, Tn, Tn, c.n_heads, c.n_kv_heads, c.head_dim, pos0, pos0, true, nb};
}

RingShape ring_shape(const ModelConfig& c, idx B, idx Tn, const Neighborhood& nb) {
  return RingShape{B, Tn / 2, c.n_heads, c.n_kv_heads, c.head_dim, nb};
}

// RoPE (or its transpose) at the tokens' global positions: one run from pos0, or under context
// parallelism each sequence's two zigzag chunks from their own first positions.
template <typename T>
void rotate(const Exec& ex, bool backward, T* x /*[B,Tn,H,hd]*/, idx B, idx Tn, idx H, const ModelConfig& c, idx pos0,
            const RingContext<T>* ring) {
  auto apply = [&](T* p, idx b, idx n, idx first) {
    if (backward)
      rope_backward(ex, p, b, n, H, c.head_dim, c.rotary_dim(), first, c.rope_theta);
    else
      rope_forward(ex, p, b, n, H, c.head_dim, c.rotary_dim(), first, c.rope_theta);
  };
  if (!ring) return apply(x, B, Tn, pos0);
  const idx chunk = Tn / 2, r = ring->cp->rank(), cp = ring->cp->size();
  for (idx b = 0; b < B; ++b)
    for (idx half = 0; half < 2; ++half)
      apply(x + (b * Tn + half * chunk) * H * c.head_dim, 1, chunk, zigzag_chunk(cp, r, half) * chunk);
}

// attention_forward / attention_backward of one local (non-ring) call, through cuDNN when
// model.attention_impl asks for it and it can express the call (model/attention_impl.h); a build
// without cuDNN attention always runs the own kernel.
template <typename T>
void local_attention_forward(const Exec& ex, T* out, accum_t<T>* lse, const T* q, const T* k, const T* v,
                             const AttentionShape& s, [[maybe_unused]] const ModelConfig& c) {
#if NEXUS_HAS_CUDNN
  if constexpr (std::is_same_v<T, bf16>)
    if (choose_attention_impl<T>(c, ex.device, s).cudnn) return cuda::cudnn_attention_forward(ex, out, lse, q, k, v, s);
#endif
  attention_forward(ex, out, lse, q, k, v, s);
}
template <typename T>
void local_attention_backward(const Exec& ex, T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                              const T* out, const accum_t<T>* lse, const AttentionShape& s,
                              [[maybe_unused]] const ModelConfig& c) {
#if NEXUS_HAS_CUDNN
  if constexpr (std::is_same_v<T, bf16>)
    if (choose_attention_impl<T>(c, ex.device, s).cudnn)
      return cuda::cudnn_attention_backward(ex, dq, dk, dv, dout, q, k, v, out, lse, s);
#endif
  attention_backward(ex, dq, dk, dv, dout, q, k, v, out, lse, s);
}

}  // namespace

template <typename T>
void attention_mixer_forward(const Exec& ex, T* out, const AttentionActivations<T>& a, const T* inp,
                             const AttentionTensors<const T*>& w, const ModelConfig& c, idx B, idx Tn, idx pos0,
                             const KvPrefix<T>* prefix, const RingContext<T>* ring, const Neighborhood& nb) {
  const idx N = B * Tn, D = c.d_model, hd = c.head_dim, Hq = c.n_heads, Hkv = c.n_kv_heads;
  matmul_forward(ex, a.q, inp, w.q, N, D, Hq * hd);
  matmul_forward(ex, a.k, inp, w.k, N, D, Hkv * hd);
  matmul_forward(ex, a.v, inp, w.v, N, D, Hkv * hd);
  rotate(ex, false, a.q, B, Tn, Hq, c, pos0, ring);
  rotate(ex, false, a.k, B, Tn, Hkv, c, pos0, ring);
  if (ring) {
    ring_attention_forward(ex, a.att, a.lse, a.q, a.k, a.v, ring_shape(c, B, Tn, nb), *ring->cp, ring->workspace,
                           ring->stats);
  } else {
    local_attention_forward(ex, a.att, a.lse, a.q, a.k, a.v, local_shape(c, B, Tn, pos0, nb), c);
  }
  if (prefix) {
    AttentionShape s = local_shape(c, B, Tn, pos0, nb);
    s.Tk = prefix->len;
    s.k_pos0 = prefix->pos0;
    local_attention_forward(ex, prefix->out_scratch, prefix->lse_scratch, a.q, prefix->k, prefix->v, s, c);
    attention_merge(ex, a.att, a.lse, prefix->out_scratch, prefix->lse_scratch, N * Hq, hd);
  }
  matmul_forward(ex, out, a.att, w.o, N, Hq * hd, D);
}

template <typename T>
void attention_mixer_backward(const Exec& ex, T* dinp, const AttentionTensors<accum_t<T>*>& g,
                              const AttentionScratch<T>& s, const T* dout, const T* inp,
                              const AttentionActivations<T>& a, const AttentionTensors<const T*>& w,
                              const ModelConfig& c, idx B, idx Tn, idx pos0, const RingContext<T>* ring,
                              const Neighborhood& nb) {
  const idx N = B * Tn, D = c.d_model, hd = c.head_dim, Hq = c.n_heads, Hkv = c.n_kv_heads;
  matmul_backward(ex, s.datt, g.o, dout, a.att, w.o, N, Hq * hd, D, false);
  // attention_backward accumulates (the ring adds several blocks' contributions).
  fill_constant(ex, s.dq, N * Hq * hd, T(0));
  fill_constant(ex, s.dk, N * Hkv * hd, T(0));
  fill_constant(ex, s.dv, N * Hkv * hd, T(0));
  if (ring) {
    ring_attention_backward(ex, s.dq, s.dk, s.dv, s.datt, a.q, a.k, a.v, a.att, a.lse, ring_shape(c, B, Tn, nb),
                            *ring->cp, ring->workspace, ring->stats);
  } else {
    local_attention_backward(ex, s.dq, s.dk, s.dv, s.datt, a.q, a.k, a.v, a.att, a.lse,
                             local_shape(c, B, Tn, pos0, nb), c);
  }
  rotate(ex, true, s.dq, B, Tn, Hq, c, pos0, ring);
  rotate(ex, true, s.dk, B, Tn, Hkv, c, pos0, ring);
  matmul_backward(ex, dinp, g.q, s.dq, inp, w.q, N, D, Hq * hd, false);
  matmul_backward(ex, dinp, g.k, s.dk, inp, w.k, N, D, Hkv * hd, true);
  matmul_backward(ex, dinp, g.v, s.dv, inp, w.v, N, D, Hkv * hd, true);
}

#define NEXUS_INSTANTIATE(T)                                                                                          \
  template void attention_mixer_forward<T>(const Exec&, T*, const AttentionActivations<T>&, const T*,                 \
                                           const AttentionTensors<const T*>&, const ModelConfig&, idx, idx, idx,      \
                                           const KvPrefix<T>*, const RingContext<T>*, const Neighborhood&);           \
  template void attention_mixer_backward<T>(const Exec&, T*, const AttentionTensors<accum_t<T>*>&, const AttentionScratch<T>&, \
                                            const T*, const T*, const AttentionActivations<T>&,                       \
                                            const AttentionTensors<const T*>&, const ModelConfig&, idx, idx, idx,     \
                                            const RingContext<T>*, const Neighborhood&);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE

}  // namespace nexus
