// Carving one caller-owned workspace into pieces, the same way everywhere: consecutive pieces, each
// rounded up to 16 elements, so that every piece keeps the block's alignment (64 bytes for fp32
// given a 64-byte-aligned base) and vector loads never straddle two pieces. Device-neutral: it
// computes offsets, it touches no memory.
#pragma once

#include "kernels/types.h"

namespace nexus {

// Elements a piece of n elements occupies.
inline constexpr idx workspace_round(idx n) { return (n + 15) / 16 * 16; }

// Offsets (in elements) of consecutive pieces; `used` is the total so far. Measures a layout
// before the block exists, and lays it out again over the block.
struct WorkspaceLayout {
  idx used = 0;
  idx take(idx n) {
    const idx at = used;
    used += workspace_round(n);
    return at;
  }
};

// Pointers to consecutive pieces of a block that exists.
template <typename T>
struct WorkspaceCarver {
  T* next;
  T* take(idx n) {
    T* at = next;
    next += workspace_round(n);
    return at;
  }
};

}  // namespace nexus
