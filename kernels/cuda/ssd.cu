// Mamba-2 SSD scan on the GPU, forward and backward: the CPU kernel's chunked algorithm
// (kernels/cpu/ssd.cpp, mamba_ssm's ssd_minimal) split into kernels that each own their outputs:
//   chunk_decay   per (chunk, head, b): dt = softplus(dt_raw + dt_bias), the cumulative sum acs
//                 of dt A over the chunk (both kept in the workspace for the later kernels), the
//                 chunk's decay exp(acs_last) and its sum of dt;
//   chunk_state   per (chunk, head, b): the local state sum_j exp(acs_last - acs_j) dt_j x_j B_j^T
//                 (the backward also the local state gradient sum_i exp(acs_i) dY_i C_i^T);
//   scan          per (b, head): the sequential pass over the chunks turning local states into
//                 the state entering each chunk, from init_state to final_state (the backward
//                 also runs the state gradients in reverse, from dfinal_state to dinit_state);
//   decay         per (b, head): the forward's decay output exp(A sum dt), dt summed in fp64;
//   output        per (chunk, head, b): y = (L o C B^T)(dt x) + exp(acs) C S_in + D x;
//   head_grad     per (chunk, head, b): dx, ddt_raw and the chunk's dD, dA, ddt_bias shares;
//   group_grad    per (16-token tile, group, b): dB and dC, summed over the group's heads in the
//                 block (so every dB/dC row has one writer);
//   param_reduce  dD, dA_log, ddt_bias += the per-chunk shares, summed in a fixed order (fp64).
// No atomics anywhere: two runs give the same bits.
//
// Decays are exp(acs_i - acs_j) <= 1 from the fp32 (fp64 for double) cumulative sums rather than
// the CPU's running products of exp(dt A); both flush factors below scalar::kDecayFlush to zero,
// so the two differ by rounding only. Token-pair work walks 16 x 16 tiles of the chunk's lower
// triangle with one thread per pair; tiles of C, B, x, dY are staged in shared memory as
// accumulators (fp32 for bf16). Plain FMAs, no tensor cores.
#include <cstddef>
#include <utility>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ssd_common.cuh"
#include "kernels/cuda/ssd_layout.h"
#include "kernels/scalar_math.h"

namespace nexus::cuda {

namespace {

using ssd::kPairTile;
using ssd::kThreads;
using ssd::kTile;
using ssd::odd_stride;

template <typename A>
__device__ inline A dot(const A* a, const A* b, idx n) {
  A s = 0;
  for (idx k = 0; k < n; ++k) s += a[k] * b[k];
  return s;
}

__device__ inline idx min_idx(idx a, idx b) { return a < b ? a : b; }

// Everything the kernels share: the operands, the shape and the workspace views.
template <typename T>
struct Ssd {
  using A = accum_t<T>;
  const T *x, *Bm, *Cm, *dt_raw, *dt_bias, *A_log, *D;
  SsdShape s;
  SsdStrides ld;
  ssd::Layout lay;
  unsigned char* ws;
  idx hpg;  // heads per group

  __device__ idx row(idx b, idx t) const { return b * s.Tn + t; }
  __device__ idx chunk_start(idx c) const { return c * lay.q; }
  __device__ const T* x_row(idx b, idx t, idx h) const { return x + row(b, t) * ld.ld_x + h * s.P; }
  __device__ const T* b_row(idx b, idx t, idx g) const { return Bm + row(b, t) * ld.ld_bc + g * s.N; }
  __device__ const T* c_row(idx b, idx t, idx g) const { return Cm + row(b, t) * ld.ld_bc + g * s.N; }
  __device__ idx dt_index(idx b, idx t, idx h) const { return row(b, t) * ld.ld_dt + h; }
  __device__ A head_A(idx h) const { return -std::exp(A(A_log[h])); }

  __device__ A* acc(idx offset) const { return reinterpret_cast<A*>(ws + offset); }
  __device__ A* dt(idx b, idx h) const { return acc(lay.dt) + (b * s.H + h) * s.Tn; }
  __device__ A* acs(idx b, idx h) const { return acc(lay.acs) + (b * s.H + h) * s.Tn; }
  __device__ A* cdec(idx b, idx h) const { return acc(lay.cdec) + (b * s.H + h) * lay.nc; }
  __device__ double* dtsum(idx b, idx h) const {
    return reinterpret_cast<double*>(ws + lay.dtsum) + (b * s.H + h) * lay.nc;
  }
  __device__ A* state(idx b, idx h, idx c) const { return acc(lay.states) + ((b * s.H + h) * lay.nc + c) * s.P * s.N; }
  __device__ A* dstate(idx b, idx h, idx c) const {
    return acc(lay.dstates) + ((b * s.H + h) * lay.nc + c) * s.P * s.N;
  }
  __device__ A* partial(idx b, idx h, idx c) const { return acc(lay.partials) + ((b * s.H + h) * lay.nc + c) * 3; }
};

// Dynamic shared memory carved into consecutive pieces of accumulators.
template <typename A>
struct SmemCarver {
  A* next;
  __device__ A* take(idx n) {
    A* at = next;
    next += n;
    return at;
  }
};

template <typename A>
__device__ inline A* dynamic_smem() {
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  return reinterpret_cast<A*>(smem_bytes);
}

// rows x cols of a strided operand into a shared tile with row stride ldd, as accumulators,
// row r scaled by scale[r] when given.
template <typename T, typename A>
__device__ void load_rows(A* dst, idx ldd, const T* __restrict__ src, idx lds, idx rows, idx cols,
                          const A* scale = nullptr) {
  for (idx o = threadIdx.x; o < rows * cols; o += blockDim.x) {
    const idx r = quotient(o, cols), k = o - r * cols;
    dst[r * ldd + k] = (scale ? scale[r] : A(1)) * A(src[r * lds + k]);
  }
}

// -------------------------------------------------------------------------------------------------
// Shared by forward and backward.

// Grid (nc, H, B). dt and acs are written by one thread per chunk: q sequential sums, in the CPU
// kernel's order.
template <typename T>
__global__ void __launch_bounds__(kThreads) chunk_decay_kernel(Ssd<T> v) {
  using A = accum_t<T>;
  const idx c = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const idx t0 = v.chunk_start(c), L = ssd::chunk_len(v.s, c);
  A* dt = v.dt(b, h) + t0;
  A* acs = v.acs(b, h) + t0;
  const A bias = A(v.dt_bias[h]);
  for (idx j = threadIdx.x; j < L; j += blockDim.x)
    dt[j] = scalar::softplus(A(v.dt_raw[v.dt_index(b, t0 + j, h)]) + bias);
  __syncthreads();
  if (threadIdx.x != 0) return;
  const A Ah = v.head_A(h);
  A run = 0;
  double sum = 0;
  for (idx j = 0; j < L; ++j) {
    run += dt[j] * Ah;
    acs[j] = run;
    sum += double(dt[j]);
  }
  v.cdec(b, h)[c] = flushed_exp(run);
  v.dtsum(b, h)[c] = sum;
}

// Grid (nc, H, B); dynamic smem 2q accumulators. dy non-null: also the local state gradient.
// No __launch_bounds__: with it ptxas caps this kernel at 64 registers and spills.
template <typename T>
__global__ void chunk_state_kernel(Ssd<T> v, const T* __restrict__ dy) {
  using A = accum_t<T>;
  const SsdShape& s = v.s;
  const idx c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, g = quotient(h, v.hpg);
  const idx t0 = v.chunk_start(c), L = ssd::chunk_len(s, c), N = s.N, PN = s.P * s.N;
  const A* dt = v.dt(b, h) + t0;
  const A* acs = v.acs(b, h) + t0;
  SmemCarver<A> sm{dynamic_smem<A>()};
  A* w = sm.take(v.lay.q);    // exp(acs_last - acs_j) dt_j: the weight of token j in the state
  A* ecs = sm.take(v.lay.q);  // exp(acs_i): the weight of token i in the state gradient
  for (idx j = threadIdx.x; j < L; j += blockDim.x) {
    w[j] = flushed_exp(acs[L - 1] - acs[j]) * dt[j];
    ecs[j] = flushed_exp(acs[j]);
  }
  __syncthreads();
  A* st = v.state(b, h, c);
  for (idx o = threadIdx.x; o < PN; o += blockDim.x) {
    const idx p = quotient(o, N), n = o - p * N;
    A sum = 0;
    for (idx j = 0; j < L; ++j) sum += w[j] * A(v.x_row(b, t0 + j, h)[p]) * A(v.b_row(b, t0 + j, g)[n]);
    st[o] = sum;
  }
  if (!dy) return;
  A* dst = v.dstate(b, h, c);
  const idx HP = s.H * s.P;
  for (idx o = threadIdx.x; o < PN; o += blockDim.x) {
    const idx p = quotient(o, N), n = o - p * N;
    A sum = 0;
    for (idx i = 0; i < L; ++i)
      sum += ecs[i] * A(dy[(v.row(b, t0 + i)) * HP + h * s.P + p]) * A(v.c_row(b, t0 + i, g)[n]);
    dst[o] = sum;
  }
}

// In place over the nc chunks of row bh (states [nc, PN]): on entry states[c] is chunk c's local
// term, on exit the value entering chunk c in scan order; the carry starts from `in` (null: zero)
// and ends in `out` (if non-null).
template <typename A>
__device__ void scan_chunks(A* __restrict__ states, const A* __restrict__ cdec, idx nc, idx PN, idx bh,
                            const A* __restrict__ in, A* __restrict__ out, bool reverse) {
  for (idx k = threadIdx.x; k < PN; k += blockDim.x) {
    A carry = in ? in[bh * PN + k] : A(0);
    for (idx i = 0; i < nc; ++i) {
      const idx c = reverse ? nc - 1 - i : i;
      const A local = states[c * PN + k];
      states[c * PN + k] = carry;
      carry = cdec[c] * carry + local;
    }
    if (out) out[bh * PN + k] = carry;
  }
}

// Grid B*H: the states forward from init_state to final_state; the backward also the state
// gradients in reverse, from dfinal_state to dinit_state.
template <typename T>
__global__ void scan_kernel(Ssd<T> v, const accum_t<T>* __restrict__ init, accum_t<T>* __restrict__ final_state,
                            const accum_t<T>* __restrict__ dfinal, accum_t<T>* __restrict__ dinit, bool backward) {
  const idx bh = blockIdx.x, b = quotient(bh, v.s.H), h = bh - b * v.s.H, nc = v.lay.nc, PN = v.s.P * v.s.N;
  scan_chunks(v.state(b, h, 0), v.cdec(b, h), nc, PN, bh, init, final_state, false);
  if (backward) scan_chunks(v.dstate(b, h, 0), v.cdec(b, h), nc, PN, bh, dfinal, dinit, true);
}

// One thread per (b, h). A kernel of its own: the fp64 exp is a call, whose saved registers
// spill in the scan kernel.
template <typename T>
__global__ void decay_kernel(Ssd<T> v, accum_t<T>* __restrict__ decay) {
  using A = accum_t<T>;
  for (idx bh = blockIdx.x * idx(blockDim.x) + threadIdx.x; bh < v.s.B * v.s.H; bh += idx(gridDim.x) * blockDim.x) {
    const idx b = quotient(bh, v.s.H), h = bh - b * v.s.H;
    double sum = 0;
    for (idx c = 0; c < v.lay.nc; ++c) sum += v.dtsum(b, h)[c];
    decay[bh] = A(std::exp(double(v.head_A(h)) * sum));
  }
}

// -------------------------------------------------------------------------------------------------
// Forward

// Grid (nc, H, B); dynamic smem ssd::output_smem_elements. Per 16-row tile i of the chunk:
// y_i = sum_{j<=i} (C_i.B_j) exp(acs_i - acs_j) dt_j x_j + exp(acs_i) S_in C_i + D x_i.
template <typename T>
__global__ void __launch_bounds__(kThreads) output_kernel(Ssd<T> v, T* __restrict__ y) {
  using A = accum_t<T>;
  const SsdShape& s = v.s;
  const idx c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, g = quotient(h, v.hpg);
  const idx t0 = v.chunk_start(c), L = ssd::chunk_len(s, c), P = s.P, N = s.N;
  const idx ldn = odd_stride(N), ldp = odd_stride(P);
  SmemCarver<A> sm{dynamic_smem<A>()};
  A* Ct = sm.take(kTile * ldn);  // C rows of the row tile
  A* Bt = sm.take(kTile * ldn);  // B rows of the column tile
  A* Xt = sm.take(kTile * ldp);  // dt_j x_j rows of the column tile
  A* Mt = sm.take(kPairTile);    // (C_i.B_j) exp(acs_i - acs_j), zero outside j <= i
  A* Yt = sm.take(kTile * P);    // output rows of the row tile
  const A* dt = v.dt(b, h) + t0;
  const A* acs = v.acs(b, h) + t0;
  const A* S = v.state(b, h, c);  // [P,N] entering the chunk
  const A Dh = A(v.D[h]);
  const idx ti = quotient(threadIdx.x, kTile), tj = threadIdx.x % kTile;
  for (idx i0 = 0; i0 < L; i0 += kTile) {
    const idx ni = min_idx(kTile, L - i0);
    __syncthreads();  // the previous row tile is written out
    load_rows(Ct, ldn, v.c_row(b, t0 + i0, g), v.ld.ld_bc, ni, N);
    for (idx o = threadIdx.x; o < kTile * P; o += blockDim.x) Yt[o] = 0;
    for (idx j0 = 0; j0 <= i0; j0 += kTile) {
      const idx nj = min_idx(kTile, L - j0);
      __syncthreads();  // Bt, Xt, Mt are free
      load_rows(Bt, ldn, v.b_row(b, t0 + j0, g), v.ld.ld_bc, nj, N);
      load_rows(Xt, ldp, v.x_row(b, t0 + j0, h), v.ld.ld_x, nj, P, dt + j0);
      __syncthreads();
      const idx i = i0 + ti, j = j0 + tj;
      A m = 0;
      if (ti < ni && tj < nj && j <= i) {
        const A lm = flushed_exp(acs[i] - acs[j]);
        if (lm != A(0)) m = dot(Ct + ti * ldn, Bt + tj * ldn, N) * lm;
      }
      Mt[ti * (kTile + 1) + tj] = m;
      __syncthreads();
      for (idx o = threadIdx.x; o < ni * P; o += blockDim.x) {
        const idx ii = quotient(o, P), p = o - ii * P;
        A sum = Yt[o];
        for (idx jj = 0; jj < nj; ++jj) sum += Mt[ii * (kTile + 1) + jj] * Xt[jj * ldp + p];
        Yt[o] = sum;
      }
    }
    __syncthreads();
    for (idx o = threadIdx.x; o < ni * P; o += blockDim.x) {
      const idx ii = quotient(o, P), p = o - ii * P, i = i0 + ii;
      A q = 0;
      for (idx n = 0; n < N; ++n) q += S[p * N + n] * Ct[ii * ldn + n];
      const A out = Yt[o] + flushed_exp(acs[i]) * q + Dh * A(v.x_row(b, t0 + i, h)[p]);
      y[(v.row(b, t0 + i) * s.H + h) * P + p] = T(out);
    }
  }
}

// -------------------------------------------------------------------------------------------------
// Backward. With M_ij = (C_i.B_j) exp(acs_i - acs_j), W_ij = dY_i.x_j, e_j = exp(acs_last - acs_j),
// ecs_i = exp(acs_i), U_j = dS_out B_j (the CPU kernel's derivation, kernels/cpu/ssd.cpp):
//   dx_j   = dt_j sum_{i>=j} M_ij dY_i + e_j dt_j U_j + D dY_j
//   ddt_j  = sum_{i>=j} M_ij W_ij + e_j x_j.U_j
//   dacs_k = sum_{j<=k} M_kj W_kj dt_j - dt_k sum_{i>=k} M_ik W_ik + ecs_k dY_k.(S_in C_k)
//            - e_k dt_k x_k.U_k  [+ sum_j e_j dt_j x_j.U_j + exp(acs_last) <dS_out, S_in> at the last k]
//   dC_i   = sum_heads (ecs_i S_in^T dY_i + sum_{j<=i} dCB_ij B_j)
//   dB_j   = sum_heads (e_j dt_j dS_out^T x_j + sum_{i>=j} dCB_ij C_i),  dCB_ij = W_ij exp(acs_i - acs_j) dt_j

// Grid (nc, H, B); dynamic smem ssd::head_grad_smem_elements. Column tiles j outside, row tiles
// i >= j inside, so each column token's sums over i finish within one outer step and each row
// token's sums over j arrive in a fixed order.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    head_grad_kernel(Ssd<T> v, T* __restrict__ dx, T* __restrict__ ddt_raw, const T* __restrict__ dy) {
  using A = accum_t<T>;
  const SsdShape& s = v.s;
  const idx c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, g = quotient(h, v.hpg);
  const idx t0 = v.chunk_start(c), L = ssd::chunk_len(s, c), P = s.P, N = s.N, HP = s.H * P;
  const idx ldn = odd_stride(N), ldp = odd_stride(P);
  SmemCarver<A> sm{dynamic_smem<A>()};
  A* Ct = sm.take(kTile * ldn);   // C rows of the row tile
  A* Bt = sm.take(kTile * ldn);   // B rows of the column tile
  A* Xt = sm.take(kTile * ldp);   // x rows of the column tile
  A* dYt = sm.take(kTile * ldp);  // dY rows of the row tile
  A* Mt = sm.take(kPairTile);     // M_ij of the tile pair (zero outside j <= i)
  A* Vt = sm.take(kPairTile);     // M_ij W_ij
  A* dXt = sm.take(kTile * P);    // sum_i M_ij dY_i of the column tile, then x_j U_j terms
  A* prod = sm.take(kTile * P);   // elementwise products summed per token
  A* dts = sm.take(v.lay.q);      // dt of the chunk
  A* ddt = sm.take(v.lay.q);      // gradient of dt at fixed acs
  A* dacs = sm.take(v.lay.q);     // gradient of acs
  A* red = sm.take(kThreads);     // block reduction
  const A* acs = v.acs(b, h) + t0;
  const A* S = v.state(b, h, c);    // [P,N] entering the chunk
  const A* dS = v.dstate(b, h, c);  // [P,N] gradient of the state leaving it
  const T* dy_chunk = dy + v.row(b, t0) * HP + h * P;
  const A Dh = A(v.D[h]), last = acs[L - 1];
  const idx ti = quotient(threadIdx.x, kTile), tj = threadIdx.x % kTile;
  for (idx j = threadIdx.x; j < L; j += blockDim.x) {
    dts[j] = v.dt(b, h)[t0 + j];
    ddt[j] = 0;
    dacs[j] = 0;
  }
  A sumc = 0, dDh = 0;  // threads < kTile: their column tokens' shares, in order

  for (idx j0 = 0; j0 < L; j0 += kTile) {
    const idx nj = min_idx(kTile, L - j0);
    __syncthreads();  // the previous column tile is finished
    load_rows(Bt, ldn, v.b_row(b, t0 + j0, g), v.ld.ld_bc, nj, N);
    load_rows(Xt, ldp, v.x_row(b, t0 + j0, h), v.ld.ld_x, nj, P);
    for (idx o = threadIdx.x; o < kTile * P; o += blockDim.x) dXt[o] = 0;
    for (idx i0 = j0; i0 < L; i0 += kTile) {
      const idx ni = min_idx(kTile, L - i0);
      __syncthreads();  // Ct, dYt, Mt, Vt are free
      load_rows(Ct, ldn, v.c_row(b, t0 + i0, g), v.ld.ld_bc, ni, N);
      load_rows(dYt, ldp, dy_chunk + i0 * HP, HP, ni, P);
      __syncthreads();
      const idx i = i0 + ti, j = j0 + tj;
      A m = 0, mw = 0;
      if (ti < ni && tj < nj && j <= i) {
        const A lm = flushed_exp(acs[i] - acs[j]);
        if (lm != A(0)) {
          m = dot(Ct + ti * ldn, Bt + tj * ldn, N) * lm;
          mw = m * dot(dYt + ti * ldp, Xt + tj * ldp, P);
        }
      }
      Mt[ti * (kTile + 1) + tj] = m;
      Vt[ti * (kTile + 1) + tj] = mw;
      __syncthreads();
      if (threadIdx.x < ni) {  // row sums: sum_j M_ij W_ij dt_j
        A sum = 0;
        for (idx jj = 0; jj < nj; ++jj) sum += Vt[threadIdx.x * (kTile + 1) + jj] * dts[j0 + jj];
        dacs[i0 + threadIdx.x] += sum;
      } else if (threadIdx.x >= kTile && threadIdx.x < kTile + nj) {  // column sums: sum_i M_ij W_ij
        const idx jj = threadIdx.x - kTile;
        A sum = 0;
        for (idx ii = 0; ii < ni; ++ii) sum += Vt[ii * (kTile + 1) + jj];
        ddt[j0 + jj] += sum;
      }
      for (idx o = threadIdx.x; o < nj * P; o += blockDim.x) {
        const idx jj = quotient(o, P), p = o - jj * P;
        A sum = dXt[o];
        for (idx ii = 0; ii < ni; ++ii) sum += Mt[ii * (kTile + 1) + jj] * dYt[ii * ldp + p];
        dXt[o] = sum;
      }
    }
    __syncthreads();
    // The column tile's tokens are complete in i: dx, and the terms through dS_out.
    for (idx o = threadIdx.x; o < nj * P; o += blockDim.x) {
      const idx jj = quotient(o, P), p = o - jj * P, j = j0 + jj;
      A u = 0;
      for (idx n = 0; n < N; ++n) u += dS[p * N + n] * Bt[jj * ldn + n];
      const A dtj = dts[j], edt = flushed_exp(last - acs[j]) * dtj, dyv = A(dy_chunk[j * HP + p]),
              xv = Xt[jj * ldp + p];
      dx[v.row(b, t0 + j) * v.ld.ld_x + h * P + p] = T(dtj * dXt[o] + edt * u + Dh * dyv);
      dXt[o] = xv * u;
      prod[o] = dyv * xv;
    }
    __syncthreads();
    if (threadIdx.x < nj) {
      const idx j = j0 + threadIdx.x;
      A xu = 0, dyx = 0;
      for (idx p = 0; p < P; ++p) {
        xu += dXt[threadIdx.x * P + p];
        dyx += prod[threadIdx.x * P + p];
      }
      const A e = flushed_exp(last - acs[j]), edt = e * dts[j], intra = ddt[j];
      dacs[j] -= dts[j] * intra + edt * xu;
      ddt[j] = intra + e * xu;
      sumc += edt * xu;
      dDh += dyx;
    }
  }

  // State-to-output: dacs_i += ecs_i dY_i.(S_in C_i).
  for (idx i0 = 0; i0 < L; i0 += kTile) {
    const idx ni = min_idx(kTile, L - i0);
    __syncthreads();
    load_rows(Ct, ldn, v.c_row(b, t0 + i0, g), v.ld.ld_bc, ni, N);
    load_rows(dYt, ldp, dy_chunk + i0 * HP, HP, ni, P);
    __syncthreads();
    for (idx o = threadIdx.x; o < ni * P; o += blockDim.x) {
      const idx ii = quotient(o, P), p = o - ii * P;
      A q = 0;
      for (idx n = 0; n < N; ++n) q += S[p * N + n] * Ct[ii * ldn + n];
      prod[o] = dYt[ii * ldp + p] * q;
    }
    __syncthreads();
    if (threadIdx.x < ni) {
      A sum = 0;
      for (idx p = 0; p < P; ++p) sum += prod[threadIdx.x * P + p];
      dacs[i0 + threadIdx.x] += flushed_exp(acs[i0 + threadIdx.x]) * sum;
    }
  }

  // <dS_out, S_in>, and the column threads' shares, gathered for thread 0.
  A part = 0;
  for (idx k = threadIdx.x; k < P * N; k += blockDim.x) part += dS[k] * S[k];
  __syncthreads();
  red[threadIdx.x] = part;
  if (threadIdx.x < kTile) {
    Mt[threadIdx.x] = sumc;
    Mt[kTile + threadIdx.x] = dDh;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  A sds = 0, sumc_all = 0, dD_all = 0;
  for (unsigned k = 0; k < kThreads; ++k) sds += red[k];
  for (idx k = 0; k < kTile; ++k) {
    sumc_all += Mt[k];
    dD_all += Mt[kTile + k];
  }
  dacs[L - 1] += v.cdec(b, h)[c] * sds + sumc_all;
  // acs is a cumulative sum of dt A: its gradient flows back as a reverse cumulative sum.
  const A Ah = v.head_A(h), bias = A(v.dt_bias[h]);
  A run = 0, dA = 0, dbias = 0;
  for (idx k = L - 1; k >= 0; --k) {
    run += dacs[k];
    dA += dts[k] * run;
    const idx r = v.dt_index(b, t0 + k, h);
    const A gk = (ddt[k] + Ah * run) * scalar::sigmoid(A(v.dt_raw[r]) + bias);
    ddt_raw[r] = T(gk);
    dbias += gk;
  }
  A* part_out = v.partial(b, h, c);
  part_out[0] = dD_all;
  part_out[1] = dA;
  part_out[2] = dbias;
}

// sum over the group's heads of dCB for the pairs (i0 + ti, j0 + tj) with j <= i, both in the
// chunk (zero otherwise), into the pair tile.
template <typename T>
__device__ void group_dcb_tile(const Ssd<T>& v, idx b, idx g, idx c, idx i0, idx ni, idx j0, idx nj,
                               const T* __restrict__ dy, accum_t<T>* dcb) {
  using A = accum_t<T>;
  const idx t0 = v.chunk_start(c), P = v.s.P, HP = v.s.H * P;
  const idx ti = quotient(threadIdx.x, kTile), tj = threadIdx.x % kTile, i = i0 + ti, j = j0 + tj;
  A sum = 0;
  if (ti < ni && tj < nj && j <= i)
    for (idx h = g * v.hpg; h < (g + 1) * v.hpg; ++h) {
      const A* acs = v.acs(b, h) + t0;
      const A lm = flushed_exp(acs[i] - acs[j]);
      if (lm == A(0)) continue;
      const T* dyi = dy + v.row(b, t0 + i) * HP + h * P;
      const T* xj = v.x_row(b, t0 + j, h);
      A w = 0;
      for (idx p = 0; p < P; ++p) w += A(dyi[p]) * A(xj[p]);
      sum += w * lm * v.dt(b, h)[t0 + j];
    }
  dcb[ti * (kTile + 1) + tj] = sum;
}

// Grid (nc * tiles per chunk, G, B); dynamic smem ssd::group_grad_smem_elements. The dB and dC
// rows of one 16-token tile of a chunk, summed over the group's heads.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    group_grad_kernel(Ssd<T> v, T* __restrict__ dB, T* __restrict__ dC, const T* __restrict__ dy) {
  using A = accum_t<T>;
  const SsdShape& s = v.s;
  const idx tiles = ssd::num_tiles(v.lay.q), c = quotient(blockIdx.x, tiles), r0 = (blockIdx.x - c * tiles) * kTile;
  const idx g = blockIdx.y, b = blockIdx.z, t0 = v.chunk_start(c), L = ssd::chunk_len(s, c);
  if (r0 >= L) return;  // past the ragged last chunk: the whole block
  const idx nr = min_idx(kTile, L - r0), P = s.P, N = s.N, HP = s.H * P;
  SmemCarver<A> sm{dynamic_smem<A>()};
  A* dcb = sm.take(kPairTile);
  A* accC = sm.take(kTile * N);
  A* accB = sm.take(kTile * N);

  // Terms through the states, head by head (each thread keeps its own rows' entries).
  for (idx o = threadIdx.x; o < nr * N; o += blockDim.x) {
    const idx tt = quotient(o, N), n = o - tt * N, t = r0 + tt;
    A sc = 0, sb = 0;
    for (idx h = g * v.hpg; h < (g + 1) * v.hpg; ++h) {
      const A* acs = v.acs(b, h) + t0;
      const A* S = v.state(b, h, c);
      const A* dS = v.dstate(b, h, c);
      const T* dyt = dy + v.row(b, t0 + t) * HP + h * P;
      const T* xt = v.x_row(b, t0 + t, h);
      A qc = 0, qb = 0;
      for (idx p = 0; p < P; ++p) {
        qc += S[p * N + n] * A(dyt[p]);
        qb += dS[p * N + n] * A(xt[p]);
      }
      sc += flushed_exp(acs[t]) * qc;
      sb += flushed_exp(acs[L - 1] - acs[t]) * v.dt(b, h)[t0 + t] * qb;
    }
    accC[o] = sc;
    accB[o] = sb;
  }
  // dC_i += sum_{j<=i} dCB_ij B_j over the column tiles up to this one.
  for (idx j0 = 0; j0 <= r0; j0 += kTile) {
    const idx nj = min_idx(kTile, L - j0);
    __syncthreads();
    group_dcb_tile(v, b, g, c, r0, nr, j0, nj, dy, dcb);
    __syncthreads();
    for (idx o = threadIdx.x; o < nr * N; o += blockDim.x) {
      const idx tt = quotient(o, N), n = o - tt * N;
      A sum = 0;
      for (idx jj = 0; jj < nj; ++jj) sum += dcb[tt * (kTile + 1) + jj] * A(v.b_row(b, t0 + j0 + jj, g)[n]);
      accC[o] += sum;
    }
  }
  // dB_j += sum_{i>=j} dCB_ij C_i over the row tiles from this one on.
  for (idx i0 = r0; i0 < L; i0 += kTile) {
    const idx ni = min_idx(kTile, L - i0);
    __syncthreads();
    group_dcb_tile(v, b, g, c, i0, ni, r0, nr, dy, dcb);
    __syncthreads();
    for (idx o = threadIdx.x; o < nr * N; o += blockDim.x) {
      const idx tt = quotient(o, N), n = o - tt * N;
      A sum = 0;
      for (idx ii = 0; ii < ni; ++ii) sum += dcb[ii * (kTile + 1) + tt] * A(v.c_row(b, t0 + i0 + ii, g)[n]);
      accB[o] += sum;
    }
  }
  for (idx o = threadIdx.x; o < nr * N; o += blockDim.x) {
    const idx tt = quotient(o, N), n = o - tt * N, at = v.row(b, t0 + r0 + tt) * v.ld.ld_bc + g * N + n;
    dC[at] = T(accC[o]);
    dB[at] = T(accB[o]);
  }
}

// One thread per head: the per-chunk shares of every sequence, in order, summed in fp64.
template <typename T>
__global__ void param_reduce_kernel(Ssd<T> v, accum_t<T>* __restrict__ ddt_bias, accum_t<T>* __restrict__ dA_log,
                                    accum_t<T>* __restrict__ dD) {
  using A = accum_t<T>;
  for (idx h = blockIdx.x * idx(blockDim.x) + threadIdx.x; h < v.s.H; h += idx(gridDim.x) * blockDim.x) {
    double sD = 0, sA = 0, sbias = 0;
    for (idx b = 0; b < v.s.B; ++b)
      for (idx c = 0; c < v.lay.nc; ++c) {
        const A* part = v.partial(b, h, c);
        sD += double(part[0]);
        sA += double(part[1]);
        sbias += double(part[2]);
      }
    dD[h] += A(sD);
    dA_log[h] += A(double(v.head_A(h)) * sA);
    ddt_bias[h] += A(sbias);
  }
}

// Runs kernel on (grid, kThreads) with smem_elements accumulators of dynamic shared memory,
// raising the kernel's limit first where it needs more than the default 48 KiB.
template <typename A, typename... Params, typename... Args>
void launch_tiled(const Exec& ex, dim3 grid, idx smem_elements, void (*kernel)(Params...), Args&&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  const std::size_t bytes = std::size_t(smem_elements) * sizeof(A);
  if (bytes > 48 * 1024)
    NEXUS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  kernel<<<grid, kThreads, bytes, stream_of(ex)>>>(std::forward<Args>(args)...);
  NEXUS_CUDA_CHECK_LAUNCH();
}

template <typename T>
Ssd<T> make_ssd(const T* x, const T* Bm, const T* Cm, const T* dt_raw, const T* dt_bias, const T* A_log, const T* D,
                const SsdShape& s, const SsdStrides& ld, T* workspace) {
  return Ssd<T>{x,
                Bm,
                Cm,
                dt_raw,
                dt_bias,
                A_log,
                D,
                s,
                ld,
                ssd::Layout(s, idx(sizeof(accum_t<T>))),
                reinterpret_cast<unsigned char*>(workspace),
                s.G > 0 ? s.H / s.G : 1};
}

dim3 chunk_grid(const SsdShape& s) { return dim3(unsigned(ssd::num_chunks(s)), unsigned(s.H), unsigned(s.B)); }

}  // namespace

template <typename T>
void ssd_forward(const Exec& ex, T* y, accum_t<T>* final_state, accum_t<T>* decay, const T* x, const T* Bm, const T* Cm,
                 const T* dt_raw, const T* dt_bias, const T* A_log, const T* D, const accum_t<T>* init_state,
                 const SsdShape& s, const SsdStrides& ld, T* workspace) {
  using A = accum_t<T>;
  if (s.B <= 0 || s.H <= 0) return;
  const Ssd<T> v = make_ssd(x, Bm, Cm, dt_raw, dt_bias, A_log, D, s, ld, workspace);
  launch_tiled<A>(ex, chunk_grid(s), 0, chunk_decay_kernel<T>, v);
  launch_tiled<A>(ex, chunk_grid(s), 2 * v.lay.q, chunk_state_kernel<T>, v, static_cast<const T*>(nullptr));
  scan_kernel<T>
      <<<unsigned(s.B * s.H), kThreads, 0, stream_of(ex)>>>(v, init_state, final_state, nullptr, nullptr, false);
  NEXUS_CUDA_CHECK_LAUNCH();
  if (decay) {
    decay_kernel<T><<<grid_for(s.B * s.H, kThreads), kThreads, 0, stream_of(ex)>>>(v, decay);
    NEXUS_CUDA_CHECK_LAUNCH();
  }
  launch_tiled<A>(ex, chunk_grid(s), ssd::output_smem_elements(s), output_kernel<T>, v, y);
}

template <typename T>
void ssd_backward(const Exec& ex, T* dx, T* dB, T* dC, T* ddt_raw, accum_t<T>* ddt_bias, accum_t<T>* dA_log,
                  accum_t<T>* dD, accum_t<T>* dinit_state, const T* dy, const accum_t<T>* dfinal_state, const T* x,
                  const T* Bm, const T* Cm, const T* dt_raw, const T* dt_bias, const T* A_log, const T* D,
                  const accum_t<T>* init_state, const SsdShape& s, const SsdStrides& ld, T* workspace) {
  using A = accum_t<T>;
  if (s.B <= 0 || s.H <= 0) return;
  const Ssd<T> v = make_ssd(x, Bm, Cm, dt_raw, dt_bias, A_log, D, s, ld, workspace);
  launch_tiled<A>(ex, chunk_grid(s), 0, chunk_decay_kernel<T>, v);
  launch_tiled<A>(ex, chunk_grid(s), 2 * v.lay.q, chunk_state_kernel<T>, v, dy);
  scan_kernel<T>
      <<<unsigned(s.B * s.H), kThreads, 0, stream_of(ex)>>>(v, init_state, nullptr, dfinal_state, dinit_state, true);
  NEXUS_CUDA_CHECK_LAUNCH();
  launch_tiled<A>(ex, chunk_grid(s), ssd::head_grad_smem_elements(s), head_grad_kernel<T>, v, dx, ddt_raw, dy);
  launch_tiled<A>(ex, dim3(unsigned(v.lay.nc * ssd::num_tiles(v.lay.q)), unsigned(s.G), unsigned(s.B)),
                  ssd::group_grad_smem_elements(s), group_grad_kernel<T>, v, dB, dC, dy);
  param_reduce_kernel<T><<<grid_for(s.H, kThreads), kThreads, 0, stream_of(ex)>>>(v, ddt_bias, dA_log, dD);
  NEXUS_CUDA_CHECK_LAUNCH();
}

#define NEXUS_INSTANTIATE(T)                                                                                        \
  template void ssd_forward<T>(const Exec&, T*, accum_t<T>*, accum_t<T>*, const T*, const T*, const T*, const T*,   \
                               const T*, const T*, const T*, const accum_t<T>*, const SsdShape&, const SsdStrides&, \
                               T*);                                                                                 \
  template void ssd_backward<T>(const Exec&, T*, T*, T*, T*, accum_t<T>*, accum_t<T>*, accum_t<T>*, accum_t<T>*,    \
                                const T*, const accum_t<T>*, const T*, const T*, const T*, const T*, const T*,      \
                                const T*, const T*, const accum_t<T>*, const SsdShape&, const SsdStrides&, T*);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE

}  // namespace nexus::cuda
