// Whole-buffer operations on the flat delta buffer between the all-reduce and AdamW, as
// orchestration over ops (kernels/ops.h: sum_of_squares, scale_inplace; the element loops live
// there).
//
// The reductions are deterministic: sum_of_squares combines fixed blocks' partial sums in block
// order, so the result depends neither on the thread count nor on timing. Replicas on different
// ranks hold the same deltas after the all-reduce, compute bit-identical norms and clip factors,
// and so keep bit-identical weights.
#pragma once

#include "kernels/types.h"

namespace nexus {

// sqrt(sum x_i^2), accumulated in double.
double global_norm(const Exec& ex, const float* x, idx n);

// Global-norm clipping as torch.nn.utils.clip_grad_norm_: when norm > max_norm, scales the
// buffer by max_norm / (norm + 1e-6). Returns the norm before clipping. max_norm <= 0 disables
// the scaling. A non-finite norm (exactly when some delta is NaN or Inf) leaves the buffer as
// it is; the caller skips the step.
double clip_grad_norm(const Exec& ex, float* deltas, idx n, double max_norm);

// The scaling step of clip_grad_norm with the norm already known, e.g. the global norm of deltas
// sharded over ranks (optim/distributed_adamw.h), of which `deltas` is this rank's part.
void clip_to_norm(const Exec& ex, float* deltas, idx n, double norm, double max_norm);

}  // namespace nexus
