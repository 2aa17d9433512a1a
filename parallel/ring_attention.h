// Ring attention over a context-parallel group (DESIGN.md section 4). Each sequence of
// T = 2 * cp * c tokens is cut into 2 * cp chunks of c tokens (chunk j covers global positions
// [j c, (j + 1) c)); cp-rank r holds chunks r and 2cp-1-r, concatenated (parallel/zigzag.h). The
// result on every rank equals causal attention_forward / attention_backward over the whole
// sequence, sliced to the rank's two chunks.
//
// Forward: in cp steps, rank r works at step s on the K/V of the kv heads of rank r - s (its own
// at step 0), which rank r - s sends to it directly: a hop of s ranks. At each step the rank runs
// attention_forward on every (local query chunk, held KV chunk) pair that its neighborhood does
// not leave empty, and merges the partial results through their lse. The next step's transfer
// (non-blocking, double-buffered in the workspace) is posted before the current step is
// computed, so communication overlaps compute.
// Hops whose KV lies entirely outside every local query's neighborhood are skipped on both ends:
// nothing is sent, received or computed (under sliding:W with W <= c only the hops from the two
// neighbours in sequence order remain; under full every hop is needed, as zigzag balances them).
// Backward: K/V travel again; each step's dK/dV contribution goes straight back to the K/V's owner,
// which sums the arrivals in step order and adds them to its own dk, dv at the end. dq stays local.
//
// Element types on the wire: K/V blocks and dK/dV contributions in T; lse never travels (each rank
// merges its own queries' partial results). The arrived contributions are summed in accum_t<T>
// (fp32 for bf16: copy_widened, add_widened) and the sum is added to dk, dv with one rounding to T
// (add_narrowed): under bf16 the sum adds no rounding beyond that final one for any cp, next to
// the rounding every contribution already has when attention_backward writes it in bf16.
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
  Neighborhood neighborhood = {};  // of the attention layer, on global positions
};

// What a forward or backward call moved and computed on this rank; calls add to it.
struct RingStats {
  std::size_t bytes_sent = 0;      // K/V (and, backward, dK/dV) bytes this rank sent
  std::size_t bytes_received = 0;
  idx block_calls = 0;             // attention_forward / attention_backward kernel calls
  idx hops = 0;                    // steps > 0 whose KV block this rank received and used
  idx hops_skipped = 0;            // steps > 0 skipped: the KV block was outside every local query's reach
};

// Elements of T the workspace of ring_attention_forward and ring_attention_backward needs (the
// larger of the two, so one buffer serves both); it must be aligned for accum_t<T>.
template <typename T>
idx ring_attention_workspace(const RingShape& s);

// Local tensors in zigzag order: [B, 2c, H, hd] = chunk r then chunk 2cp-1-r of every sequence.
// out and lse are overwritten (lse in accum_t<T>, as attention_forward gives it). Collective over
// `cp`. T = bf16 runs on a GPU only.
template <typename T>
void ring_attention_forward(const Exec& ex, T* out /*[B,2c,Hq,hd]*/, accum_t<T>* lse /*[B,2c,Hq]*/,
                            const T* q /*[B,2c,Hq,hd]*/, const T* k /*[B,2c,Hkv,hd]*/, const T* v /*[B,2c,Hkv,hd]*/,
                            const RingShape& s, const DataPlane& cp, T* workspace, RingStats* stats = nullptr);

// Takes the forward's (merged) out and lse. dq, dk, dv accumulate, as in attention_backward;
// dk, dv are the gradients of this rank's own K/V (summed over every rank's queries).
// Collective over `cp`.
template <typename T>
void ring_attention_backward(const Exec& ex, T* dq /*[B,2c,Hq,hd]*/, T* dk /*[B,2c,Hkv,hd]*/, T* dv /*[B,2c,Hkv,hd]*/,
                             const T* dout /*[B,2c,Hq,hd]*/, const T* q, const T* k, const T* v,
                             const T* out /*[B,2c,Hq,hd]*/, const accum_t<T>* lse /*[B,2c,Hq]*/, const RingShape& s,
                             const DataPlane& cp, T* workspace, RingStats* stats = nullptr);

}  // namespace nexus
