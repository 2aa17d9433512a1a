// Mamba-2 state passing: an all-gather of per-segment summaries, then the scan in sequence order
// (forward) or reverse (backward), one decayed_state_update per segment over all (b, h) rows.
#include "parallel/state_passing.h"

#include "parallel/zigzag.h"

namespace nexus {

namespace {

// One slot's [B,H,width] rows inside a [2B,H,width] buffer of segment-sequences q = 2b + slot:
// B runs of H*width elements, 2H*width apart.
Strided3 slot_rows(const StatePassingShape& s, idx width) {
  const idx run = s.H * width;
  return Strided3{s.B, 1, run, 2 * run, 0, 2 * run, 0};
}

template <typename T>
std::size_t allgather_bytes_sent(const DataPlane& cp, idx count) {
  return std::size_t(cp.size() - 1) * std::size_t(count) * sizeof(T);
}

}  // namespace

template <typename T>
std::size_t state_passing_forward(const Exec& ex, T* state_in, T* decay_all, const T* local, T* gathered,
                                  const StatePassingShape& s, const DataPlane& cp) {
  const idx P = cp.size(), r = cp.rank(), summary = s.summary(), states = s.states(), run = s.H * s.PN;
  cp.allgather(local, summary, gathered);
  // Slot 1's rows carry the running state from S_in(0) = 0 up to S_in(2cp-1-r), the initial state
  // of this rank's later segment; on the way, S_in(r) is slot 0's.
  T* running = state_in + run;
  copy_strided(ex, running, static_cast<const T*>(nullptr), slot_rows(s, s.PN));
  for (idx j = 0; j < zigzag_chunk(P, r, 1); ++j) {
    if (j == r) copy_strided(ex, state_in, static_cast<const T*>(running), slot_rows(s, s.PN));
    const T* blk = gathered + zigzag_owner(P, j) * summary;
    const idx slot = zigzag_half(P, j);
    decayed_state_update(ex, running, blk + states + slot * s.H, blk + slot * run, s.B, s.H, s.PN, 2 * s.H);
  }
  for (idx rank = 0; rank < P; ++rank)
    copy_values(ex, decay_all + rank * 2 * s.B * s.H, gathered + rank * summary + states, 2 * s.B * s.H);
  return allgather_bytes_sent<T>(cp, summary);
}

template <typename T>
std::size_t state_passing_backward(const Exec& ex, T* dfinal, const T* local_l, T* gathered, const T* decay_all,
                                   const StatePassingShape& s, const DataPlane& cp) {
  const idx P = cp.size(), r = cp.rank(), states = s.states(), run = s.H * s.PN, segs = 2 * P;
  cp.allgather(local_l, states, gathered);
  // Slot 0's rows carry the running gradient from G(2cp) = 0 down to G(r+1), the gradient of this
  // rank's earlier segment's final state; on the way, G(2cp-r) is slot 1's.
  T* running = dfinal;
  copy_strided(ex, running, static_cast<const T*>(nullptr), slot_rows(s, s.PN));
  for (idx j = segs - 1; j > r; --j) {
    if (j == zigzag_chunk(P, r, 1)) copy_strided(ex, dfinal + run, static_cast<const T*>(running), slot_rows(s, s.PN));
    const idx rank = zigzag_owner(P, j), slot = zigzag_half(P, j);
    decayed_state_update(ex, running, decay_all + rank * 2 * s.B * s.H + slot * s.H,
                         gathered + rank * states + slot * run, s.B, s.H, s.PN, 2 * s.H);
  }
  return allgather_bytes_sent<T>(cp, states);
}

#define NEXUS_INSTANTIATE(T)                                                                                        \
  template std::size_t state_passing_forward<T>(const Exec&, T*, T*, const T*, T*, const StatePassingShape&,        \
                                                const DataPlane&);                                               \
  template std::size_t state_passing_backward<T>(const Exec&, T*, const T*, T*, const T*, const StatePassingShape&, \
                                                 const DataPlane&);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
#undef NEXUS_INSTANTIATE

}  // namespace nexus
