// Whole-buffer operations on the flat delta buffer between the all-reduce and AdamW.
//
// The reductions are deterministic: the buffer is cut into fixed blocks whose partial sums are
// combined in block order, so the result depends neither on the thread count nor on timing.
// Replicas on different ranks hold the same deltas after the all-reduce, compute bit-identical
// norms and clip factors, and so keep bit-identical weights.
#pragma once

#include "kernels/ops.h"

namespace nexus {

// sqrt(sum x_i^2), accumulated in double.
double global_norm(const float* x, idx n);

// Global-norm clipping as torch.nn.utils.clip_grad_norm_: when norm > max_norm, scales the
// buffer by max_norm / (norm + 1e-6). Returns the norm before clipping. max_norm <= 0 disables
// the scaling. A non-finite norm (exactly when some delta is NaN or Inf) leaves the buffer as
// it is; the caller skips the step.
double clip_grad_norm(float* deltas, idx n, double max_norm);

// x *= factor.
void scale_deltas(float* x, idx n, float factor);

// False when any element is NaN or +-Inf.
bool all_finite(const float* x, idx n);

}  // namespace nexus
