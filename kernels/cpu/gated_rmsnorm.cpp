// Gated RMSNorm of the Mamba-2 mixer: u = y * silu(z), out = u * rsqrt(mean(u^2) + eps) * weight,
// normalising over all C channels (one group).
//
// Precision and threading follow rmsnorm.cpp: the row statistics and the dweight partial sums are
// accumulated in double; dweight is summed per thread into a fixed-size stack buffer (a chunk of
// columns at a time) and the buffers are added into dweight in thread order, so the result is
// race-free and the same from run to run.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/ops.h"
#include "kernels/cpu/scalar_math.h"

namespace nexus {

namespace {

// Columns of dweight a thread accumulates at a time: 32 KiB of doubles on its stack.
constexpr idx kChunk = 4096;

// Adds every thread's `part` into dst, one thread after another in thread order. Must be reached
// by all threads of the enclosing parallel region; ends with a barrier.
template <typename T>
void add_parts_in_order(T* __restrict dst, const double* __restrict part, idx width) {
  const int threads = omp_get_num_threads();
#pragma omp for ordered schedule(static, 1)
  for (int t = 0; t < threads; ++t) {  // schedule(static, 1): iteration t runs on thread t
#pragma omp ordered
    for (idx j = 0; j < width; ++j) dst[j] = T(double(dst[j]) + part[j]);
  }
}

// One row's dy and dz, plus its dweight terms for columns [0, width) into part. With u = y silu(z),
// r = rsqrt(mean(u^2) + eps), out = u r w:
//   du = r w dout - (r^3 / C) (sum_j dout_j w_j u_j) u,   dy = du silu(z),   dz = du y silu'(z),
//   dweight += dout u r.
// dy first holds silu(z), so each element costs two exponentials instead of three.
template <typename T>
void row_grads(T* __restrict dy, T* __restrict dz, double* __restrict part, idx width, const T* __restrict dout,
               const T* __restrict y, const T* __restrict z, const T* __restrict w, T r, idx C) {
  double dot = 0.0;
  for (idx c = 0; c < C; ++c) {
    dy[c] = cpu::silu(z[c]);
    const T u = y[c] * dy[c];
    dot += double(dout[c]) * double(w[c]) * double(u);
    if (c < width) part[c] += double(dout[c] * u * r);
  }
  const T k = T(double(r) * double(r) * double(r) * dot / double(C));
  for (idx c = 0; c < C; ++c) {
    const T silu_z = dy[c];
    const T du = r * w[c] * dout[c] - k * (y[c] * silu_z);
    dy[c] = du * silu_z;
    dz[c] = du * y[c] * cpu::silu_grad(z[c]);
  }
}

}  // namespace

template <typename T>
void gated_rmsnorm_forward(T* out, T* rstd, const T* y, const T* z, idx ld_z, const T* weight, idx N, idx C,
                           double eps) {
#pragma omp parallel for schedule(static)
  for (idx n = 0; n < N; ++n) {
    T* __restrict o = out + n * C;            // [C]: u first, then the output
    const T* __restrict yn = y + n * C;       // [C]
    const T* __restrict zn = z + n * ld_z;    // [C] of a wider row
    double ss = 0.0;
    for (idx c = 0; c < C; ++c) {
      o[c] = yn[c] * cpu::silu(zn[c]);
      ss += double(o[c]) * double(o[c]);
    }
    const T r = T(1.0 / std::sqrt(ss / double(C) + eps));
    rstd[n] = r;
    for (idx c = 0; c < C; ++c) o[c] = o[c] * r * weight[c];
  }
}

template <typename T>
void gated_rmsnorm_backward(T* dy, T* dz, idx ld_dz, T* dweight, const T* dout, const T* y, const T* z, idx ld_z,
                            const T* weight, const T* rstd, idx N, idx C) {
#pragma omp parallel
  {
    double part[kChunk];  // [width]: this thread's dweight sums for columns [c0, c0 + width)
    for (idx c0 = 0; c0 < C; c0 += kChunk) {
      const idx width = std::min(kChunk, C - c0);
      std::fill_n(part, width, 0.0);
      // The same static split of rows on every chunk; the first pass does dy, dz and the first
      // chunk of dweight in one sweep, later passes (only when C > kChunk) just their chunk.
#pragma omp for schedule(static) nowait
      for (idx n = 0; n < N; ++n) {
        const T r = rstd[n];
        if (c0 == 0) {
          row_grads(dy + n * C, dz + n * ld_dz, part, width, dout + n * C, y + n * C, z + n * ld_z, weight, r, C);
          continue;
        }
        const T* __restrict go = dout + n * C + c0;  // [width]
        const T* __restrict yn = y + n * C + c0;     // [width]
        const T* __restrict zn = z + n * ld_z + c0;  // [width]
        for (idx j = 0; j < width; ++j) part[j] += double(go[j] * (yn[j] * cpu::silu(zn[j])) * r);
      }
      add_parts_in_order(dweight + c0, part, width);
    }
  }
}

template void gated_rmsnorm_forward<float>(float*, float*, const float*, const float*, idx, const float*, idx, idx,
                                           double);
template void gated_rmsnorm_forward<double>(double*, double*, const double*, const double*, idx, const double*,
                                            idx, idx, double);
template void gated_rmsnorm_backward<float>(float*, float*, idx, float*, const float*, const float*, const float*,
                                            idx, const float*, const float*, idx, idx);
template void gated_rmsnorm_backward<double>(double*, double*, idx, double*, const double*, const double*,
                                             const double*, idx, const double*, const double*, idx, idx);

}  // namespace nexus
