// attention_forward for bf16 at head_dim 64 and 128 on tensor cores (WMMA, bf16 inputs, fp32
// accumulation): the same tiles, masks and online softmax as the CUDA-core kernel in
// kernels/cuda/attention.cu (tile arithmetic: kernels/cuda/attention_tiling.h), with both products
// of a tile, S = Q K^T and O += P V, as 16x16x16 matrix multiply-accumulates.
//
// One block of kWarps warps per (query tile of kRows rows, sequence and query head); warp w owns
// query rows [16w, 16w + 16) of the tile: their scores, weights, running max and sum, and their
// fp32 output accumulator, all in shared memory (a WMMA accumulator's element-to-row mapping is
// opaque, so the online softmax rescales O in shared memory between the products). Only the K and
// V tiles are shared by the warps. The weights P go into the second product rounded to bf16 (their
// sum, the softmax denominator, stays fp32): a relative 2^-9 per weight, so at most 2^-9 max|v| in
// an output, the same order as rounding the output itself to bf16.
#include <cuda_bf16.h>
#include <mma.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>

#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/attention_tiling.h"
#include "kernels/cuda/check.cuh"

namespace nexus::cuda {

namespace {

using namespace nvcuda;
using tiling::TileMask;

constexpr int kRows = 64;  // query rows and key rows per tile
constexpr int kWarps = kRows / 16;
constexpr int kLdS = kRows + 4;  // fp32 score rows
constexpr int kLdP = kRows + 8;  // bf16 weight rows
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Shared memory: Q, K, V tiles (bf16), scores (fp32), weights (bf16), the output accumulator
// (fp32), running max and sum. Row strides padded off multiples of 128 bytes against bank
// conflicts, and kept multiples of 8 (bf16) or 4 (fp32) elements as WMMA needs; every region
// starts 32-byte aligned.
template <int kHd>
struct Layout {
  static constexpr int kLd = kHd + 8;
  static constexpr int kLdO = kHd + 4;
  static constexpr int kTileBytes = kRows * kLd * 2;
  static constexpr int kScoresOffset = 3 * kTileBytes;
  static constexpr int kWeightsOffset = kScoresOffset + kRows * kLdS * 4;
  static constexpr int kOutOffset = kWeightsOffset + kRows * kLdP * 2;
  static constexpr int kStatsOffset = kOutOffset + kRows * kLdO * 4;
  static constexpr int kBytes = kStatsOffset + 2 * kRows * 4;
  static_assert(kTileBytes % 32 == 0 && kScoresOffset % 32 == 0 && kWeightsOffset % 32 == 0 &&
                kOutOffset % 32 == 0 && kStatsOffset % 32 == 0);
  static_assert(kBytes <= 163 * 1024, "over sm_80's shared memory per block");
};

// kRows rows x hd of a [.., ld_src] bf16 tensor into shared rows ld apart; rows at or past `valid`
// become zeros.
__device__ void load_tile(__nv_bfloat16* dst, int ld, const bf16* src, idx ld_src, idx valid, int hd) {
  for (int e = threadIdx.x; e < kRows * hd; e += blockDim.x) {
    const int r = e / hd, d = e - r * hd;
    dst[r * ld + d] = __ushort_as_bfloat16(r < valid ? src[r * ld_src + d].bits : std::uint16_t(0));
  }
}

// Minimum one block per SM stated, as for the CUDA-core kernels (ptxas otherwise caps registers).
template <int kHd>
__global__ void __launch_bounds__(kWarps * 32, 1)
    attention_forward_mma_kernel(bf16* __restrict__ out, float* __restrict__ lse, const bf16* __restrict__ q,
                                 const bf16* __restrict__ k, const bf16* __restrict__ v, const AttentionShape s) {
  using L = Layout<kHd>;
  constexpr int kLd = L::kLd, kLdO = L::kLdO;
  extern __shared__ __align__(128) unsigned char smem[];
  auto* sQ = reinterpret_cast<__nv_bfloat16*>(smem);
  auto* sK = sQ + kRows * kLd;
  auto* sV = sK + kRows * kLd;
  auto* sS = reinterpret_cast<float*>(smem + L::kScoresOffset);
  auto* sP = reinterpret_cast<__nv_bfloat16*>(smem + L::kWeightsOffset);
  auto* sO = reinterpret_cast<float*>(smem + L::kOutOffset);
  float* sMax = reinterpret_cast<float*>(smem + L::kStatsOffset);
  float* sSum = sMax + kRows;

  const idx Hq = s.n_heads, Hkv = s.n_kv_heads, b = blockIdx.x / Hq, h = blockIdx.x % Hq, g = h / (Hq / Hkv);
  const idx i0 = idx(blockIdx.y) * kRows, m = tiling::clamp(s.Tq - i0, 0, kRows);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, w0 = 16 * warp;  // the warp's first row
  // Two lanes per row in the softmax and the output: lane `half` takes columns / dims of its parity
  // half of the row.
  const int row = w0 + lane / 2, half = lane % 2;
  const float scale = 1.0f / std::sqrt(float(kHd));

  load_tile(sQ, kLd, q + ((b * s.Tq + i0) * Hq + h) * kHd, Hq * kHd, m, kHd);
  for (int e = threadIdx.x; e < kRows * kLdO; e += blockDim.x) sO[e] = 0.0f;
  for (int r = threadIdx.x; r < kRows; r += blockDim.x) {
    sMax[r] = kNegInf;
    sSum[r] = 0.0f;
  }
  __syncthreads();
  const idx j_end = tiling::key_end(s, i0, m);
  for (idx j0 = tiling::key_begin(s, i0, m); j0 < j_end; j0 += kRows) {
    const idx n = j_end - j0 < kRows ? j_end - j0 : kRows;
    const TileMask mask = tiling::tile_mask(s, i0, m, j0, n);
    if (mask == TileMask::kSkip) continue;  // the same for the whole block
    __syncthreads();                        // every warp is done with the previous K and V
    load_tile(sK, kLd, k + ((b * s.Tk + j0) * Hkv + g) * kHd, Hkv * kHd, n, kHd);
    load_tile(sV, kLd, v + ((b * s.Tk + j0) * Hkv + g) * kHd, Hkv * kHd, n, kHd);
    __syncthreads();

    // S = Q K^T for the warp's rows: K's rows are the columns of K^T, i.e. K^T column-major.
    for (int c0 = 0; c0 < kRows; c0 += 16) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int d0 = 0; d0 < kHd; d0 += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> kt;
        wmma::load_matrix_sync(a, sQ + w0 * kLd + d0, kLd);
        wmma::load_matrix_sync(kt, sK + c0 * kLd + d0, kLd);
        wmma::mma_sync(acc, a, kt, acc);
      }
      wmma::store_matrix_sync(sS + w0 * kLdS + c0, acc, kLdS, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax of the row (as the CUDA-core kernel), weights to sP, O rescaled by alpha.
    float* srow = sS + row * kLdS;
    float tile_max = kNegInf;
    for (int j = half; j < kRows; j += 2) {
      const bool on = row < m && j < n && tiling::reads(s, mask, i0 + row, j0 + j);
      const float x = on ? srow[j] * scale : kNegInf;
      srow[j] = x;
      tile_max = x > tile_max ? x : tile_max;
    }
    const float other_max = __shfl_xor_sync(0xffffffffu, tile_max, 1);
    tile_max = other_max > tile_max ? other_max : tile_max;
    const float row_max = sMax[row];
    const float new_max = row_max > tile_max ? row_max : tile_max;
    const float shift = new_max == kNegInf ? 0.0f : new_max;  // no key seen yet: keep exp(-inf) = 0
    const float alpha = std::exp(row_max - shift);
    float tile_sum = 0.0f;
    for (int j = half; j < kRows; j += 2) {
      const float p = std::exp(srow[j] - shift);
      sP[row * kLdP + j] = __float2bfloat16(p);
      tile_sum += p;
    }
    tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 1);
    for (int d = half; d < kHd; d += 2) sO[row * kLdO + d] *= alpha;
    __syncwarp();  // both lanes of the row have read sMax; sP and sO are complete
    if (half == 0) {
      sMax[row] = new_max;
      sSum[row] = sSum[row] * alpha + tile_sum;
    }

    // O += P V for the warp's rows.
    for (int d0 = 0; d0 < kHd; d0 += 16) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, sO + w0 * kLdO + d0, kLdO, wmma::mem_row_major);
      for (int c0 = 0; c0 < kRows; c0 += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> p;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vt;
        wmma::load_matrix_sync(p, sP + w0 * kLdP + c0, kLdP);
        wmma::load_matrix_sync(vt, sV + c0 * kLd + d0, kLd);
        wmma::mma_sync(acc, p, vt, acc);
      }
      wmma::store_matrix_sync(sO + w0 * kLdO + d0, acc, kLdO, wmma::mem_row_major);
    }
    __syncwarp();
  }
  __syncwarp();
  if (row >= m) return;
  const float sum = sSum[row], inv = sum > 0.0f ? 1.0f / sum : 0.0f;  // no visible key: out = 0
  bf16* orow = out + ((b * s.Tq + i0 + row) * Hq + h) * kHd;
  for (int d = half; d < kHd; d += 2) orow[d] = bf16(sO[row * kLdO + d] * inv);
  if (half == 0) lse[(b * s.Tq + i0 + row) * Hq + h] = sum > 0.0f ? sMax[row] + std::log(sum) : kNegInf;
}

template <int kHd>
void launch(const Exec& ex, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
            const AttentionShape& s) {
  const auto kernel = attention_forward_mma_kernel<kHd>;
  NEXUS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Layout<kHd>::kBytes));
  const idx heads = s.B * s.n_heads, tiles = tiling::tiles(s.Tq, kRows);
  if (heads > 0x7fffffff || tiles > 65535)
    throw std::invalid_argument("attention_forward: shape exceeds the CUDA grid");
  kernel<<<dim3(unsigned(heads), unsigned(tiles)), kWarps * 32, Layout<kHd>::kBytes, stream_of(ex)>>>(out, lse, q, k,
                                                                                                   v, s);
  NEXUS_CUDA_CHECK_LAUNCH();
}

}  // namespace

void attention_forward_mma(const Exec& ex, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                           const AttentionShape& s) {
  if (s.head_dim == 64) return launch<64>(ex, out, lse, q, k, v, s);
  launch<128>(ex, out, lse, q, k, v, s);
}

}  // namespace nexus::cuda
