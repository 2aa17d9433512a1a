// The Mamba-2 mixer under context parallelism: conv halos point to point, SSD state passing through
// an all-gather of per-segment summaries and a scan in sequence order (see the header for the
// math). The local [B, 2c] rows are read as 2B sequences of c tokens (sequence q = 2b + s is
// segment s of sequence b), so every kernel runs once over both segments.
#include "model/mamba_layer_cp.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cpu/scalar_math.h"
#include "parallel/zigzag.h"

namespace nexus {

namespace {

// Message tags of the halo exchange, one per direction and pass.
enum Tag : int {
  kTailUp = 0x4d00,    // tail of segment 0 (chunk r), to rank r+1 whose segment 0 follows it
  kTailDown,           // tail of segment 1 (chunk 2cp-1-r), to rank r-1 whose segment 1 follows it
  kHaloGradDown,       // gradient of segment 0's halo, back to rank r-1
  kHaloGradUp,         // gradient of segment 1's halo, back to rank r+1
};

inline idx pad16(idx n) { return (n + 15) / 16 * 16; }

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
  // Segment j in sequence order lives on rank seg_rank(j) as its local segment seg_slot(j).
  idx seg_rank(idx j) const { return zigzag_owner(cp, j); }
  idx seg_slot(idx j) const { return zigzag_half(cp, j); }
  bool has_prev() const { return r > 0; }
  bool has_next() const { return r < cp - 1; }
};

// Workspace carve (elements of T); the SSD workspace comes first so it keeps the base alignment.
struct WorkLayout {
  idx ssd, send, all, halo_send, halo_recv, dhalo, dfinal, total;
  WorkLayout(const ModelConfig& m, const Dims& d) {
    idx off = 0;
    auto take = [&](idx n) {
      const idx o = off;
      off += pad16(n);
      return o;
    };
    ssd = take(ssd_workspace(d.ssd(m)));
    send = take(d.summary());             // this rank's summaries (forward) or l (backward)
    all = take(idx(d.cp) * d.summary());  // [cp, summary] gathered
    halo_send = take(2 * d.halo);         // [2][B,K-1,C] per-segment tails or halo gradients
    halo_recv = take(2 * d.halo);         // [2][B,K-1,C] the same, received
    dhalo = take(d.B2 * (d.K - 1) * d.C);  // [2B,K-1,C] conv backward's halo gradient
    dfinal = take(d.B2 * d.HPN);          // [2B,H,P,N] total gradient of each segment's final state
    total = off;
  }
};

// What the forward keeps for the backward.
template <typename T>
struct Saved {
  T* halo;      // [2B,K-1,C]
  T* state_in;  // [2B,H,P,N]
  T* decay;     // [cp,2B,H] every segment's total decay, by owning rank and local slot
  Saved(T* base, const Dims& d)
      : halo(base), state_in(base + d.B2 * (d.K - 1) * d.C), decay(state_in + d.B2 * d.HPN) {}
};

void check_dims(const Dims& d, idx Tn, const char* who) {
  if (Tn % 2 != 0 || d.c < d.K - 1)
    throw std::invalid_argument(std::string(who) + ": local length " + std::to_string(Tn) +
                                " must be 2 chunks of at least d_conv - 1 = " + std::to_string(d.K - 1) +
                                " tokens");
}

// Rows [c-(K-1), c) of the conv input (xBC columns of in_proj's output) of local segment s, for
// every sequence: the halo of the chunk that follows it in sequence order. dst [B,K-1,C].
template <typename T>
void pack_tail(T* dst, const T* zxbcdt, const Dims& d, idx s) {
  for (idx b = 0; b < d.B; ++b)
    for (idx k = 0; k < d.K - 1; ++k)
      std::memcpy(dst + (b * (d.K - 1) + k) * d.C, zxbcdt + ((2 * b + s) * d.c + d.c - (d.K - 1) + k) * d.E + d.Di,
                  std::size_t(d.C) * sizeof(T));
}

// The same rows of d_zxbcdt += src [B,K-1,C]: a halo gradient coming back to the chunk it came from.
template <typename T>
void add_tail_grad(T* d_zxbcdt, const T* src, const Dims& d, idx s) {
  for (idx b = 0; b < d.B; ++b)
    for (idx k = 0; k < d.K - 1; ++k) {
      T* __restrict row = d_zxbcdt + ((2 * b + s) * d.c + d.c - (d.K - 1) + k) * d.E + d.Di;
      const T* __restrict g = src + (b * (d.K - 1) + k) * d.C;
      for (idx ch = 0; ch < d.C; ++ch) row[ch] += g[ch];
    }
}

// One segment's halos in the conv's [2B,K-1,C] layout <-> a per-segment block [B,K-1,C].
template <typename T>
void scatter_halo(T* halo2 /*[2B,K-1,C]*/, const T* src /*[B,K-1,C] or null: zeros*/, const Dims& d, idx s) {
  const idx rows = (d.K - 1) * d.C;
  for (idx b = 0; b < d.B; ++b) {
    T* dst = halo2 + (2 * b + s) * rows;
    if (src)
      std::memcpy(dst, src + b * rows, std::size_t(rows) * sizeof(T));
    else
      std::fill(dst, dst + rows, T(0));
  }
}
template <typename T>
void gather_halo(T* dst /*[B,K-1,C]*/, const T* halo2 /*[2B,K-1,C]*/, const Dims& d, idx s) {
  const idx rows = (d.K - 1) * d.C;
  for (idx b = 0; b < d.B; ++b) std::memcpy(dst + b * rows, halo2 + (2 * b + s) * rows, std::size_t(rows) * sizeof(T));
}

// Calls f(t, e_t) for t = 0, 1, ... of segment-sequence q and head h with the cumulative decay
// e_t = exp(A sum_{s<=t} dt_s), stopping once it falls below the SSD kernel's flush threshold
// (it only decreases, and the kernel treats smaller factors as zero too).
template <typename T, typename F>
void for_each_decayed_token(const T* dt_raw, idx ld_dt, const T* dt_bias, const T* A_log, idx q, idx h, idx c,
                            F&& f) {
  const double tiny = std::is_same_v<T, double> ? 1e-150 : 1e-18;
  const double A = -std::exp(double(A_log[h]));
  double acc = 0;  // sum of dt in double: the decay of a long segment is a long sum
  for (idx t = 0; t < c; ++t) {
    acc += double(cpu::softplus(dt_raw[(q * c + t) * ld_dt + h] + dt_bias[h]));
    const double e = std::exp(A * acc);
    if (e < tiny) return;
    f(t, T(e));
  }
}

// y[q,t,h,:] += e_t S_in[q,h] C[q,t,g]: the output a segment's true initial state adds to its
// zero-initial-state SSD output.
template <typename T>
void add_state_output(T* y /*[2B,c,H,P]*/, const T* state_in /*[2B,H,P,N]*/, const T* Cm, idx ld_c,
                      const T* dt_raw, idx ld_dt, const T* dt_bias, const T* A_log, const Dims& d) {
  const idx hpg = d.H / d.G;
#pragma omp parallel for collapse(2) schedule(static)
  for (idx q = 0; q < d.B2; ++q)
    for (idx h = 0; h < d.H; ++h) {
      const T* S = state_in + (q * d.H + h) * d.PN;
      for_each_decayed_token(dt_raw, ld_dt, dt_bias, A_log, q, h, d.c, [&](idx t, T e) {
        const T* __restrict ct = Cm + (q * d.c + t) * ld_c + (h / hpg) * d.N;
        T* __restrict yt = y + ((q * d.c + t) * d.H + h) * d.P;
        for (idx p = 0; p < d.P; ++p) {
          const T* __restrict sp = S + p * d.N;
          T acc = 0;
#pragma omp simd reduction(+ : acc)
          for (idx n = 0; n < d.N; ++n) acc += sp[n] * ct[n];
          yt[p] += e * acc;
        }
      });
    }
}

// Its adjoint in S_in: l[q,h] = sum_t e_t dy[q,t,h,:] C[q,t,g]^T, the gradient a segment's own
// outputs put on its initial state (overwritten).
template <typename T>
void state_output_grad(T* l /*[2B,H,P,N]*/, const T* dy /*[2B,c,H,P]*/, const T* Cm, idx ld_c, const T* dt_raw,
                       idx ld_dt, const T* dt_bias, const T* A_log, const Dims& d) {
  const idx hpg = d.H / d.G;
#pragma omp parallel for collapse(2) schedule(static)
  for (idx q = 0; q < d.B2; ++q)
    for (idx h = 0; h < d.H; ++h) {
      T* L = l + (q * d.H + h) * d.PN;
      std::fill(L, L + d.PN, T(0));
      for_each_decayed_token(dt_raw, ld_dt, dt_bias, A_log, q, h, d.c, [&](idx t, T e) {
        const T* __restrict ct = Cm + (q * d.c + t) * ld_c + (h / hpg) * d.N;
        const T* dyt = dy + ((q * d.c + t) * d.H + h) * d.P;
        for (idx p = 0; p < d.P; ++p) {
          const T w = e * dyt[p];
          T* __restrict lp = L + p * d.N;
#pragma omp simd
          for (idx n = 0; n < d.N; ++n) lp[n] += w * ct[n];
        }
      });
    }
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

template <typename T>
std::size_t allgather_bytes_sent(const Dims& d, idx count) {
  return std::size_t(d.cp - 1) * std::size_t(count) * sizeof(T);
}

}  // namespace

idx mamba_cp_workspace(const ModelConfig& c, idx B, idx Tn, int cp_size) {
  return WorkLayout(c, Dims(c, B, Tn, cp_size, 0)).total;
}

idx mamba_cp_saved_size(const ModelConfig& c, idx B, int cp_size) {
  const Dims d(c, B, 2 * (c.mamba_d_conv - 1), cp_size, 0);
  return d.B2 * (d.K - 1) * d.C + d.B2 * d.HPN + idx(cp_size) * d.B2 * d.H;
}

std::size_t mamba_cp_bytes_sent(const ModelConfig& c, idx B, int cp_size, int cp_rank, std::size_t elem_bytes) {
  const Dims d(c, B, 2 * (c.mamba_d_conv - 1), cp_size, cp_rank);
  const std::size_t halo_msgs = std::size_t(d.has_prev()) + std::size_t(d.has_next());
  // Forward and backward each: the halo messages, then the all-gather (summary; then l only).
  const std::size_t elems = 2 * halo_msgs * std::size_t(d.halo) +
                            std::size_t(cp_size - 1) * std::size_t(d.summary() + d.B2 * d.HPN);
  return elems * elem_bytes;
}

template <typename T>
std::size_t mamba_mixer_forward_cp(T* out, const MambaActivations<T>& a, const T* inp,
                                   const MambaTensors<const T*>& w, const ModelConfig& m, idx B, idx Tn,
                                   T* workspace, const DataPlane& cp, T* saved_base) {
  const Dims d(m, B, Tn, cp.size(), cp.rank());
  check_dims(d, Tn, "mamba_mixer_forward_cp");
  const WorkLayout lay(m, d);
  const Saved<T> saved(saved_base, d);
  const idx Nrows = B * Tn;
  const T* xbc_in = a.zxbcdt + d.Di;          // [2B,c, ld E] conv input
  const T* dt_raw = a.zxbcdt + d.Di + d.C;    // [2B,c, ld E]
  T* send = workspace + lay.send;
  T* all = workspace + lay.all;
  T* halo_send = workspace + lay.halo_send;
  T* halo_recv = workspace + lay.halo_recv;
  std::size_t bytes = 0;

  matmul_forward(a.zxbcdt, inp, w.in_proj, Nrows, d.D, d.E);

  // Conv halos: segment 0's tail goes up (rank r+1's chunk r+1 follows chunk r), segment 1's tail
  // goes down (rank r-1's chunk 2cp-r follows chunk 2cp-1-r).
  pack_tail(halo_send + 0 * d.halo, a.zxbcdt, d, 0);
  pack_tail(halo_send + 1 * d.halo, a.zxbcdt, d, 1);
  bytes += exchange_halos(cp, d, halo_send, halo_recv, kTailUp, kTailDown, kTailUp, kTailDown, 0, 1);
  scatter_halo(saved.halo, d.has_prev() ? halo_recv : static_cast<const T*>(nullptr), d, 0);
  scatter_halo(saved.halo, d.has_next() ? halo_recv + d.halo : halo_send, d, 1);

  conv1d_silu_forward(a.xbc, xbc_in, d.E, saved.halo, w.conv_w, w.conv_b, d.B2, d.c, d.C, d.K);

  // Zero-initial-state SSD of both segments; its final states and decays are this rank's summary.
  const SsdStrides ld{d.C, d.C, d.E};
  ssd_forward(a.y, send, send + d.B2 * d.HPN, a.xbc, a.xbc + d.Di, a.xbc + d.Di + d.GN, dt_raw, w.dt_bias, w.A_log,
              w.D, static_cast<const T*>(nullptr), d.ssd(m), ld, workspace + lay.ssd);
  cp.allgather(send, d.summary(), all);
  bytes += allgather_bytes_sent<T>(d, d.summary());

  // Scan in sequence order up to this rank's later segment: S_in(j+1) = decay(j) S_in(j) + S_loc(j).
#pragma omp parallel for collapse(2) schedule(static)
  for (idx b = 0; b < B; ++b)
    for (idx h = 0; h < d.H; ++h) {
      T* s1 = saved.state_in + ((2 * b + 1) * d.H + h) * d.PN;  // the running state, ends as S_in(2cp-1-r)
      std::fill(s1, s1 + d.PN, T(0));
      for (idx j = 0; j < zigzag_chunk(cp.size(), d.r, 1); ++j) {
        if (j == d.r) std::memcpy(saved.state_in + ((2 * b) * d.H + h) * d.PN, s1, std::size_t(d.PN) * sizeof(T));
        const T* blk = all + d.seg_rank(j) * d.summary();
        const idx q = 2 * b + d.seg_slot(j);
        const T dec = blk[d.B2 * d.HPN + q * d.H + h];
        const T* __restrict sl = blk + (q * d.H + h) * d.PN;
#pragma omp simd
        for (idx i = 0; i < d.PN; ++i) s1[i] = dec * s1[i] + sl[i];
      }
    }
  for (idx rank = 0; rank < cp.size(); ++rank)
    std::memcpy(saved.decay + rank * d.B2 * d.H, all + rank * d.summary() + d.B2 * d.HPN,
                std::size_t(d.B2 * d.H) * sizeof(T));

  add_state_output(a.y, saved.state_in, a.xbc + d.Di + d.GN, d.C, dt_raw, d.E, w.dt_bias, w.A_log, d);
  gated_rmsnorm_forward(a.gated, a.gated_rstd, a.y, a.zxbcdt, d.E, w.norm, Nrows, d.Di, d.G, m.norm_eps);
  matmul_forward(out, a.gated, w.out_proj, Nrows, d.Di, d.D);
  return bytes;
}

template <typename T>
std::size_t mamba_mixer_backward_cp(T* dinp, const MambaTensors<T*>& g, const MambaScratch<T>& s, const T* dout,
                                    const T* inp, const MambaActivations<T>& a, const MambaTensors<const T*>& w,
                                    const ModelConfig& m, idx B, idx Tn, const DataPlane& cp,
                                    const T* saved_base) {
  const Dims d(m, B, Tn, cp.size(), cp.rank());
  check_dims(d, Tn, "mamba_mixer_backward_cp");
  T* workspace = s.ssd_workspace;
  const WorkLayout lay(m, d);
  const Saved<const T> saved(saved_base, d);
  const idx Nrows = B * Tn;
  const T* dt_raw = a.zxbcdt + d.Di + d.C;
  T* send = workspace + lay.send;
  T* all = workspace + lay.all;
  T* halo_send = workspace + lay.halo_send;
  T* halo_recv = workspace + lay.halo_recv;
  T* dhalo = workspace + lay.dhalo;
  T* dfinal = workspace + lay.dfinal;
  std::size_t bytes = 0;

  matmul_backward(s.d_gated, g.out_proj, dout, a.gated, w.out_proj, Nrows, d.Di, d.D, false);
  gated_rmsnorm_backward(s.d_y, s.d_zxbcdt, d.E, g.norm, s.d_gated, a.y, a.zxbcdt, d.E, w.norm, a.gated_rstd,
                         Nrows, d.Di, d.G);

  // Each segment's own-output gradient on its initial state, gathered and scanned in reverse:
  // G(2cp) = 0, G(j) = l(j) + decay(j) G(j+1); segment j's final state gets G(j+1).
  const idx nl = d.B2 * d.HPN;
  state_output_grad(send, s.d_y, a.xbc + d.Di + d.GN, d.C, dt_raw, d.E, w.dt_bias, w.A_log, d);
  cp.allgather(send, nl, all);
  bytes += allgather_bytes_sent<T>(d, nl);
  const idx segs = 2 * idx(cp.size());
#pragma omp parallel for collapse(2) schedule(static)
  for (idx b = 0; b < B; ++b)
    for (idx h = 0; h < d.H; ++h) {
      T* g0 = dfinal + ((2 * b) * d.H + h) * d.PN;  // the running gradient, ends as G(r+1)
      std::fill(g0, g0 + d.PN, T(0));
      for (idx j = segs - 1; j > d.r; --j) {
        if (j == segs - 1 - d.r)
          std::memcpy(dfinal + ((2 * b + 1) * d.H + h) * d.PN, g0, std::size_t(d.PN) * sizeof(T));
        const idx rank = d.seg_rank(j), q = 2 * b + d.seg_slot(j);
        const T dec = saved.decay[(rank * d.B2 + q) * d.H + h];
        const T* __restrict lj = all + rank * nl + (q * d.H + h) * d.PN;
#pragma omp simd
        for (idx i = 0; i < d.PN; ++i) g0[i] = lj[i] + dec * g0[i];
      }
    }

  const SsdStrides ld{d.C, d.C, d.E};
  ssd_backward(s.d_xbc, s.d_xbc + d.Di, s.d_xbc + d.Di + d.GN, s.d_zxbcdt + d.Di + d.C, g.dt_bias, g.A_log, g.D,
               static_cast<T*>(nullptr), s.d_y, static_cast<const T*>(dfinal), a.xbc, a.xbc + d.Di,
               a.xbc + d.Di + d.GN, dt_raw, w.dt_bias, w.A_log, w.D, saved.state_in, d.ssd(m), ld,
               workspace + lay.ssd);
  conv1d_silu_backward(s.d_zxbcdt + d.Di, d.E, dhalo, g.conv_w, g.conv_b, s.d_xbc, a.zxbcdt + d.Di, d.E,
                       saved.halo, w.conv_w, w.conv_b, d.B2, d.c, d.C, d.K);

  // Halo gradients go back where the halos came from: segment 0's to rank r-1 (its segment 0),
  // segment 1's to rank r+1 (its segment 1), or for r = cp-1 to this rank's own segment 0.
  gather_halo(halo_send + 0 * d.halo, dhalo, d, 0);
  gather_halo(halo_send + 1 * d.halo, dhalo, d, 1);
  bytes += exchange_halos(cp, d, halo_send, halo_recv, kHaloGradUp, kHaloGradDown, kHaloGradUp, kHaloGradDown,
                          1, 0);
  // recv[0] came from rank r-1 (its segment 1's halo gradient: our segment 1's tail);
  // recv[1] from rank r+1 (its segment 0's: our segment 0's tail).
  if (d.has_prev()) add_tail_grad(s.d_zxbcdt, halo_recv, d, 1);
  add_tail_grad(s.d_zxbcdt, d.has_next() ? halo_recv + d.halo : halo_send + d.halo, d, 0);

  matmul_backward(dinp, g.in_proj, s.d_zxbcdt, inp, w.in_proj, Nrows, d.D, d.E, false);
  return bytes;
}

#define NEXUS_INSTANTIATE(T)                                                                                   \
  template std::size_t mamba_mixer_forward_cp<T>(T*, const MambaActivations<T>&, const T*,                   \
                                                 const MambaTensors<const T*>&, const ModelConfig&, idx, idx, \
                                                 T*, const DataPlane&, T*);                                 \
  template std::size_t mamba_mixer_backward_cp<T>(T*, const MambaTensors<T*>&, const MambaScratch<T>&,        \
                                                  const T*, const T*, const MambaActivations<T>&,              \
                                                  const MambaTensors<const T*>&, const ModelConfig&, idx, idx, \
                                                  const DataPlane&, const T*);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
#undef NEXUS_INSTANTIATE

}  // namespace nexus
