// Mamba-2 SSD scan, chunked as in mamba_ssm's ssd_minimal, forward and backward.
//
// Per (sequence b, head h) and chunk of L <= Q tokens, with a_t = dt_t A and the within-chunk
// cumulative log-decay Acs_i = sum_{k<=i} a_k:
//   y_i   = sum_{j<=i} (C_i.B_j) exp(Acs_i - Acs_j) dt_j x_j      intra-chunk (quadratic)
//         + exp(Acs_i) S_in C_i                                    state-to-output
//         + D x_i
//   S_out = exp(Acs_last) S_in + sum_j exp(Acs_last - Acs_j) dt_j x_j B_j^T
// Phases (each an OpenMP loop over independent work):
//   1. per (b,g,chunk), the group's heads inside: dt, exp(a), the chunk's total decay and its
//      local state (S_out for S_in = 0);
//   2. per (b,h): the sequential state passing, an exclusive decayed scan over the chunks that
//      turns each local state into the state entering the chunk (cheap: P*N per chunk);
//   3. per (b,g,chunk), the group's heads inside: C.B^T is computed once per (b,g,chunk) and
//      shared by the H/G heads; in the backward so is the head-summed gradient of C.B^T, whose
//      products with B and C give the intra-chunk dC and dB once per group instead of once per
//      head, and the dB/dC rows of a (b,g,chunk) have a single writer: no race, no per-head
//      partials to reduce. Work items per loop: B*G*n_chunks (16 at T=2048, Q=128, B=G=1),
//      enough for the 2-core target; per-head parallelism would recompute or store C.B^T.
// The backward saves nothing from the forward: it recomputes the chunk states (phases 1-2), scans
// the state gradients in reverse the same way (dS_in = exp(Acs_last) dS_out + local term), then
// computes every per-token gradient chunk-locally in phase 3.
//
// Strided operands (x, B, C are column slices of in_proj's output, rows ~9 KB apart) are packed
// into contiguous per-thread scratch before they enter a product, and outputs are assembled there
// and written once.
//
// Decays: every factor is a product of exp(a_k) <= 1 (cumulative products of exp(a_k), never an
// exp of a positive number), so nothing overflows; factors below kTiny are flushed to zero so the
// products never run into denormals (which are ~100x slower on x86).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/backend.h"
#include "kernels/cpu/micro_gemm.h"
#include "kernels/cuda/ssd_layout.h"
#include "kernels/scalar_math.h"
#include "kernels/ops.h"
#include "kernels/workspace.h"

namespace nexus::cpu {

namespace {

using scalar::sigmoid;
using scalar::softplus;
using micro::gemm;
using micro::kMR;
using micro::transpose;
using micro::Tri;

template <typename T>
T dot(const T* __restrict a, const T* __restrict b, idx n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (idx i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Decay factors below this are flushed to zero: the product of two survivors is still a normal
// number, and the terms dropped are < 1e-18 (float) of the ones kept.
template <typename T>
constexpr T kTiny = scalar::kDecayFlush<T>;
template <typename T>
inline T flush(T v) {
  return v < kTiny<T> ? T(0) : v;
}

// Walks the rows of the intra-chunk decay matrix Lm[i,j] = exp(Acs_i - Acs_j), j <= i: when
// row(i, jz) is called, lrow[j] = Lm[i,j] for j in [jz, i] (lrow[i] = 1) and Lm[i,j] = 0 for
// j < jz. Row i is row i-1 times ea_i, so no exp is evaluated. A row is nondecreasing in j (fewer
// factors <= 1, and rounding is monotone), so the entries flushed to zero form the prefix [0, jz)
// and the loops over [jz, i] stay unconditional (vectorisable).
template <typename T, typename F>
void for_each_decay_row(const T* ea, idx L, T* lrow, F&& row) {
  idx jz = 0;
  for (idx i = 0; i < L; ++i) {
    const T ei = ea[i];
    while (jz < i && lrow[jz] * ei < kTiny<T>) lrow[jz++] = T(0);
#pragma omp simd
    for (idx j = jz; j < i; ++j) lrow[j] *= ei;
    lrow[i] = 1;
    row(i, jz);
  }
}

// ---------------------------------------------------------------------------------------------
// Workspace: shared arrays, then one scratch block per thread.

struct Layout {
  idx q = 1, nc = 0;   // effective chunk size, number of chunks
  idx dt = 0, ea = 0;  // [B,H,Tn] each: dt and exp(dt A), head-major so a chunk is contiguous
  idx cdec = 0;        // [B,H,nc]: each chunk's total decay exp(sum of its a)
  idx states = 0;      // [B,H,nc,P*N]: chunk-local state, then the state entering the chunk
  idx dstates = 0;     // [B,H,nc,P*N]: backward only, the same for the state gradients
  idx partials = 0;    // [B,H,nc,2]: backward only, per-chunk dD and dA (reduced serially)
  idx scratch = 0, per_thread = 0, total = 0;

  Layout(const SsdShape& s, idx threads) {
    q = std::max<idx>(1, std::min(s.Q, s.Tn));
    nc = (s.Tn + q - 1) / q;
    const idx bh = s.B * s.H, pn = s.P * s.N;
    WorkspaceLayout w;
    dt = w.take(bh * s.Tn);
    ea = w.take(bh * s.Tn);
    cdec = w.take(bh * nc);
    states = w.take(bh * nc * pn);
    dstates = w.take(bh * nc * pn);
    partials = w.take(bh * nc * 2);
    // The largest per-thread need is the backward's phase 3; the state passing needs one P x N
    // carry. 16*20 covers the rounding of every carve (at most 20 pieces).
    per_thread = workspace_round(std::max(3 * q * q + 6 * q * s.N + 4 * q * s.P + 6 * q, pn) + 16 * 20);
    scratch = w.take(threads * per_thread);
    total = w.used;
  }
};

// Pointers and shapes shared by all phases.
template <typename T>
struct Scan {
  const SsdShape& s;
  const SsdStrides& ld;
  Layout lay;
  T* ws;
  idx hpg;  // heads per group
  const T *x, *Bm, *Cm, *dt_raw, *dt_bias, *A_log;

  Scan(const SsdShape& shape, const SsdStrides& strides, T* workspace, const T* x_, const T* B_, const T* C_,
       const T* dt_raw_, const T* dt_bias_, const T* A_log_)
      : s(shape),
        ld(strides),
        lay(shape, omp_get_max_threads()),
        ws(workspace),
        hpg(shape.H / shape.G),
        x(x_),
        Bm(B_),
        Cm(C_),
        dt_raw(dt_raw_),
        dt_bias(dt_bias_),
        A_log(A_log_) {}

  idx t0(idx c) const { return c * lay.q; }
  idx len(idx c) const { return std::min(lay.q, s.Tn - c * lay.q); }
  T A(idx h) const { return -std::exp(A_log[h]); }
  idx row(idx b, idx t) const { return b * s.Tn + t; }
  const T* xp(idx b, idx t, idx h) const { return x + row(b, t) * ld.ld_x + h * s.P; }
  const T* bp(idx b, idx t, idx g) const { return Bm + row(b, t) * ld.ld_bc + g * s.N; }
  const T* cp(idx b, idx t, idx g) const { return Cm + row(b, t) * ld.ld_bc + g * s.N; }
  T* dt(idx b, idx h) const { return ws + lay.dt + (b * s.H + h) * s.Tn; }
  T* ea(idx b, idx h) const { return ws + lay.ea + (b * s.H + h) * s.Tn; }
  T* cdec(idx b, idx h) const { return ws + lay.cdec + (b * s.H + h) * lay.nc; }
  T* state(idx b, idx h, idx c) const { return ws + lay.states + ((b * s.H + h) * lay.nc + c) * s.P * s.N; }
  T* dstate(idx b, idx h, idx c) const { return ws + lay.dstates + ((b * s.H + h) * lay.nc + c) * s.P * s.N; }
  T* partial(idx b, idx h, idx c) const { return ws + lay.partials + ((b * s.H + h) * lay.nc + c) * 2; }
  T* scratch() const { return ws + lay.scratch + idx(omp_get_thread_num()) * lay.per_thread; }
};

// ecs[i] = exp(Acs_i) = prod_{k<=i} ea[k];  e[j] = exp(Acs_last - Acs_j) = prod_{k>j} ea[k].
// Returns the chunk's total decay prod_k ea[k].
template <typename T>
T decay_factors(const T* ea, idx L, T* ecs, T* e) {
  T run = 1;
  for (idx i = 0; i < L; ++i) ecs[i] = run = flush(run * ea[i]);
  run = 1;
  for (idx j = L - 1; j >= 0; --j) {
    e[j] = run;
    run = flush(run * ea[j]);
  }
  return run;
}

// Copies rows of a strided operand into a contiguous block, optionally scaling row r by
// scale[r]. The x/B/C/dt inputs are column slices of a wide in_proj buffer (rows ~9 KB apart),
// so GEMM operands read in place would touch a new page every row; packed, they stay in L1/L2.
template <typename T>
void pack_rows(const T* __restrict src, idx rows, idx cols, idx lds, T* __restrict dst, const T* scale = nullptr) {
  for (idx r = 0; r < rows; ++r) {
    const T w = scale ? scale[r] : T(1);
    const T* __restrict sr = src + r * lds;
    T* __restrict dr = dst + r * cols;
#pragma omp simd
    for (idx k = 0; k < cols; ++k) dr[k] = w * sr[k];
  }
}

// Phase 1 for (b,g,c), the group's heads inside (B and C packed once): dt and exp(dt A) of the
// chunk's tokens, the chunk's total decay, and its local state sum_j e_j dt_j x_j B_j^T, stored
// [N,P] in the forward (what its C S^T wants) or [P,N] in the backward (what dY S wants). The
// backward (dy non-null) also gets the local state gradient sum_i ecs_i C_i dY_i^T, [N,P].
template <typename T>
void chunk_states(const Scan<T>& sc, idx b, idx g, idx c, const T* dy, T* scr) {
  const SsdShape& s = sc.s;
  const idx t0 = sc.t0(c), L = sc.len(c), P = s.P, N = s.N, HP = s.H * P;
  const bool backward = dy != nullptr;
  WorkspaceCarver<T> cv{scr};
  T* Bp = cv.take(L * N);   // [L,N] B of the chunk, packed
  T* Cp = cv.take(L * N);   // [L,N] C of the chunk, packed (backward only)
  T* ecs = cv.take(L);      // [L] exp(Acs_i)
  T* e = cv.take(L);        // [L] exp(Acs_last - Acs_j)
  T* edt = cv.take(L);      // [L] e_j dt_j
  T* xw = cv.take(L * P);   // [L,P] e_j dt_j x_j: the weighted rows the local state sums
  T* dye = cv.take(L * P);  // [L,P] ecs_i dY_i (backward only)
  pack_rows(sc.bp(b, t0, g), L, N, sc.ld.ld_bc, Bp);
  if (backward) pack_rows(sc.cp(b, t0, g), L, N, sc.ld.ld_bc, Cp);
  for (idx h = g * sc.hpg; h < (g + 1) * sc.hpg; ++h) {
    T* dt = sc.dt(b, h) + t0;  // [L]
    T* ea = sc.ea(b, h) + t0;  // [L]
    const T A = sc.A(h);
    for (idx j = 0; j < L; ++j) {
      dt[j] = softplus(sc.dt_raw[sc.row(b, t0 + j) * sc.ld.ld_dt + h] + sc.dt_bias[h]);
      ea[j] = flush(std::exp(dt[j] * A));
    }
    sc.cdec(b, h)[c] = decay_factors(ea, L, ecs, e);
    for (idx j = 0; j < L; ++j) edt[j] = e[j] * dt[j];
    pack_rows(sc.xp(b, t0, h), L, P, sc.ld.ld_x, xw, edt);
    T* st = sc.state(b, h, c);
    if (!backward) {
      gemm<T, Tri::full, true>(N, P, L, Bp, N, xw, P, st, P, false);  // St[n,p] = sum_j B[j,n] xw[j,p]
      continue;
    }
    gemm<T, Tri::full, true>(P, N, L, xw, P, Bp, N, st, N, false);  // S[p,n] = sum_j xw[j,p] B[j,n]
    pack_rows(dy + (sc.row(b, t0) * s.H + h) * P, L, P, HP, dye, ecs);
    gemm<T, Tri::full, true>(N, P, L, Cp, N, dye, P, sc.dstate(b, h, c), P, false);  // dSt[n,p]
  }
}

// Phase 2: exclusive decayed scan over the chunks of one (b,h), in place: on entry states[c]
// holds chunk c's local term, on exit the value entering chunk c (in scan order); `carry` [PN]
// starts as the value entering the first chunk and ends as the value leaving the last.
template <typename T>
void decay_scan(T* states /*[nc,PN]*/, const T* cdec /*[nc]*/, idx nc, idx PN, T* __restrict carry, bool reverse) {
  for (idx i = 0; i < nc; ++i) {
    const idx c = reverse ? nc - 1 - i : i;
    T* __restrict st = states + c * PN;
    const T d = cdec[c];
    for (idx k = 0; k < PN; ++k) {
      const T local = st[k];
      st[k] = carry[k];
      carry[k] = d * carry[k] + local;
    }
  }
}

// The carry of phase 2 from / to a [P,N] state of the API, in the [N,P] layout when np_layout.
template <typename T>
void load_carry(T* carry, const T* src /*[P,N] or null*/, idx P, idx N, bool np_layout) {
  if (!src)
    std::fill(carry, carry + P * N, T(0));
  else if (np_layout)
    transpose(src, P, N, N, carry, P);
  else
    std::copy(src, src + P * N, carry);
}

template <typename T>
void store_carry(T* dst /*[P,N]*/, const T* carry, idx P, idx N, bool np_layout) {
  if (np_layout)
    transpose(carry, N, P, P, dst, N);
  else
    std::copy(carry, carry + P * N, dst);
}

// Zeros after the diagonal of row i of an L x L lower-triangular GEMM operand, up to the end of
// the register tile holding the diagonal: the only upper entries a_lower / a_upper tiles read.
template <typename T>
void zero_past_diagonal(T* row, idx i, idx L) {
  std::fill(row + i + 1, row + std::min(L, (i / kMR + 1) * kMR), T(0));
}

// Runs f(b, g, c) for every (sequence, group, chunk), in parallel.
template <typename T, typename F>
void for_each_group_chunk(const Scan<T>& sc, F&& f) {
#pragma omp parallel for collapse(3) schedule(dynamic, 1)
  for (idx b = 0; b < sc.s.B; ++b)
    for (idx g = 0; g < sc.s.G; ++g)
      for (idx c = 0; c < sc.lay.nc; ++c) f(b, g, c);
}

// C_i.B_j of chunk c for group g (lower triangle), shared by the group's heads; fills BT = B^T
// [N,L] and the packed Cp [L,N] on the way.
template <typename T>
void chunk_cb(const Scan<T>& sc, idx b, idx g, idx c, T* BT, T* Cp, T* CB) {
  const idx t0 = sc.t0(c), L = sc.len(c), N = sc.s.N;
  transpose(sc.bp(b, t0, g), L, N, sc.ld.ld_bc, BT, L);
  pack_rows(sc.cp(b, t0, g), L, N, sc.ld.ld_bc, Cp);
  gemm<T, Tri::out_lower, false>(L, L, N, Cp, N, BT, L, CB, L, false);
}

}  // namespace

}  // namespace nexus::cpu

namespace nexus {

template <typename T>
idx ssd_workspace(const SsdShape& s) {
  // The CUDA kernels lay out the same buffer their own way, in bytes, with accum_t<T> states (fp32
  // for bf16: two elements each); bf16 has no CPU kernel. The CPU's layout includes one scratch
  // block per thread for omp_get_max_threads() threads: request the workspace with the thread
  // count that will run the op. The larger of the two fits both backends.
  const idx gpu = cuda::ssd::workspace_elements<T>(s);
  if constexpr (std::is_same_v<T, bf16>)
    return gpu;
  else
    return std::max(cpu::Layout(s, omp_get_max_threads()).total, gpu);
}
template idx ssd_workspace<float>(const SsdShape&);
template idx ssd_workspace<double>(const SsdShape&);
template idx ssd_workspace<bf16>(const SsdShape&);

}  // namespace nexus

namespace nexus::cpu {

// ---------------------------------------------------------------------------------------------
// Forward

template <typename T>
void ssd_forward(const Exec&, T* y, accum_t<T>* final_state, accum_t<T>* decay, const T* x, const T* Bm, const T* Cm,
                 const T* dt_raw, const T* dt_bias, const T* A_log, const T* D, const accum_t<T>* init_state,
                 const SsdShape& s, const SsdStrides& ld, T* workspace) {
  const Scan<T> sc(s, ld, workspace, x, Bm, Cm, dt_raw, dt_bias, A_log);
  const idx nc = sc.lay.nc, P = s.P, N = s.N, PN = P * N, HP = s.H * P;

  for_each_group_chunk(sc, [&](idx b, idx g, idx c) { chunk_states<T>(sc, b, g, c, nullptr, sc.scratch()); });

#pragma omp parallel for collapse(2) schedule(static)
  for (idx b = 0; b < s.B; ++b)
    for (idx h = 0; h < s.H; ++h) {
      T* carry = sc.scratch();  // [N,P]
      load_carry(carry, init_state ? init_state + (b * s.H + h) * PN : nullptr, P, N, true);
      decay_scan(sc.state(b, h, 0), sc.cdec(b, h), nc, PN, carry, false);
      if (final_state) store_carry(final_state + (b * s.H + h) * PN, carry, P, N, true);
      if (decay) {
        // exp(A sum dt) directly (in double) rather than the product of the chunk decays.
        double sum = 0;
        for (idx t = 0; t < s.Tn; ++t) sum += double(sc.dt(b, h)[t]);
        decay[b * s.H + h] = T(std::exp(double(sc.A(h)) * sum));
      }
    }

  for_each_group_chunk(sc, [&](idx b, idx g, idx c) {
    const idx t0 = sc.t0(c), L = sc.len(c);
    WorkspaceCarver<T> cv{sc.scratch()};
    T* BT = cv.take(N * L);  // [N,L] B^T of the chunk, the right operand of C B^T
    T* Cp = cv.take(L * N);  // [L,N] C of the chunk, packed
    T* CB = cv.take(L * L);  // [L,L] C_i.B_j (lower triangle), shared by the group's heads
    T* M = cv.take(L * L);   // [L,L] CB_ij exp(Acs_i - Acs_j), zero above the diagonal
    T* Xs = cv.take(L * P);  // [L,P] dt_j x_j
    T* Yc = cv.take(L * P);  // [L,P] one head's output rows, before the skip term
    T* ecs = cv.take(L);     // [L] exp(Acs_i)
    T* e = cv.take(L);       // [L] unused (decay_factors' second output)
    T* lrow = cv.take(L);    // [L] exp(Acs_i - Acs_j) for the current row i
    chunk_cb(sc, b, g, c, BT, Cp, CB);
    for (idx h = g * sc.hpg; h < (g + 1) * sc.hpg; ++h) {
      const T* dt = sc.dt(b, h) + t0;
      const T* ea = sc.ea(b, h) + t0;
      decay_factors(ea, L, ecs, e);
      for_each_decay_row(ea, L, lrow, [&](idx i, idx jz) {
        const T* __restrict cbr = CB + i * L;
        T* __restrict mr = M + i * L;
        std::fill(mr, mr + jz, T(0));
#pragma omp simd
        for (idx j = jz; j <= i; ++j) mr[j] = cbr[j] * lrow[j];
        zero_past_diagonal(mr, i, L);
      });
      const T* xc = sc.xp(b, t0, h);
      pack_rows(xc, L, P, ld.ld_x, Xs, dt);
      gemm<T, Tri::a_lower, false>(L, P, L, M, L, Xs, P, Yc, P, false);
      gemm<T, Tri::full, false>(L, P, N, Cp, N, sc.state(b, h, c), P, Yc, P, true, ecs);
      const T Dh = D[h];
      T* yc = y + (sc.row(b, t0) * s.H + h) * P;
      for (idx i = 0; i < L; ++i) {
        const T* __restrict xr = xc + i * ld.ld_x;
        const T* __restrict yr = Yc + i * P;
        T* __restrict out = yc + i * HP;
#pragma omp simd
        for (idx p = 0; p < P; ++p) out[p] = yr[p] + Dh * xr[p];
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Backward. With M_ij = CB_ij exp(Acs_i - Acs_j), W_ij = dY_i.x_j, e_j = exp(Acs_last - Acs_j),
// ecs_i = exp(Acs_i), U_j = dS_out B_j:
//   dx_j    = dt_j sum_{i>=j} M_ij dY_i + e_j dt_j U_j + D dY_j
//   dCB_ij  = sum_heads exp(Acs_i - Acs_j) dt_j W_ij;   dC_i += sum_j dCB_ij B_j;  dB_j += sum_i dCB_ij C_i
//   dC_i   += ecs_i S_in^T dY_i;     dB_j += e_j dt_j dS_out^T x_j
//   dS_in   = exp(Acs_last) dS_out + sum_i ecs_i dY_i C_i^T
//   ddt_j   = sum_i M_ij W_ij + e_j x_j.U_j                       (direct, at fixed Acs)
//   dAcs_k  = sum_j M_kj W_kj dt_j - sum_i M_ik W_ik dt_k          (intra: exponent Acs_i - Acs_j)
//           + C_k.(ecs_k S_in^T dY_k)                              (state-to-output)
//           - e_k dt_k x_k.U_k  [+ sum_j e_j dt_j x_j.U_j + exp(Acs_last) <dS_out,S_in> at k = last]
//   da_k    = sum_{i>=k} dAcs_i  (Acs is a cumulative sum);  ddt_k += A da_k;  dA += sum_k dt_k da_k
//   dA_log += A dA;  ddt_raw = ddt sigmoid(dt_raw + dt_bias);  ddt_bias += sum ddt_raw;  dD += sum dY.x

template <typename T>
void ssd_backward(const Exec&, T* dx, T* dB, T* dC, T* ddt_raw, accum_t<T>* ddt_bias, accum_t<T>* dA_log,
                  accum_t<T>* dD, accum_t<T>* dinit_state, const T* dy, const accum_t<T>* dfinal_state, const T* x,
                  const T* Bm, const T* Cm, const T* dt_raw, const T* dt_bias, const T* A_log, const T* D,
                  const accum_t<T>* init_state, const SsdShape& s, const SsdStrides& ld, T* workspace) {
  const Scan<T> sc(s, ld, workspace, x, Bm, Cm, dt_raw, dt_bias, A_log);
  const idx nc = sc.lay.nc, P = s.P, N = s.N, PN = P * N, HP = s.H * P;

  // Phase 1: local states [P,N] and local state gradients [N,P].
  for_each_group_chunk(sc, [&](idx b, idx g, idx c) { chunk_states(sc, b, g, c, dy, sc.scratch()); });

  // Phase 2: states entering each chunk (forward scan) and state gradients leaving each chunk
  // (reverse scan); the reverse scan's final carry is the gradient of the initial state.
#pragma omp parallel for collapse(2) schedule(static)
  for (idx b = 0; b < s.B; ++b)
    for (idx h = 0; h < s.H; ++h) {
      T* carry = sc.scratch();  // [P,N] then [N,P]
      const idx bh = (b * s.H + h) * PN;
      load_carry(carry, init_state ? init_state + bh : nullptr, P, N, false);
      decay_scan(sc.state(b, h, 0), sc.cdec(b, h), nc, PN, carry, false);
      load_carry(carry, dfinal_state ? dfinal_state + bh : nullptr, P, N, true);
      decay_scan(sc.dstate(b, h, 0), sc.cdec(b, h), nc, PN, carry, true);
      if (dinit_state) store_carry(dinit_state + bh, carry, P, N, true);
    }

  // Phase 3: every per-token gradient, chunk by chunk.
  for_each_group_chunk(sc, [&](idx b, idx g, idx c) {
    const idx t0 = sc.t0(c), L = sc.len(c);
    WorkspaceCarver<T> cv{sc.scratch()};
    T* BT = cv.take(N * L);     // [N,L] B^T of the chunk
    T* Bp = cv.take(L * N);     // [L,N] B of the chunk, packed
    T* Cp = cv.take(L * N);     // [L,N] C of the chunk, packed
    T* CB = cv.take(L * L);     // [L,L] C_i.B_j (lower triangle)
    T* dCB = cv.take(L * L);    // [L,L] gradient of CB summed over the group's heads, zero above diag
    T* WM = cv.take(L * L);     // [L,L] W = dY x^T (lower), then M in place
    T* XT = cv.take(P * L);     // [P,L] x^T of the chunk for one head
    T* dYp = cv.take(L * P);    // [L,P] dY of the chunk for one head, packed
    T* dXc = cv.take(L * P);    // [L,P] intra-chunk part of dx for one head
    T* U = cv.take(L * P);      // [L,P] dS_out B_j
    T* dCs = cv.take(L * N);    // [L,N] one head's state-to-output part of dC
    T* dCacc = cv.take(L * N);  // [L,N] dC of the chunk, summed over heads
    T* dBT = cv.take(N * L);    // [N,L] dB^T of the chunk, summed over heads
    T* ecs = cv.take(L);        // [L] exp(Acs_i)
    T* e = cv.take(L);          // [L] exp(Acs_last - Acs_j)
    T* edt = cv.take(L);        // [L] e_j dt_j
    T* lrow = cv.take(L);       // [L] exp(Acs_i - Acs_j) for the current row i
    T* dacs = cv.take(L);       // [L] gradient of Acs
    T* ddt = cv.take(L);        // [L] gradient of dt
    chunk_cb(sc, b, g, c, BT, Cp, CB);
    pack_rows(sc.bp(b, t0, g), L, N, ld.ld_bc, Bp);
    std::fill(dCB, dCB + L * L, T(0));
    std::fill(dBT, dBT + N * L, T(0));
    std::fill(dCacc, dCacc + L * N, T(0));

    for (idx h = g * sc.hpg; h < (g + 1) * sc.hpg; ++h) {
      const T* dt = sc.dt(b, h) + t0;
      const T* ea = sc.ea(b, h) + t0;
      const T A = sc.A(h), Dh = D[h];
      const T* xc = sc.xp(b, t0, h);
      const T* S = sc.state(b, h, c);     // [P,N] state entering the chunk
      const T* dSt = sc.dstate(b, h, c);  // [N,P] gradient of the state leaving it
      const T Ec = sc.cdec(b, h)[c];
      decay_factors(ea, L, ecs, e);
      for (idx j = 0; j < L; ++j) edt[j] = e[j] * dt[j];
      transpose(xc, L, P, ld.ld_x, XT, L);
      pack_rows(dy + (sc.row(b, t0) * s.H + h) * P, L, P, HP, dYp);

      // Intra-chunk term.
      gemm<T, Tri::out_lower, false>(L, L, P, dYp, P, XT, L, WM, L, false);
      std::fill(ddt, ddt + L, T(0));  // accumulates sum_i M_ij W_ij (column sums)
      for_each_decay_row(ea, L, lrow, [&](idx i, idx jz) {
        const T* __restrict cbr = CB + i * L;
        T* __restrict wr = WM + i * L;
        T* __restrict dcbr = dCB + i * L;
        std::fill(wr, wr + jz, T(0));
        T rowacc = 0;
#pragma omp simd reduction(+ : rowacc)
        for (idx j = jz; j <= i; ++j) {
          const T lm = lrow[j], w = wr[j], m = cbr[j] * lm, v = m * w;
          ddt[j] += v;
          rowacc += v * dt[j];
          dcbr[j] += w * lm * dt[j];
          wr[j] = m;
        }
        zero_past_diagonal(wr, i, L);
        dacs[i] = rowacc;
      });
      for (idx j = 0; j < L; ++j) dacs[j] -= dt[j] * ddt[j];
      // dt_j sum_{i>=j} M_ij dY_i: M read transposed in place (upper triangle of M^T).
      gemm<T, Tri::a_upper, true>(L, P, L, WM, L, dYp, P, dXc, P, false, dt);

      // Chunk-state term through dS_out (U = B dS_out^T, B read as BT transposed), and the
      // skip term D x; dx is written once, here.
      gemm<T, Tri::full, true>(L, P, N, BT, L, dSt, P, U, P, false);
      T sumc = 0, dDh = 0;
      for (idx j = 0; j < L; ++j) {
        const T* __restrict xr = xc + j * ld.ld_x;
        const T* __restrict dyr = dYp + j * P;
        const T* __restrict ur = U + j * P;
        const T* __restrict dxi = dXc + j * P;
        T* __restrict dxr = dx + sc.row(b, t0 + j) * ld.ld_x + h * P;
        const T xu = dot(xr, ur, P);
        ddt[j] += e[j] * xu;
        const T cj = edt[j] * xu;
        dacs[j] -= cj;
        sumc += cj;
        dDh += dot(dyr, xr, P);
        const T w = edt[j];
#pragma omp simd
        for (idx p = 0; p < P; ++p) dxr[p] = dxi[p] + w * ur[p] + Dh * dyr[p];
      }
      T sds = 0;  // <dS_out, S_in>, the two stored in transposed layouts
      for (idx p = 0; p < P; ++p)
        for (idx n = 0; n < N; ++n) sds += dSt[n * P + p] * S[p * N + n];
      dacs[L - 1] += Ec * sds + sumc;
      // dB_j += e_j dt_j dS_out^T x_j, accumulated transposed: dBT += (dS_out^T x^T) diag(edt).
      gemm<T, Tri::full, false>(N, L, P, dSt, P, XT, L, dBT, L, true, nullptr, edt);

      // State-to-output term: dC_i += ecs_i S_in^T dY_i, and its share of dAcs.
      gemm<T, Tri::full, false>(L, N, P, dYp, P, S, N, dCs, N, false, ecs);
      for (idx i = 0; i < L; ++i) {
        const T* __restrict csr = dCs + i * N;
        T* __restrict dcr = dCacc + i * N;
        dacs[i] += dot(Cp + i * N, csr, N);
#pragma omp simd
        for (idx n = 0; n < N; ++n) dcr[n] += csr[n];
      }

      // Acs is a cumulative sum of a = dt A: its gradient flows back as a reverse cumsum.
      T run = 0, dAh = 0;
      const T bias = dt_bias[h];
      for (idx k = L - 1; k >= 0; --k) {
        run += dacs[k];
        dAh += dt[k] * run;
        const idx r = sc.row(b, t0 + k) * ld.ld_dt + h;
        ddt_raw[r] = (ddt[k] + A * run) * sigmoid(dt_raw[r] + bias);
      }
      T* part = sc.partial(b, h, c);
      part[0] = dDh;
      part[1] = dAh;
    }

    // Group-shared intra-chunk term: dC += dCB B, dB^T += C^T dCB; then write dB, dC once.
    gemm<T, Tri::a_lower, false>(L, N, L, dCB, L, Bp, N, dCacc, N, true);
    gemm<T, Tri::b_lower, true>(N, L, L, Cp, N, dCB, L, dBT, L, true);
    T* dCc = dC + sc.row(b, t0) * ld.ld_bc + g * N;
    for (idx i = 0; i < L; ++i) std::copy(dCacc + i * N, dCacc + (i + 1) * N, dCc + i * ld.ld_bc);
    transpose(dBT, N, L, L, dB + sc.row(b, t0) * ld.ld_bc + g * N, ld.ld_bc);
  });

  // Per-head parameter gradients, reduced serially (deterministic, and tiny).
  for (idx h = 0; h < s.H; ++h) {
    double sD = 0, sA = 0, sbias = 0;
    for (idx b = 0; b < s.B; ++b) {
      for (idx c = 0; c < nc; ++c) {
        sD += double(sc.partial(b, h, c)[0]);
        sA += double(sc.partial(b, h, c)[1]);
      }
      for (idx t = 0; t < s.Tn; ++t) sbias += double(ddt_raw[sc.row(b, t) * ld.ld_dt + h]);
    }
    dD[h] += T(sD);
    dA_log[h] += T(double(sc.A(h)) * sA);
    ddt_bias[h] += T(sbias);
  }
}

template void ssd_forward<float>(const Exec&, float*, float*, float*, const float*, const float*, const float*,
                                 const float*, const float*, const float*, const float*, const float*, const SsdShape&,
                                 const SsdStrides&, float*);
template void ssd_forward<double>(const Exec&, double*, double*, double*, const double*, const double*, const double*,
                                  const double*, const double*, const double*, const double*, const double*,
                                  const SsdShape&, const SsdStrides&, double*);
template void ssd_backward<float>(const Exec&, float*, float*, float*, float*, float*, float*, float*, float*,
                                  const float*, const float*, const float*, const float*, const float*, const float*,
                                  const float*, const float*, const float*, const float*, const SsdShape&,
                                  const SsdStrides&, float*);
template void ssd_backward<double>(const Exec&, double*, double*, double*, double*, double*, double*, double*, double*,
                                   const double*, const double*, const double*, const double*, const double*,
                                   const double*, const double*, const double*, const double*, const double*,
                                   const SsdShape&, const SsdStrides&, double*);

}  // namespace nexus::cpu
