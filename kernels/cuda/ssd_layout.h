// Index arithmetic of the CUDA SSD kernels (kernels/cuda/ssd.cu), host and device: chunk ranges,
// the 16 x 16 token tiles a block walks, the byte layout of the caller's workspace and the dynamic
// shared memory of each kernel. No CUDA includes, so the CPU build computes ssd_workspace from it
// and tests/kernels/test_ssd_layout.cpp checks it without a GPU.
#pragma once

#include "kernels/shapes.h"
#include "kernels/types.h"

namespace nexus::cuda::ssd {

// Tokens per tile side: a block of kTile * kTile threads gives each (row, column) token pair of a
// tile one thread.
inline constexpr idx kTile = 16;
inline constexpr unsigned kThreads = unsigned(kTile * kTile);

// The chunk size as the CPU kernel uses it (a chunk never exceeds the sequence; at least 1).
NEXUS_HOST_DEVICE inline idx chunk_size(const SsdShape& s) {
  const idx q = s.Q < s.Tn ? s.Q : s.Tn;
  return q < 1 ? 1 : q;
}
NEXUS_HOST_DEVICE inline idx num_chunks(const SsdShape& s) {
  const idx q = chunk_size(s);
  return (s.Tn + q - 1) / q;
}
// Tokens of chunk c: the last one is ragged when Tn is not a multiple of the chunk size.
NEXUS_HOST_DEVICE inline idx chunk_len(const SsdShape& s, idx c) {
  const idx q = chunk_size(s), rest = s.Tn - c * q;
  return rest < q ? rest : q;
}
NEXUS_HOST_DEVICE inline idx num_tiles(idx n) { return (n + kTile - 1) / kTile; }

// Row stride of a shared-memory tile of rows n long: odd, so that the 16 rows a warp reads at the
// same column fall in 16 different banks (4- and 8-byte elements alike).
NEXUS_HOST_DEVICE inline idx odd_stride(idx n) { return n | 1; }
// A kTile x kTile tile of pair values, padded the same way.
inline constexpr idx kPairTile = kTile * (kTile + 1);

// The workspace, in bytes from its start (accumulators of acc_bytes each: fp32 for float and
// bf16, fp64 for double). Per (b, h), head-major so that a chunk's tokens are contiguous:
//   dt, acs   [B,H,Tn]      softplus dt and the within-chunk cumulative sum of dt A
//   cdec      [B,H,nc]      each chunk's total decay exp(acs_last), flushed
//   dtsum     [B,H,nc]      each chunk's sum of dt in fp64 (the decay output sums dt in double)
//   states    [B,H,nc,P,N]  chunk-local states, then (scan) the state entering each chunk
//   dstates   [B,H,nc,P,N]  backward: the same for the state gradients (leaving each chunk)
//   partials  [B,H,nc,3]    backward: each chunk's share of dD, dA, ddt_bias, reduced in order
struct Layout {
  idx q = 1, nc = 0;
  idx dt = 0, acs = 0, cdec = 0, dtsum = 0, states = 0, dstates = 0, partials = 0, bytes = 0;

  NEXUS_HOST_DEVICE Layout(const SsdShape& s, idx acc_bytes) : q(chunk_size(s)), nc(num_chunks(s)) {
    const idx bh = s.B * s.H;
    dt = take(bh * s.Tn * acc_bytes);
    acs = take(bh * s.Tn * acc_bytes);
    cdec = take(bh * nc * acc_bytes);
    dtsum = take(bh * nc * idx(sizeof(double)));
    states = take(bh * nc * s.P * s.N * acc_bytes);
    dstates = take(bh * nc * s.P * s.N * acc_bytes);
    partials = take(bh * nc * 3 * acc_bytes);
  }

 private:
  // Pieces start 256-byte aligned (given an aligned base), whatever the element type.
  NEXUS_HOST_DEVICE idx take(idx n) {
    const idx at = bytes;
    bytes += (n + 255) / 256 * 256;
    return at;
  }
};

// Elements of T the CUDA kernels need in the workspace: the layout with accum_t<T> accumulators
// (fp32 for float and bf16, fp64 for double), rounded up to whole elements of T.
template <typename T>
NEXUS_HOST_DEVICE inline idx workspace_elements(const SsdShape& s) {
  constexpr idx elem = idx(sizeof(T));
  return (Layout(s, idx(sizeof(accum_t<T>))).bytes + elem - 1) / elem;
}

// Dynamic shared memory, in accumulator elements, of the forward output kernel: C and B tiles
// [kTile, N], an x tile [kTile, P] (all odd strides), the pair tile and the output rows [kTile, P].
NEXUS_HOST_DEVICE inline idx output_smem_elements(const SsdShape& s) {
  return 2 * kTile * odd_stride(s.N) + kTile * odd_stride(s.P) + kPairTile + kTile * s.P;
}
// The backward's per-head kernel: C, B tiles [kTile, N]; x, dY tiles [kTile, P]; two pair tiles;
// two [kTile, P] accumulators; dt, ddt and dacs of the chunk [q] and a block reduction [kThreads].
NEXUS_HOST_DEVICE inline idx head_grad_smem_elements(const SsdShape& s) {
  return 2 * kTile * odd_stride(s.N) + 2 * kTile * odd_stride(s.P) + 2 * kPairTile + 2 * kTile * s.P +
         3 * chunk_size(s) + idx(kThreads);
}
// The backward's per-group dB/dC kernel: the head-summed dCB pair tile and the dC, dB rows [kTile, N].
NEXUS_HOST_DEVICE inline idx group_grad_smem_elements(const SsdShape& s) { return kPairTile + 2 * kTile * s.N; }

}  // namespace nexus::cuda::ssd
