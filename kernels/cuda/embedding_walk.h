// The embedding backward's walk over the tokens for one column of dtable (kernels/cuda/embedding.cu),
// a plain host and device function so a CPU test holds it to the sequential loop bit for bit
// (tests/kernels/test_embedding_walk.cpp).
#pragma once

#include <cstdint>

#include "kernels/types.h"

namespace nexus::embedding {

inline constexpr int kBatch = 8;  // tokens whose dtable rows are read at once

// dtable[tokens[n], d] += dout[n, d] for n = 0 .. N-1, in token order, kBatch tokens at a time: the
// batch's distinct rows are read together (their loads overlap rather than wait on one another's
// stores), a token naming a row seen earlier in the batch adds into that row's register, and each
// distinct row is written once. Every entry receives the same additions in the same order as the
// sequential loop, so the same bits. The loops have constant trip counts and unroll: the arrays
// stay in registers.
template <typename A, typename T>
NEXUS_HOST_DEVICE inline void add_column_in_token_order(A* dtable, const std::int32_t* tokens, const T* dout, idx N,
                                                        idx D, idx d) {
  for (idx n0 = 0; n0 < N; n0 += kBatch) {
    const int m = N - n0 < kBatch ? int(N - n0) : kBatch;  // tokens in this batch
    idx row[kBatch];
    int owner[kBatch];  // owner[j]: the first i <= j whose token names the same row as token j
    A val[kBatch];      // val[i], i an owner: its row's running sum
    for (int j = 0; j < kBatch; ++j) {
      row[j] = j < m ? idx(tokens[n0 + j]) : idx(-1);
      owner[j] = j;
      for (int i = 0; i < j; ++i)
        if (owner[j] == j && j < m && row[i] == row[j]) owner[j] = i;
    }
    for (int j = 0; j < kBatch; ++j) val[j] = j < m && owner[j] == j ? dtable[row[j] * D + d] : A(0);
    for (int j = 0; j < kBatch; ++j) {
      if (j >= m) continue;
      const A x = A(dout[(n0 + j) * D + d]);
      for (int i = 0; i <= j; ++i)
        if (owner[j] == i) val[i] = val[i] + x;
    }
    for (int j = 0; j < kBatch; ++j)
      if (j < m && owner[j] == j) dtable[row[j] * D + d] = val[j];
  }
}

}  // namespace nexus::embedding
