#include "model/layers.h"

namespace nexus {

template <typename T>
void mlp_forward(const Exec& ex, T* out, const MlpActivations<T>& a, const T* inp, const MlpTensors<const T*>& w, idx N,
                 idx D, idx F) {
  matmul_forward(ex, a.gate_up, inp, w.gate_up, N, D, 2 * F);
  swiglu_forward(ex, a.act, a.gate_up, N, F);
  matmul_forward(ex, out, a.act, w.down, N, F, D);
}

template <typename T>
void mlp_backward(const Exec& ex, T* dinp, const MlpTensors<accum_t<T>*>& g, const MlpScratch<T>& s, const T* dout,
                  const T* inp, const MlpActivations<T>& a, const MlpTensors<const T*>& w, idx N, idx D, idx F) {
  matmul_backward(ex, s.d_act, g.down, dout, a.act, w.down, N, F, D, false);
  swiglu_backward(ex, s.d_gate_up, s.d_act, a.gate_up, N, F);
  matmul_backward(ex, dinp, g.gate_up, s.d_gate_up, inp, w.gate_up, N, D, 2 * F, false);
}

#define NEXUS_INSTANTIATE(T)                                                                                          \
  template void mlp_forward<T>(const Exec&, T*, const MlpActivations<T>&, const T*, const MlpTensors<const T*>&, idx, \
                               idx, idx);                                                                             \
  template void mlp_backward<T>(const Exec&, T*, const MlpTensors<accum_t<T>*>&, const MlpScratch<T>&, const T*, const T*,     \
                                const MlpActivations<T>&, const MlpTensors<const T*>&, idx, idx, idx);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE

}  // namespace nexus
