// Depthwise causal conv1d + SiLU for one new token per sequence (recurrent inference).
//
// The rolling state is the halo of conv1d_silu_forward (the last K-1 inputs, oldest first), so
// the output equals conv1d_silu_forward's last row and a prefill's MambaCarry::conv_out seeds it.
// Work is cut into (sequence, channel tile) items; each tile's taps are gathered out of the [C,K]
// weight layout into a stack array so the inner loops run over contiguous channels.
#include <algorithm>

#include "kernels/cpu/backend.h"
#include "kernels/scalar_math.h"

namespace nexus::cpu {

namespace {

constexpr idx kChanTile = 64;  // channels per work item
// Below this many multiply-adds a step runs on one thread: a decode step of a small model is a few
// microseconds of work, less than waking the team.
constexpr idx kParallelWork = idx(1) << 16;

}  // namespace

template <typename T>
void conv1d_silu_step(const Exec&, T* out, T* state, const T* x, idx ld_x, const T* w, const T* bias, idx B, idx C,
                      idx K) {
  const idx chan_tiles = (C + kChanTile - 1) / kChanTile;
#pragma omp parallel for collapse(2) schedule(static) if (B * C * K >= kParallelWork)
  for (idx b = 0; b < B; ++b) {
    for (idx ct = 0; ct < chan_tiles; ++ct) {
      const idx c0 = ct * kChanTile, width = std::min(kChanTile, C - c0);
      T* st = state + b * (K - 1) * C + c0;        // [K-1 rows, C apart]: this tile's state columns
      const T* __restrict xr = x + b * ld_x + c0;  // [width]: the new input row
      T pre[kChanTile];  // [width]: pre-activation, summed bias + tap 0 + ... + tap K-1 as the full op
      T wk[kChanTile];   // [width]: tap k's weights
      std::copy_n(bias + c0, width, pre);
      for (idx k = 0; k < K; ++k) {
        for (idx j = 0; j < width; ++j) wk[j] = w[(c0 + j) * K + k];
        const T* __restrict src = k < K - 1 ? st + k * C : xr;
        for (idx j = 0; j < width; ++j) pre[j] += wk[j] * src[j];
      }
      T* __restrict o = out + b * C + c0;
      for (idx j = 0; j < width; ++j) o[j] = scalar::silu(pre[j]);
      // Shift: row k takes row k+1, the last row takes the new input.
      for (idx k = 0; k + 1 < K - 1; ++k) std::copy_n(st + (k + 1) * C, width, st + k * C);
      if (K > 1) std::copy_n(xr, width, st + (K - 2) * C);
    }
  }
}

template void conv1d_silu_step<float>(const Exec&, float*, float*, const float*, idx, const float*, const float*, idx,
                                      idx, idx);
template void conv1d_silu_step<double>(const Exec&, double*, double*, const double*, idx, const double*, const double*,
                                       idx, idx, idx);

}  // namespace nexus::cpu
