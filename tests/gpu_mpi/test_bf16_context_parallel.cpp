// bf16 context parallelism on the GPU (labels gpu and mpi): ring attention forward + backward and
// the Mamba-2 cp mixer forward + backward in bf16, cp = the world size (2 or 4), over the staged
// data plane (several ranks may share one GPU; NCCL refuses that), against the fp32 CPU
// single-rank result on the whole sequence given the same bf16-rounded inputs and weights. Without
// a GPU on every rank the run exits 77 (ctest: skipped).
//
// Tolerances. Every value stored in bf16 is rounded to 8 significant bits: relative error
// <= 2^-9 (about 2e-3), random in sign from one value to the next. Errors are measured as
// ||got - ref|| / ||ref|| over a whole tensor (the cosine-and-norm view of
// tests/cuda/test_cuda_model_bf16.cpp: a max-abs comparison against the largest entry hides small
// entries' errors or fails on noise). The fp32 reference's own error (~1e-6) is negligible.
//  - Ring forward out: per query row at most 2 cp KV blocks, each giving a partial output stored
//    in bf16 and a merge that stores the merged output in bf16 again, plus the bf16 softmax
//    weights of the tensor-core forward (head_dim 64): at most 4 cp + 1 roundings, each relative
//    to a convex combination of V rows (the magnitude of out itself). Their linear sum
//    (4 cp + 1) 2^-9 bounds the error (0.018 at cp 2, 0.033 at cp 4); the random-walk estimate is
//    about sqrt of that count times 2^-9, 2-3x below.
//  - Ring lse: fp32 throughout (scores of bf16 inputs are exact products summed in fp32, merges in
//    fp32): 1e-4 relative, ~100x fp32 rounding of a log-sum-exp over <= 200 keys, while a lost
//    block or a wrong merge moves it by 1e-2 or more.
//  - Ring gradients: the reference backward is given the ring's own (gathered) out and lse, so
//    only the backward's own roundings count; its kernels sum in fp32 and round each call's sum
//    into the bf16 gradient once. dq accumulates in bf16 over at most 2 cp block calls. Partial
//    sums can exceed the final value where contributions cancel, so the bound is doubled:
//    (2 cp + 2) 2^-8 (0.023 at cp 2, 0.039 at cp 4).
//    dk, dv are a sum of parts: this rank's own blocks' and each reading rank's contribution
//    (attention_backward into a zeroed bf16 buffer before it is sent). Each part is rounded at
//    most twice (at most two calls write one key row: the own diagonal and full blocks, or a
//    reader's two query chunks), relative to the part itself; the arrived parts are summed in
//    fp32 (2^-24 each: negligible) and the sum is rounded once more as it is added to dk. So no
//    rounding count grows with cp: 2 + 1 roundings, summed linearly and doubled for parts that
//    cancel: 3 * 2^-8 (0.0117) at every cp. As a random walk (the parts' errors are independent
//    and their squared norms add up to the total's) about sqrt(3) 2^-9 = 3.4e-3; a host emulation
//    of exactly these roundings at this test's shapes gives 2.4e-3 to 3.0e-3 at cp 2, 4 and 8
//    (with the arrivals summed in bf16, as the ring did before: 3.4e-3 at cp 4, 4.5e-3 at cp 8,
//    growing with cp; its bound was dq's).
//  - Mamba mixer: the forward stores in_proj's output, the conv output, the SSD output, the
//    SSD output again after the initial-state correction, the gated norm and out_proj's output:
//    6 roundings, sqrt(6) 2^-9 ~ 5e-3 as a random walk; the SSD's exponentials of dt sums and the
//    norm's division amplify it a few times: 3e-2 (6x). The backward doubles the roundings (every
//    activation gradient is bf16 too): 6e-2 for the input gradient. Parameter gradients sum
//    products of those over all tokens in fp32, and where terms of both signs cancel (the per-head
//    dt_bias, A_log, D) the sum keeps fewer bits relative to its size: 1e-1 (the model-level
//    test allows 0.14). A missing halo, a wrong initial state or a lost gradient contribution
//    moves the rows or sums it touches by the size of their values, not by bf16 noise (decays of
//    ~0.9 per 11-token segment carry the state across every segment; each rank holds 1/cp of the
//    tokens that every parameter gradient sums).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "gpu_mpi/gpu_world.h"
#include "kernels/cuda/backend.h"
#include "kernels/device_memory.h"
#include "kernels/ops.h"
#include "model/layers.h"
#include "model/mamba_layer_cp.h"
#include "model/params.h"
#include "parallel/ring_attention.h"
#include "parallel/staged_data_plane.h"
#include "parallel/transport.h"
#include "parallel/zigzag.h"
#include "support/check.h"
#include "support/model_configs.h"

namespace nexus {
namespace {

constexpr Exec kGpu{Device::cuda, nullptr};
constexpr Exec kCpu{};
constexpr std::size_t kStaging = 1 << 14;  // smaller than the K/V blocks: they travel in pieces

// fp32 values that bf16 holds exactly: the inputs both sides start from.
std::vector<float> bf16_rounded(const std::vector<double>& v) {
  std::vector<float> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = float(bf16(float(v[i])));
  return r;
}

template <typename T>
DeviceBuffer<T> on_gpu(const std::vector<T>& host) {
  DeviceBuffer<T> d(kGpu, idx(host.size()));
  copy_to_device(kGpu, d.data(), host.data(), d.bytes());
  return d;
}
DeviceBuffer<bf16> bf16_on_gpu(const std::vector<float>& host) {
  std::vector<bf16> b(host.size());
  for (std::size_t i = 0; i < host.size(); ++i) b[i] = bf16(host[i]);
  return on_gpu(b);
}
template <typename T>
DeviceBuffer<T> zeros_on_gpu(idx n) {
  DeviceBuffer<T> d(kGpu, n);
  d.zero();
  return d;
}
// A device buffer's values as fp32.
template <typename T>
std::vector<float> on_host(const DeviceBuffer<T>& d) {
  std::vector<T> host(static_cast<std::size_t>(d.size()));
  copy_to_host(kGpu, host.data(), d.data(), d.bytes());
  std::vector<float> f(host.size());
  for (std::size_t i = 0; i < host.size(); ++i) f[i] = float(host[i]);
  return f;
}

// Rank r's zigzag rows [B, 2c, width] of a full [B, 2 cp c, width] buffer: chunk r, then chunk
// 2cp-1-r of each sequence.
std::vector<float> zigzag_rows(const std::vector<float>& full, idx B, idx c, idx width, int cp, int r) {
  std::vector<float> local(std::size_t(B * 2 * c * width));
  for (idx b = 0; b < B; ++b)
    for (idx half = 0; half < 2; ++half)
      for (idx t = 0; t < c; ++t)
        for (idx e = 0; e < width; ++e)
          local[std::size_t(((b * 2 + half) * c + t) * width + e)] =
              full[std::size_t((b * 2 * cp * c + zigzag_chunk(cp, r, half) * c + t) * width + e)];
  return local;
}

// The inverse over the world: every rank's zigzag rows gathered into the full buffer.
std::vector<float> gather_full(const std::vector<float>& local, idx B, idx c, idx width) {
  const Communicator& w = test::gpu_world();
  const int P = w.size();
  std::vector<float> parts(local.size() * std::size_t(P)), full(parts.size());
  w.allgather(local.data(), idx(local.size()), parts.data());
  for (int q = 0; q < P; ++q)
    for (idx b = 0; b < B; ++b)
      for (idx half = 0; half < 2; ++half)
        for (idx t = 0; t < c; ++t)
          for (idx e = 0; e < width; ++e)
            full[std::size_t((b * 2 * P * c + zigzag_chunk(P, q, half) * c + t) * width + e)] =
                parts[std::size_t(q) * local.size() + std::size_t(((b * 2 + half) * c + t) * width + e)];
  return full;
}

// ||got - ref|| / ||ref||.
double rel_l2(const std::vector<float>& got, const std::vector<float>& ref) {
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    diff += (double(got[i]) - double(ref[i])) * (double(got[i]) - double(ref[i]));
    norm += double(ref[i]) * double(ref[i]);
  }
  return std::sqrt(diff / std::max(norm, 1e-300));
}

// Checks err < tol on this rank and prints the worst over the world (collective).
void expect_below(double err, double tol, const std::string& what) {
  EXPECT_LT(err, tol) << what << ", rank " << test::gpu_world().rank();
  const double worst = test::gpu_world().max(err);
  if (test::gpu_world().is_root())
    std::printf("%-48s worst relative error %.2e (tolerance %.2e)\n", what.c_str(), worst, tol);
}

constexpr idx kB = 2, kHq = 4, kHkv = 2, kHd = 64;

void ring_matches_fp32(idx c, const Neighborhood& nb, const std::string& name) {
  const Communicator& w = test::gpu_world();
  const StagedDataPlane cp(w, kGpu, kStaging);
  const int P = w.size(), r = w.rank();
  const idx Tf = 2 * P * c, wq = kHq * kHd, wk = kHkv * kHd;
  const auto q = bf16_rounded(test::random_vector(std::size_t(kB * Tf * wq), 11));
  const auto k = bf16_rounded(test::random_vector(std::size_t(kB * Tf * wk), 12));
  const auto v = bf16_rounded(test::random_vector(std::size_t(kB * Tf * wk), 13));
  const auto dout = bf16_rounded(test::random_vector(std::size_t(kB * Tf * wq), 14));
  const AttentionShape full{kB, Tf, Tf, kHq, kHkv, kHd, 0, 0, true, nb};
  std::vector<float> out(q.size()), lse(std::size_t(kB * Tf * kHq));
  attention_forward(kCpu, out.data(), lse.data(), q.data(), k.data(), v.data(), full);

  const RingShape s{kB, c, kHq, kHkv, kHd, nb};
  auto d_q = bf16_on_gpu(zigzag_rows(q, kB, c, wq, P, r)), d_k = bf16_on_gpu(zigzag_rows(k, kB, c, wk, P, r)),
       d_v = bf16_on_gpu(zigzag_rows(v, kB, c, wk, P, r)), d_dout = bf16_on_gpu(zigzag_rows(dout, kB, c, wq, P, r));
  DeviceBuffer<bf16> d_out(kGpu, kB * 2 * c * wq), d_work(kGpu, ring_attention_workspace<bf16>(s));
  DeviceBuffer<float> d_lse(kGpu, kB * 2 * c * kHq);
  auto d_dq = zeros_on_gpu<bf16>(d_q.size()), d_dk = zeros_on_gpu<bf16>(d_k.size()),
       d_dv = zeros_on_gpu<bf16>(d_v.size());
  ring_attention_forward(kGpu, d_out.data(), d_lse.data(), d_q.data(), d_k.data(), d_v.data(), s, cp, d_work.data());
  ring_attention_backward(kGpu, d_dq.data(), d_dk.data(), d_dv.data(), d_dout.data(), d_q.data(), d_k.data(),
                          d_v.data(), d_out.data(), d_lse.data(), s, cp, d_work.data());
  const std::vector<float> got_out = on_host(d_out), got_lse = on_host(d_lse);
  expect_below(rel_l2(got_out, zigzag_rows(out, kB, c, wq, P, r)), double(4 * P + 1) * std::ldexp(1.0, -9),
               name + ": out");
  expect_below(rel_l2(got_lse, zigzag_rows(lse, kB, c, kHq, P, r)), 1e-4, name + ": lse");

  // The reference backward from the ring's own forward result: only the backward's roundings count.
  const std::vector<float> ring_out = gather_full(got_out, kB, c, wq), ring_lse = gather_full(got_lse, kB, c, kHq);
  std::vector<float> dq(q.size(), 0.0f), dk(k.size(), 0.0f), dv(v.size(), 0.0f);
  attention_backward(kCpu, dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(), ring_out.data(),
                     ring_lse.data(), full);
  const double tol_q = double(2 * P + 2) * std::ldexp(1.0, -8), tol_kv = 3 * std::ldexp(1.0, -8);
  expect_below(rel_l2(on_host(d_dq), zigzag_rows(dq, kB, c, wq, P, r)), tol_q, name + ": dq");
  expect_below(rel_l2(on_host(d_dk), zigzag_rows(dk, kB, c, wk, P, r)), tol_kv, name + ": dk");
  expect_below(rel_l2(on_host(d_dv), zigzag_rows(dv, kB, c, wk, P, r)), tol_kv, name + ": dv");
}

TEST(Bf16ContextParallel, RingAttentionMatchesFp32OnOneRank) {
  // 24-token chunks: not a multiple of the kernels' 64-row tiles.
  ring_matches_fp32(24, {}, "ring attention, full");
  // A window across two chunks: the masked per-pair plan and skipped hops at cp 4.
  ring_matches_fp32(24, Neighborhood{Neighborhood::kSliding, 30, 1, 0}, "ring attention, sliding:30");
}

// One Mamba layer: H = 4 heads of P = 8 in G = 2 groups, N = 8, conv K = 4, SSD chunk Q = 4 (the
// configuration of tests/mpi/test_mamba_context_parallel.cpp), with per-head decays from ~0.9 to
// ~0 over one 11-token segment.
TEST(Bf16ContextParallel, MambaMixerMatchesFp32OnOneRank) {
  const Communicator& w = test::gpu_world();
  const StagedDataPlane cp(w, kGpu, kStaging);
  const int P = w.size(), r = w.rank();
  const ModelConfig m = test::small_hybrid({.vocab_size = 8, .d_model = 16, .pattern = "M", .mlp_hidden = 8,
                                            .n_heads = 2, .n_kv_heads = 1, .head_dim = 8, .mamba_ngroups = 2,
                                            .mamba_chunk = 4, .init_std = 0.3});
  const ParamTable table(m);
  const idx c = 11, Tf = 2 * P * c, Tn = 2 * c, D = m.d_model;
  std::vector<double> init(std::size_t(table.total()));
  init_parameters(init.data(), table, m, 7);
  const auto noise = test::random_vector(init.size(), 8, -0.05, 0.05);
  for (std::size_t i = 0; i < init.size(); ++i) init[i] += noise[i];
  {
    const auto wm = layer_tensors<double*>(init.data(), table, m, 0).mamba;
    const double dts[] = {0.01, 0.03, 0.1, 0.3};
    for (idx h = 0; h < m.mamba_heads(); ++h) {
      wm.dt_bias[h] = std::log(std::expm1(dts[h % 4]));
      wm.A_log[h] = std::log(1.0 + 3.0 * double(h % 4));
    }
  }
  const auto params = bf16_rounded(init);
  const auto x = bf16_rounded(test::random_vector(std::size_t(kB * Tf * D), 9));
  const auto R = bf16_rounded(test::random_vector(std::size_t(kB * Tf * D), 10));

  // Reference: the single-rank fp32 mixer on the CPU over the whole sequence.
  const idx Nf = kB * Tf, Nl = kB * Tn, E = m.in_proj_dim(), C = m.conv_dim(), Di = m.d_inner();
  const idx G = m.mamba_ngroups;
  std::vector<float> zx(std::size_t(Nf * E)), xbc(std::size_t(Nf * C)), y(std::size_t(Nf * Di)), gated(y.size()),
      rstd(std::size_t(Nf * G)), dzx(zx.size()), dxbc(xbc.size()), dy(y.size()), dg(y.size()),
      ws(std::size_t(ssd_workspace<float>(mamba_ssd_shape(m, kB, Tf)))), out(std::size_t(Nf * D)), dinp(out.size()),
      grads(params.size(), 0.0f);
  const auto wf = layer_tensors<const float*>(params.data(), table, m, 0).mamba;
  const MambaActivations<float> acts{zx.data(), xbc.data(), y.data(), gated.data(), rstd.data()};
  mamba_mixer_forward(kCpu, out.data(), acts, x.data(), wf, m, kB, Tf, ws.data());
  mamba_mixer_backward(kCpu, dinp.data(), layer_tensors<float*>(grads.data(), table, m, 0).mamba,
                       MambaScratch<float>{dzx.data(), dxbc.data(), dy.data(), dg.data(), ws.data()}, R.data(),
                       x.data(), acts, wf, m, kB, Tf);

  // bf16 on the GPU, this rank's zigzag rows; fp32 parameter gradients summed over the group.
  auto d_params = bf16_on_gpu(params), d_x = bf16_on_gpu(zigzag_rows(x, kB, c, D, P, r)),
       d_R = bf16_on_gpu(zigzag_rows(R, kB, c, D, P, r));
  DeviceBuffer<bf16> d_zx(kGpu, Nl * E), d_xbc(kGpu, Nl * C), d_y(kGpu, Nl * Di), d_gated(kGpu, Nl * Di),
      d_dzx(kGpu, Nl * E), d_dxbc(kGpu, Nl * C), d_dy(kGpu, Nl * Di), d_dg(kGpu, Nl * Di),
      d_ws(kGpu, mamba_cp_workspace<bf16>(m, kB, Tn, P)), d_saved(kGpu, mamba_cp_saved_size<bf16>(m, kB, P)),
      d_out(kGpu, Nl * D), d_dinp(kGpu, Nl * D);
  DeviceBuffer<float> d_rstd(kGpu, Nl * G);
  auto d_grads = zeros_on_gpu<float>(table.total());
  const auto wb = layer_tensors<const bf16*>(static_cast<const bf16*>(d_params.data()), table, m, 0).mamba;
  const MambaActivations<bf16> d_acts{d_zx.data(), d_xbc.data(), d_y.data(), d_gated.data(), d_rstd.data()};
  std::size_t bytes = mamba_mixer_forward_cp(kGpu, d_out.data(), d_acts, static_cast<const bf16*>(d_x.data()), wb, m,
                                             kB, Tn, d_ws.data(), cp, d_saved.data());
  bytes += mamba_mixer_backward_cp(
      kGpu, d_dinp.data(), layer_tensors<float*>(d_grads.data(), table, m, 0).mamba,
      MambaScratch<bf16>{d_dzx.data(), d_dxbc.data(), d_dy.data(), d_dg.data(), d_ws.data()},
      static_cast<const bf16*>(d_R.data()), static_cast<const bf16*>(d_x.data()), d_acts, wb, m, kB, Tn, cp,
      static_cast<const bf16*>(d_saved.data()));
  EXPECT_EQ(bytes, mamba_cp_bytes_sent(m, kB, P, r, sizeof(bf16), sizeof(float)));  // halos bf16, states fp32

  expect_below(rel_l2(on_host(d_out), zigzag_rows(out, kB, c, D, P, r)), 3e-2, "mamba cp mixer: out");
  expect_below(rel_l2(on_host(d_dinp), zigzag_rows(dinp, kB, c, D, P, r)), 6e-2, "mamba cp mixer: dinp");
  std::vector<float> got_grads = on_host(d_grads);
  w.allreduce_sum(got_grads.data(), idx(got_grads.size()));
  for (const ParamInfo& info : table.params()) {
    if (info.name.find(".mamba.") == std::string::npos) continue;
    const auto b = std::size_t(info.offset), e = std::size_t(info.offset + info.numel);
    expect_below(rel_l2(std::vector<float>(got_grads.begin() + b, got_grads.begin() + e),
                        std::vector<float>(grads.begin() + b, grads.begin() + e)),
                 1e-1, "gradient of " + info.name);
  }
}

}  // namespace
}  // namespace nexus
