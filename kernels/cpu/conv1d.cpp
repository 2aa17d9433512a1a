// Depthwise causal conv1d of width K with bias, fused with SiLU.
//
// The input seen by the convolution is xin = [halo (K-1 rows) ; x (Tn rows)], so output t reads
// xin rows t-(K-1) .. t, where a negative row s is halo row (K-1)+s of the same sequence (or zero
// without a halo). K is arbitrary (>= 1) and Tn may be smaller than K-1.
//
// Work is tiled as [kTimeTile tokens x kChanTile channels]: every inner loop runs over contiguous
// channels of one row, with tap k's weights first gathered out of the [C,K] layout into a small
// stack array, so the loops vectorise for any K and no scratch is needed.
#include <algorithm>

#include "kernels/cpu/backend.h"
#include "kernels/scalar_math.h"

namespace nexus::cpu {

namespace {

constexpr idx kChanTile = 64;  // channels per tile (four float cache lines per row)
constexpr idx kTimeTile = 16;  // tokens per tile: the tile is 8 KiB of doubles, it stays in L1

// Geometry shared by forward and backward.
struct ConvDims {
  idx Tn, C, K;
};

// Row s of sequence b of xin (or of its gradient, P non-const), offset to channel c0; null when it
// is an absent halo row (zeros in the forward, an unwanted gradient in the backward).
template <typename P>
P* xin_row(P* x, idx ld_x, P* halo, const ConvDims& g, idx b, idx s, idx c0) {
  if (s >= 0) return x + (b * g.Tn + s) * ld_x + c0;
  if (halo == nullptr) return nullptr;
  return halo + (b * (g.K - 1) + (g.K - 1) + s) * g.C + c0;
}

// Tap k's weights for channels [c0, c0 + width): wk[j] = w[c0 + j, k].
template <typename T>
void gather_tap(T* __restrict wk, const T* __restrict w, idx K, idx k, idx c0, idx width) {
  for (idx j = 0; j < width; ++j) wk[j] = w[(c0 + j) * K + k];
}

// Pre-activations of tokens [t0, t0 + tn) x channels [c0, c0 + width) of sequence b into
// pre[tn, kChanTile]; the sum runs bias + tap 0 + ... + tap K-1, the order of the reference.
template <typename T>
void preactivation_tile(T* __restrict pre, const T* x, idx ld_x, const T* halo, const T* w, const T* bias,
                        const ConvDims& g, idx b, idx t0, idx tn, idx c0, idx width) {
  for (idx i = 0; i < tn; ++i) std::copy_n(bias + c0, width, pre + i * kChanTile);
  T wk[kChanTile];  // [width]: tap k's weights
  for (idx k = 0; k < g.K; ++k) {
    gather_tap(wk, w, g.K, k, c0, width);
    for (idx i = 0; i < tn; ++i) {
      const T* __restrict src = xin_row(x, ld_x, halo, g, b, t0 + i - (g.K - 1) + k, c0);  // [width]
      if (src == nullptr) continue;
      T* __restrict p = pre + i * kChanTile;
      for (idx j = 0; j < width; ++j) p[j] += wk[j] * src[j];
    }
  }
}

}  // namespace

template <typename T>
void conv1d_silu_forward(const Exec&, T* out, const T* x, idx ld_x, const T* halo, const T* w, const T* bias, idx B,
                         idx Tn, idx C, idx K) {
  const ConvDims g{Tn, C, K};
  const idx time_tiles = (Tn + kTimeTile - 1) / kTimeTile;
  const idx chan_tiles = (C + kChanTile - 1) / kChanTile;
#pragma omp parallel for collapse(3) schedule(static)
  for (idx b = 0; b < B; ++b) {
    for (idx tt = 0; tt < time_tiles; ++tt) {
      for (idx ct = 0; ct < chan_tiles; ++ct) {
        const idx t0 = tt * kTimeTile, tn = std::min(kTimeTile, Tn - t0);
        const idx c0 = ct * kChanTile, width = std::min(kChanTile, C - c0);
        T pre[kTimeTile * kChanTile];  // [tn, kChanTile]
        preactivation_tile(pre, x, ld_x, halo, w, bias, g, b, t0, tn, c0, width);
        for (idx i = 0; i < tn; ++i) {
          const T* __restrict p = pre + i * kChanTile;
          T* __restrict o = out + (b * Tn + t0 + i) * C + c0;  // [width]
          for (idx j = 0; j < width; ++j) o[j] = scalar::silu(p[j]);
        }
      }
    }
  }
}

template <typename T>
void conv1d_silu_backward(const Exec&, T* dx, idx ld_dx, T* dhalo, accum_t<T>* dw, accum_t<T>* dbias, const T* dout,
                          const T* x, idx ld_x, const T* halo, const T* w, const T* bias, idx B, idx Tn, idx C, idx K) {
  const ConvDims g{Tn, C, K};
  const idx chan_tiles = (C + kChanTile - 1) / kChanTile;
  // Each thread owns whole channel tiles across every sequence and token, so it is the only writer
  // of its dw and dbias entries (no reduction) and can scatter each token's gradient into the K
  // input rows it came from, across time-tile boundaries.
#pragma omp parallel for schedule(static)
  for (idx ct = 0; ct < chan_tiles; ++ct) {
    const idx c0 = ct * kChanTile, width = std::min(kChanTile, C - c0);
    for (idx b = 0; b < B; ++b) {
      // dx and dhalo are overwritten: clear, then scatter-add.
      for (idx s = -(K - 1); s < Tn; ++s)
        if (T* d = xin_row(dx, ld_dx, dhalo, g, b, s, c0)) std::fill_n(d, width, T(0));
      for (idx t0 = 0; t0 < Tn; t0 += kTimeTile) {
        const idx tn = std::min(kTimeTile, Tn - t0);
        T gpre[kTimeTile * kChanTile];  // [tn, kChanTile]: pre-activation, then its gradient
        preactivation_tile(gpre, x, ld_x, halo, w, bias, g, b, t0, tn, c0, width);
        T sum[kChanTile];  // [width]: this tile's contribution to dbias, then to dw[:, k]
        std::fill_n(sum, width, T(0));
        for (idx i = 0; i < tn; ++i) {
          T* __restrict gp = gpre + i * kChanTile;
          const T* __restrict go = dout + (b * Tn + t0 + i) * C + c0;  // [width]
          for (idx j = 0; j < width; ++j) {
            gp[j] = go[j] * scalar::silu_grad(gp[j]);
            sum[j] += gp[j];
          }
        }
        for (idx j = 0; j < width; ++j) dbias[c0 + j] += sum[j];
        T wk[kChanTile];  // [width]: tap k's weights
        for (idx k = 0; k < K; ++k) {
          gather_tap(wk, w, K, k, c0, width);
          std::fill_n(sum, width, T(0));
          for (idx i = 0; i < tn; ++i) {
            const idx s = t0 + i - (K - 1) + k;  // the xin row tap k of token t0 + i reads
            const T* __restrict gp = gpre + i * kChanTile;
            if (const T* src = xin_row(x, ld_x, halo, g, b, s, c0)) {
              const T* __restrict in = src;
              for (idx j = 0; j < width; ++j) sum[j] += gp[j] * in[j];
            }
            if (T* dst = xin_row(dx, ld_dx, dhalo, g, b, s, c0)) {
              T* __restrict d = dst;
              for (idx j = 0; j < width; ++j) d[j] += gp[j] * wk[j];
            }
          }
          for (idx j = 0; j < width; ++j) dw[(c0 + j) * K + k] += sum[j];
        }
      }
    }
  }
}

template void conv1d_silu_forward<float>(const Exec&, float*, const float*, idx, const float*, const float*,
                                         const float*, idx, idx, idx, idx);
template void conv1d_silu_forward<double>(const Exec&, double*, const double*, idx, const double*, const double*,
                                          const double*, idx, idx, idx, idx);
template void conv1d_silu_backward<float>(const Exec&, float*, idx, float*, float*, float*, const float*, const float*,
                                          idx, const float*, const float*, const float*, idx, idx, idx, idx);
template void conv1d_silu_backward<double>(const Exec&, double*, idx, double*, double*, double*, const double*,
                                           const double*, idx, const double*, const double*, const double*, idx, idx,
                                           idx, idx);

}  // namespace nexus::cpu
