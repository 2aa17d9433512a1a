// Grouped-query attention on the GPU, FlashAttention-2 style on CUDA cores: the same function as
// kernels/cpu/attention.cpp (same contract: global positions, neighborhoods, lse = -inf and out = 0
// for a row with no visible key, the backward taking the final out and lse and accumulating into
// dq, dk, dv), with all arithmetic in accum_t<T> (fp32 for fp32 and bf16, fp64 for fp64).
//
// Every kernel works on square tiles of kTile query or key rows held in shared memory (converted
// to accum_t<T> on load, rows past the end zero-filled) and never forms more than a kTile x kTile
// block of scores. A tile row belongs to kLanes consecutive lanes of a warp: lane c of the row
// scores the rows c, c + kLanes, ... of the other operand (each a full dot product over head_dim)
// and owns the head dims c, c + kLanes, ... of the row's accumulator (kDims registers). Which
// tiles are visited and how they are masked is kernels/cuda/attention_tiling.h.
//
//  - forward: one block per (query tile, sequence and query head); online softmax over the key
//    tiles, K and V taking turns in one shared buffer. bf16 at head_dim 64 and 128 runs on tensor
//    cores instead (kernels/cuda/attention_mma.cu).
//  - backward, race-free and deterministic without atomics: the per-row D = rowsum(dO * O) first
//    (one warp per row); then dq by one block per (query tile, query head) looping over key tiles,
//    and dk, dv by one block per (key tile, kv head) looping over the group's query heads in order
//    and over their query tiles, accumulating in registers. Each output element has exactly one
//    owning thread, which adds its sum to the gradient once at the end.
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/attention_tiling.h"
#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/scratch.cuh"

namespace nexus::cuda {

namespace {

using tiling::TileMask;

// Launch shape and shared memory of the kernels compiled for head_dim <= kMaxHd, in accum type C.
template <typename C, int kMaxHd>
struct Config {
  static constexpr int kLanes = kMaxHd / 16;  // lanes per tile row
  static constexpr int kDims = kMaxHd / kLanes;  // head dims a lane owns: 16 accumulators
  // 16 rows where 32 would not fit the sm_80 limit of shared memory per block (fp64 at 256 dims).
  static constexpr int kTile = kMaxHd * sizeof(C) > 1024 ? 16 : 32;
  static constexpr int kThreads = kTile * kLanes;
  static constexpr int kPerLane = kTile / kLanes;  // rows of the other operand a lane scores
  static constexpr int kLd = kMaxHd + 1;       // odd row stride: lanes walking rows hit distinct banks
  static constexpr int kLdScores = kTile + 1;
  static constexpr int kRowsBytes = kTile * kLd * int(sizeof(C));
  static constexpr int kScoresBytes = kTile * kLdScores * int(sizeof(C));
  // forward: Q, K-then-V, P
  static constexpr int kForwardSmem = 2 * kRowsBytes + kScoresBytes;
  // backward: four row tiles, two score tiles, lse and D of kTile rows
  static constexpr int kBackwardSmem = 4 * kRowsBytes + 2 * kScoresBytes + 2 * kTile * int(sizeof(C));
  static_assert(kBackwardSmem <= 163 * 1024, "over sm_80's shared memory per block");
  static_assert(kThreads % 32 == 0 && kTile % kLanes == 0 && kLanes <= 32);
};

template <typename C>
__device__ inline C neg_inf() {
  return -std::numeric_limits<C>::infinity();
}

// rows x hd of a [.., ld_src] tensor into shared rows kLd apart, converted to C; rows at or past
// `valid` become zeros (so that a zero weight never meets garbage).
template <int kLd, typename C, typename T>
__device__ void load_rows(C* __restrict__ dst, const T* __restrict__ src, idx ld_src, idx valid, int rows, int hd) {
  for (int e = threadIdx.x; e < rows * hd; e += blockDim.x) {
    const int r = e / hd, d = e - r * hd;
    dst[r * kLd + d] = r < valid ? static_cast<C>(src[r * ld_src + d]) : C(0);
  }
}

template <typename C>
__device__ __forceinline__ C dot(const C* __restrict__ a, const C* __restrict__ b, int hd) {
  C sum = C(0);
#pragma unroll 4
  for (int d = 0; d < hd; ++d) sum += a[d] * b[d];
  return sum;
}

// Flat offsets of row i of sequence b, head h in [B,T,H,hd] tensors.
NEXUS_HOST_DEVICE inline idx row_at(idx b, idx T, idx i, idx H, idx h, idx hd) { return ((b * T + i) * H + h) * hd; }

// Every kernel states one block per SM as its minimum: with the thread count alone, ptxas (CUDA 13)
// held the dq kernels to 64 registers and spilled.
template <typename T, int kMaxHd>
__global__ void __launch_bounds__(Config<accum_t<T>, kMaxHd>::kThreads, 1)
    attention_forward_kernel(T* __restrict__ out, accum_t<T>* __restrict__ lse, const T* __restrict__ q,
                             const T* __restrict__ k, const T* __restrict__ v, const AttentionShape s) {
  using C = accum_t<T>;
  using Cfg = Config<C, kMaxHd>;
  constexpr int kTile = Cfg::kTile, kLanes = Cfg::kLanes, kLd = Cfg::kLd, kLdS = Cfg::kLdScores;
  extern __shared__ __align__(16) unsigned char smem[];
  C* sQ = reinterpret_cast<C*>(smem);  // [kTile, kLd]
  C* sKV = sQ + kTile * kLd;           // [kTile, kLd]: K, then V, of the current key tile
  C* sP = sKV + kTile * kLd;           // [kTile, kLdS]: softmax weights

  const idx Hq = s.n_heads, Hkv = s.n_kv_heads, b = blockIdx.x / Hq, h = blockIdx.x % Hq, g = h / (Hq / Hkv);
  const int hd = int(s.head_dim);
  const idx i0 = idx(blockIdx.y) * kTile, m = tiling::clamp(s.Tq - i0, 0, kTile);
  const int r = threadIdx.x / kLanes, c = threadIdx.x % kLanes;
  const C scale = C(1) / std::sqrt(C(hd));

  load_rows<kLd>(sQ, q + row_at(b, s.Tq, i0, Hq, h, hd), Hq * hd, m, kTile, hd);
  C o[Cfg::kDims] = {};
  C row_max = neg_inf<C>(), row_sum = C(0);
  const idx j_end = tiling::key_end(s, i0, m);
  for (idx j0 = tiling::key_begin(s, i0, m); j0 < j_end; j0 += kTile) {
    const idx n = j_end - j0 < kTile ? j_end - j0 : kTile;
    const TileMask mask = tiling::tile_mask(s, i0, m, j0, n);
    if (mask == TileMask::kSkip) continue;  // the same for the whole block
    __syncthreads();                        // the previous tile's readers of sKV and sP are done
    load_rows<kLd>(sKV, k + row_at(b, s.Tk, j0, Hkv, g, hd), Hkv * hd, n, kTile, hd);
    __syncthreads();
    C sc[Cfg::kPerLane];
    C tile_max = neg_inf<C>();
#pragma unroll
    for (int u = 0; u < Cfg::kPerLane; ++u) {
      const int j = c + kLanes * u;
      const bool on = r < m && j < n && tiling::reads(s, mask, i0 + r, j0 + j);
      sc[u] = on ? dot(sQ + r * kLd, sKV + j * kLd, hd) * scale : neg_inf<C>();
      tile_max = sc[u] > tile_max ? sc[u] : tile_max;
    }
    tile_max = group_max<kLanes>(tile_max);
    const C new_max = row_max > tile_max ? row_max : tile_max;
    const C shift = new_max == neg_inf<C>() ? C(0) : new_max;  // no key seen yet: keep exp(-inf) = 0
    const C alpha = std::exp(row_max - shift);  // rescales what earlier tiles gave
    C tile_sum = C(0);
#pragma unroll
    for (int u = 0; u < Cfg::kPerLane; ++u) {
      const C p = std::exp(sc[u] - shift);
      sP[r * kLdS + c + kLanes * u] = p;
      tile_sum += p;
    }
    row_sum = row_sum * alpha + group_sum<kLanes>(tile_sum);
    row_max = new_max;
#pragma unroll
    for (int dd = 0; dd < Cfg::kDims; ++dd) o[dd] *= alpha;
    __syncthreads();  // every score is taken: sKV may now hold V
    load_rows<kLd>(sKV, v + row_at(b, s.Tk, j0, Hkv, g, hd), Hkv * hd, n, kTile, hd);
    __syncthreads();
    for (int j = 0; j < n; ++j) {
      const C p = sP[r * kLdS + j];
#pragma unroll
      for (int dd = 0; dd < Cfg::kDims; ++dd)
        if (c + kLanes * dd < hd) o[dd] += p * sKV[j * kLd + c + kLanes * dd];
    }
  }
  if (r >= m) return;
  T* orow = out + row_at(b, s.Tq, i0 + r, Hq, h, hd);
  const C inv = row_sum > C(0) ? C(1) / row_sum : C(0);  // no visible key: out = 0
#pragma unroll
  for (int dd = 0; dd < Cfg::kDims; ++dd)
    if (c + kLanes * dd < hd) orow[c + kLanes * dd] = T(o[dd] * inv);
  if (c == 0) lse[(b * s.Tq + i0 + r) * Hq + h] = row_sum > C(0) ? row_max + std::log(row_sum) : neg_inf<C>();
}

// D[row] = <dout row, out row> for each of `rows` rows of hd: one warp per row.
template <typename T>
__global__ void row_dot_kernel(accum_t<T>* __restrict__ D, const T* __restrict__ dout, const T* __restrict__ out,
                               idx rows, int hd) {
  using C = accum_t<T>;
  const idx row = (blockIdx.x * idx(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;  // whole warps: blockDim is a multiple of 32
  C sum = C(0);
  for (int d = lane; d < hd; d += 32) sum += static_cast<C>(dout[row * hd + d]) * static_cast<C>(out[row * hd + d]);
  sum = warp_sum(sum);
  if (lane == 0) D[row] = sum;
}

// The gradient of one score: dS = P (dP - D) scale with P = exp(score scale - lse), dP = <dO, V>;
// 0 for a pair that is not read or a row that read nothing (lse = -inf).
template <typename C>
__device__ __forceinline__ void score_grads(C& p, C& ds, bool on, const C* q_row, const C* dout_row, const C* k_row,
                                   const C* v_row, C row_lse, C row_D, C scale, int hd) {
  p = C(0);
  ds = C(0);
  if (!on || row_lse == neg_inf<C>()) return;
  p = std::exp(dot(q_row, k_row, hd) * scale - row_lse);
  ds = p * (dot(dout_row, v_row, hd) - row_D) * scale;
}

// lse and D of query rows [i0, i0 + m) of head h into shared memory (rows past m: lse = -inf).
template <typename C>
__device__ void load_row_stats(C* sLse, C* sD, const C* lse, const C* D, const AttentionShape& s, idx b, idx h,
                               idx i0, idx m, int tile) {
  for (int i = threadIdx.x; i < tile; i += blockDim.x) {
    const idx at = (b * s.Tq + i0 + i) * s.n_heads + h;
    sLse[i] = i < m ? lse[at] : neg_inf<C>();
    sD[i] = i < m ? D[at] : C(0);
  }
}

template <typename T, int kMaxHd>
__global__ void __launch_bounds__(Config<accum_t<T>, kMaxHd>::kThreads, 1)
    attention_dq_kernel(T* __restrict__ dq, const T* __restrict__ dout, const T* __restrict__ q,
                        const T* __restrict__ k, const T* __restrict__ v, const accum_t<T>* __restrict__ lse,
                        const accum_t<T>* __restrict__ D, const AttentionShape s) {
  using C = accum_t<T>;
  using Cfg = Config<C, kMaxHd>;
  constexpr int kTile = Cfg::kTile, kLanes = Cfg::kLanes, kLd = Cfg::kLd, kLdS = Cfg::kLdScores;
  extern __shared__ __align__(16) unsigned char smem[];
  C* sQ = reinterpret_cast<C*>(smem);
  C* sdO = sQ + kTile * kLd;
  C* sK = sdO + kTile * kLd;
  C* sV = sK + kTile * kLd;
  C* sdS = sV + kTile * kLd;  // [kTile, kLdS] (the second score tile of kBackwardSmem stays unused)
  C* sLse = sdS + kTile * kLdS;
  C* sD = sLse + kTile;

  const idx Hq = s.n_heads, Hkv = s.n_kv_heads, b = blockIdx.x / Hq, h = blockIdx.x % Hq, g = h / (Hq / Hkv);
  const int hd = int(s.head_dim);
  const idx i0 = idx(blockIdx.y) * kTile, m = tiling::clamp(s.Tq - i0, 0, kTile);
  const int r = threadIdx.x / kLanes, c = threadIdx.x % kLanes;
  const C scale = C(1) / std::sqrt(C(hd));

  load_rows<kLd>(sQ, q + row_at(b, s.Tq, i0, Hq, h, hd), Hq * hd, m, kTile, hd);
  load_rows<kLd>(sdO, dout + row_at(b, s.Tq, i0, Hq, h, hd), Hq * hd, m, kTile, hd);
  load_row_stats(sLse, sD, lse, D, s, b, h, i0, m, kTile);
  C acc[Cfg::kDims] = {};
  const idx j_end = tiling::key_end(s, i0, m);
  for (idx j0 = tiling::key_begin(s, i0, m); j0 < j_end; j0 += kTile) {
    const idx n = j_end - j0 < kTile ? j_end - j0 : kTile;
    const TileMask mask = tiling::tile_mask(s, i0, m, j0, n);
    if (mask == TileMask::kSkip) continue;
    __syncthreads();
    load_rows<kLd>(sK, k + row_at(b, s.Tk, j0, Hkv, g, hd), Hkv * hd, n, kTile, hd);
    load_rows<kLd>(sV, v + row_at(b, s.Tk, j0, Hkv, g, hd), Hkv * hd, n, kTile, hd);
    __syncthreads();
#pragma unroll 1  // one copy of the two dot products: the results go to shared memory, not registers
    for (int u = 0; u < Cfg::kPerLane; ++u) {
      const int j = c + kLanes * u;
      const bool on = r < m && j < n && tiling::reads(s, mask, i0 + r, j0 + j);
      C p, ds;
      score_grads(p, ds, on, sQ + r * kLd, sdO + r * kLd, sK + j * kLd, sV + j * kLd, sLse[r], sD[r], scale, hd);
      sdS[r * kLdS + j] = ds;
    }
    __syncthreads();
    for (int j = 0; j < n; ++j) {
      const C ds = sdS[r * kLdS + j];
#pragma unroll
      for (int dd = 0; dd < Cfg::kDims; ++dd)
        if (c + kLanes * dd < hd) acc[dd] += ds * sK[j * kLd + c + kLanes * dd];  // dq += dS K
    }
  }
  if (r >= m) return;
  T* row = dq + row_at(b, s.Tq, i0 + r, Hq, h, hd);
#pragma unroll
  for (int dd = 0; dd < Cfg::kDims; ++dd)
    if (c + kLanes * dd < hd) row[c + kLanes * dd] = T(static_cast<C>(row[c + kLanes * dd]) + acc[dd]);
}

template <typename T, int kMaxHd>
__global__ void __launch_bounds__(Config<accum_t<T>, kMaxHd>::kThreads, 1)
    attention_dkdv_kernel(T* __restrict__ dk, T* __restrict__ dv, const T* __restrict__ dout,
                          const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                          const accum_t<T>* __restrict__ lse, const accum_t<T>* __restrict__ D,
                          const AttentionShape s) {
  using C = accum_t<T>;
  using Cfg = Config<C, kMaxHd>;
  constexpr int kTile = Cfg::kTile, kLanes = Cfg::kLanes, kLd = Cfg::kLd, kLdS = Cfg::kLdScores;
  extern __shared__ __align__(16) unsigned char smem[];
  C* sK = reinterpret_cast<C*>(smem);
  C* sV = sK + kTile * kLd;
  C* sQ = sV + kTile * kLd;
  C* sdO = sQ + kTile * kLd;
  C* sPt = sdO + kTile * kLd;    // [kTile keys, kLdS]: P transposed
  C* sdSt = sPt + kTile * kLdS;  // [kTile keys, kLdS]: dS transposed
  C* sLse = sdSt + kTile * kLdS;
  C* sD = sLse + kTile;

  const idx Hq = s.n_heads, Hkv = s.n_kv_heads, group = Hq / Hkv, b = blockIdx.x / Hkv, g = blockIdx.x % Hkv;
  const int hd = int(s.head_dim);
  const idx j0 = idx(blockIdx.y) * kTile, n = tiling::clamp(s.Tk - j0, 0, kTile);
  const int r = threadIdx.x / kLanes, c = threadIdx.x % kLanes;  // r: the key row
  const C scale = C(1) / std::sqrt(C(hd));

  load_rows<kLd>(sK, k + row_at(b, s.Tk, j0, Hkv, g, hd), Hkv * hd, n, kTile, hd);
  load_rows<kLd>(sV, v + row_at(b, s.Tk, j0, Hkv, g, hd), Hkv * hd, n, kTile, hd);
  C dk_acc[Cfg::kDims] = {}, dv_acc[Cfg::kDims] = {};
  const idx first_query = tiling::query_begin(s, j0);
  for (idx h = g * group; h < (g + 1) * group; ++h)  // the group's heads in order: a fixed sum
    for (idx i0 = first_query; i0 < s.Tq; i0 += kTile) {
      const idx m = s.Tq - i0 < kTile ? s.Tq - i0 : kTile;
      const TileMask mask = tiling::tile_mask(s, i0, m, j0, n);
      if (mask == TileMask::kSkip) continue;
      __syncthreads();
      load_rows<kLd>(sQ, q + row_at(b, s.Tq, i0, Hq, h, hd), Hq * hd, m, kTile, hd);
      load_rows<kLd>(sdO, dout + row_at(b, s.Tq, i0, Hq, h, hd), Hq * hd, m, kTile, hd);
      load_row_stats(sLse, sD, lse, D, s, b, h, i0, m, kTile);
      __syncthreads();
#pragma unroll 1
      for (int u = 0; u < Cfg::kPerLane; ++u) {
        const int i = c + kLanes * u;
        const bool on = r < n && i < m && tiling::reads(s, mask, i0 + i, j0 + r);
        C p, ds;
        score_grads(p, ds, on, sQ + i * kLd, sdO + i * kLd, sK + r * kLd, sV + r * kLd, sLse[i], sD[i], scale, hd);
        sPt[r * kLdS + i] = p;
        sdSt[r * kLdS + i] = ds;
      }
      __syncthreads();
      for (int i = 0; i < m; ++i) {
        const C p = sPt[r * kLdS + i], ds = sdSt[r * kLdS + i];
#pragma unroll
        for (int dd = 0; dd < Cfg::kDims; ++dd)
          if (c + kLanes * dd < hd) {
            dv_acc[dd] += p * sdO[i * kLd + c + kLanes * dd];  // dv += P^T dO
            dk_acc[dd] += ds * sQ[i * kLd + c + kLanes * dd];  // dk += dS^T Q
          }
      }
    }
  if (r >= n) return;
  T* dk_row = dk + row_at(b, s.Tk, j0 + r, Hkv, g, hd);
  T* dv_row = dv + row_at(b, s.Tk, j0 + r, Hkv, g, hd);
#pragma unroll
  for (int dd = 0; dd < Cfg::kDims; ++dd)
    if (c + kLanes * dd < hd) {
      const int d = c + kLanes * dd;
      dk_row[d] = T(static_cast<C>(dk_row[d]) + dk_acc[dd]);
      dv_row[d] = T(static_cast<C>(dv_row[d]) + dv_acc[dd]);
    }
}

// Calls launch(std::integral_constant<int, kMaxHd>) for the smallest compiled capacity holding
// head_dim.
template <typename Launch>
void with_max_head_dim(const char* op, idx head_dim, Launch&& launch) {
  switch (tiling::max_head_dim_for(head_dim)) {
    case 64: return launch(std::integral_constant<int, 64>{});
    case 128: return launch(std::integral_constant<int, 128>{});
    case 256: return launch(std::integral_constant<int, 256>{});
    default:
      throw std::invalid_argument(std::string(op) + ": head_dim " + std::to_string(head_dim) +
                                  " is not in 1..256 (the CUDA kernels' capacity)");
  }
}

// Grid of one block per (tile of `rows`, head): heads in x (no 65535 bound), tiles in y.
dim3 tile_grid(idx heads, idx rows, int tile) {
  const idx t = tiling::tiles(rows, tile);
  if (heads > 0x7fffffff || t > 65535) throw std::invalid_argument("attention: shape exceeds the CUDA grid");
  return dim3(unsigned(heads), unsigned(t));
}

template <typename Kernel>
void allow_smem(Kernel kernel, int bytes) {
  NEXUS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

}  // namespace

template <typename T>
void attention_forward(const Exec& ex, T* out, accum_t<T>* lse, const T* q, const T* k, const T* v,
                       const AttentionShape& s) {
  if (s.B * s.Tq * s.n_heads == 0) return;
  if constexpr (std::is_same_v<T, bf16>)
    if (attention_forward_mma_supports(s)) return attention_forward_mma(ex, out, lse, q, k, v, s);
  with_max_head_dim("attention_forward", s.head_dim, [&](auto max_hd) {
    using Cfg = Config<accum_t<T>, decltype(max_hd)::value>;
    const auto kernel = attention_forward_kernel<T, decltype(max_hd)::value>;
    allow_smem(kernel, Cfg::kForwardSmem);
    kernel<<<tile_grid(s.B * s.n_heads, s.Tq, Cfg::kTile), Cfg::kThreads, Cfg::kForwardSmem, stream_of(ex)>>>(
        out, lse, q, k, v, s);
    NEXUS_CUDA_CHECK_LAUNCH();
  });
}

template <typename T>
void attention_backward(const Exec& ex, T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                        const T* out, const accum_t<T>* lse, const AttentionShape& s) {
  using C = accum_t<T>;
  const idx rows = s.B * s.Tq * s.n_heads;
  if (rows == 0 || s.Tk == 0 || s.n_kv_heads == 0) return;
  with_max_head_dim("attention_backward", s.head_dim, [&](auto max_hd) {
    constexpr int kMaxHd = decltype(max_hd)::value;
    using Cfg = Config<C, kMaxHd>;
    auto* D = static_cast<C*>(stream_scratch(ex, Scratch::attention, std::size_t(rows) * sizeof(C)));
    constexpr unsigned kRowThreads = 256;
    const idx row_blocks = tiling::tiles(rows * 32, kRowThreads);
    if (row_blocks > 0x7fffffff) throw std::invalid_argument("attention_backward: shape exceeds the CUDA grid");
    row_dot_kernel<T><<<unsigned(row_blocks), kRowThreads, 0, stream_of(ex)>>>(D, dout, out, rows, int(s.head_dim));
    NEXUS_CUDA_CHECK_LAUNCH();

    const auto dq_kernel = attention_dq_kernel<T, kMaxHd>;
    allow_smem(dq_kernel, Cfg::kBackwardSmem);
    dq_kernel<<<tile_grid(s.B * s.n_heads, s.Tq, Cfg::kTile), Cfg::kThreads, Cfg::kBackwardSmem, stream_of(ex)>>>(
        dq, dout, q, k, v, lse, D, s);
    NEXUS_CUDA_CHECK_LAUNCH();

    const auto dkdv_kernel = attention_dkdv_kernel<T, kMaxHd>;
    allow_smem(dkdv_kernel, Cfg::kBackwardSmem);
    dkdv_kernel<<<tile_grid(s.B * s.n_kv_heads, s.Tk, Cfg::kTile), Cfg::kThreads, Cfg::kBackwardSmem,
                  stream_of(ex)>>>(dk, dv, dout, q, k, v, lse, D, s);
    NEXUS_CUDA_CHECK_LAUNCH();
  });
}

#define NEXUS_INSTANTIATE(T)                                                                                      \
  template void attention_forward<T>(const Exec&, T*, accum_t<T>*, const T*, const T*, const T*,                  \
                                     const AttentionShape&);                                                      \
  template void attention_backward<T>(const Exec&, T*, T*, T*, const T*, const T*, const T*, const T*, const T*, \
                                      const accum_t<T>*, const AttentionShape&);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE

}  // namespace nexus::cuda
