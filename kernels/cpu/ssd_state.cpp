// The initial-state terms of the SSD scan as separate ops, for context parallelism: a segment's
// SSD runs from a zero state, and the output its true initial state adds is corrected afterwards
// (ssd_state_output_forward), with the adjoint giving the gradient on that state
// (ssd_state_output_backward); decayed_state_update is one step of the cross-segment scan.
// O(Tn H P N) per call, no second SSD pass.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/backend.h"
#include "kernels/scalar_math.h"

namespace nexus::cpu {

namespace {

// Calls f(t, e_t) for t = 0, 1, ... of sequence b and head h with the cumulative decay
// e_t = exp(A sum_{s<=t} dt_s), stopping once it falls below the SSD kernel's flush threshold
// (it only decreases, and the kernel treats smaller factors as zero too).
template <typename T, typename F>
void for_each_decayed_token(const T* dt_raw, idx ld_dt, const T* dt_bias, const T* A_log, idx b, idx h, idx Tn, F&& f) {
  const double A = -std::exp(double(A_log[h]));
  double acc = 0;  // sum of dt in double: the decay of a long segment is a long sum
  for (idx t = 0; t < Tn; ++t) {
    acc += double(scalar::softplus(dt_raw[(b * Tn + t) * ld_dt + h] + dt_bias[h]));
    const double e = std::exp(A * acc);
    if (e < double(scalar::kDecayFlush<T>)) return;
    f(t, T(e));
  }
}

}  // namespace

template <typename T>
void ssd_state_output_forward(const Exec&, T* y, const accum_t<T>* state_in, const T* Cm, const T* dt_raw,
                              const T* dt_bias, const T* A_log, const SsdShape& s, const SsdStrides& ld) {
  const idx hpg = s.H / s.G, PN = s.P * s.N;
#pragma omp parallel for collapse(2) schedule(static)
  for (idx b = 0; b < s.B; ++b)
    for (idx h = 0; h < s.H; ++h) {
      const accum_t<T>* S = state_in + (b * s.H + h) * PN;
      for_each_decayed_token(dt_raw, ld.ld_dt, dt_bias, A_log, b, h, s.Tn, [&](idx t, T e) {
        const T* __restrict ct = Cm + (b * s.Tn + t) * ld.ld_bc + (h / hpg) * s.N;
        T* __restrict yt = y + ((b * s.Tn + t) * s.H + h) * s.P;
        for (idx p = 0; p < s.P; ++p) {
          const accum_t<T>* __restrict sp = S + p * s.N;
          T acc = 0;
#pragma omp simd reduction(+ : acc)
          for (idx n = 0; n < s.N; ++n) acc += sp[n] * ct[n];
          yt[p] += e * acc;
        }
      });
    }
}

template <typename T>
void ssd_state_output_backward(const Exec&, accum_t<T>* dstate, const T* dy, const T* Cm, const T* dt_raw,
                               const T* dt_bias, const T* A_log, const SsdShape& s, const SsdStrides& ld) {
  const idx hpg = s.H / s.G, PN = s.P * s.N;
#pragma omp parallel for collapse(2) schedule(static)
  for (idx b = 0; b < s.B; ++b)
    for (idx h = 0; h < s.H; ++h) {
      accum_t<T>* L = dstate + (b * s.H + h) * PN;
      std::fill(L, L + PN, accum_t<T>(0));
      for_each_decayed_token(dt_raw, ld.ld_dt, dt_bias, A_log, b, h, s.Tn, [&](idx t, T e) {
        const T* __restrict ct = Cm + (b * s.Tn + t) * ld.ld_bc + (h / hpg) * s.N;
        const T* dyt = dy + ((b * s.Tn + t) * s.H + h) * s.P;
        for (idx p = 0; p < s.P; ++p) {
          const T w = e * dyt[p];
          accum_t<T>* __restrict lp = L + p * s.N;
#pragma omp simd
          for (idx n = 0; n < s.N; ++n) lp[n] += w * ct[n];
        }
      });
    }
}

template <typename T>
void decayed_state_update(const Exec&, T* state, const T* decay, const T* add, idx B, idx H, idx width, idx ld_b) {
#pragma omp parallel for collapse(2) schedule(static)
  for (idx b = 0; b < B; ++b)
    for (idx h = 0; h < H; ++h) {
      const idx row = b * ld_b + h;
      const T dec = decay[row];
      T* __restrict s = state + row * width;
      const T* __restrict a = add + row * width;
#pragma omp simd
      for (idx i = 0; i < width; ++i) s[i] = dec * s[i] + a[i];
    }
}

#define NEXUS_INSTANTIATE(T)                                                                                    \
  template void ssd_state_output_forward<T>(const Exec&, T*, const T*, const T*, const T*, const T*, const T*,  \
                                            const SsdShape&, const SsdStrides&);                                \
  template void ssd_state_output_backward<T>(const Exec&, T*, const T*, const T*, const T*, const T*, const T*, \
                                             const SsdShape&, const SsdStrides&);                               \
  template void decayed_state_update<T>(const Exec&, T*, const T*, const T*, idx, idx, idx, idx);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
#undef NEXUS_INSTANTIATE

}  // namespace nexus::cpu
