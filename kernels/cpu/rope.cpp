// Rotary position embedding, rotate-half style on the first rotary_dim dims of each head, as Hugging
// Face's apply_rotary_pos_emb with a partial rotary factor: pair (x[i], x[i + r/2]) of every head
// turns by the angle pos * theta^(-2i/r); dims >= rotary_dim pass through. A rotation's transpose is
// its inverse, so the backward is the same pass with the angle negated.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/backend.h"

namespace nexus::cpu {

namespace {

constexpr idx kFreqChunk = 64;  // rotary pairs handled per pass: bounds the stack arrays below

// x [B,Tn,H,hd] rotated in place by sign * (pos0 + t) * inv_freq[i].
template <typename T>
void rope_rotate(T* x, idx B, idx Tn, idx H, idx head_dim, idx rotary_dim, idx pos0, double theta,
                 double sign) {
  const idx half = rotary_dim / 2;
  const idx row = H * head_dim;  // elements per token
#pragma omp parallel
  for (idx f0 = 0; f0 < half; f0 += kFreqChunk) {
    const idx nf = std::min(kFreqChunk, half - f0);
    double inv_freq[kFreqChunk];  // [nf], computed once per thread rather than once per token
    for (idx i = 0; i < nf; ++i) inv_freq[i] = std::pow(theta, -double(2 * (f0 + i)) / double(rotary_dim));
#pragma omp for schedule(static)
    for (idx t = 0; t < Tn; ++t) {
      // Angles in double: pos * inv_freq reaches thousands of radians, where float would lose
      // ~1e-4 of the angle; cos/sin are shared by every sequence and head at this position.
      T c[kFreqChunk], s[kFreqChunk];  // [nf]
      const double pos = sign * double(pos0 + t);
      for (idx i = 0; i < nf; ++i) {
        const double a = pos * inv_freq[i];
        c[i] = T(std::cos(a));
        s[i] = T(std::sin(a));
      }
      for (idx b = 0; b < B; ++b)
        for (idx h = 0; h < H; ++h) {
          T* __restrict lo = x + (b * Tn + t) * row + h * head_dim + f0;  // x[i], i < r/2
          T* __restrict hi = lo + half;                                    // x[i + r/2]
          for (idx i = 0; i < nf; ++i) {
            const T x1 = lo[i], x2 = hi[i];
            lo[i] = x1 * c[i] - x2 * s[i];
            hi[i] = x2 * c[i] + x1 * s[i];
          }
        }
    }
  }
}

}  // namespace

template <typename T>
void rope_forward(const Exec&, T* x, idx B, idx Tn, idx H, idx head_dim, idx rotary_dim, idx pos0, double theta) {
  rope_rotate(x, B, Tn, H, head_dim, rotary_dim, pos0, theta, 1.0);
}

template <typename T>
void rope_backward(const Exec&, T* dx, idx B, idx Tn, idx H, idx head_dim, idx rotary_dim, idx pos0, double theta) {
  rope_rotate(dx, B, Tn, H, head_dim, rotary_dim, pos0, theta, -1.0);
}

template void rope_forward<float>(const Exec&, float*, idx, idx, idx, idx, idx, idx, double);
template void rope_forward<double>(const Exec&, double*, idx, idx, idx, idx, idx, idx, double);
template void rope_backward<float>(const Exec&, float*, idx, idx, idx, idx, idx, idx, double);
template void rope_backward<double>(const Exec&, double*, idx, idx, idx, idx, idx, idx, double);

}  // namespace nexus::cpu
