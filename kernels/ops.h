// Every primitive Nexus computes with, declared once. Each op has a forward and a backward written
// side by side in its backend file (kernels/cpu/<op>.cpp); every op is a template instantiated for
// float (training) and double (finite-difference gradient checks).
//
// Conventions, shared by all ops:
//  - Tensors are row-major; the shape comment names the dimensions outermost first.
//    N = number of tokens (B*T), D = model width.
//  - A backward ACCUMULATES (+=) into parameter gradients (the delta buffer spans micro-batches)
//    and into every input gradient documented as "accumulates"; all others overwrite.
//  - `ld_*` is the leading dimension: the distance in elements between consecutive tokens, so an
//    op can read a column slice of a wider buffer (e.g. the x/B/C/dt slices of in_proj's output).
//  - Nothing here allocates. Ops that need scratch take a `workspace` sized by `<op>_workspace`.
//  - Threads: ops parallelise with OpenMP internally; call them from one thread.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/neighborhood.h"

namespace nexus {

using idx = std::int64_t;

// ---------------------------------------------------------------------------------------------
// Token embedding.  out[n, :] = table[tokens[n], :]
template <typename T>
void embedding_forward(T* out /*[N,D]*/, const std::int32_t* tokens /*[N]*/, const T* table /*[V,D]*/,
                       idx N, idx D);
// dtable accumulates.
template <typename T>
void embedding_backward(T* dtable /*[V,D]*/, const std::int32_t* tokens /*[N]*/, const T* dout /*[N,D]*/,
                        idx N, idx D);

// ---------------------------------------------------------------------------------------------
// RMSNorm fused with the residual add that precedes it:
//   h = x + branch   (branch may be null: h = x; h may alias x)
//   y = h * rsqrt(mean(h^2) + eps) * weight
template <typename T>
void residual_rmsnorm_forward(T* h /*[N,D]*/, T* y /*[N,D]*/, T* rstd /*[N]*/, const T* x /*[N,D]*/,
                              const T* branch /*[N,D] or null*/, const T* weight /*[D]*/, idx N, idx D,
                              double eps);
// dh accumulates: it is the residual-stream gradient, which already holds the gradient arriving
// through the skip connection. dweight accumulates.
template <typename T>
void rmsnorm_backward(T* dh /*[N,D]*/, T* dweight /*[D]*/, const T* dy /*[N,D]*/, const T* h /*[N,D]*/,
                      const T* weight /*[D]*/, const T* rstd /*[N]*/, idx N, idx D);

// ---------------------------------------------------------------------------------------------
// Linear layer without bias, through BLAS GEMM:  out = inp @ weight^T
template <typename T>
void matmul_forward(T* out /*[N,O]*/, const T* inp /*[N,I]*/, const T* weight /*[O,I]*/, idx N, idx I,
                    idx O);
// dweight accumulates; dinp accumulates when accumulate_dinp, else is overwritten. dinp may be null.
template <typename T>
void matmul_backward(T* dinp /*[N,I]*/, T* dweight /*[O,I]*/, const T* dout /*[N,O]*/,
                     const T* inp /*[N,I]*/, const T* weight /*[O,I]*/, idx N, idx I, idx O,
                     bool accumulate_dinp);

// ---------------------------------------------------------------------------------------------
// SwiGLU:  out = silu(gate) * up, where each row of gate_up is [gate (F) | up (F)] (the gate and
// up projections run as one GEMM because their weights are adjacent in the parameter buffer).
template <typename T>
void swiglu_forward(T* out /*[N,F]*/, const T* gate_up /*[N,2F]*/, idx N, idx F);
template <typename T>
void swiglu_backward(T* dgate_up /*[N,2F]*/, const T* dout /*[N,F]*/, const T* gate_up /*[N,2F]*/, idx N,
                     idx F);

// ---------------------------------------------------------------------------------------------
// Rotary position embedding, rotate-half style, on the first `rotary_dim` dims of each head
// (Bamba: rotary_dim = head_dim / 2). In place. Token t of every sequence has global position
// pos0 + t. inv_freq[i] = theta^(-2i/rotary_dim); for i < rotary_dim/2, with a = pos*inv_freq[i]:
//   x'[i]            = x[i] cos a - x[i + r/2] sin a
//   x'[i + r/2]      = x[i + r/2] cos a + x[i] sin a
// The backward is the inverse rotation (rope_forward with the angle negated), also in place.
template <typename T>
void rope_forward(T* x /*[B,Tn,H,hd]*/, idx B, idx Tn, idx H, idx head_dim, idx rotary_dim, idx pos0,
                  double theta);
template <typename T>
void rope_backward(T* dx /*[B,Tn,H,hd]*/, idx B, idx Tn, idx H, idx head_dim, idx rotary_dim, idx pos0,
                   double theta);

// ---------------------------------------------------------------------------------------------
// Grouped-query attention, flash style: tiled, online softmax, never a Tq x Tk buffer.
// Query i of a sequence sits at global position q_pos0 + i, key j at k_pos0 + j. With `causal`,
// key j is visible to query i iff neighborhood.visible(q_pos0 + i, k_pos0 + j) (the default, full,
// is k_pos0 + j <= q_pos0 + i); tiles entirely outside are skipped, and within the others the mask
// is computed from the positions. Without `causal` every key is visible (the neighborhood is unused).
// Query head h reads kv head h / (n_heads / n_kv_heads). Scale is 1/sqrt(head_dim).
// This is the block contract of ring attention: the ring calls it once per (query block, KV block)
// and merges partial results through lse.
struct AttentionShape {
  idx B;           // sequences
  idx Tq, Tk;      // query rows, key rows per sequence
  idx n_heads;     // query heads
  idx n_kv_heads;  // key/value heads (divides n_heads)
  idx head_dim;
  idx q_pos0 = 0, k_pos0 = 0;  // global position of the first query / key
  bool causal = true;
  Neighborhood neighborhood = {};  // which earlier positions a query reads (with causal)
};
// lse[b,i,h] = log sum_j exp(score) over visible keys; a row with no visible key gets
// out = 0 and lse = -inf.
template <typename T>
void attention_forward(T* out /*[B,Tq,Hq,hd]*/, T* lse /*[B,Tq,Hq]*/, const T* q /*[B,Tq,Hq,hd]*/,
                       const T* k /*[B,Tk,Hkv,hd]*/, const T* v /*[B,Tk,Hkv,hd]*/, const AttentionShape& s);
// Takes the FINAL (merged over all KV blocks) out and lse, as ring attention requires.
// dq, dk, dv accumulate.
template <typename T>
void attention_backward(T* dq /*[B,Tq,Hq,hd]*/, T* dk /*[B,Tk,Hkv,hd]*/, T* dv /*[B,Tk,Hkv,hd]*/,
                        const T* dout /*[B,Tq,Hq,hd]*/, const T* q, const T* k, const T* v,
                        const T* out /*[B,Tq,Hq,hd]*/, const T* lse /*[B,Tq,Hq]*/, const AttentionShape& s);

// Merges the partial result (out_b, lse_b) of another KV block into (out, lse), in place, in the
// overflow-safe form: lse' = m + log(e^(lse-m) + e^(lse_b-m)) with m = max(lse, lse_b), and
// out' = out e^(lse-lse') + out_b e^(lse_b-lse'). A side with lse = -inf contributes nothing.
// rows = B*Tq*Hq (the layouts of attention_forward's out and lse).
template <typename T>
void attention_merge(T* out /*[rows,hd]*/, T* lse /*[rows]*/, const T* out_b /*[rows,hd]*/,
                     const T* lse_b /*[rows]*/, idx rows, idx head_dim);

// ---------------------------------------------------------------------------------------------
// Depthwise causal conv1d (width K, with bias) fused with SiLU:
//   out[t,c] = silu(bias[c] + sum_k w[c,k] * xin[t - (K-1) + k, c])
// where xin[t<0] comes from the halo: the previous segment's last K-1 inputs (zeros when null).
template <typename T>
void conv1d_silu_forward(T* out /*[B,Tn,C]*/, const T* x /*[B,Tn,ld_x]*/, idx ld_x,
                         const T* halo /*[B,K-1,C] or null*/, const T* w /*[C,K]*/, const T* bias /*[C]*/,
                         idx B, idx Tn, idx C, idx K);
// dx is overwritten (row stride ld_dx); dhalo (if non-null) is overwritten; dw, dbias accumulate.
template <typename T>
void conv1d_silu_backward(T* dx /*[B,Tn,ld_dx]*/, idx ld_dx, T* dhalo /*[B,K-1,C] or null*/, T* dw /*[C,K]*/,
                          T* dbias /*[C]*/, const T* dout /*[B,Tn,C]*/, const T* x /*[B,Tn,ld_x]*/,
                          idx ld_x, const T* halo /*[B,K-1,C] or null*/, const T* w, const T* bias, idx B,
                          idx Tn, idx C, idx K);

// ---------------------------------------------------------------------------------------------
// Mamba-2 SSD (state space duality) scan, chunked as in mamba_ssm's ssd_minimal.
// Per sequence b, head h (group g = h / (H/G)), token t:
//   dt_t = softplus(dt_raw_t + dt_bias[h]),  A = -exp(A_log[h])
//   S_t  = exp(dt_t A) S_{t-1} + dt_t x_t B_t^T            (S: [P,N], S_{-1} = initial state)
//   y_t  = S_t C_t + D[h] x_t
// Computed per chunk of Q tokens: intra-chunk quadratic part, chunk state, state passing,
// state-to-output. final_state = S_{Tn-1}. Tn need not be a multiple of Q.
struct SsdShape {
  idx B, Tn;  // sequences, tokens per sequence
  idx H, P;   // heads, head dim   (d_inner = H*P)
  idx G, N;   // groups, state size
  idx Q;      // chunk size
};
// Row strides: x rows are ld_x apart (x[b,t,h,p] at (b*Tn+t)*ld_x + h*P + p); B and C share
// ld_bc (B[b,t,g,n] at (b*Tn+t)*ld_bc + g*N + n); dt_raw rows are ld_dt apart.
struct SsdStrides {
  idx ld_x, ld_bc, ld_dt;
};
// Scratch in elements of T, for forward and backward alike.
idx ssd_workspace(const SsdShape& s);
// init_state may be null (zeros); final_state may be null (not wanted).
// decay (optional, [B,H]) receives exp(sum_t dt_t A): the segment's total decay, so that
// S_out = decay * S_in + S_out(zero initial state) — the summary the cross-rank scan uses.
template <typename T>
void ssd_forward(T* y /*[B,Tn,H,P]*/, T* final_state /*[B,H,P,N] or null*/, T* decay /*[B,H] or null*/,
                 const T* x, const T* Bm, const T* Cm, const T* dt_raw, const T* dt_bias /*[H]*/,
                 const T* A_log /*[H]*/, const T* D /*[H]*/, const T* init_state /*[B,H,P,N] or null*/,
                 const SsdShape& s, const SsdStrides& ld, T* workspace);
// dfinal_state (may be null: zero) is the gradient of final_state. dx, dB, dC, ddt_raw are
// overwritten using the same strides as their inputs; dinit_state (may be null) is overwritten;
// ddt_bias, dA_log, dD accumulate.
template <typename T>
void ssd_backward(T* dx, T* dB, T* dC, T* ddt_raw, T* ddt_bias /*[H]*/, T* dA_log /*[H]*/, T* dD /*[H]*/,
                  T* dinit_state /*[B,H,P,N] or null*/, const T* dy /*[B,Tn,H,P]*/,
                  const T* dfinal_state /*[B,H,P,N] or null*/, const T* x, const T* Bm, const T* Cm,
                  const T* dt_raw, const T* dt_bias, const T* A_log, const T* D,
                  const T* init_state /*or null*/, const SsdShape& s, const SsdStrides& ld, T* workspace);

// ---------------------------------------------------------------------------------------------
// Gated RMSNorm of the Mamba-2 mixer, per group as Bamba's BambaRMSNormGated: each row is `groups`
// contiguous groups of Cg = C / groups channels (C divisible by groups; groups = mamba_ngroups),
// each normalised by its own rstd:
//   u = y * silu(z);  out[g] = u[g] * rsqrt(mean(u[g]^2) + eps) * weight[g]
// rstd[n, g] = rsqrt(mean over group g of row n of u^2 + eps). groups = 1 spans all C channels.
template <typename T>
void gated_rmsnorm_forward(T* out /*[N,C]*/, T* rstd /*[N,groups]*/, const T* y /*[N,C]*/,
                           const T* z /*[N,ld_z]*/, idx ld_z, const T* weight /*[C]*/, idx N, idx C, idx groups,
                           double eps);
// dy overwritten; dz overwritten (row stride ld_dz); dweight accumulates.
template <typename T>
void gated_rmsnorm_backward(T* dy /*[N,C]*/, T* dz /*[N,ld_dz]*/, idx ld_dz, T* dweight /*[C]*/,
                            const T* dout /*[N,C]*/, const T* y, const T* z, idx ld_z, const T* weight,
                            const T* rstd /*[N,groups]*/, idx N, idx C, idx groups);

// ---------------------------------------------------------------------------------------------
// Softmax cross-entropy over the vocabulary. Targets < 0 are ignored.
// Forward keeps logits intact (they may be returned to the caller), writes each row's lse and
// returns the SUM of -log p(target) over non-ignored rows (the caller divides by the global
// target count). Backward overwrites logits in place with dlogits = (softmax - onehot) * scale
// (zero rows for ignored targets), so the probabilities are never stored separately.
template <typename T>
double cross_entropy_forward(T* lse /*[N]*/, const T* logits /*[N,V]*/, const std::int32_t* targets /*[N]*/,
                             idx N, idx V);
template <typename T>
void cross_entropy_backward(T* logits_to_dlogits /*[N,V]*/, const T* lse /*[N]*/,
                            const std::int32_t* targets /*[N]*/, idx N, idx V, double scale);

// ---------------------------------------------------------------------------------------------
// The backend's dense GEMM rate in GFLOP/s (fp32 sgemm on CPU), measured on n x n x n products for
// about `seconds` after one warm-up: the peak that model FLOP utilisation is reported against.
// Allocates its own operands (it is a measurement, not a kernel).
double measure_gemm_peak_gflops(idx n = 1024, double seconds = 0.5);

// Debian 12's OpenBLAS (0.3.21) does not recognise some recent Xeons and falls back to its generic
// "Prescott" kernels, ~5x slower than its AVX-512 ones. It reads OPENBLAS_CORETYPE only while the
// library loads, before main, so a program that finds itself on the generic kernels re-executes
// itself once with the core named after the CPU's features. Call first thing in main (before
// MPI_Init). Does nothing when OPENBLAS_CORETYPE is already set or the core was recognised.
void select_blas_core(char** argv);

// =============================================================================================
// Single-token decode (recurrent inference): one new token per sequence, O(1) work per token in
// the Mamba ops and O(cached tokens) in attention. Each equals its full-sequence op above run on
// the whole sequence and read at the last token. Forward only.

// conv1d_silu_forward for one token per sequence, with the halo as a rolling state:
//   out[b,c] = silu(bias[c] + sum_{k<K-1} w[c,k] state[b,k,c] + w[c,K-1] x[b,c])
// then state[b] drops its oldest row and appends x[b]. state holds the last K-1 inputs, oldest
// first: the halo layout, so a MambaCarry::conv_out seeds it (zeros at the start of a sequence).
template <typename T>
void conv1d_silu_step(T* out /*[B,C]*/, T* state /*[B,K-1,C]*/, const T* x /*[B,ld_x]*/, idx ld_x,
                      const T* w /*[C,K]*/, const T* bias /*[C]*/, idx B, idx C, idx K);

// One token of ssd_forward per sequence, the recurrence itself:
//   dt = softplus(dt_raw + dt_bias[h]),  A = -exp(A_log[h])
//   S  = exp(dt A) S + dt x B^T;   y = S C + D[h] x
// state [B,H,P,N] (ssd_forward's init/final_state layout) is updated in place. x, Bm, Cm, dt_raw
// are one row per sequence with ssd_forward's strides (x[b,h,p] at b*ld_x + h*P + p, ...).
// s.Tn and s.Q are not used.
template <typename T>
void ssd_step(T* y /*[B,H,P]*/, T* state /*[B,H,P,N]*/, const T* x, const T* Bm, const T* Cm, const T* dt_raw,
              const T* dt_bias /*[H]*/, const T* A_log /*[H]*/, const T* D /*[H]*/, const SsdShape& s,
              const SsdStrides& ld);

// One query token per sequence against the cached keys of that sequence that its neighborhood
// shows it (causality is implied: the cache holds only the past and the current token, which sits
// at position kv_len - 1). GQA as in attention_forward, scale 1/sqrt(head_dim). The cache is
// paged: a pool of fixed-size blocks, each holding block_tokens tokens of K (and likewise of V)
// as [block_tokens, Hkv, hd]; token j of sequence b lives in block
// block_table[b * max_blocks_per_seq + paged_slot(s, j / block_tokens)], row j % block_tokens.
// Past the first `pinned_blocks` the table row is used cyclically, so that a bounded neighborhood
// (sliding, block, dilated; pinned: the sink's blocks) can reuse the slots of blocks it no longer
// reads: only blocks holding keys the neighborhood shows the query are read. A sequence with
// kv_len 0 gets out = 0.
struct PagedKvShape {
  idx B;                   // sequences
  idx n_heads;             // query heads
  idx n_kv_heads;          // divides n_heads
  idx head_dim;
  idx block_tokens;        // tokens per block
  idx max_blocks_per_seq;  // row length of block_table
  Neighborhood neighborhood = {};
  idx pinned_blocks = 0;   // the first blocks of a sequence, never reused (< max_blocks_per_seq)
};
// The table slot of a sequence's logical block `block` (its tokens [block, block + 1) * block_tokens).
inline idx paged_slot(const PagedKvShape& s, idx block) {
  return block < s.pinned_blocks ? block
                                 : s.pinned_blocks + (block - s.pinned_blocks) % (s.max_blocks_per_seq - s.pinned_blocks);
}
template <typename T>
void attention_decode_paged(T* out /*[B,Hq,hd]*/, const T* q /*[B,Hq,hd]*/,
                            const T* k_pool /*[num_blocks,block_tokens,Hkv,hd]*/,
                            const T* v_pool /*[num_blocks,block_tokens,Hkv,hd]*/,
                            const std::int32_t* block_table /*[B,max_blocks_per_seq]*/,
                            const idx* kv_len /*[B] cached tokens per sequence*/, const PagedKvShape& s);

}  // namespace nexus
