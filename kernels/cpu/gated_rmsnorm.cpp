// Gated RMSNorm of the Mamba-2 mixer: u = y * silu(z), then each of a row's `groups` contiguous
// groups of Cg = C / groups channels is normalised on its own (Bamba's BambaRMSNormGated),
// out = u * rsqrt(mean_group(u^2) + eps) * weight.
//
// Precision and threading follow rmsnorm.cpp: the group statistics and the dweight partial sums
// are accumulated in double; dweight is summed per thread into a fixed-size stack buffer (a chunk
// of columns at a time) and the buffers are added into dweight in thread order, so the result is
// race-free and the same from run to run.
#include <algorithm>
#include <cassert>
#include <cmath>

#include "kernels/cpu/backend.h"
#include "kernels/cpu/column_reduction.h"
#include "kernels/scalar_math.h"

namespace nexus::cpu {

namespace {

// Columns of dweight a thread accumulates at a time: 32 KiB of doubles on its stack.
constexpr idx kChunk = 4096;

// One row's dy and dz, plus its dweight terms for columns [0, width) into part. Per group of Cg
// channels, with u = y silu(z), r = that group's rstd, out = u r w:
//   du = r w dout - (r^3 / Cg) (sum_{j in group} dout_j w_j u_j) u,   dy = du silu(z),
//   dz = du y silu'(z),   dweight += dout u r.
// dy first holds silu(z), so each element costs two exponentials instead of three.
template <typename T>
void row_grads(T* __restrict dy, T* __restrict dz, double* __restrict part, idx width, const T* __restrict dout,
               const T* __restrict y, const T* __restrict z, const T* __restrict w,
               const T* __restrict r /*[groups]*/, idx groups, idx Cg) {
  for (idx g = 0; g < groups; ++g) {
    const idx lo = g * Cg, hi = lo + Cg;  // this group's columns
    const T rg = r[g];
    double dot = 0.0;
    for (idx c = lo; c < hi; ++c) {
      dy[c] = scalar::silu(z[c]);
      const T u = y[c] * dy[c];
      dot += double(dout[c]) * double(w[c]) * double(u);
      if (c < width) part[c] += double(dout[c] * u * rg);
    }
    const T k = T(double(rg) * double(rg) * double(rg) * dot / double(Cg));
    for (idx c = lo; c < hi; ++c) {
      const T silu_z = dy[c];
      const T du = rg * w[c] * dout[c] - k * (y[c] * silu_z);
      dy[c] = du * silu_z;
      dz[c] = du * y[c] * scalar::silu_grad(z[c]);
    }
  }
}

}  // namespace

template <typename T>
void gated_rmsnorm_forward(const Exec&, T* out, accum_t<T>* rstd, const T* y, const T* z, idx ld_z, const T* weight,
                           idx N, idx C, idx groups, double eps) {
  assert(groups > 0 && C % groups == 0);
  const idx Cg = C / groups;
#pragma omp parallel for schedule(static)
  for (idx n = 0; n < N; ++n) {
    for (idx g = 0; g < groups; ++g) {
      const idx off = g * Cg;
      T* __restrict o = out + n * C + off;          // [Cg]: u first, then the output
      const T* __restrict yn = y + n * C + off;     // [Cg]
      const T* __restrict zn = z + n * ld_z + off;  // [Cg] of a wider row
      const T* __restrict wg = weight + off;        // [Cg]
      double ss = 0.0;
      for (idx c = 0; c < Cg; ++c) {
        o[c] = yn[c] * scalar::silu(zn[c]);
        ss += double(o[c]) * double(o[c]);
      }
      const T r = T(1.0 / std::sqrt(ss / double(Cg) + eps));
      rstd[n * groups + g] = r;
      for (idx c = 0; c < Cg; ++c) o[c] = o[c] * r * wg[c];
    }
  }
}

template <typename T>
void gated_rmsnorm_backward(const Exec&, T* dy, T* dz, idx ld_dz, accum_t<T>* dweight, const T* dout, const T* y,
                            const T* z, idx ld_z, const T* weight, const accum_t<T>* rstd, idx N, idx C, idx groups) {
  assert(groups > 0 && C % groups == 0);
  const idx Cg = C / groups;
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
        const T* rn = rstd + n * groups;  // [groups]
        if (c0 == 0) {
          row_grads(dy + n * C, dz + n * ld_dz, part, width, dout + n * C, y + n * C, z + n * ld_z, weight, rn,
                    groups, Cg);
          continue;
        }
        // The groups this chunk overlaps, each a contiguous run of columns with one rstd.
        for (idx g = c0 / Cg; g * Cg < c0 + width; ++g) {
          const idx lo = std::max(g * Cg, c0), hi = std::min(g * Cg + Cg, c0 + width);
          const T r = rn[g];
          const T* __restrict go = dout + n * C + lo;  // [hi - lo]
          const T* __restrict yn = y + n * C + lo;     // [hi - lo]
          const T* __restrict zn = z + n * ld_z + lo;  // [hi - lo]
          double* __restrict pc = part + (lo - c0);    // [hi - lo]
          for (idx j = 0; j < hi - lo; ++j) pc[j] += double(go[j] * (yn[j] * scalar::silu(zn[j])) * r);
        }
      }
      cpu::add_in_thread_order(dweight + c0, part, width);
    }
  }
}

template void gated_rmsnorm_forward<float>(const Exec&, float*, float*, const float*, const float*, idx, const float*,
                                           idx, idx, idx, double);
template void gated_rmsnorm_forward<double>(const Exec&, double*, double*, const double*, const double*, idx,
                                            const double*, idx, idx, idx, double);
template void gated_rmsnorm_backward<float>(const Exec&, float*, float*, idx, float*, const float*, const float*,
                                            const float*, idx, const float*, const float*, idx, idx, idx);
template void gated_rmsnorm_backward<double>(const Exec&, double*, double*, idx, double*, const double*, const double*,
                                             const double*, idx, const double*, const double*, idx, idx, idx);

}  // namespace nexus::cpu
