// The Mamba-2 mixer under context parallelism (DESIGN.md section 4).
//
// Every cp rank holds its zigzag part of each sequence, [B, Tn = 2c, D]: chunk r then chunk
// 2cp-1-r of the 2cp chunks of c tokens (parallel/zigzag.h). Each local chunk is a "segment" in
// sequence order j = r and j = 2cp-1-r. Because the two segments are adjacent rows of one
// [B, 2c] buffer, the local part is read everywhere as 2B independent sequences of c tokens
// (sequence 2b+s is segment s of sequence b), so each kernel runs once over both segments.
//
// Forward: in_proj; the conv halo of segment j (the last K-1 conv inputs of chunk j-1) arrives
// point to point from the rank holding chunk j-1 (zeros for j = 0); conv1d+SiLU; SSD from a zero
// initial state, which yields each segment's local final state S_loc and total decay; those
// summaries are all-gathered, scanned in sequence order
//   S_in(0) = 0,  S_in(j+1) = decay(j) S_in(j) + S_loc(j)
// and each segment's output is corrected with the term its true initial state adds,
//   y_t += exp(A sum_{s<=t} dt_s) C_t . S_in            (O(c H P N), no second SSD pass);
// gated RMSNorm; out_proj.
// Backward: the same correction's adjoint gives each segment the gradient its own outputs put on
// its initial state, l(j) = sum_t exp(A sum_{s<=t} dt_s) dy_t C_t^T; these are all-gathered and
// scanned in reverse,  G(2cp) = 0,  G(j) = l(j) + decay(j) G(j+1)  (G(j) = dL/dS_in(j)), and each
// segment runs one ssd_backward with its true initial state and dfinal_state = G(j+1), the
// total gradient of its final state (which is also how decay(j) and S_loc(j) pass gradient
// into dt, A_log, x and B of segment j). The conv halo gradients go back to the ranks that sent
// the halos and are added to their conv-input gradient rows.
//
// Traffic per layer and step, per rank (mamba_cp_bytes_sent): two halos of [B, K-1, conv_dim]
// each way (in T), plus the all-gathers of (S_loc, decay) and of l: (cp-1) * 2B * (2 H P N + H)
// elements of accum_t<T> (fp32 for bf16, as the SSD keeps its states). Independent of the sequence
// length.
#pragma once

#include <cstddef>

#include "model/config.h"
#include "model/layers.h"
#include "parallel/data_plane.h"

namespace nexus {

// Scratch for one call of mamba_mixer_forward_cp or mamba_mixer_backward_cp, in elements of T:
// the SSD workspace of the 2B segment-sequences plus the exchange buffers (halos in T, summaries,
// l and final-state gradients in accum_t<T>). It replaces the `ssd_workspace` of the single-rank
// mixer (forward argument, MambaScratch::ssd_workspace). Both buffers below must be aligned for
// accum_t<T>.
template <typename T>
idx mamba_cp_workspace(const ModelConfig& c, idx B, idx Tn, int cp_size);

// What the forward keeps for the backward, per layer, in elements of T: each segment's conv halo
// [2B, K-1, conv_dim] in T, then in accum_t<T> its true initial state [2B, H, P, N] and every
// segment's total decay [cp, 2B, H].
template <typename T>
idx mamba_cp_saved_size(const ModelConfig& c, idx B, int cp_size);

// Bytes one rank sends for one Mamba layer in one forward plus backward: halo and halo-gradient
// messages (elements of elem_bytes: T) plus the all-gathered summaries (elements of state_bytes:
// accum_t<T>), what the rank contributes to each other rank. The calls below return their share
// of this, measured from what they actually pass to the data plane.
std::size_t mamba_cp_bytes_sent(const ModelConfig& c, idx B, int cp_size, int cp_rank, std::size_t elem_bytes,
                                std::size_t state_bytes);

// Local input/output rows are this rank's zigzag part: inp, out [B, Tn, D] with Tn = 2c and
// c >= K-1. Outputs equal the single-rank mixer's on the full sequence, at this rank's tokens.
// `workspace` is sized by mamba_cp_workspace; `saved` by mamba_cp_saved_size (kept until the
// backward of this layer). Collective over `cp`. Returns the bytes this rank sent.
template <typename T>
std::size_t mamba_mixer_forward_cp(const Exec& ex, T* out /*[B,Tn,D]*/, const MambaActivations<T>& a,
                                   const T* inp /*[B,Tn,D]*/, const MambaTensors<const T*>& w, const ModelConfig& c,
                                   idx B, idx Tn, T* workspace, const DataPlane& cp, T* saved);

// dinp is overwritten; parameter gradients accumulate this rank's contribution (the caller sums
// deltas over the group). s.ssd_workspace must be sized by mamba_cp_workspace. Collective over
// `cp`. Returns the bytes this rank sent.
template <typename T>
std::size_t mamba_mixer_backward_cp(const Exec& ex, T* dinp /*[B,Tn,D]*/, const MambaTensors<accum_t<T>*>& g,
                                    const MambaScratch<T>& s, const T* dout /*[B,Tn,D]*/, const T* inp /*[B,Tn,D]*/,
                                    const MambaActivations<T>& a, const MambaTensors<const T*>& w, const ModelConfig& c,
                                    idx B, idx Tn, const DataPlane& cp, const T* saved);

}  // namespace nexus
