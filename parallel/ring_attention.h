// Ring attention over a context-parallel group (DESIGN.md section 4). Each sequence of
// T = 2 * cp * c tokens is cut into 2 * cp chunks of c tokens (chunk j covers global positions
// [j c, (j + 1) c)); cp-rank r holds chunks r and 2cp-1-r, concatenated (parallel/zigzag.h). The
// result on every rank equals causal attention_forward / attention_backward over the whole
// sequence, sliced to the rank's two chunks.
//
// Forward: the K/V of the kv heads travel around the ring (to rank + 1, from rank - 1) in cp
// steps; at each step the rank runs attention_forward on every (local query chunk, held KV chunk)
// pair that is not entirely in the future, and merges the partial results through their lse.
// The next block's transfer (non-blocking, double-buffered in the workspace) is posted before
// the current block is computed, so communication overlaps compute.
// Backward: K/V travel the same ring again; each step's dK/dV contribution is added to the
// accumulator arriving from rank - 1 and passed on to rank + 1 on a second ring (own tags), so
// that after cp steps every accumulator is back with the owner of its K/V. dq stays local.
#pragma once

#include "kernels/ops.h"
#include "parallel/data_plane.h"
#include "parallel/zigzag.h"

namespace nexus {

struct RingShape {
  idx B;           // sequences
  idx c;           // chunk length: a rank holds 2c tokens of each sequence, T = 2 * cp * c
  idx n_heads;     // query heads
  idx n_kv_heads;  // key/value heads (divides n_heads)
  idx head_dim;
};

// Elements of T the workspace of ring_attention_forward and ring_attention_backward needs (the
// larger of the two, so one buffer serves both).
idx ring_attention_workspace(const RingShape& s);

// Local tensors in zigzag order: [B, 2c, H, hd] = chunk r then chunk 2cp-1-r of every sequence.
// out and lse are overwritten (lse in T, as attention_forward gives it). Collective over `cp`.
template <typename T>
void ring_attention_forward(const Exec& ex, T* out /*[B,2c,Hq,hd]*/, accum_t<T>* lse /*[B,2c,Hq]*/,
                            const T* q /*[B,2c,Hq,hd]*/, const T* k /*[B,2c,Hkv,hd]*/, const T* v /*[B,2c,Hkv,hd]*/,
                            const RingShape& s, const DataPlane& cp, T* workspace);

// Takes the forward's (merged) out and lse. dq, dk, dv accumulate, as in attention_backward;
// dk, dv are the gradients of this rank's own K/V (summed over every rank's queries).
// Collective over `cp`.
template <typename T>
void ring_attention_backward(const Exec& ex, T* dq /*[B,2c,Hq,hd]*/, T* dk /*[B,2c,Hkv,hd]*/, T* dv /*[B,2c,Hkv,hd]*/,
                             const T* dout /*[B,2c,Hq,hd]*/, const T* q, const T* k, const T* v,
                             const T* out /*[B,2c,Hq,hd]*/, const accum_t<T>* lse /*[B,2c,Hq]*/, const RingShape& s,
                             const DataPlane& cp, T* workspace);

}  // namespace nexus
