// Mamba-2 state passing across a context-parallel group (DESIGN.md section 4), beside ring
// attention: the cross-rank half of the Mamba-2 mixer under cp (model/mamba_layer_cp.h runs the
// local half and explains the math).
//
// Rank r holds segments (zigzag chunks) j = r and j = 2cp-1-r of each of its B sequences, as local
// slots 0 and 1; its 2B segment-sequences are indexed q = 2b + slot. Each segment is summarised
// by its zero-initial-state final state S_loc [H,P,N] and its total decay [H]. The summaries are
// all-gathered and scanned in sequence order,
//   S_in(0) = 0,  S_in(j+1) = decay(j) S_in(j) + S_loc(j),
// and in the backward the gradients each segment's own outputs put on its initial state, l(j),
// are all-gathered and scanned in reverse,
//   G(2cp) = 0,  G(j) = l(j) + decay(j) G(j+1)      (G(j) = dL/dS_in(j)),
// so that segment j's final state receives G(j+1). Every arithmetic step is an op
// (decayed_state_update, copy_strided); the traffic is O(cp) per rank, independent of T.
#pragma once

#include <cstddef>

#include "kernels/ops.h"
#include "parallel/data_plane.h"

namespace nexus {

struct StatePassingShape {
  idx B;   // sequences (2B segment-sequences per rank)
  idx H;   // heads
  idx PN;  // elements of one head's state (P * N)
  // One rank's summary block: [2B,H,PN] final states, then [2B,H] decays.
  idx summary() const { return 2 * B * (H * PN + H); }
  idx states() const { return 2 * B * H * PN; }
};

// Forward. `local` is this rank's summary block; `gathered` ([cp][summary]) receives every
// rank's. Writes the true initial state of both local segments, state_in [2B,H,PN], and every
// segment's decay, decay_all [cp,2B,H] by owning rank (what the backward needs). Collective over
// `cp`; returns the bytes this rank sent.
template <typename T>
std::size_t state_passing_forward(const Exec& ex, T* state_in, T* decay_all, const T* local, T* gathered,
                                  const StatePassingShape& s, const DataPlane& cp);

// Backward. `local_l` ([2B,H,PN]) is l of this rank's segments; `gathered` ([cp][2B,H,PN])
// receives every rank's. Writes dfinal [2B,H,PN], the total gradient of each local segment's final
// state. Collective over `cp`; returns the bytes this rank sent.
template <typename T>
std::size_t state_passing_backward(const Exec& ex, T* dfinal, const T* local_l, T* gathered, const T* decay_all,
                                   const StatePassingShape& s, const DataPlane& cp);

}  // namespace nexus
