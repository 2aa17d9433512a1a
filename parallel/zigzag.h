// The zigzag layout of context parallelism (DESIGN.md section 4), the one place its rule is
// written: each sequence is cut into 2 * cp chunks, and cp-rank r holds chunk r (its half 0)
// followed by chunk 2 * cp - 1 - r (its half 1). Pairing an early chunk with a late one gives
// every rank the same amount of causal-attention work. Data slicing (data/zigzag.h), RoPE
// positions, ring attention and Mamba-2 state passing all ask these functions.
#pragma once

#include "kernels/types.h"

namespace nexus {

// Global chunk index of half `half` (0 or 1) of cp-rank `rank`.
constexpr idx zigzag_chunk(idx cp, idx rank, idx half) { return half == 0 ? rank : 2 * cp - 1 - rank; }

// The cp-rank holding chunk `chunk`, and which of its halves it is.
constexpr idx zigzag_owner(idx cp, idx chunk) { return chunk < cp ? chunk : 2 * cp - 1 - chunk; }
constexpr idx zigzag_half(idx cp, idx chunk) { return chunk < cp ? 0 : 1; }

}  // namespace nexus
