// The three blocks of a Bamba layer — Mamba-2 mixer, attention mixer, SwiGLU MLP — as free
// functions over named views, forward and backward side by side. A mixer maps the normed residual
// [N, D] to its branch output [N, D]; the residual adds and norms around it are the model's.
//
// Views are templated on the pointer type: Tensors<const T*> over the parameters,
// Tensors<accum_t<T>*> over the deltas (gradients), which share the parameter table's layout.
// Every function runs its ops on `ex`.
#pragma once

#include <type_traits>

#include "kernels/ops.h"
#include "model/config.h"
#include "model/params.h"
#include "parallel/data_plane.h"
#include "parallel/ring_attention.h"

namespace nexus {

template <typename P>
struct MambaTensors {
  P in_proj;   // [in_proj_dim, D]   -> z | x B C | dt
  P conv_w;    // [conv_dim, 1, K]
  P conv_b;    // [conv_dim]
  P dt_bias;   // [H]
  P A_log;     // [H]
  P D;         // [H]
  P norm;      // [d_inner]
  P out_proj;  // [D, d_inner]
};

template <typename P>
struct AttentionTensors {
  P q;  // [Hq*hd, D]
  P k;  // [Hkv*hd, D]
  P v;  // [Hkv*hd, D]
  P o;  // [D, Hq*hd]
};

template <typename P>
struct MlpTensors {
  P gate_up;  // [2F, D]: gate_proj rows then up_proj rows (adjacent in the table)
  P down;     // [D, F]
};

template <typename P>
struct LayerTensors {
  P input_norm;  // [D]
  P ff_norm;     // [D]
  MambaTensors<P> mamba{};   // set when the layer is 'M'
  AttentionTensors<P> attn{};  // set when the layer is 'A'
  MlpTensors<P> mlp{};
};

// Views of layer `layer` inside a flat buffer laid out by `table` (parameters or deltas).
template <typename P>
LayerTensors<P> layer_tensors(P base, const ParamTable& table, const ModelConfig& c, idx layer);

// ------------------------------------------------------------------------------------------------
// Mamba-2 mixer: in_proj -> conv1d+SiLU over xBC -> SSD (dt softplus, A = -exp(A_log), D skip)
// -> gated RMSNorm with z -> out_proj.
template <typename T>
struct MambaActivations {
  T* zxbcdt;      // [N, in_proj_dim]  in_proj output: z | xBC before the conv | dt before softplus
  T* xbc;         // [N, conv_dim]     after conv1d + SiLU: x | B | C
  T* y;           // [N, d_inner]      SSD output, D skip included
  T* gated;       // [N, d_inner]      gated RMSNorm output (out_proj's input)
  accum_t<T>* gated_rstd;  // [N, G]           one rstd per group of d_inner / G channels, as Bamba
};

template <typename T>
struct MambaScratch {
  T* d_zxbcdt;       // [N, in_proj_dim]
  T* d_xbc;          // [N, conv_dim]
  T* d_y;            // [N, d_inner]
  T* d_gated;        // [N, d_inner]
  T* ssd_workspace;  // [ssd_workspace<T>(shape)]
};

// State carried across a sequence split: the conv halo (last K-1 xBC inputs, [B, K-1, conv_dim])
// and the SSM state ([B, H, P, N]). Null inputs mean "start of sequence"; null outputs are not
// produced. This is what state passing across ranks and recurrent inference build on.
template <typename T>
struct MambaCarry {
  const T* conv_in = nullptr;
  const accum_t<T>* state_in = nullptr;
  T* conv_out = nullptr;
  accum_t<T>* state_out = nullptr;
};

SsdShape mamba_ssd_shape(const ModelConfig& c, idx B, idx Tn);

template <typename T>
void mamba_mixer_forward(const Exec& ex, T* out /*[N,D]*/, const MambaActivations<T>& a, const T* inp /*[N,D]*/,
                         const MambaTensors<const T*>& w, const ModelConfig& c, idx B, idx Tn, T* ssd_workspace,
                         const MambaCarry<T>& carry = {});
// dinp is overwritten.
template <typename T>
void mamba_mixer_backward(const Exec& ex, T* dinp /*[N,D]*/, const MambaTensors<accum_t<T>*>& g,
                          const MambaScratch<T>& s, const T* dout /*[N,D]*/, const T* inp /*[N,D]*/,
                          const MambaActivations<T>& a, const MambaTensors<const T*>& w, const ModelConfig& c, idx B,
                          idx Tn);

// ------------------------------------------------------------------------------------------------
// Attention mixer: q/k/v projections -> RoPE (global positions pos0 + t) -> causal GQA -> o_proj.
template <typename T>
struct AttentionActivations {
  T* q;    // [N, Hq*hd]   after RoPE
  T* k;    // [N, Hkv*hd]  after RoPE
  T* v;    // [N, Hkv*hd]
  T* att;  // [N, Hq*hd]   attention output (o_proj's input)
  accum_t<T>* lse;  // [N, Hq]
};

template <typename T>
struct AttentionScratch {
  T* dq;    // [N, Hq*hd]
  T* dk;    // [N, Hkv*hd]
  T* dv;    // [N, Hkv*hd]
  T* datt;  // [N, Hq*hd]
};

// Keys and values of earlier tokens of the same sequences (e.g. the first half of a split
// sequence), attended to in addition to the local causal block and merged by log-sum-exp.
template <typename T>
struct KvPrefix {
  const T* k;       // [B, len, Hkv, hd]  after RoPE
  const T* v;       // [B, len, Hkv, hd]
  idx len;          // tokens per sequence
  idx pos0;         // global position of its first token
  T* out_scratch;   // [N, Hq*hd]
  accum_t<T>* lse_scratch;  // [N, Hq]
};

// Context parallelism: the Tn = 2c local tokens of each sequence are zigzag chunks r and
// 2cp-1-r of the group `cp` (parallel/zigzag.h); RoPE uses their global positions and attention runs
// as ring attention over the group. `workspace` is sized by ring_attention_workspace.
template <typename T>
struct RingContext {
  const DataPlane* cp;
  T* workspace;
  RingStats* stats = nullptr;  // bytes and kernel calls of the ring, added to (may be null)
};

// With `ring`, pos0 and prefix must be 0 / null: positions come from the zigzag layout.
// `neighborhood` is the layer's (ModelConfig::neighborhood_of), applied on global positions.
template <typename T>
void attention_mixer_forward(const Exec& ex, T* out /*[N,D]*/, const AttentionActivations<T>& a, const T* inp /*[N,D]*/,
                             const AttentionTensors<const T*>& w, const ModelConfig& c, idx B, idx Tn, idx pos0,
                             const KvPrefix<T>* prefix = nullptr, const RingContext<T>* ring = nullptr,
                             const Neighborhood& neighborhood = {});
// dinp is overwritten.
template <typename T>
void attention_mixer_backward(const Exec& ex, T* dinp /*[N,D]*/, const AttentionTensors<accum_t<T>*>& g,
                              const AttentionScratch<T>& s, const T* dout /*[N,D]*/, const T* inp /*[N,D]*/,
                              const AttentionActivations<T>& a, const AttentionTensors<const T*>& w,
                              const ModelConfig& c, idx B, idx Tn, idx pos0, const RingContext<T>* ring = nullptr,
                              const Neighborhood& neighborhood = {});

// ------------------------------------------------------------------------------------------------
// SwiGLU MLP: down(silu(gate(x)) * up(x)).
template <typename T>
struct MlpActivations {
  T* gate_up;  // [N, 2F]
  T* act;      // [N, F]
};

template <typename T>
struct MlpScratch {
  T* d_gate_up;  // [N, 2F]
  T* d_act;      // [N, F]
};

template <typename T>
void mlp_forward(const Exec& ex, T* out /*[N,D]*/, const MlpActivations<T>& a, const T* inp /*[N,D]*/,
                 const MlpTensors<const T*>& w, idx N, idx D, idx F);
// dinp is overwritten.
template <typename T>
void mlp_backward(const Exec& ex, T* dinp /*[N,D]*/, const MlpTensors<accum_t<T>*>& g, const MlpScratch<T>& s,
                  const T* dout /*[N,D]*/, const T* inp /*[N,D]*/, const MlpActivations<T>& a,
                  const MlpTensors<const T*>& w, idx N, idx D, idx F);

}  // namespace nexus
