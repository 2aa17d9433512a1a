// RMSNorm fused with the residual add before it.
//
// Precision: the row statistics (sum of h^2 in the forward, sum of dy*w*h in the backward) and the
// dweight partial sums are accumulated in double for both instantiations. Widening costs nothing
// measurable in these memory-bound loops and keeps a float row of thousands of columns from
// losing digits to a long sequential sum. Everything else is computed in T.
//
// dweight is a sum over all N rows, so it is race-free only if no two threads add into it at once:
// each thread sums its own rows into a fixed-size stack buffer (a chunk of columns at a time) and
// the threads then add their buffers into dweight one after another, in thread order, so the
// result is also the same from run to run.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/backend.h"
#include "kernels/cpu/column_reduction.h"

namespace nexus::cpu {

namespace {

// Columns of dweight a thread accumulates at a time: 32 KiB of doubles on its stack. Rows up to this
// width (every model width we train) are read once; wider rows are revisited once per chunk.
constexpr idx kChunk = 4096;

// h = x + branch, or h = x when branch is null; h may alias x, which gets its own loop so that the
// restrict-qualified pointers stay truthful and the loop vectorises.
template <typename T>
void add_into(T* __restrict h, const T* __restrict branch, idx D) {
  for (idx d = 0; d < D; ++d) h[d] += branch[d];
}
template <typename T>
void add_to(T* __restrict h, const T* __restrict x, const T* __restrict branch, idx D) {
  for (idx d = 0; d < D; ++d) h[d] = x[d] + branch[d];
}
template <typename T>
void residual_row(T* h, const T* x, const T* branch, idx D) {
  if (branch == nullptr) {
    if (h != x) std::copy_n(x, D, h);
  } else if (h == x) {
    add_into(h, branch, D);
  } else {
    add_to(h, x, branch, D);
  }
}

template <typename T>
double sum_squares(const T* __restrict v, idx D) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (idx d = 0; d < D; ++d) s += double(v[d]) * double(v[d]);
  return s;
}

// dh += r w dy - (r^3 / D) (sum_j dy_j w_j h_j) h : the gradient of y = h r w through both h and r.
template <typename T>
void row_input_grad(T* __restrict dh, const T* __restrict dy, const T* __restrict h, const T* __restrict w,
                    T r, idx D) {
  double dot = 0.0;
#pragma omp simd reduction(+ : dot)
  for (idx d = 0; d < D; ++d) dot += double(dy[d]) * double(w[d]) * double(h[d]);
  const T c = T(double(r) * double(r) * double(r) * dot / double(D));
  for (idx d = 0; d < D; ++d) dh[d] += r * w[d] * dy[d] - c * h[d];
}

}  // namespace

template <typename T>
void residual_rmsnorm_forward(const Exec&, T* h, T* y, accum_t<T>* rstd, const T* x, const T* branch, const T* weight,
                              idx N, idx D, double eps) {
#pragma omp parallel for schedule(static)
  for (idx n = 0; n < N; ++n) {
    T* hn = h + n * D;  // [D]
    residual_row(hn, x + n * D, branch ? branch + n * D : nullptr, D);
    const T r = T(1.0 / std::sqrt(sum_squares(hn, D) / double(D) + eps));
    rstd[n] = r;
    T* __restrict yn = y + n * D;  // [D]
    for (idx d = 0; d < D; ++d) yn[d] = hn[d] * r * weight[d];
  }
}

template <typename T>
void rmsnorm_backward(const Exec&, T* dh, accum_t<T>* dweight, const T* dy, const T* h, const T* weight,
                      const accum_t<T>* rstd, idx N, idx D) {
#pragma omp parallel
  {
    double part[kChunk];  // [width]: this thread's dweight sums for columns [c0, c0 + width)
    for (idx c0 = 0; c0 < D; c0 += kChunk) {
      const idx width = std::min(kChunk, D - c0);
      std::fill_n(part, width, 0.0);
      // The same static split of rows on every chunk; dh is done on the first pass, while its row
      // is being read anyway.
#pragma omp for schedule(static) nowait
      for (idx n = 0; n < N; ++n) {
        const T r = rstd[n];
        if (c0 == 0) row_input_grad(dh + n * D, dy + n * D, h + n * D, weight, r, D);
        const T* __restrict dyn = dy + n * D + c0;  // [width]
        const T* __restrict hn = h + n * D + c0;    // [width]
        for (idx j = 0; j < width; ++j) part[j] += double(dyn[j] * hn[j] * r);
      }
      cpu::add_in_thread_order(dweight + c0, part, width);
    }
  }
}

template void residual_rmsnorm_forward<float>(const Exec&, float*, float*, float*, const float*, const float*,
                                              const float*, idx, idx, double);
template void residual_rmsnorm_forward<double>(const Exec&, double*, double*, double*, const double*, const double*,
                                               const double*, idx, idx, double);
template void rmsnorm_backward<float>(const Exec&, float*, float*, const float*, const float*, const float*,
                                      const float*, idx, idx);
template void rmsnorm_backward<double>(const Exec&, double*, double*, const double*, const double*, const double*,
                                       const double*, idx, idx);

}  // namespace nexus::cpu
