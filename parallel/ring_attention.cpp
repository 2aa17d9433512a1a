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

// Whether any query of chunk gq reads any key of chunk gk (global chunk indices).
bool chunk_reads(idx gq, idx gk, const RingShape& s) {
  return s.neighborhood.any_visible(gq * s.c, gq * s.c + s.c - 1, gk * s.c, gk * s.c + s.c - 1);
}

// Whether cp-rank dst's queries read anything of cp-rank src's K/V: the hop src -> dst is needed.
// Every rank evaluates it for both ends of a hop, so sender and receiver agree without talking.
bool hop_needed(int dst, int src, int cp, const RingShape& s) {
  for (int qh = 0; qh < 2; ++qh)
    for (int kh = 0; kh < 2; ++kh)
      if (chunk_reads(zigzag_chunk(cp, dst, qh), zigzag_chunk(cp, src, kh), s)) return true;
  return false;
}

// The blocks rank r computes while it holds the KV of rank src, derived from global positions.
// Full: a KV chunk after the query chunk is skipped, the same chunk is the causal diagonal, an
// earlier one is visible in full (no mask). In zigzag this gives, at src == r, the diagonal's three
// pairs; for src < r both query chunks read the first held chunk; for src > r the second query
// chunk reads both held chunks, in one call (they are adjacent in memory, and without the mask
// their positions do not matter). Other neighborhoods: one masked call per pair of chunks that
// the neighborhood does not leave empty, at the chunks' own positions.
StepPlan plan_step(int r, int src, int cp, const RingShape& s) {
  StepPlan p;
  for (int qh = 0; qh < 2; ++qh) {
    const idx gq = zigzag_chunk(cp, r, qh), k0 = zigzag_chunk(cp, src, 0), k1 = zigzag_chunk(cp, src, 1);
    if (!s.neighborhood.is_full()) {
      for (int kh = 0; kh < 2; ++kh) {
        const idx gk = kh == 0 ? k0 : k1;
        if (chunk_reads(gq, gk, s))
          p.blocks[std::size_t(p.n++)] = {
              qh, kh, {1, s.c, s.c, s.n_heads, s.n_kv_heads, s.head_dim, gq * s.c, gk * s.c, true, s.neighborhood}};
      }
      continue;
    }
    if (k0 < gq && k1 < gq) {
      p.blocks[std::size_t(p.n++)] = {qh, 0, {1, s.c, 2 * s.c, s.n_heads, s.n_kv_heads, s.head_dim, 0, 0, false, {}}};
      continue;
    }
    for (int kh = 0; kh < 2; ++kh) {
      const idx gk = kh == 0 ? k0 : k1;
      if (gk > gq) continue;
      p.blocks[std::size_t(p.n++)] = {
          qh, kh, {1, s.c, s.c, s.n_heads, s.n_kv_heads, s.head_dim, gq * s.c, gk * s.c, gk == gq, {}}};
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

// Posts the K/V transfers of step `step` (> 0): this rank's own k, v to rank + step when that
// rank reads them, and rank - step's into `into` ([k | v]) when this rank reads those. Returns
// whether something arrives.
template <typename T>
bool post_kv(std::array<Request, 4>& transfers, const DataPlane& cp, const RingShape& s, int step, const T* k,
             const T* v, T* into, idx n, int tag_k, int tag_v, RingStats& stats) {
  const int P = cp.size(), r = cp.rank(), to = (r + step) % P, from = (r - step + P) % P;
  const std::size_t bytes = 2 * std::size_t(n) * sizeof(T);
  if (hop_needed(to, r, P, s)) {
    transfers[0] = cp.isend(k, n, to, tag_k);
    transfers[1] = cp.isend(v, n, to, tag_v);
    stats.bytes_sent += bytes;
  }
  if (!hop_needed(r, from, P, s)) return false;
  transfers[2] = cp.irecv(into, n, from, tag_k);
  transfers[3] = cp.irecv(into + n, n, from, tag_v);
  stats.bytes_received += bytes;
  return true;
}

// What both passes start from: the checked shape's sizes, this rank's place in the ring, the
// statistics to count into, and the two KV receive buffers at the front of the workspace.
template <typename T>
struct RingPass {
  RingPass(const RingShape& s, const DataPlane& cp, T* workspace, RingStats* stats)
      : z((check_shape(s), sizes_of(s))), P(cp.size()), r(cp.rank()), st(stats ? *stats : own),
        ring{workspace, workspace + 2 * z.kv} {}
  Sizes z;
  int P, r;
  RingStats own;  // counted into when the caller wants no statistics
  RingStats& st;
  T* ring[2];  // [k | v], each [B,2c,Hkv,hd]: receive buffers, alternating
};

// Elements of T that `count` values of accum_t<T> take in the workspace: the forward's partial lse
// (lse_chunk values) and the backward's sum of arrived dK/dV contributions (2 kv values). Each
// starts at a multiple of 4 kv elements of T (after the KV receive buffers, and after the two
// outgoing contributions): a multiple of 16 bytes, as kv is even, which an fp32 region in a bf16
// workspace needs.
template <typename T>
idx accum_span(idx count) {
  static_assert(sizeof(accum_t<T>) % sizeof(T) == 0);
  return count * idx(sizeof(accum_t<T>) / sizeof(T));
}

}  // namespace

template <typename T>
idx ring_attention_workspace(const RingShape& s) {
  check_shape(s);
  const Sizes z = sizes_of(s);
  // forward: 2 KV receive buffers + one block's partial lse (accum_t<T>) and out;
  // backward: 2 KV receive buffers + 2 outgoing dK/dV contributions + their sum (accum_t<T>) + the
  // arriving one.
  return std::max(4 * z.kv + accum_span<T>(z.lse_chunk) + z.q_chunk, 8 * z.kv + accum_span<T>(2 * z.kv) + 2 * z.kv);
}

template <typename T>
void ring_attention_forward(const Exec& ex, T* out, accum_t<T>* lse, const T* q, const T* k, const T* v,
                            const RingShape& s, const DataPlane& cp, T* workspace, RingStats* stats) {
  RingPass<T> pass(s, cp, workspace, stats);
  const Sizes& z = pass.z;
  const int P = pass.P, r = pass.r;
  RingStats& st = pass.st;
  T* const* ring = pass.ring;
  auto* part_lse = reinterpret_cast<accum_t<T>*>(workspace + 4 * z.kv);  // [c,Hq]: one block's partial lse
  T* part_out = workspace + 4 * z.kv + accum_span<T>(z.lse_chunk);      // [c,Hq,hd]: its output
  bool have[2] = {false, false};  // out/lse of local query chunk 0 / 1 already hold a partial result
  bool held = true;               // this step's KV block is here (own at step 0, else it arrived)
  const T *kc = k, *vc = v;       // the KV block held at this step (rank r - step's)
  for (int step = 0; step < P; ++step) {
    std::array<Request, 4> transfers;
    const bool arriving =
        step + 1 < P && post_kv(transfers, cp, s, step + 1, k, v, ring[step % 2], z.kv, kFwdK, kFwdV, st);
    if (held) {
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
          ++st.block_calls;
          progress(transfers);
        }
        have[blk.q_half] = true;
      }
    }
    wait_all(transfers);
    if (step + 1 < P) (arriving ? st.hops : st.hops_skipped) += 1;
    held = arriving;
    kc = ring[step % 2];
    vc = kc + z.kv;
  }
  // Every rule lets a query read itself, so step 0 always fills both chunks' out and lse.
  for (int h = 0; h < 2; ++h)
    if (!have[h]) throw std::logic_error("ring attention: local query chunk " + std::to_string(h) + " read no KV block");
}

// The contributions to rank r's dK/dV arrive directly from the ranks that read its K/V, one per
// step (from rank r + step), and are summed in step order into an accumulator added to dk, dv at
// the end; each step's own contribution is computed into a zeroed buffer and sent while the next
// step runs (two buffers alternate). Under full this sums in exactly the order of a relay ring:
// ((c1 + c2) + c3) ... added to dk last. The sum is kept in accum_t<T>: for bf16 the arrivals add
// in fp32 and the total is rounded to bf16 once, in the final add.
template <typename T>
void ring_attention_backward(const Exec& ex, T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                             const T* out, const accum_t<T>* lse, const RingShape& s, const DataPlane& cp,
                             T* workspace, RingStats* stats) {
  RingPass<T> pass(s, cp, workspace, stats);
  const Sizes& z = pass.z;
  const int P = pass.P, r = pass.r;
  RingStats& st = pass.st;
  T* const* ring = pass.ring;
  T* acc[2] = {workspace + 4 * z.kv, workspace + 6 * z.kv};  // [dk | dv]: a step's contribution, in flight alternately
  auto* summed = reinterpret_cast<accum_t<T>*>(workspace + 8 * z.kv);  // [dk | dv]: the sum of the arrived ones
  T* arrived = workspace + 8 * z.kv + accum_span<T>(2 * z.kv);         // [dk | dv]: a contribution to this rank's K/V
  bool any_arrived = false;
  std::array<Request, 2> sent[2];  // the sends of acc[0] / acc[1]
  const std::size_t grad_bytes = 2 * std::size_t(z.kv) * sizeof(T);
  bool held = true;
  const T *kc = k, *vc = v;
  for (int step = 0; step < P; ++step) {
    std::array<Request, 4> transfers;
    const bool arriving =
        step + 1 < P && post_kv(transfers, cp, s, step + 1, k, v, ring[step % 2], z.kv, kBwdK, kBwdV, st);
    const int src = (r - step + P) % P, reader = (r + step) % P;
    std::array<Request, 2> incoming;
    const bool receiving = step > 0 && hop_needed(reader, r, P, s);
    if (held) {
      T *dks = dk, *dvs = dv;  // step 0: own K/V, own queries
      if (step > 0) {
        wait_all(sent[step % 2]);
        dks = acc[step % 2];
        dvs = dks + z.kv;
        fill_constant(ex, dks, 2 * z.kv, T(0));
      }
      const StepPlan plan = plan_step(r, src, P, s);
      for (int i = 0; i < plan.n; ++i) {
        const Block& blk = plan.blocks[std::size_t(i)];
        for (idx b = 0; b < s.B; ++b) {
          const Offsets o = offsets(z, blk, b);
          attention_backward(ex, dq + o.q, dks + o.kv, dvs + o.kv, dout + o.q, q + o.q, kc + o.kv, vc + o.kv,
                             out + o.q, lse + o.lse, blk.shape);
          ++st.block_calls;
          progress(transfers);
        }
      }
      if (step > 0) {
        sent[step % 2] = {cp.isend(dks, z.kv, src, kBwdDk), cp.isend(dvs, z.kv, src, kBwdDv)};
        st.bytes_sent += grad_bytes;
      }
    }
    // Posted with this step's sends, not before the compute: a data plane that launches
    // point-to-point in groups (NCCL, one op after another per communicator) would otherwise start
    // this receive in a group whose matching send the reader posts only in its next group, behind
    // its own such receive, around the whole ring: a deadlock. Here every group is a closed exchange.
    if (receiving) {
      incoming = {cp.irecv(arrived, z.kv, reader, kBwdDk), cp.irecv(arrived + z.kv, z.kv, reader, kBwdDv)};
      st.bytes_received += grad_bytes;
      wait_all(incoming);
      if (any_arrived)
        add_widened(ex, summed, static_cast<const T*>(arrived), 2 * z.kv);
      else
        copy_widened(ex, summed, static_cast<const T*>(arrived), 2 * z.kv);
      any_arrived = true;
    }
    wait_all(transfers);
    if (step + 1 < P) (arriving ? st.hops : st.hops_skipped) += 1;
    held = arriving;
    kc = ring[step % 2];
    vc = kc + z.kv;
  }
  if (any_arrived) {
    add_narrowed(ex, dk, static_cast<const accum_t<T>*>(summed), z.kv);
    add_narrowed(ex, dv, static_cast<const accum_t<T>*>(summed + z.kv), z.kv);
  }
  wait_all(sent[0]);
  wait_all(sent[1]);
}

#define NEXUS_INSTANTIATE(T)                                                                                   \
  template idx ring_attention_workspace<T>(const RingShape&);                                                        \
  template void ring_attention_forward<T>(const Exec&, T*, accum_t<T>*, const T*, const T*, const T*,                \
                                          const RingShape&, const DataPlane&, T*, RingStats*);                       \
  template void ring_attention_backward<T>(const Exec&, T*, T*, T*, const T*, const T*, const T*, const T*, const T*, \
                                           const accum_t<T>*, const RingShape&, const DataPlane&, T*, RingStats*);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)  // runs on a GPU only (the CPU has no bf16 kernels)
#undef NEXUS_INSTANTIATE

}  // namespace nexus
