// Mamba-2 SSM recurrence for one new token per sequence (recurrent inference):
//   S = exp(dt A) S + dt x B^T;   y = S C + D x
// O(P*N) per head, whatever the length of the sequence so far. Work items are (sequence, head)
// pairs; each updates its [P,N] state row by row and reads each row out while it is in L1.
#include <cmath>

#include "kernels/cpu/backend.h"
#include "kernels/scalar_math.h"

namespace nexus::cpu {

namespace {

// Below this many multiply-adds a step runs on one thread: a decode step of a small model is a few
// microseconds of work, less than waking the team.
constexpr idx kParallelWork = idx(1) << 16;

}  // namespace

template <typename T>
void ssd_step(const Exec&, T* y, accum_t<T>* state, const T* x, const T* Bm, const T* Cm, const T* dt_raw,
              const T* dt_bias, const T* A_log, const T* D, const SsdShape& s, const SsdStrides& ld) {
  const idx heads_per_group = s.H / s.G;
#pragma omp parallel for collapse(2) schedule(static) if (s.B * s.H * s.P * s.N >= kParallelWork)
  for (idx b = 0; b < s.B; ++b) {
    for (idx h = 0; h < s.H; ++h) {
      const idx g = h / heads_per_group;
      const T dt = scalar::softplus(dt_raw[b * ld.ld_dt + h] + dt_bias[h]);
      const T decay = std::exp(-dt * std::exp(A_log[h]));    // exp(dt A), A = -exp(A_log)
      const T* __restrict xr = x + b * ld.ld_x + h * s.P;    // [P]
      const T* __restrict Br = Bm + b * ld.ld_bc + g * s.N;  // [N]
      const T* __restrict Cr = Cm + b * ld.ld_bc + g * s.N;  // [N]
      T* __restrict yr = y + (b * s.H + h) * s.P;            // [P]
      T* __restrict S = state + (b * s.H + h) * s.P * s.N;   // [P,N]
      for (idx p = 0; p < s.P; ++p) {
        const T u = dt * xr[p];
        T* __restrict Sp = S + p * s.N;  // [N]
        for (idx n = 0; n < s.N; ++n) Sp[n] = decay * Sp[n] + u * Br[n];
        // A separate loop: without -ffast-math the ordered reduction would keep the update scalar.
        T acc = T(0);
        for (idx n = 0; n < s.N; ++n) acc += Sp[n] * Cr[n];
        yr[p] = acc + D[h] * xr[p];
      }
    }
  }
}

template void ssd_step<float>(const Exec&, float*, float*, const float*, const float*, const float*, const float*,
                              const float*, const float*, const float*, const SsdShape&, const SsdStrides&);
template void ssd_step<double>(const Exec&, double*, double*, const double*, const double*, const double*,
                               const double*, const double*, const double*, const double*, const SsdShape&,
                               const SsdStrides&);

}  // namespace nexus::cpu
