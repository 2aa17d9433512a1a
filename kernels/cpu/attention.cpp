// Grouped-query attention, FlashAttention-2 style: queries and keys are cut into 64-row tiles, the
// softmax runs online (running max and sum per query), and no Tq x Tk buffer ever exists — a
// thread holds 64 x 64 tiles of scores on its stack. Masking works on global positions (query i
// at q_pos0 + i, key j at k_pos0 + j), so the same kernel serves a ring attention step on any
// (query block, KV block) pair; tiles that the causal mask hides entirely are never visited.
// Under a neighborhood other than full (kernels/neighborhood.h) each (query tile, key tile) pair
// is classified from its position ranges: empty pairs are skipped, fully visible ones need no
// mask, and only the partial ones evaluate the rule per element. Full keeps the causal band mask
// and visits exactly the tiles it always did, so its results are unchanged bit for bit.
//
// All tile products go through the CPU kernels' register-tiled micro-GEMM (micro_gemm.h). The score products
// need one operand transposed so that every innermost loop runs over contiguous memory; the side
// that stays fixed across a loop is the one transposed, once: Q^T per query tile in the forward,
// K^T and V^T per key tile in the backward.
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cpu/backend.h"
#include "kernels/cpu/micro_gemm.h"

namespace nexus::cpu {

namespace {

using micro::gemm;
using micro::transpose;
using micro::Tri;

constexpr idx BQ = 64;  // query rows per tile
constexpr idx BK = 64;  // key rows per tile; also the row length of every score tile
constexpr idx DC = 128;  // head dims per transposed chunk: bounds the stack buffers; hd <= DC in one go

// exp for softmax weights (arguments <= ~0). float: a Cephes-style polynomial (relative error
// < 1.5 ulp on [-87, 2]) written so GCC vectorises the row loops — libm's expf stays a scalar
// call without -ffast-math and would cost more than the tile's matrix products; for the same
// reason x / ln 2 is rounded by the 1.5 * 2^23 shift rather than std::floor. Below -87
// (including the -inf of masked scores) it returns exactly 0. double (gradient checks) keeps
// std::exp.
inline float softmax_exp(float x) {
  const float xc = std::min(std::max(x, -87.0f), 88.0f);
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
  const float r = xc - n * 0.693359375f + n * 2.12194440e-4f;               // x - n ln 2, in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * (r * r) + r + 1.0f;
  const float two_n = std::bit_cast<float>(static_cast<std::uint32_t>(static_cast<std::int32_t>(n) + 127) << 23);
  return x < -87.0f ? 0.0f : er * two_n;
}
inline double softmax_exp(double x) { return std::exp(x); }

// C[r, c] = <A row r, X row c> over hd dims for r < mr, c < nc; A rows lda apart, X rows ldx
// apart, C rows ldc long. xt, when given, is X already transposed ([hd, ldc], possible when
// hd <= DC and worth it when the same X meets many A); otherwise X is transposed DC dims at a
// time into bt [DC, ldc].
template <typename T>
void tile_scores(T* __restrict C, idx ldc, const T* A, idx lda, idx mr, const T* X, idx ldx, idx nc, idx hd,
                 const T* xt, T* bt) {
  for (idx r = 0; r < mr; ++r) std::fill(C + r * ldc, C + r * ldc + nc, T(0));
  if (xt) {
    gemm<T, Tri::full, false>(mr, nc, hd, A, lda, xt, ldc, C, ldc, true);
    return;
  }
  for (idx d0 = 0; d0 < hd; d0 += DC) {
    const idx dc = std::min(DC, hd - d0);
    transpose(X + d0, nc, dc, ldx, bt, ldc);
    gemm<T, Tri::full, false>(mr, nc, dc, A + d0, lda, bt, ldc, C, ldc, true);
  }
}

// Keys [begin, end) hold every key visible to query rows [i0, i0 + m).
inline idx key_begin(const AttentionShape& s, idx i0, idx m) {
  if (!s.causal || s.neighborhood.is_full()) return 0;
  const idx q0 = s.q_pos0 + i0;
  return std::clamp(s.neighborhood.first_key(q0, q0 + m - 1) - s.k_pos0, idx(0), s.Tk);
}
inline idx key_end(const AttentionShape& s, idx i0, idx m) {
  if (!s.causal) return s.Tk;
  return std::clamp(s.q_pos0 + i0 + m - s.k_pos0, idx(0), s.Tk);
}

// Queries [begin, Tq) hold every query that sees key j0 or any later key.
inline idx query_begin(const AttentionShape& s, idx j0) {
  if (!s.causal) return 0;
  return std::clamp(s.k_pos0 + j0 - s.q_pos0, idx(0), s.Tq);
}

// Under the causal mask query i0 + i sees key j0 + j iff i - j >= j0 - i0 + k_pos0 - q_pos0:
// a diagonal band offset, the same for every pair of a (query tile, key tile).
inline idx mask_offset(const AttentionShape& s, idx i0, idx j0) { return j0 - i0 + s.k_pos0 - s.q_pos0; }

// How the pair (query rows [i0, i0 + m), key rows [j0, j0 + n)) is masked.
enum class TileMask {
  kSkip,  // no query of the pair sees any of its keys: not computed at all
  kNone,  // every query sees every key
  kBand,  // full causal: the diagonal band given by mask_offset
  kRule,  // part of the pair is visible: neighborhood.visible per element
};
inline TileMask tile_mask(const AttentionShape& s, idx i0, idx m, idx j0, idx n) {
  if (!s.causal) return TileMask::kNone;
  const Neighborhood& nb = s.neighborhood;
  if (nb.is_full()) return TileMask::kBand;  // (a sink adds nothing to full)
  const idx q0 = s.q_pos0 + i0, q1 = q0 + m - 1, k0 = s.k_pos0 + j0, k1 = k0 + n - 1;
  if (!nb.any_visible(q0, q1, k0, k1)) return TileMask::kSkip;
  return nb.all_visible(q0, q1, k0, k1) ? TileMask::kNone : TileMask::kRule;
}

// Row strides of the [B,T,H,hd] tensors, and the flat offset of one (sequence, row, head).
struct Layout {
  idx ldq, ldk;  // elements between consecutive tokens of q-shaped / k-shaped tensors
  idx hd, Hq, Hkv, group;
  idx q_at(const AttentionShape& s, idx b, idx i, idx h) const { return ((b * s.Tq + i) * Hq + h) * hd; }
  idx k_at(const AttentionShape& s, idx b, idx j, idx g) const { return ((b * s.Tk + j) * Hkv + g) * hd; }
};

inline Layout layout_of(const AttentionShape& s) {
  return {s.n_heads * s.head_dim, s.n_kv_heads * s.head_dim, s.head_dim, s.n_heads, s.n_kv_heads,
          s.n_heads / s.n_kv_heads};
}

// Forward of one query tile (sequence b, head h) against every key tile it can see. The scores
// are held transposed, keys by queries, so that Q^T is formed once per query tile rather than K^T
// once per pair, and the online-softmax statistics update as vectors across the query lanes.
template <typename T>
void forward_query_tile(T* out, T* lse, const T* q, const T* k, const T* v, const AttentionShape& s,
                        const Layout& L, idx b, idx h, idx i0) {
  const idx m = std::min(BQ, s.Tq - i0), hd = L.hd, g = h / L.group;
  const T scale = T(1) / std::sqrt(T(hd));
  const T neg_inf = -std::numeric_limits<T>::infinity();
  T St[BK * BQ];  // [n keys, BQ queries]: scores, then softmax weights P^T
  T qT[DC * BQ];  // [hd or DC, BQ]: Q^T, or a chunk of it when hd > DC
  T row_max[BQ], row_sum[BQ];  // [BQ] running max and sum of exp(score - max) per query
  T new_max[BQ], shift[BQ], alpha[BQ], tile_sum[BQ];  // [BQ] this key tile's update
  const T* qt = q + L.q_at(s, b, i0, h);
  T* ot = out + L.q_at(s, b, i0, h);  // [m rows, ldq apart, hd]: accumulates unnormalised
  for (idx i = 0; i < m; ++i) std::fill(ot + i * L.ldq, ot + i * L.ldq + hd, T(0));
  std::fill(row_max, row_max + BQ, neg_inf);
  std::fill(row_sum, row_sum + BQ, T(0));
  const bool q_once = hd <= DC;
  if (q_once) transpose(qt, m, hd, L.ldq, qT, BQ);
  const idx j_end = key_end(s, i0, m);
  for (idx j0 = key_begin(s, i0, m); j0 < j_end; j0 += BK) {
    const idx n = std::min(BK, j_end - j0), off = mask_offset(s, i0, j0);
    const TileMask mask = tile_mask(s, i0, m, j0, n);
    if (mask == TileMask::kSkip) continue;
    tile_scores(St, BQ, k + L.k_at(s, b, j0, g), L.ldk, n, qt, L.ldq, m, hd, q_once ? qT : nullptr, qT);
    std::copy(row_max, row_max + BQ, new_max);
    for (idx j = 0; j < n; ++j) {
      T* sr = St + j * BQ;
      if (mask == TileMask::kRule) {
        const idx kpos = s.k_pos0 + j0 + j, qpos = s.q_pos0 + i0;
        for (idx i = 0; i < BQ; ++i) {
          const T x = i < m && s.neighborhood.visible(qpos + i, kpos) ? sr[i] * scale : neg_inf;
          sr[i] = x;
          new_max[i] = new_max[i] > x ? new_max[i] : x;
        }
        continue;
      }
      const idx first = mask == TileMask::kBand ? std::clamp(j + off, idx(0), m) : 0;  // first query that sees key j
#pragma omp simd
      for (idx i = 0; i < BQ; ++i) {
        const T x = i >= first && i < m ? sr[i] * scale : neg_inf;
        sr[i] = x;
        new_max[i] = new_max[i] > x ? new_max[i] : x;  // not std::max, which GCC leaves scalar
      }
    }
#pragma omp simd
    for (idx i = 0; i < BQ; ++i) {
      shift[i] = new_max[i] == neg_inf ? T(0) : new_max[i];  // no key seen yet: keep exp(-inf) = 0
      alpha[i] = softmax_exp(row_max[i] - shift[i]);         // rescales what earlier tiles gave
      tile_sum[i] = T(0);
    }
    for (idx j = 0; j < n; ++j) {
      T* sr = St + j * BQ;
#pragma omp simd
      for (idx i = 0; i < BQ; ++i) {
        sr[i] = softmax_exp(sr[i] - shift[i]);
        tile_sum[i] += sr[i];
      }
    }
    for (idx i = 0; i < m; ++i) {
      row_sum[i] = row_sum[i] * alpha[i] + tile_sum[i];
      row_max[i] = new_max[i];
      if (alpha[i] != T(1))
        for (T *o = ot + i * L.ldq, *e = o + hd; o < e; ++o) *o *= alpha[i];
    }
    gemm<T, Tri::full, true>(m, hd, n, St, BQ, v + L.k_at(s, b, j0, g), L.ldk, ot, L.ldq, true);  // O += P V
  }
  T* lt = lse + (b * s.Tq + i0) * L.Hq + h;  // [m], Hq apart
  for (idx i = 0; i < m; ++i) {
    if (row_sum[i] > T(0)) {
      const T inv = T(1) / row_sum[i];
      for (T *o = ot + i * L.ldq, *e = o + hd; o < e; ++o) *o *= inv;
      lt[i * L.Hq] = row_max[i] + std::log(row_sum[i]);
    } else {
      lt[i * L.Hq] = neg_inf;
    }
  }
}

enum Grads : unsigned { kDq = 1, kDkDv = 2 };

// Where a backward pair sits: query rows [i0, i0 + m), key rows [j0, j0 + n).
struct Tile {
  idx i0, m, j0, n;
};

// Backward of one (query tile, key tile) pair of sequence b, head h: recomputes the scores, takes
// P = exp(score - lse) with the given (merged) lse and dS = P (dP - rowsum(dO * O)) scaled, and
// adds dS K to dq and/or P^T dO, dS^T Q to dk, dv as `grads` says. kT, vT: the key tile's K^T
// and V^T ([hd, BK]) when its caller formed them once for many pairs, else null. `mask` is the
// pair's tile_mask (never kSkip).
template <typename T>
void backward_tile(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* out,
                   const T* lse, const AttentionShape& s, const Layout& L, idx b, idx h, const Tile& t,
                   const T* kT, const T* vT, unsigned grads, TileMask mask) {
  const idx hd = L.hd, g = h / L.group, off = mask_offset(s, t.i0, t.j0);
  const T scale = T(1) / std::sqrt(T(hd));
  const T neg_inf = -std::numeric_limits<T>::infinity();
  T P[BQ * BK];   // [m, BK] scores, then P
  T dS[BQ * BK];  // [m, BK] dP = dO V^T, then dS
  T bt[DC * BK];  // [DC, BK] transposed chunk of K or V when kT, vT are null
  const idx qo = L.q_at(s, b, t.i0, h), ko = L.k_at(s, b, t.j0, g);
  tile_scores(P, BK, q + qo, L.ldq, t.m, k + ko, L.ldk, t.n, hd, kT, bt);
  tile_scores(dS, BK, dout + qo, L.ldq, t.m, v + ko, L.ldk, t.n, hd, vT, bt);
  for (idx i = 0; i < t.m; ++i) {
    T* pr = P + i * BK;
    T* dr = dS + i * BK;
    const T row_lse = lse[(b * s.Tq + t.i0 + i) * L.Hq + h];
    // Keys [0, vis) of the tile are visible; none when lse = -inf (the row saw no key at all).
    const idx vis = row_lse == neg_inf ? 0 : mask == TileMask::kBand ? std::clamp(i - off + 1, idx(0), t.n) : t.n;
    if (vis == 0) {
      std::fill(pr, pr + BK, T(0));
      std::fill(dr, dr + BK, T(0));
      continue;
    }
    const T* dor = dout + qo + i * L.ldq;
    const T* orow = out + qo + i * L.ldq;
    T drow = T(0);  // rowsum(dO * O) = sum_j P_j dP_j over ALL key blocks, hence from the final out
#pragma omp simd reduction(+ : drow)
    for (idx d = 0; d < hd; ++d) drow += dor[d] * orow[d];
    if (mask == TileMask::kRule) {
      const idx qpos = s.q_pos0 + t.i0 + i, kpos = s.k_pos0 + t.j0;
      for (idx j = 0; j < BK; ++j) {
        const T p = j < vis && s.neighborhood.visible(qpos, kpos + j) ? softmax_exp(pr[j] * scale - row_lse) : T(0);
        pr[j] = p;
        dr[j] = p * (dr[j] - drow) * scale;
      }
      continue;
    }
#pragma omp simd
    for (idx j = 0; j < BK; ++j) {
      const T p = j < vis ? softmax_exp(pr[j] * scale - row_lse) : T(0);
      pr[j] = p;
      dr[j] = p * (dr[j] - drow) * scale;  // the score's scale folded in for dq and dk
    }
  }
  if (grads & kDkDv) {
    gemm<T, Tri::full, true>(t.n, hd, t.m, P, BK, dout + qo, L.ldq, dv + ko, L.ldk, true);  // dv += P^T dO
    gemm<T, Tri::full, true>(t.n, hd, t.m, dS, BK, q + qo, L.ldq, dk + ko, L.ldk, true);    // dk += dS^T Q
  }
  if (grads & kDq) gemm<T, Tri::full, false>(t.m, hd, t.n, dS, BK, k + ko, L.ldk, dq + qo, L.ldq, true);  // dq += dS K
}

// Every (query tile, this key tile) pair of sequence b and kv head g, over the group's query
// heads; K^T and V^T of the tile are formed once here for all of them.
template <typename T>
void backward_key_tile(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* out,
                       const T* lse, const AttentionShape& s, const Layout& L, idx b, idx g, idx j0,
                       unsigned grads) {
  const idx n = std::min(BK, s.Tk - j0), first = query_begin(s, j0) / BQ * BQ;
  T kT[DC * BK], vT[DC * BK];  // [hd, BK] K^T and V^T of the tile (used when hd <= DC)
  const bool kv_once = L.hd <= DC;
  if (kv_once) {
    transpose(k + L.k_at(s, b, j0, g), n, L.hd, L.ldk, kT, BK);
    transpose(v + L.k_at(s, b, j0, g), n, L.hd, L.ldk, vT, BK);
  }
  for (idx h = g * L.group; h < (g + 1) * L.group; ++h)  // heads outer: the order dk, dv always summed in
    for (idx i0 = first; i0 < s.Tq; i0 += BQ) {
      const idx m = std::min(BQ, s.Tq - i0);
      const TileMask mask = tile_mask(s, i0, m, j0, n);
      if (mask != TileMask::kSkip)
        backward_tile(dq, dk, dv, dout, q, k, v, out, lse, s, L, b, h, Tile{i0, m, j0, n}, kv_once ? kT : nullptr,
                      kv_once ? vT : nullptr, grads, mask);
    }
}

inline idx tiles(idx rows, idx tile) { return (rows + tile - 1) / tile; }

}  // namespace

template <typename T>
void attention_forward(const Exec&, T* out, accum_t<T>* lse, const T* q, const T* k, const T* v,
                       const AttentionShape& s) {
  const Layout L = layout_of(s);
  const idx nqt = tiles(s.Tq, BQ), heads = s.B * s.n_heads;
  // Heaviest (last, under the causal mask) query tiles first, so the dynamic schedule ends evenly.
#pragma omp parallel for schedule(dynamic, 1)
  for (idx task = 0; task < nqt * heads; ++task) {
    const idx qt = nqt - 1 - task / heads, bh = task % heads;
    forward_query_tile(out, lse, q, k, v, s, L, bh / s.n_heads, bh % s.n_heads, qt * BQ);
  }
}

// Races: dk/dv rows of a key tile are shared by every query tile, dq rows by every key tile.
// With G = B * n_kv_heads groups and p threads, one task per (b, kv head) owns all of that
// group's dq, dk and dv, so a single pass computes the 5 tile products — but only G tasks exist,
// and with B = 1 and one or two kv heads on 2 cores a thread would sit idle. Otherwise two
// passes: dq by query tiles, then dk/dv by key tiles, each race-free and with ~T/64 tasks per
// head, at the price of recomputing S, P and dP (7 tile products instead of 5). The single pass
// is chosen when its slowest thread does no more work: 5 * ceil(G / p) <= 7 * G / p.
template <typename T>
void attention_backward(const Exec&, T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                        const T* out, const accum_t<T>* lse, const AttentionShape& s) {
  const Layout L = layout_of(s);
  const idx G = s.B * s.n_kv_heads, p = omp_get_max_threads();
  const idx nqt = tiles(s.Tq, BQ), nkt = tiles(s.Tk, BK);
  if (5 * p * tiles(G, p) <= 7 * G) {
#pragma omp parallel for schedule(dynamic, 1)
    for (idx bg = 0; bg < G; ++bg)
      for (idx kt = 0; kt < nkt; ++kt)
        backward_key_tile(dq, dk, dv, dout, q, k, v, out, lse, s, L, bg / s.n_kv_heads, bg % s.n_kv_heads,
                          kt * BK, kDq | kDkDv);
    return;
  }
  const idx heads = s.B * s.n_heads;
#pragma omp parallel for schedule(dynamic, 1)
  for (idx task = 0; task < nqt * heads; ++task) {
    const idx i0 = (nqt - 1 - task / heads) * BQ, bh = task % heads;
    const idx m = std::min(BQ, s.Tq - i0), j_end = key_end(s, i0, m);
    for (idx j0 = key_begin(s, i0, m); j0 < j_end; j0 += BK) {
      const idx n = std::min(BK, j_end - j0);
      const TileMask mask = tile_mask(s, i0, m, j0, n);
      if (mask != TileMask::kSkip)
        backward_tile<T>(dq, dk, dv, dout, q, k, v, out, lse, s, L, bh / s.n_heads, bh % s.n_heads,
                         Tile{i0, m, j0, n}, nullptr, nullptr, kDq, mask);
    }
  }
  // Key tiles in ascending order: under the causal mask the first are seen by the most queries.
#pragma omp parallel for schedule(dynamic, 1)
  for (idx task = 0; task < nkt * G; ++task)
    backward_key_tile(dq, dk, dv, dout, q, k, v, out, lse, s, L, (task % G) / s.n_kv_heads,
                      (task % G) % s.n_kv_heads, task / G * BK, kDkDv);
}

template void attention_forward<float>(const Exec&, float*, float*, const float*, const float*, const float*,
                                       const AttentionShape&);
template void attention_forward<double>(const Exec&, double*, double*, const double*, const double*, const double*,
                                        const AttentionShape&);
template void attention_backward<float>(const Exec&, float*, float*, float*, const float*, const float*, const float*,
                                        const float*, const float*, const float*, const AttentionShape&);
template void attention_backward<double>(const Exec&, double*, double*, double*, const double*, const double*,
                                         const double*, const double*, const double*, const double*,
                                         const AttentionShape&);

}  // namespace nexus::cpu
