// Times each CUDA op of one layer at a model config's shapes (bf16 activations, fp32 statistics,
// one sequence of --seq-len tokens) and prints one JSON line per op: milliseconds, and GB/s
// against the device-to-device copy bandwidth measured in the same run for the memory-bound ops,
// or TFLOP/s against cuBLASLt's bf16 GEMM measured in the same run for GEMM, attention and SSD.
// Needs a GPU (exits 77 without one, like the gpu tests).
//
//   build/bench/bench_cuda_ops [configs/350m.ini] [--seq-len T] [--iters N]
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "bench/args.h"
#include "kernels/cuda/backend.h"
#include "kernels/device_memory.h"
#include "model/layers.h"

using namespace nexus;

namespace {

const Exec kGpu{Device::cuda, nullptr};

template <typename T>
DeviceBuffer<T> random_on_gpu(idx n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> host(static_cast<std::size_t>(n));
  for (T& x : host) x = T(float(u(rng)));
  DeviceBuffer<T> b(kGpu, n);
  copy_to_device(kGpu, b.data(), host.data(), b.bytes());
  return b;
}

// Mean milliseconds of `op` over `iters` runs after one warm-up, timed by events on the stream.
double time_ms(const std::function<void()>& op, idx iters) {
  op();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start, nullptr);
  for (idx i = 0; i < iters; ++i) op();
  cudaEventRecord(stop, nullptr);
  cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return double(ms) / double(iters);
}

}  // namespace

int main(int argc, char** argv) {
  const char* why = "";
  if (cuda::visible_devices(&why) == 0) {
    std::printf("SKIPPED: no CUDA device visible (%s)\n", why);
    return 77;
  }
  idx seq_len = 8192, iters = 20;
  const bench::BenchArgs args = bench::parse_args(argc, argv, {{"--seq-len", &seq_len}, {"--iters", &iters}});
  const ModelConfig& c = args.options.model;
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  const idx N = seq_len, D = c.d_model, F = c.mlp_hidden, V = c.vocab_size;
  const idx Hq = c.n_heads, Hkv = c.n_kv_heads, hd = c.head_dim, Di = c.d_inner(), C = c.conv_dim(),
            E = c.in_proj_dim(), G = c.mamba_ngroups, K = c.mamba_d_conv;
  auto report = [&](const std::string& op, double ms, double bytes, double flops, double reference, const char* unit) {
    nlohmann::json j{{"bench", "cuda_ops"}, {"gpu", prop.name}, {"config", args.config}, {"seq_len", seq_len},
                     {"op", op}, {"ms", ms}};
    if (bytes > 0) j["GB_per_s"] = bytes / ms / 1e6;
    if (flops > 0) j["TFLOP_per_s"] = flops / ms / 1e9;
    if (reference > 0) {
      j[std::string("fraction_of_") + unit] = (bytes > 0 ? bytes / ms / 1e6 : flops / ms / 1e9) / reference;
      j[unit] = reference;
    }
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  };

  // The references: copy bandwidth (read + write) and the bf16 GEMM rate, in this run.
  const idx copy_elems = idx(256) << 20;  // 512 MiB of bf16 each way
  DeviceBuffer<bf16> src(kGpu, copy_elems), dst(kGpu, copy_elems);
  src.zero();
  const double copy_ms = time_ms([&] { cudaMemcpyAsync(dst.data(), src.data(), src.bytes(), cudaMemcpyDeviceToDevice, nullptr); }, iters);
  const double copy_gbs = 2.0 * double(src.bytes()) / copy_ms / 1e6;
  report("device_copy", copy_ms, 2.0 * double(src.bytes()), 0, 0, "");
  DeviceBuffer<bf16> ga = random_on_gpu<bf16>(8192 * 8192, 1), gb = random_on_gpu<bf16>(8192 * 8192, 2),
                     gc(kGpu, 8192 * 8192);
  const double gemm_ms = time_ms([&] { cuda::matmul_forward(kGpu, gc.data(), ga.data(), gb.data(), 8192, 8192, 8192); }, iters);
  const double gemm_tflops = 2.0 * 8192.0 * 8192.0 * 8192.0 / gemm_ms / 1e9;
  report("gemm_bf16_8192", gemm_ms, 0, 2.0 * 8192.0 * 8192.0 * 8192.0, 0, "");

  // One layer's tensors, bf16 activations and fp32 statistics.
  DeviceBuffer<bf16> x = random_on_gpu<bf16>(N * D, 3), branch = random_on_gpu<bf16>(N * D, 4), h(kGpu, N * D),
                     y(kGpu, N * D), wD = random_on_gpu<bf16>(D, 5, 0.5, 1.5);
  DeviceBuffer<float> rstd(kGpu, N * G + N);
  report("residual_rmsnorm_forward", time_ms([&] {
           cuda::residual_rmsnorm_forward(kGpu, h.data(), y.data(), rstd.data(), x.data(), branch.data(), wD.data(), N, D, 1e-5);
         }, iters), 4.0 * double(N * D) * 2, 0, copy_gbs, "copy_GB_per_s");
  DeviceBuffer<bf16> w_up = random_on_gpu<bf16>(2 * F * D, 6, -0.05, 0.05), gate_up(kGpu, N * 2 * F), act(kGpu, N * F);
  report("matmul_forward_gate_up", time_ms([&] { cuda::matmul_forward(kGpu, gate_up.data(), y.data(), w_up.data(), N, D, 2 * F); }, iters),
         0, 2.0 * double(N) * double(D) * double(2 * F), gemm_tflops, "gemm_TFLOP_per_s");
  report("swiglu_forward", time_ms([&] { cuda::swiglu_forward(kGpu, act.data(), gate_up.data(), N, F); }, iters),
         3.0 * double(N * F) * 2, 0, copy_gbs, "copy_GB_per_s");
  DeviceBuffer<bf16> q = random_on_gpu<bf16>(N * Hq * hd, 7), k = random_on_gpu<bf16>(N * Hkv * hd, 8),
                     v = random_on_gpu<bf16>(N * Hkv * hd, 9), att(kGpu, N * Hq * hd);
  report("rope_forward", time_ms([&] { cuda::rope_forward(kGpu, q.data(), 1, N, Hq, hd, c.rotary_dim(), 0, c.rope_theta); }, iters),
         2.0 * double(N * Hq * hd) * 2, 0, copy_gbs, "copy_GB_per_s");
  AttentionShape as{1, N, N, Hq, Hkv, hd};
  DeviceBuffer<float> lse(kGpu, N * Hq);
  const double causal_pairs = double(N) * double(N + 1) / 2;
  const double attn_flops = 4.0 * causal_pairs * double(Hq) * double(hd);
  report("attention_forward", time_ms([&] { cuda::attention_forward(kGpu, att.data(), lse.data(), q.data(), k.data(), v.data(), as); }, iters),
         0, attn_flops, gemm_tflops, "gemm_TFLOP_per_s");
  DeviceBuffer<bf16> dq(kGpu, N * Hq * hd), dk(kGpu, N * Hkv * hd), dv(kGpu, N * Hkv * hd);
  report("attention_backward", time_ms([&] {
           cuda::attention_backward(kGpu, dq.data(), dk.data(), dv.data(), att.data(), q.data(), k.data(), v.data(),
                                    att.data(), lse.data(), as);
         }, iters), 0, 2.5 * attn_flops, gemm_tflops, "gemm_TFLOP_per_s");

  // The Mamba-2 mixer's own ops, on the column slices of one in_proj output row as the model uses them.
  DeviceBuffer<bf16> zx = random_on_gpu<bf16>(N * E, 10), xbc(kGpu, N * C), ssd_y(kGpu, N * Di), gated(kGpu, N * Di);
  DeviceBuffer<bf16> conv_w = random_on_gpu<bf16>(C * K, 11), conv_b = random_on_gpu<bf16>(C, 12),
                     wDi = random_on_gpu<bf16>(Di, 13, 0.5, 1.5);
  report("conv1d_silu_forward", time_ms([&] {
           cuda::conv1d_silu_forward(kGpu, xbc.data(), zx.data() + Di, E, static_cast<const bf16*>(nullptr), conv_w.data(),
                                     conv_b.data(), 1, N, C, K);
         }, iters), 2.0 * double(N * C) * 2, 0, copy_gbs, "copy_GB_per_s");
  const SsdShape ss = mamba_ssd_shape(c, 1, N);
  const SsdStrides ld{C, C, E};
  const idx H = ss.H, P = ss.P, S = ss.N;
  DeviceBuffer<bf16> dt_bias = random_on_gpu<bf16>(H, 14, -4, -2), A_log = random_on_gpu<bf16>(H, 15, 0, 2),
                     Dh = random_on_gpu<bf16>(H, 16), ws(kGpu, ssd_workspace<bf16>(ss));
  const bf16* xs = xbc.data();
  const bf16* dt = zx.data() + Di + C;
  // Per token and head: C B^T within the chunk (shared by the group's heads), the intra-chunk
  // output, the chunk state and the state's output: 2QN/(H/G) + 2QP + 4PN (the chunked algorithm).
  const double ssd_flops = double(N) * double(H) *
                           (2.0 * double(ss.Q * S) / double(H / G) + 2.0 * double(ss.Q * P) + 4.0 * double(P * S));
  report("ssd_forward", time_ms([&] {
           cuda::ssd_forward(kGpu, ssd_y.data(), static_cast<float*>(nullptr), static_cast<float*>(nullptr), xs, xs + Di,
                             xs + Di + G * S, dt, dt_bias.data(), A_log.data(), Dh.data(),
                             static_cast<const float*>(nullptr), ss, ld, ws.data());
         }, iters), 0, ssd_flops, gemm_tflops, "gemm_TFLOP_per_s");
  DeviceBuffer<bf16> dxbc(kGpu, N * C), ddt(kGpu, N * E);
  DeviceBuffer<float> dparams(kGpu, 3 * H);
  report("ssd_backward", time_ms([&] {
           cuda::ssd_backward(kGpu, dxbc.data(), dxbc.data() + Di, dxbc.data() + Di + G * S, ddt.data() + Di + C,
                              dparams.data(), dparams.data() + H, dparams.data() + 2 * H, static_cast<float*>(nullptr),
                              ssd_y.data(), static_cast<const float*>(nullptr), xs, xs + Di, xs + Di + G * S, dt,
                              dt_bias.data(), A_log.data(), Dh.data(), static_cast<const float*>(nullptr), ss,
                              SsdStrides{C, C, E}, ws.data());
         }, iters), 0, 2.0 * ssd_flops, gemm_tflops, "gemm_TFLOP_per_s");
  DeviceBuffer<float> grstd(kGpu, N * G);
  report("gated_rmsnorm_forward", time_ms([&] {
           cuda::gated_rmsnorm_forward(kGpu, gated.data(), grstd.data(), ssd_y.data(), zx.data(), E, wDi.data(), N, Di, G, 1e-5);
         }, iters), 3.0 * double(N * Di) * 2, 0, copy_gbs, "copy_GB_per_s");

  // The head: logits for the whole sequence, then the fused cross-entropy forward + backward.
  DeviceBuffer<bf16> logits = random_on_gpu<bf16>(N * V, 17, -4, 4);
  DeviceBuffer<float> ce_lse(kGpu, N);
  std::vector<std::int32_t> host_targets(static_cast<std::size_t>(N));
  for (idx i = 0; i < N; ++i) host_targets[std::size_t(i)] = std::int32_t((i * 7919) % V);
  DeviceBuffer<std::int32_t> targets(kGpu, N);
  copy_to_device(kGpu, targets.data(), host_targets.data(), targets.bytes());
  report("cross_entropy_forward_backward", time_ms([&] {
           cuda::cross_entropy_forward(kGpu, ce_lse.data(), logits.data(), targets.data(), N, V);
           cuda::cross_entropy_backward(kGpu, logits.data(), ce_lse.data(), targets.data(), N, V, 1.0 / double(N));
         }, iters), 3.0 * double(N * V) * 2, 0, copy_gbs, "copy_GB_per_s");
  return 0;
}
