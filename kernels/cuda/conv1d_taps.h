// Index arithmetic of the depthwise causal conv1d on the GPU (kernels/cuda/conv1d.cu), plain host
// and device functions so a CPU test checks them (tests/kernels/test_conv1d_taps.cpp).
//
// Per sequence the convolution reads xin = [halo (K-1 rows) ; x (Tn rows)]: output token t, tap k
// reads xin row s = t - (K-1) + k, where a row s < 0 is halo row (K-1) + s. The GPU backward
// gathers rather than scatters: xin row s receives the gradient of each output token
// t = s + (K-1) - k (one per tap k) that lies in [0, Tn), so every thread writes only its own
// element of dx or dhalo.
#pragma once

#include "kernels/types.h"

namespace nexus::conv1d {

struct Geometry {
  idx Tn, C, K;
};

// The xin row tap k of output token t reads.
NEXUS_HOST_DEVICE inline idx tap_row(idx t, idx K, idx k) { return t - (K - 1) + k; }
// The output token whose tap k reads xin row s (an output only when it lies in [0, Tn)).
NEXUS_HOST_DEVICE inline idx reading_token(idx s, idx K, idx k) { return s + (K - 1) - k; }

// Where channel 0 of xin row s (-(K-1) <= s < Tn) of sequence b lives: in x (rows ld apart) when
// s >= 0, else in the halo [B, K-1, C].
struct RowAt {
  bool in_halo;
  idx offset;
};
NEXUS_HOST_DEVICE inline RowAt xin_row(const Geometry& g, idx ld, idx b, idx s) {
  if (s >= 0) return {false, (b * g.Tn + s) * ld};
  return {true, (b * (g.K - 1) + (g.K - 1) + s) * g.C};
}

}  // namespace nexus::conv1d
