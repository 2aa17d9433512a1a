// The Mamba-2 mixer under context parallelism: conv halos point to point, SSD state passing through
// an all-gather of per-segment summaries and a scan in sequence order (parallel/state_passing.h;
// see the header for the math). Every element loop is an op; this file only orchestrates. The local
// [B, 2c] rows are read as 2B sequences of c tokens (sequence q = 2b + s is segment s of sequence
// b), so every kernel runs once over both segments.
#include "model/mamba_layer_cp.h"

#include <array>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/workspace.h"
#include "parallel/state_passing.h"

namespace nexus {

namespace {

// Message tags of the halo exchange, one per direction and pass.
enum Tag : int {
  kTailUp = 0x4d00,    // tail of segment 0 (chunk r), to rank r+1 whose segment 0 follows it
  kTailDown,           // tail of segment 1 (chunk 2cp-1-r), to rank r-1 whose segment 1 follows it
  kHaloGradDown,       // gradient of segment 0's halo, back to rank r-1
  kHaloGradUp,         // gradient of segment 1's halo, back to rank r+1
};

// Sizes of one layer on one rank.
struct Dims {
  idx B, c, B2;             // sequences, tokens per segment, segment-sequences (2B)
  idx D, E, C, Di, K, GN;   // d_model, in_proj_dim, conv_dim, d_inner, d_conv, G*N
  idx H, P, N, G, PN, HPN;  // SSD
  idx halo;                 // [B, K-1, C]: one segment's halo for all sequences
  int cp, r;

  Dims(const ModelConfig& m, idx B_, idx Tn, int cp_size, int cp_rank)
      : B(B_), c(Tn / 2), B2(2 * B_), D(m.d_model), E(m.in_proj_dim()), C(m.conv_dim()), Di(m.d_inner()),
        K(m.mamba_d_conv), GN(m.mamba_ngroups * m.mamba_d_state), H(m.mamba_heads()), P(m.mamba_headdim),
        N(m.mamba_d_state), G(m.mamba_ngroups), PN(P * N), HPN(H * P * N), halo(B_ * (K - 1) * C), cp(cp_size),
        r(cp_rank) {}

  SsdShape ssd(const ModelConfig& m) const { return SsdShape{B2, c, H, P, G, N, m.mamba_chunk}; }
  idx summary() const { return B2 * (HPN + H); }  // one rank's all-gathered block: S_loc then decay
  bool has_prev() const { return r > 0; }
  bool has_next() const { return r < cp - 1; }
};

// Elements of T that n values of accum_t<T> take in a T-typed buffer.
template <typename T>
idx accum_span(idx n) {
  static_assert(sizeof(accum_t<T>) % sizeof(T) == 0);
  return n * idx(sizeof(accum_t<T>) / sizeof(T));
}

// A piece of accum_t<T> values at `offset` elements of a T-typed (or const T) buffer.
template <typename E>
auto* accum_at(E* base, idx offset) {
  using T = std::remove_const_t<E>;
  using A = std::conditional_t<std::is_const_v<E>, const accum_t<T>, accum_t<T>>;
  return reinterpret_cast<A*>(base + offset);
}

// Workspace carve (offsets in elements of T). Activations (halos) are T; the SSD summaries, l and
// the final-state gradients are accum_t<T>, like the SSD's states. The SSD workspace comes first
// so it keeps the base alignment; every piece is rounded to 16 elements, so an accum_t<T> piece
// starts aligned for it.
template <typename T>
struct WorkLayout {
  idx ssd, send, all, halo_send, halo_recv, dhalo, dfinal, total;
  WorkLayout(const ModelConfig& m, const Dims& d) {
    WorkspaceLayout w;
    ssd = w.take(ssd_workspace<T>(d.ssd(m)));
    send = w.take(accum_span<T>(d.summary()));             // this rank's summaries (forward) or l (backward)
    all = w.take(accum_span<T>(idx(d.cp) * d.summary()));  // [cp, summary] gathered
    halo_send = w.take(2 * d.halo);          // [2][B,K-1,C] per-segment tails or halo gradients
    halo_recv = w.take(2 * d.halo);          // [2][B,K-1,C] the same, received
    dhalo = w.take(d.B2 * (d.K - 1) * d.C);  // [2B,K-1,C] conv backward's halo gradient
    dfinal = w.take(accum_span<T>(d.B2 * d.HPN));  // [2B,H,P,N] total gradient of each segment's final state
    total = w.used;
  }
};

// What the forward keeps for the backward, carved like the workspace (T, then accum_t<T>).
template <typename T>
struct SavedLayout {
  idx halo, state_in, decay, total;
  explicit SavedLayout(const Dims& d) {
    WorkspaceLayout w;
    halo = w.take(d.B2 * (d.K - 1) * d.C);           // [2B,K-1,C]
    state_in = w.take(accum_span<T>(d.B2 * d.HPN));  // [2B,H,P,N]
    // [cp,2B,H] every segment's total decay, by owning rank and local slot
    decay = w.take(accum_span<T>(idx(d.cp) * d.B2 * d.H));
    total = w.used;
  }
};
template <typename E>  // T, or const T in the backward
struct Saved {
  E* halo;
  decltype(accum_at(static_cast<E*>(nullptr), 0)) state_in, decay;
  Saved(E* base, const Dims& d) {
    const SavedLayout<std::remove_const_t<E>> l(d);
    halo = base + l.halo;
    state_in = accum_at(base, l.state_in);
    decay = accum_at(base, l.decay);
  }
};

StatePassingShape passing_shape(const Dims& d) { return StatePassingShape{d.B, d.H, d.PN}; }

void check_dims(const Dims& d, idx Tn, const char* who) {
  if (Tn % 2 != 0 || d.c < d.K - 1)
    throw std::invalid_argument(std::string(who) + ": local length " + std::to_string(Tn) +
                                " must be 2 chunks of at least d_conv - 1 = " + std::to_string(d.K - 1) +
                                " tokens");
}

// Rows [c-(K-1), c) of the conv input (xBC columns of in_proj's output) of local segment s, for
// every sequence, as a strided view against a [B,K-1,C] block: the halo of the chunk that follows
// segment s in sequence order (pack it with copy_strided; add its gradient back with add_strided).
Strided3 tail_view(const Dims& d) { return Strided3{d.B, d.K - 1, d.C, (d.K - 1) * d.C, d.C, 2 * d.c * d.E, d.E}; }
idx tail_offset(const Dims& d, idx s) { return (s * d.c + d.c - (d.K - 1)) * d.E + d.Di; }
Strided3 tail_grad_view(const Dims& d) { return Strided3{d.B, d.K - 1, d.C, 2 * d.c * d.E, d.E, (d.K - 1) * d.C, d.C}; }

// One segment's halos in the conv's [2B,K-1,C] layout (sequence 2b + s) against a per-segment
// block [B,K-1,C]: scatter (block -> conv layout, zeros for a null block) and gather.
Strided3 scatter_view(const Dims& d) {
  const idx rows = (d.K - 1) * d.C;
  return Strided3{d.B, 1, rows, 2 * rows, 0, rows, 0};
}
Strided3 gather_view(const Dims& d) {
  const idx rows = (d.K - 1) * d.C;
  return Strided3{d.B, 1, rows, rows, 0, 2 * rows, 0};
}

// Point-to-point round: sends tails[s] of this rank's segments to the ranks whose segments follow
// them and receives the halos of its own segments (into recv[s], or zeros at the sequence start);
// for r = cp-1 segment 1's halo is its own segment 0's tail. Returns the bytes sent.
template <typename T>
std::size_t exchange_halos(const DataPlane& cp, const Dims& d, const T* send /*[2][B,K-1,C]*/,
                           T* recv /*[2][B,K-1,C]*/, int tag_to_next, int tag_to_prev, int tag_from_prev,
                           int tag_from_next, idx slot_to_next, idx slot_to_prev) {
  std::array<Request, 4> req;
  std::size_t n = 0, bytes = 0;
  if (d.has_prev()) req[n++] = cp.irecv(recv + 0 * d.halo, d.halo, d.r - 1, tag_from_prev);
  if (d.has_next()) req[n++] = cp.irecv(recv + 1 * d.halo, d.halo, d.r + 1, tag_from_next);
  if (d.has_next()) {
    req[n++] = cp.isend(send + slot_to_next * d.halo, d.halo, d.r + 1, tag_to_next);
    bytes += std::size_t(d.halo) * sizeof(T);
  }
  if (d.has_prev()) {
    req[n++] = cp.isend(send + slot_to_prev * d.halo, d.halo, d.r - 1, tag_to_prev);
    bytes += std::size_t(d.halo) * sizeof(T);
  }
  wait_all(std::span<Request>(req.data(), n));
  return bytes;
}

}  // namespace

template <typename T>
idx mamba_cp_workspace(const ModelConfig& c, idx B, idx Tn, int cp_size) {
  return WorkLayout<T>(c, Dims(c, B, Tn, cp_size, 0)).total;
}

template <typename T>
idx mamba_cp_saved_size(const ModelConfig& c, idx B, int cp_size) {
  return SavedLayout<T>(Dims(c, B, 2 * (c.mamba_d_conv - 1), cp_size, 0)).total;
}

std::size_t mamba_cp_bytes_sent(const ModelConfig& c, idx B, int cp_size, int cp_rank, std::size_t elem_bytes,
                                std::size_t state_bytes) {
  const Dims d(c, B, 2 * (c.mamba_d_conv - 1), cp_size, cp_rank);
  const std::size_t halo_msgs = std::size_t(d.has_prev()) + std::size_t(d.has_next());
  // Forward and backward each: the halo messages, then the all-gather (summary; then l only).
  return 2 * halo_msgs * std::size_t(d.halo) * elem_bytes +
         std::size_t(cp_size - 1) * std::size_t(d.summary() + d.B2 * d.HPN) * state_bytes;
}

template <typename T>
std::size_t mamba_mixer_forward_cp(const Exec& ex, T* out, const MambaActivations<T>& a, const T* inp,
                                   const MambaTensors<const T*>& w, const ModelConfig& m, idx B, idx Tn, T* workspace,
                                   const DataPlane& cp, T* saved_base) {
  const Dims d(m, B, Tn, cp.size(), cp.rank());
  check_dims(d, Tn, "mamba_mixer_forward_cp");
  using A = accum_t<T>;
  const WorkLayout<T> lay(m, d);
  const Saved<T> saved(saved_base, d);
  const idx Nrows = B * Tn;
  const T* xbc_in = a.zxbcdt + d.Di;          // [2B,c, ld E] conv input
  const T* dt_raw = a.zxbcdt + d.Di + d.C;    // [2B,c, ld E]
  A* send = accum_at(workspace, lay.send);
  A* all = accum_at(workspace, lay.all);
  T* halo_send = workspace + lay.halo_send;
  T* halo_recv = workspace + lay.halo_recv;
  std::size_t bytes = 0;

  matmul_forward(ex, a.zxbcdt, inp, w.in_proj, Nrows, d.D, d.E);

  // Conv halos: segment 0's tail goes up (rank r+1's chunk r+1 follows chunk r), segment 1's tail
  // goes down (rank r-1's chunk 2cp-r follows chunk 2cp-1-r).
  for (idx seg = 0; seg < 2; ++seg)
    copy_strided(ex, halo_send + seg * d.halo, static_cast<const T*>(a.zxbcdt + tail_offset(d, seg)), tail_view(d));
  bytes += exchange_halos(cp, d, halo_send, halo_recv, kTailUp, kTailDown, kTailUp, kTailDown, 0, 1);
  const idx halo_rows = (d.K - 1) * d.C;
  copy_strided(ex, saved.halo, d.has_prev() ? static_cast<const T*>(halo_recv) : nullptr, scatter_view(d));
  copy_strided(ex, saved.halo + halo_rows, static_cast<const T*>(d.has_next() ? halo_recv + d.halo : halo_send),
               scatter_view(d));

  conv1d_silu_forward(ex, a.xbc, xbc_in, d.E, saved.halo, w.conv_w, w.conv_b, d.B2, d.c, d.C, d.K);

  // Zero-initial-state SSD of both segments; its final states and decays are this rank's summary.
  const SsdStrides ld{d.C, d.C, d.E};
  ssd_forward(ex, a.y, send, send + d.B2 * d.HPN, a.xbc, a.xbc + d.Di, a.xbc + d.Di + d.GN, dt_raw, w.dt_bias, w.A_log,
              w.D, nullptr, d.ssd(m), ld, workspace + lay.ssd);
  // Every segment's true initial state, from the all-gathered summaries (parallel/state_passing.h),
  // then the output it adds to the zero-initial-state SSD output.
  bytes +=
      state_passing_forward(ex, saved.state_in, saved.decay, static_cast<const A*>(send), all, passing_shape(d), cp);
  ssd_state_output_forward(ex, a.y, static_cast<const A*>(saved.state_in), a.xbc + d.Di + d.GN, dt_raw, w.dt_bias,
                           w.A_log, d.ssd(m), ld);

  gated_rmsnorm_forward(ex, a.gated, a.gated_rstd, a.y, a.zxbcdt, d.E, w.norm, Nrows, d.Di, d.G, m.norm_eps);
  matmul_forward(ex, out, a.gated, w.out_proj, Nrows, d.Di, d.D);
  return bytes;
}

template <typename T>
std::size_t mamba_mixer_backward_cp(const Exec& ex, T* dinp, const MambaTensors<accum_t<T>*>& g,
                                    const MambaScratch<T>& s, const T* dout, const T* inp, const MambaActivations<T>& a,
                                    const MambaTensors<const T*>& w, const ModelConfig& m, idx B, idx Tn,
                                    const DataPlane& cp, const T* saved_base) {
  const Dims d(m, B, Tn, cp.size(), cp.rank());
  check_dims(d, Tn, "mamba_mixer_backward_cp");
  using A = accum_t<T>;
  T* workspace = s.ssd_workspace;
  const WorkLayout<T> lay(m, d);
  const Saved<const T> saved(saved_base, d);
  const idx Nrows = B * Tn;
  const T* dt_raw = a.zxbcdt + d.Di + d.C;
  A* send = accum_at(workspace, lay.send);
  A* all = accum_at(workspace, lay.all);
  T* halo_send = workspace + lay.halo_send;
  T* halo_recv = workspace + lay.halo_recv;
  T* dhalo = workspace + lay.dhalo;
  A* dfinal = accum_at(workspace, lay.dfinal);
  std::size_t bytes = 0;

  matmul_backward(ex, s.d_gated, g.out_proj, dout, a.gated, w.out_proj, Nrows, d.Di, d.D, false);
  gated_rmsnorm_backward(ex, s.d_y, s.d_zxbcdt, d.E, g.norm, s.d_gated, a.y, a.zxbcdt, d.E, w.norm, a.gated_rstd, Nrows,
                         d.Di, d.G);

  // Each segment's own-output gradient on its initial state, gathered and scanned in reverse:
  // G(2cp) = 0, G(j) = l(j) + decay(j) G(j+1); segment j's final state gets G(j+1).
  const SsdStrides ld{d.C, d.C, d.E};
  ssd_state_output_backward(ex, send, static_cast<const T*>(s.d_y), a.xbc + d.Di + d.GN, dt_raw, w.dt_bias, w.A_log,
                            d.ssd(m), ld);
  bytes += state_passing_backward(ex, dfinal, static_cast<const A*>(send), all, saved.decay, passing_shape(d), cp);
  ssd_backward(ex, s.d_xbc, s.d_xbc + d.Di, s.d_xbc + d.Di + d.GN, s.d_zxbcdt + d.Di + d.C, g.dt_bias, g.A_log, g.D,
               nullptr, s.d_y, static_cast<const A*>(dfinal), a.xbc, a.xbc + d.Di, a.xbc + d.Di + d.GN, dt_raw,
               w.dt_bias, w.A_log, w.D, saved.state_in, d.ssd(m), ld, workspace + lay.ssd);
  conv1d_silu_backward(ex, s.d_zxbcdt + d.Di, d.E, dhalo, g.conv_w, g.conv_b, s.d_xbc, a.zxbcdt + d.Di, d.E, saved.halo,
                       w.conv_w, w.conv_b, d.B2, d.c, d.C, d.K);

  // Halo gradients go back where the halos came from: segment 0's to rank r-1 (its segment 0),
  // segment 1's to rank r+1 (its segment 1), or for r = cp-1 to this rank's own segment 0.
  const idx halo_rows = (d.K - 1) * d.C;
  for (idx seg = 0; seg < 2; ++seg)
    copy_strided(ex, halo_send + seg * d.halo, static_cast<const T*>(dhalo + seg * halo_rows), gather_view(d));
  bytes += exchange_halos(cp, d, halo_send, halo_recv, kHaloGradUp, kHaloGradDown, kHaloGradUp, kHaloGradDown,
                          1, 0);
  // recv[0] came from rank r-1 (its segment 1's halo gradient: our segment 1's tail);
  // recv[1] from rank r+1 (its segment 0's: our segment 0's tail).
  if (d.has_prev())
    add_strided(ex, s.d_zxbcdt + tail_offset(d, 1), static_cast<const T*>(halo_recv), tail_grad_view(d));
  add_strided(ex, s.d_zxbcdt + tail_offset(d, 0),
              static_cast<const T*>(d.has_next() ? halo_recv + d.halo : halo_send + d.halo), tail_grad_view(d));

  matmul_backward(ex, dinp, g.in_proj, s.d_zxbcdt, inp, w.in_proj, Nrows, d.D, d.E, false);
  return bytes;
}

#define NEXUS_INSTANTIATE(T)                                                                                        \
  template idx mamba_cp_workspace<T>(const ModelConfig&, idx, idx, int);                                            \
  template idx mamba_cp_saved_size<T>(const ModelConfig&, idx, int);                                                \
  template std::size_t mamba_mixer_forward_cp<T>(const Exec&, T*, const MambaActivations<T>&, const T*,             \
                                                 const MambaTensors<const T*>&, const ModelConfig&, idx, idx, T*,   \
                                                 const DataPlane&, T*);                                          \
  template std::size_t mamba_mixer_backward_cp<T>(const Exec&, T*, const MambaTensors<accum_t<T>*>&, const MambaScratch<T>&, \
                                                  const T*, const T*, const MambaActivations<T>&,                   \
                                                  const MambaTensors<const T*>&, const ModelConfig&, idx, idx,      \
                                                  const DataPlane&, const T*);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)  // runs on a GPU only (the CPU has no bf16 kernels)
#undef NEXUS_INSTANTIATE

}  // namespace nexus
