// SwiGLU on the fused gate|up projection: out = silu(gate) * up, row by row.
#include "kernels/cpu/backend.h"
#include "kernels/scalar_math.h"

namespace nexus::cpu {

template <typename T>
void swiglu_forward(const Exec&, T* out, const T* gate_up, idx N, idx F) {
#pragma omp parallel for schedule(static)
  for (idx n = 0; n < N; ++n) {
    const T* __restrict gate = gate_up + n * 2 * F;  // [F]
    const T* __restrict up = gate + F;               // [F]
    T* __restrict o = out + n * F;                   // [F]
    for (idx f = 0; f < F; ++f) o[f] = scalar::silu(gate[f]) * up[f];
  }
}

template <typename T>
void swiglu_backward(const Exec&, T* dgate_up, const T* dout, const T* gate_up, idx N, idx F) {
#pragma omp parallel for schedule(static)
  for (idx n = 0; n < N; ++n) {
    const T* __restrict gate = gate_up + n * 2 * F;  // [F]
    const T* __restrict up = gate + F;               // [F]
    const T* __restrict go = dout + n * F;           // [F]
    T* __restrict dgate = dgate_up + n * 2 * F;      // [F]
    T* __restrict dup = dgate + F;                   // [F]
    for (idx f = 0; f < F; ++f) {
      dgate[f] = go[f] * up[f] * scalar::silu_grad(gate[f]);
      dup[f] = go[f] * scalar::silu(gate[f]);
    }
  }
}

template void swiglu_forward<float>(const Exec&, float*, const float*, idx, idx);
template void swiglu_forward<double>(const Exec&, double*, const double*, idx, idx);
template void swiglu_backward<float>(const Exec&, float*, const float*, const float*, idx, idx);
template void swiglu_backward<double>(const Exec&, double*, const double*, const double*, idx, idx);

}  // namespace nexus::cpu
