// Mamba-2 mixer (Bamba's BambaMixer): in_proj -> depthwise causal conv1d + SiLU over xBC -> SSD
// scan -> gated RMSNorm -> out_proj. Every slice of in_proj's output is read in place through row
// strides, so the only copies are the K-1 halo rows handed to the next segment.
#include <algorithm>

#include "model/layers.h"

namespace nexus {

SsdShape mamba_ssd_shape(const ModelConfig& c, idx B, idx Tn) {
  return SsdShape{B, Tn, c.mamba_heads(), c.mamba_headdim, c.mamba_ngroups, c.mamba_d_state, c.mamba_chunk};
}

namespace {

// The last K-1 conv inputs of each sequence, taken from this segment's rows and, when the segment
// is shorter than K-1, from the tail of the halo it received (zeros without one): halo rows
// [0, from_halo) are halo_in rows [Tn, K-1), the rest are the segment's rows [Tn - kept, Tn).
template <typename T>
void save_conv_halo(const Exec& ex, T* halo_out /*[B,K-1,C]*/, const T* xbc_in /*[B,Tn,ld]*/, idx ld, const T* halo_in,
                    idx B, idx Tn, idx C, idx K) {
  const idx kept = std::min(Tn, K - 1), from_halo = K - 1 - kept;
  if (from_halo > 0)
    copy_strided(ex, halo_out, halo_in ? halo_in + Tn * C : halo_in,
                 Strided3{B, from_halo, C, (K - 1) * C, C, (K - 1) * C, C});
  copy_strided(ex, halo_out + from_halo * C, xbc_in + (Tn - kept) * ld,
               Strided3{B, kept, C, (K - 1) * C, C, Tn * ld, ld});
}

}  // namespace

template <typename T>
void mamba_mixer_forward(const Exec& ex, T* out, const MambaActivations<T>& a, const T* inp,
                         const MambaTensors<const T*>& w, const ModelConfig& c, idx B, idx Tn, T* ssd_workspace,
                         const MambaCarry<T>& carry) {
  const idx N = B * Tn, D = c.d_model, E = c.in_proj_dim(), C = c.conv_dim(), Di = c.d_inner();
  const idx K = c.mamba_d_conv, GN = c.mamba_ngroups * c.mamba_d_state;
  const T* xbc_in = a.zxbcdt + Di;    // [N, ld E]  conv input
  const T* dt_raw = a.zxbcdt + Di + C;  // [N, ld E]
  matmul_forward(ex, a.zxbcdt, inp, w.in_proj, N, D, E);
  conv1d_silu_forward(ex, a.xbc, xbc_in, E, carry.conv_in, w.conv_w, w.conv_b, B, Tn, C, K);
  if (carry.conv_out) save_conv_halo(ex, carry.conv_out, xbc_in, E, carry.conv_in, B, Tn, C, K);
  ssd_forward(ex, a.y, carry.state_out, nullptr, a.xbc, a.xbc + Di, a.xbc + Di + GN, dt_raw, w.dt_bias, w.A_log, w.D,
              carry.state_in, mamba_ssd_shape(c, B, Tn), SsdStrides{C, C, E}, ssd_workspace);
  gated_rmsnorm_forward(ex, a.gated, a.gated_rstd, a.y, a.zxbcdt, E, w.norm, N, Di, c.mamba_ngroups, c.norm_eps);
  matmul_forward(ex, out, a.gated, w.out_proj, N, Di, D);
}

template <typename T>
void mamba_mixer_backward(const Exec& ex, T* dinp, const MambaTensors<accum_t<T>*>& g, const MambaScratch<T>& s,
                          const T* dout, const T* inp, const MambaActivations<T>& a, const MambaTensors<const T*>& w,
                          const ModelConfig& c, idx B, idx Tn) {
  const idx N = B * Tn, D = c.d_model, E = c.in_proj_dim(), C = c.conv_dim(), Di = c.d_inner();
  const idx K = c.mamba_d_conv, GN = c.mamba_ngroups * c.mamba_d_state;
  matmul_backward(ex, s.d_gated, g.out_proj, dout, a.gated, w.out_proj, N, Di, D, false);
  // Each backward below overwrites its own columns of d_zxbcdt: z, then dt, then xBC.
  gated_rmsnorm_backward(ex, s.d_y, s.d_zxbcdt, E, g.norm, s.d_gated, a.y, a.zxbcdt, E, w.norm, a.gated_rstd, N, Di,
                         c.mamba_ngroups);
  ssd_backward(ex, s.d_xbc, s.d_xbc + Di, s.d_xbc + Di + GN, s.d_zxbcdt + Di + C, g.dt_bias, g.A_log, g.D, nullptr,
               s.d_y, nullptr, a.xbc, a.xbc + Di, a.xbc + Di + GN, a.zxbcdt + Di + C, w.dt_bias, w.A_log, w.D, nullptr,
               mamba_ssd_shape(c, B, Tn), SsdStrides{C, C, E}, s.ssd_workspace);
  conv1d_silu_backward(ex, s.d_zxbcdt + Di, E, static_cast<T*>(nullptr), g.conv_w, g.conv_b, s.d_xbc, a.zxbcdt + Di, E,
                       static_cast<const T*>(nullptr), w.conv_w, w.conv_b, B, Tn, C, K);
  matmul_backward(ex, dinp, g.in_proj, s.d_zxbcdt, inp, w.in_proj, N, D, E, false);
}

#define NEXUS_INSTANTIATE(T)                                                                                        \
  template void mamba_mixer_forward<T>(const Exec&, T*, const MambaActivations<T>&, const T*,                       \
                                       const MambaTensors<const T*>&, const ModelConfig&, idx, idx, T*,             \
                                       const MambaCarry<T>&);                                                       \
  template void mamba_mixer_backward<T>(const Exec&, T*, const MambaTensors<accum_t<T>*>&, const MambaScratch<T>&, const T*, \
                                        const T*, const MambaActivations<T>&, const MambaTensors<const T*>&,        \
                                        const ModelConfig&, idx, idx);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE

}  // namespace nexus
