// The zigzag layout of context parallelism (DESIGN.md section 4): each sequence of T tokens is cut
// into 2 * cp chunks of C = T / (2 * cp) tokens, and cp rank c holds chunk c followed by chunk
// 2 * cp - 1 - c, i.e. local width 2 * C = T / cp. Pairing an early chunk with a late one gives
// every rank the same amount of causal-attention work.
#pragma once

#include <cstdint>

#include "kernels/types.h"

namespace nexus {

// Throws DataError unless cp >= 1, 0 <= c < cp and T is a multiple of 2 * cp (naming the values).
void check_zigzag(idx T, idx cp, idx c);

// local[B, T / cp] = rank c's two chunks of every row of full[B, T].
void zigzag_slice(const std::int32_t* full, idx B, idx T, idx cp, idx c, std::int32_t* local);

// positions[T / cp]: the global position in the sequence of each local token (for RoPE, masks and
// halos).
void zigzag_positions(idx T, idx cp, idx c, idx* positions);

}  // namespace nexus
