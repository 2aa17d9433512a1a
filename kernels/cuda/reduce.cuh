// Deterministic reductions shared by the CUDA kernels: warp and block sums/maxima with a fixed
// tree (the result depends on the launch shape only, never on timing), the arithmetic types of
// the row kernels, and column sums over rows (the parameter gradients of the norms and the
// convolution) computed as per-slab partials in scratch, then added slab by slab in order, so two
// runs give the same bits and no float atomics race on an address.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/scratch.cuh"
#include "kernels/types.h"

namespace nexus::cuda {

// Element arithmetic: T itself, fp32 for bf16 (bf16 is only storage).
template <typename T>
using compute_t = accum_t<T>;
// Long sums (row statistics, column sums): double for float and double, as the CPU backend
// accumulates them; fp32 for bf16, whose arithmetic stays in float.
template <typename T>
using sum_t = std::conditional_t<std::is_same_v<T, bf16>, float, double>;

constexpr unsigned kWarp = 32;

// A butterfly (xor) tree: every lane ends with the same value, bit for bit, since each step adds
// the same two operands on both lanes of a pair (a + b == b + a).
template <typename A>
__device__ inline A warp_sum(A v) {
  for (unsigned offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
template <typename A>
__device__ inline A warp_max(A v) {
  for (unsigned offset = kWarp / 2; offset > 0; offset /= 2) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
// The same trees over each aligned group of kWidth lanes (a power of two <= 32): every lane of a
// group ends with its group's result. Every lane of the warp must call them.
template <unsigned kWidth, typename A>
__device__ inline A group_sum(A v) {
  static_assert(kWidth >= 1 && kWidth <= kWarp && (kWidth & (kWidth - 1)) == 0);
  for (unsigned offset = kWidth / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset, kWidth);
  return v;
}
template <unsigned kWidth, typename A>
__device__ inline A group_max(A v) {
  static_assert(kWidth >= 1 && kWidth <= kWarp && (kWidth & (kWidth - 1)) == 0);
  for (unsigned offset = kWidth / 2; offset > 0; offset /= 2)
    v = fmax(v, __shfl_xor_sync(0xffffffffu, v, offset, kWidth));
  return v;
}

// Block-wide sum / max over a 1-D block of kThreads threads, returned to every thread: warp trees,
// then one tree over the warps' results. Every thread of the block must call it (it synchronises).
template <unsigned kThreads, typename A, typename WarpOp>
__device__ inline A block_reduce(A v, A identity, WarpOp warp_op) {
  static_assert(kThreads % kWarp == 0 && kThreads <= kWarp * kWarp, "whole warps, at most 32 of them");
  __shared__ A warp_results[kThreads / kWarp];
  v = warp_op(v);
  const unsigned warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) warp_results[warp] = v;
  __syncthreads();
  v = warp_op(lane < kThreads / kWarp ? warp_results[lane] : identity);
  __syncthreads();  // warp_results is free for the next call
  return v;
}
template <unsigned kThreads, typename A>
__device__ inline A block_sum(A v) {
  return block_reduce<kThreads>(v, A(0), [](A x) { return warp_sum(x); });
}
template <unsigned kThreads, typename A>
__device__ inline A block_max(A v) {
  return block_reduce<kThreads>(v, A(-INFINITY), [](A x) { return warp_max(x); });
}

// x[0] + ... + x[n-1] into *total by one block of kThreads threads: each thread sums a strided
// share in order, then the block tree. Fixed order, so the total is the same on every run.
template <unsigned kThreads>
__global__ void sum_fixed_order(const double* __restrict__ x, idx n, double* __restrict__ total) {
  double s = 0.0;
  for (idx i = threadIdx.x; i < n; i += kThreads) s += x[i];
  s = block_sum<kThreads>(s);
  if (threadIdx.x == 0) *total = s;
}

// ---------------------------------------------------------------------------------------------
// Column sums: out[c] += sum_{n < N} term(n, c) for c < cols, where term is a functor callable on
// the device returning S. Rows are cut into slabs whose size depends on N only; a block of
// kColTile x kRowLanes threads sums one slab of kColTile columns (each row lane strides the slab
// in order, then the lanes are added in lane order) into partial[slab, c], and a second kernel
// adds each column's slab partials in slab order into out. Coalesced along columns.
namespace column_sum {

constexpr unsigned kColTile = 32, kRowLanes = 8;
constexpr idx kMinSlabRows = 64;
constexpr idx kMaxSlabs = 512;  // bounds the scratch: kMaxSlabs * cols sums (64 MiB for 16k columns)

inline idx slab_rows(idx N) {
  const idx rows = (N + kMaxSlabs - 1) / kMaxSlabs;
  return rows < kMinSlabRows ? kMinSlabRows : rows;
}

template <typename S, typename Term>
__global__ void partials(S* __restrict__ partial /*[slabs, cols]*/, idx N, idx cols, idx rows_per_slab, Term term) {
  __shared__ S lanes[kRowLanes][kColTile];
  const idx c = blockIdx.x * idx(kColTile) + threadIdx.x;
  const idx n0 = blockIdx.y * rows_per_slab;
  const idx n1 = n0 + rows_per_slab < N ? n0 + rows_per_slab : N;
  S s = S(0);
  if (c < cols)
    for (idx n = n0 + threadIdx.y; n < n1; n += kRowLanes) s += term(n, c);
  lanes[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    S total = S(0);
    for (unsigned lane = 0; lane < kRowLanes; ++lane) total += lanes[lane][threadIdx.x];
    partial[blockIdx.y * cols + c] = total;
  }
}

template <typename S, typename Out>
__global__ void add_in_slab_order(Out* __restrict__ out, const S* __restrict__ partial, idx slabs, idx cols) {
  for (idx c = blockIdx.x * idx(blockDim.x) + threadIdx.x; c < cols; c += idx(gridDim.x) * blockDim.x) {
    S total = S(0);
    for (idx s = 0; s < slabs; ++s) total += partial[s * cols + c];
    out[c] = Out(S(out[c]) + total);
  }
}

}  // namespace column_sum

template <typename S, typename Out, typename Term>
void add_column_sums(const Exec& ex, Out* out, idx N, idx cols, const Term& term) {
  if (N <= 0 || cols <= 0) return;
  const idx rows = column_sum::slab_rows(N);
  const idx slabs = (N + rows - 1) / rows;
  auto* partial = static_cast<S*>(stream_scratch(ex, Scratch::column_partials, std::size_t(slabs * cols) * sizeof(S)));
  const dim3 grid(static_cast<unsigned>((cols + column_sum::kColTile - 1) / column_sum::kColTile),
                  static_cast<unsigned>(slabs));
  column_sum::partials<S><<<grid, dim3(column_sum::kColTile, column_sum::kRowLanes), 0, stream_of(ex)>>>(
      partial, N, cols, rows, term);
  NEXUS_CUDA_CHECK_LAUNCH();
  constexpr unsigned kThreads = 256;
  column_sum::add_in_slab_order<S, Out><<<grid_for(cols, kThreads), kThreads, 0, stream_of(ex)>>>(out, partial, slabs,
                                                                                                   cols);
  NEXUS_CUDA_CHECK_LAUNCH();
}

}  // namespace nexus::cuda
