// The small parameter structs the ops take (shapes, strides, coefficients), defined once for the
// public catalogue and every backend (kernels/ops.h).
#pragma once

#include "kernels/neighborhood.h"
#include "kernels/types.h"

namespace nexus {

// Grouped-query attention, flash style (attention_forward). Query i of a sequence sits at global
// position q_pos0 + i, key j at k_pos0 + j. With `causal`, key j is visible to query i iff
// neighborhood.visible(q_pos0 + i, k_pos0 + j) (the default, full, is k_pos0 + j <= q_pos0 + i);
// tiles entirely outside are skipped, and within the others the mask is computed from the
// positions. Without `causal` every key is visible (the neighborhood is unused).
struct AttentionShape {
  idx B;           // sequences
  idx Tq, Tk;      // query rows, key rows per sequence
  idx n_heads;     // query heads
  idx n_kv_heads;  // key/value heads (divides n_heads)
  idx head_dim;
  idx q_pos0 = 0, k_pos0 = 0;  // global position of the first query / key
  bool causal = true;
  Neighborhood neighborhood = {};  // which earlier positions a query reads (with causal)
};

// Mamba-2 SSD scan (ssd_forward).
struct SsdShape {
  idx B, Tn;  // sequences, tokens per sequence
  idx H, P;   // heads, head dim   (d_inner = H*P)
  idx G, N;   // groups, state size
  idx Q;      // chunk size
};
// Row strides: x rows are ld_x apart (x[b,t,h,p] at (b*Tn+t)*ld_x + h*P + p); B and C share
// ld_bc (B[b,t,g,n] at (b*Tn+t)*ld_bc + g*N + n); dt_raw rows are ld_dt apart.
struct SsdStrides {
  idx ld_x, ld_bc, ld_dt;
};

// Paged KV cache of attention_decode_paged.
struct PagedKvShape {
  idx B;           // sequences
  idx n_heads;     // query heads
  idx n_kv_heads;  // divides n_heads
  idx head_dim;
  idx block_tokens;        // tokens per block
  idx max_blocks_per_seq;  // row length of block_table
  Neighborhood neighborhood = {};
  idx pinned_blocks = 0;   // the first blocks of a sequence, never reused (< max_blocks_per_seq)
};
// The table slot of a sequence's logical block `block` (its tokens [block, block + 1) * block_tokens).
NEXUS_HOST_DEVICE inline idx paged_slot(const PagedKvShape& s, idx block) {
  return block < s.pinned_blocks ? block
                                 : s.pinned_blocks + (block - s.pinned_blocks) % (s.max_blocks_per_seq - s.pinned_blocks);
}

// A three-level strided view for copy_strided / add_strided: element (i0, i1, i2), i2 innermost
// and contiguous, sits at i0*ld0 + i1*ld1 + i2 on each side.
struct Strided3 {
  idx n0, n1, n2;
  idx dst_ld0, dst_ld1;
  idx src_ld0, src_ld1;
};

// This step's scalars of adamw_update, computed once on the host in double and rounded to fp32
// (torch.optim.AdamW computes them the same way).
struct AdamWCoefficients {
  float decay;       // 1 - lr * weight_decay, or exactly 1 for tensors without weight decay
  float step_size;   // lr / (1 - beta1^t)
  float bias2_sqrt;  // sqrt(1 - beta2^t)
  float beta1, beta2;
  float one_minus_beta1, one_minus_beta2;
  float eps;
};

}  // namespace nexus
