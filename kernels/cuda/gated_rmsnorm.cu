// Gated RMSNorm of the Mamba-2 mixer on the GPU (contract and formulas:
// kernels/cpu/gated_rmsnorm.cpp). One block per (row, group): the group statistic is a block tree
// (kernels/cuda/reduce.cuh) summed in double (fp32 for bf16); u = y silu(z) is recomputed on the
// second pass rather than stored, so bf16 never rounds it. dweight is a sum over rows: per-slab
// partial column sums in scratch, added slab by slab in order (add_column_sums): deterministic,
// no float atomics.
#include <cmath>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/scalar_math.h"

namespace nexus::cuda {

namespace {

constexpr unsigned kThreads = 256;

// Row n's channel layout: `groups` groups of Cg channels; z rows ld_z apart.
struct GroupDims {
  idx N, C, groups, Cg, ld_z;
};

template <typename T>
__device__ inline compute_t<T> gated(T y, T z) {
  using C = compute_t<T>;
  return C(y) * scalar::silu(C(z));
}

template <typename T>
__global__ void gated_rmsnorm_forward_kernel(T* __restrict__ out, accum_t<T>* __restrict__ rstd,
                                             const T* __restrict__ y, const T* __restrict__ z,
                                             const T* __restrict__ weight, GroupDims g, double eps) {
  using C = compute_t<T>;
  using S = sum_t<T>;
  for (idx ng = blockIdx.x; ng < g.N * g.groups; ng += gridDim.x) {  // ng = n * groups + group
    const idx n = ng / g.groups, off = (ng - n * g.groups) * g.Cg;
    const T* yn = y + n * g.C + off;
    const T* zn = z + n * g.ld_z + off;
    S ss = S(0);
    for (idx c = threadIdx.x; c < g.Cg; c += kThreads) {
      const C u = gated(yn[c], zn[c]);
      ss += S(u) * S(u);
    }
    ss = block_sum<kThreads>(ss);
    const C r = C(1.0 / sqrt(double(ss) / double(g.Cg) + eps));
    if (threadIdx.x == 0) rstd[ng] = r;
    for (idx c = threadIdx.x; c < g.Cg; c += kThreads)
      out[n * g.C + off + c] = T(gated(yn[c], zn[c]) * r * C(weight[off + c]));
  }
}

// Per group, with u = y silu(z), r its rstd: du = r w dout - (r^3 / Cg) (sum_group dout w u) u,
// dy = du silu(z), dz = du y silu'(z).
template <typename T>
__global__ void gated_rmsnorm_input_grad_kernel(T* __restrict__ dy, T* __restrict__ dz, idx ld_dz,
                                                const T* __restrict__ dout, const T* __restrict__ y,
                                                const T* __restrict__ z, const T* __restrict__ weight,
                                                const accum_t<T>* __restrict__ rstd, GroupDims g) {
  using C = compute_t<T>;
  using S = sum_t<T>;
  for (idx ng = blockIdx.x; ng < g.N * g.groups; ng += gridDim.x) {
    const idx n = ng / g.groups, off = (ng - n * g.groups) * g.Cg;
    const idx row = n * g.C + off, zrow = n * g.ld_z + off;
    S dot = S(0);
    for (idx c = threadIdx.x; c < g.Cg; c += kThreads)
      dot += S(dout[row + c]) * S(weight[off + c]) * S(gated(y[row + c], z[zrow + c]));
    dot = block_sum<kThreads>(dot);
    const C r = rstd[ng];
    const C k = C(double(r) * double(r) * double(r) * double(dot) / double(g.Cg));
    for (idx c = threadIdx.x; c < g.Cg; c += kThreads) {
      const C yc = C(y[row + c]), zc = C(z[zrow + c]);
      const C silu_z = scalar::silu(zc);
      const C du = r * C(weight[off + c]) * C(dout[row + c]) - k * (yc * silu_z);
      dy[row + c] = T(du * silu_z);
      dz[n * ld_dz + off + c] = T(du * yc * scalar::silu_grad(zc));
    }
  }
}

// dweight[c] term of row n: dout u r, with r the rstd of c's group.
template <typename T>
struct GatedWeightTerm {
  const T* dout;
  const T* y;
  const T* z;
  const accum_t<T>* rstd;
  GroupDims g;
  __device__ sum_t<T> operator()(idx n, idx c) const {
    using C = compute_t<T>;
    const C r = rstd[n * g.groups + c / g.Cg];
    return sum_t<T>(C(dout[n * g.C + c]) * gated(y[n * g.C + c], z[n * g.ld_z + c]) * r);
  }
};

}  // namespace

template <typename T>
void gated_rmsnorm_forward(const Exec& ex, T* out, accum_t<T>* rstd, const T* y, const T* z, idx ld_z,
                           const T* weight, idx N, idx C, idx groups, double eps) {
  if (N <= 0 || C <= 0) return;
  const GroupDims g{N, C, groups, C / groups, ld_z};
  gated_rmsnorm_forward_kernel<T><<<grid_for(N * groups, 1), kThreads, 0, stream_of(ex)>>>(out, rstd, y, z, weight,
                                                                                           g, eps);
  NEXUS_CUDA_CHECK_LAUNCH();
}

template <typename T>
void gated_rmsnorm_backward(const Exec& ex, T* dy, T* dz, idx ld_dz, accum_t<T>* dweight, const T* dout, const T* y,
                            const T* z, idx ld_z, const T* weight, const accum_t<T>* rstd, idx N, idx C, idx groups) {
  if (N <= 0 || C <= 0) return;
  const GroupDims g{N, C, groups, C / groups, ld_z};
  gated_rmsnorm_input_grad_kernel<T><<<grid_for(N * groups, 1), kThreads, 0, stream_of(ex)>>>(
      dy, dz, ld_dz, dout, y, z, weight, rstd, g);
  NEXUS_CUDA_CHECK_LAUNCH();
  add_column_sums<sum_t<T>>(ex, dweight, N, C, GatedWeightTerm<T>{dout, y, z, rstd, g});
}

#define NEXUS_INSTANTIATE(T)                                                                                     \
  template void gated_rmsnorm_forward<T>(const Exec&, T*, accum_t<T>*, const T*, const T*, idx, const T*, idx, idx, \
                                         idx, double);                                                          \
  template void gated_rmsnorm_backward<T>(const Exec&, T*, T*, idx, accum_t<T>*, const T*, const T*, const T*, idx, \
                                          const T*, const accum_t<T>*, idx, idx, idx);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE

}  // namespace nexus::cuda
