// Ring attention: attention_forward / attention_backward called block by block while the K/V of
// the cp group circulate (see ring_attention.h for the schedule).
#include "parallel/ring_attention.h"

#include <algorithm>
#include <array>
#include <span>
#include <stdexcept>
#include <string>

namespace nexus {

namespace {

// One tag per ring: with cp = 2 both neighbours are the same peer, and a K message must never
// match a V or dK receive.
enum Tag : int { kFwdK = 7101, kFwdV, kBwdK, kBwdV, kBwdDk, kBwdDv };

void check_shape(const RingShape& s) {
  if (s.B < 1 || s.c < 1 || s.n_heads < 1 || s.n_kv_heads < 1 || s.head_dim < 1 || s.n_heads % s.n_kv_heads != 0)
    throw std::invalid_argument("ring attention: bad shape B=" + std::to_string(s.B) + " c=" + std::to_string(s.c) +
                                " n_heads=" + std::to_string(s.n_heads) + " n_kv_heads=" +
                                std::to_string(s.n_kv_heads) + " head_dim=" + std::to_string(s.head_dim));
}

// Element counts of one c-token chunk of one sequence, and of a whole local k (or v).
struct Sizes {
  idx q_chunk, kv_chunk, lse_chunk, kv;
};

Sizes sizes_of(const RingShape& s) {
  const idx kv_chunk = s.c * s.n_kv_heads * s.head_dim;
  return {s.c * s.n_heads * s.head_dim, kv_chunk, s.c * s.n_heads, 2 * s.B * kv_chunk};
}

// One kernel call per sequence: local query chunk q_half against k_count held KV chunks from
// k_half on, with the shape (B = 1, global positions, mask) to call the kernel with.
struct Block {
  int q_half, k_half;
  AttentionShape shape;
};
struct StepPlan {
  std::array<Block, 4> blocks;
  int n = 0;
};

// The blocks rank r computes while it holds the KV of rank src, derived from global positions:
// a KV chunk after the query chunk is skipped, the same chunk is the causal diagonal, an earlier
// one is visible in full (no mask). In zigzag this gives, at src == r, the diagonal's three
// pairs; for src < r both query chunks read the first held chunk; for src > r the second query
// chunk reads both held chunks, in one call (they are adjacent in memory, and without the mask
// their positions do not matter).
StepPlan plan_step(int r, int src, int cp, const RingShape& s) {
  StepPlan p;
  for (int qh = 0; qh < 2; ++qh) {
    const idx gq = zigzag_chunk(cp, r, qh), k0 = zigzag_chunk(cp, src, 0), k1 = zigzag_chunk(cp, src, 1);
    if (k0 < gq && k1 < gq) {
      p.blocks[std::size_t(p.n++)] = {qh, 0, {1, s.c, 2 * s.c, s.n_heads, s.n_kv_heads, s.head_dim, 0, 0, false}};
      continue;
    }
    for (int kh = 0; kh < 2; ++kh) {
      const idx gk = kh == 0 ? k0 : k1;
      if (gk > gq) continue;
      p.blocks[std::size_t(p.n++)] = {
          qh, kh, {1, s.c, s.c, s.n_heads, s.n_kv_heads, s.head_dim, gq * s.c, gk * s.c, gk == gq}};
    }
  }
  return p;
}

// Offsets of sequence b's part of a block in the local q-, kv- and lse-shaped tensors.
struct Offsets {
  idx q, kv, lse;
};
Offsets offsets(const Sizes& z, const Block& blk, idx b) {
  return {(2 * b + blk.q_half) * z.q_chunk, (2 * b + blk.k_half) * z.kv_chunk, (2 * b + blk.q_half) * z.lse_chunk};
}

// Lets MPI move the transfers in flight between kernel calls (large messages are rendezvous and
// may otherwise only progress inside the final wait).
void progress(std::span<Request> requests) {
  for (Request& r : requests) r.test();
}

// Posts this step's K/V transfer: the held block to rank + 1, the next one from rank - 1 into
// `into` ([k | v]).
template <typename T>
std::array<Request, 4> pass_kv(const DataPlane& cp, const T* k, const T* v, T* into, idx n, int tag_k,
                               int tag_v) {
  const int P = cp.size(), next = (cp.rank() + 1) % P, prev = (cp.rank() + P - 1) % P;
  return {cp.isend(k, n, next, tag_k), cp.isend(v, n, next, tag_v), cp.irecv(into, n, prev, tag_k),
          cp.irecv(into + n, n, prev, tag_v)};
}

}  // namespace

idx ring_attention_workspace(const RingShape& s) {
  check_shape(s);
  const Sizes z = sizes_of(s);
  // forward: 2 KV receive buffers + one block's partial out and lse;
  // backward: 2 KV receive buffers + 2 dK/dV accumulators + the arriving accumulator.
  return std::max(4 * z.kv + z.q_chunk + z.lse_chunk, 10 * z.kv);
}

template <typename T>
void ring_attention_forward(const Exec& ex, T* out, accum_t<T>* lse, const T* q, const T* k, const T* v,
                            const RingShape& s, const DataPlane& cp, T* workspace) {
  check_shape(s);
  const Sizes z = sizes_of(s);
  const int P = cp.size(), r = cp.rank();
  T* ring[2] = {workspace, workspace + 2 * z.kv};  // [k | v], each [B,2c,Hkv,hd]: receive buffers, alternating
  T* part_out = workspace + 4 * z.kv;              // [c,Hq,hd]: one block's partial output
  T* part_lse = part_out + z.q_chunk;              // [c,Hq]: its lse
  bool have[2] = {false, false};  // out/lse of local query chunk 0 / 1 already hold a partial result
  const T *kc = k, *vc = v;       // the KV block held at this step (rank r - step's)
  for (int step = 0; step < P; ++step) {
    std::array<Request, 4> transfers;
    if (step + 1 < P) transfers = pass_kv(cp, kc, vc, ring[step % 2], z.kv, kFwdK, kFwdV);
    const StepPlan plan = plan_step(r, (r - step + P) % P, P, s);
    for (int i = 0; i < plan.n; ++i) {
      const Block& blk = plan.blocks[std::size_t(i)];
      for (idx b = 0; b < s.B; ++b) {
        const Offsets o = offsets(z, blk, b);
        if (have[blk.q_half]) {
          attention_forward(ex, part_out, part_lse, q + o.q, kc + o.kv, vc + o.kv, blk.shape);
          attention_merge(ex, out + o.q, lse + o.lse, part_out, part_lse, z.lse_chunk, s.head_dim);
        } else {
          attention_forward(ex, out + o.q, lse + o.lse, q + o.q, kc + o.kv, vc + o.kv, blk.shape);
        }
        progress(transfers);
      }
      have[blk.q_half] = true;
    }
    wait_all(transfers);
    kc = ring[step % 2];
    vc = kc + z.kv;
  }
}

// The accumulator of rank src's dK/dV starts empty at rank src + 1 (src's own queries add
// straight into dk, dv at step 0), collects each rank's contribution on its way around and
// arrives at src from src - 1 after the last step: cp - 1 hops, each overlapping the next step's
// compute, because a step's contribution is computed into a zeroed buffer first and what arrived
// is added afterwards.
template <typename T>
void ring_attention_backward(const Exec& ex, T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                             const T* out, const accum_t<T>* lse, const RingShape& s, const DataPlane& cp,
                             T* workspace) {
  check_shape(s);
  const Sizes z = sizes_of(s);
  const int P = cp.size(), r = cp.rank(), next = (r + 1) % P, prev = (r + P - 1) % P;
  T* ring[2] = {workspace, workspace + 2 * z.kv};  // [k | v], each [B,2c,Hkv,hd]: receive buffers, alternating
  T* acc[2] = {workspace + 4 * z.kv, workspace + 6 * z.kv};  // [dk | dv]: a step's accumulator, in flight alternately
  T* arrived = workspace + 8 * z.kv;                         // [dk | dv]: the accumulator from rank - 1
  std::array<Request, 2> sent[2];  // the sends of acc[0] / acc[1]
  const T *kc = k, *vc = v;
  for (int step = 0; step < P; ++step) {
    std::array<Request, 4> transfers;
    if (step + 1 < P) transfers = pass_kv(cp, kc, vc, ring[step % 2], z.kv, kBwdK, kBwdV);
    std::array<Request, 2> incoming;
    if (step >= 2)
      incoming = {cp.irecv(arrived, z.kv, prev, kBwdDk), cp.irecv(arrived + z.kv, z.kv, prev, kBwdDv)};
    T *dks = dk, *dvs = dv;  // step 0: own K/V, own queries
    if (step > 0) {
      wait_all(sent[step % 2]);
      dks = acc[step % 2];
      dvs = dks + z.kv;
      fill_constant(ex, dks, 2 * z.kv, T(0));
    }
    const StepPlan plan = plan_step(r, (r - step + P) % P, P, s);
    for (int i = 0; i < plan.n; ++i) {
      const Block& blk = plan.blocks[std::size_t(i)];
      for (idx b = 0; b < s.B; ++b) {
        const Offsets o = offsets(z, blk, b);
        attention_backward(ex, dq + o.q, dks + o.kv, dvs + o.kv, dout + o.q, q + o.q, kc + o.kv, vc + o.kv, out + o.q,
                           lse + o.lse, blk.shape);
        progress(transfers);
        progress(incoming);
      }
    }
    if (step > 0) {
      if (step >= 2) {
        wait_all(incoming);
        axpy(ex, dks, static_cast<const T*>(arrived), 2 * z.kv, T(1));
      }
      sent[step % 2] = {cp.isend(dks, z.kv, next, kBwdDk), cp.isend(dvs, z.kv, next, kBwdDv)};
    }
    wait_all(transfers);
    kc = ring[step % 2];
    vc = kc + z.kv;
  }
  if (P > 1) {
    std::array<Request, 2> own = {cp.irecv(arrived, z.kv, prev, kBwdDk), cp.irecv(arrived + z.kv, z.kv, prev, kBwdDv)};
    wait_all(own);
    axpy(ex, dk, static_cast<const T*>(arrived), z.kv, T(1));
    axpy(ex, dv, static_cast<const T*>(arrived + z.kv), z.kv, T(1));
    wait_all(sent[0]);
    wait_all(sent[1]);
  }
}

template void ring_attention_forward<float>(const Exec&, float*, float*, const float*, const float*, const float*,
                                            const RingShape&, const DataPlane&, float*);
template void ring_attention_forward<double>(const Exec&, double*, double*, const double*, const double*, const double*,
                                             const RingShape&, const DataPlane&, double*);
template void ring_attention_backward<float>(const Exec&, float*, float*, float*, const float*, const float*,
                                             const float*, const float*, const float*, const float*, const RingShape&,
                                             const DataPlane&, float*);
template void ring_attention_backward<double>(const Exec&, double*, double*, double*, const double*, const double*,
                                              const double*, const double*, const double*, const double*,
                                              const RingShape&, const DataPlane&, double*);

}  // namespace nexus
