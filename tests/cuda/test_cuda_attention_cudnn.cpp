// cuDNN's fused attention (kernels/cuda/attention_cudnn.h) on the GPU against the CPU fp32
// attention kernel run on the same bf16-rounded inputs: causal and non-causal, GQA groups 1, 2
// and 4, lengths that are not multiples of cuDNN's tiles, head dims 8 to 128, B > 1, positions
// away from 0. The backward gets the same out (the CPU's, rounded to bf16) and lse on both sides,
// so that its check sees the backward's errors alone.
//
// Tolerances. Each output is a sum of products of which cuDNN rounds one factor to bf16 before
// its tensor-core product (the softmax weights P before P V and P^T dO; dS = P (dP - D) before
// dS K and dS^T Q), accumulates in fp32 and stores the sum rounded to bf16. With m the same sum
// over absolute values (computed here in fp64 from the CPU's lse), |got - want| is at most
// 2^-8 m (bf16 keeps 8 significant bits: one relative 2^-8 rounding per factor) + 2^-8 |want|
// (the stored output). The test
// allows twice that, the margin covering fp32 accumulation order and exp's last bits, plus a
// floor of 1e-3 max m for entries that cancel to ~0 (as bf16_error's floor). lse is fp32 on both
// sides from the same bf16 scores (|score| <= 2 sqrt(hd)): fp32 dot products and exp differ by
// ~1e-6, so 1e-4 of max(1, max |lse|). The backward must also give the same bits twice (cuDNN's
// deterministic algorithm) and add to dq, dk, dv: bf16(old + new) exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/cuda/attention_cudnn.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using namespace test;

#if NEXUS_HAS_CUDNN

struct Case {
  idx B, Tq, Tk, Hq, Hkv, hd;
  bool causal;
  idx q_pos0 = 0, k_pos0 = 0;
};
const Case kCases[] = {
    {1, 1, 1, 1, 1, 8, true},          {2, 37, 37, 4, 4, 64, true},        {2, 130, 130, 4, 2, 128, true},
    {1, 257, 257, 8, 2, 32, true},     {3, 64, 64, 4, 1, 72, false},       {2, 50, 77, 4, 1, 64, false, 100, 0},
    {1, 200, 200, 2, 1, 96, true, 4096, 4096},
};

AttentionShape shape_of(const Case& c) {
  return AttentionShape{c.B, c.Tq, c.Tk, c.Hq, c.Hkv, c.hd, c.q_pos0, c.k_pos0, c.causal, {}};
}

std::size_t q_elems(const AttentionShape& s) { return std::size_t(s.B * s.Tq * s.n_heads * s.head_dim); }
std::size_t k_elems(const AttentionShape& s) { return std::size_t(s.B * s.Tk * s.n_kv_heads * s.head_dim); }
std::size_t lse_elems(const AttentionShape& s) { return std::size_t(s.B * s.Tq * s.n_heads); }

// The absolute-value sums m of every output (see the tolerances above), in the [B,T,H,hd] layouts.
struct Magnitudes {
  std::vector<double> out, dq, dk, dv;
};
Magnitudes magnitudes(const AttentionShape& s, const std::vector<float>& q, const std::vector<float>& k,
                      const std::vector<float>& v, const std::vector<float>& out, const std::vector<float>& dout,
                      const std::vector<float>& lse) {
  const idx hd = s.head_dim, Hq = s.n_heads, Hkv = s.n_kv_heads;
  const double scale = 1.0 / std::sqrt(double(hd));
  Magnitudes m{std::vector<double>(q_elems(s)), std::vector<double>(q_elems(s)), std::vector<double>(k_elems(s)),
               std::vector<double>(k_elems(s))};
  auto qi = [&](idx b, idx i, idx h) { return std::size_t(((b * s.Tq + i) * Hq + h) * hd); };
  auto kj = [&](idx b, idx j, idx g) { return std::size_t(((b * s.Tk + j) * Hkv + g) * hd); };
  std::vector<double> p(std::size_t(s.Tk)), ds(std::size_t(s.Tk));
  for (idx b = 0; b < s.B; ++b)
    for (idx h = 0; h < Hq; ++h)
      for (idx i = 0; i < s.Tq; ++i) {
        const idx g = h / (Hq / Hkv);
        const std::size_t at = qi(b, i, h);
        double D = 0;
        for (idx d = 0; d < hd; ++d) D += double(dout[at + std::size_t(d)]) * out[at + std::size_t(d)];
        for (idx j = 0; j < s.Tk; ++j) {
          const bool visible = !s.causal || s.neighborhood.visible(s.q_pos0 + i, s.k_pos0 + j);
          double score = 0, dp = 0;
          for (idx d = 0; d < hd; ++d) {
            score += double(q[at + std::size_t(d)]) * k[kj(b, j, g) + std::size_t(d)];
            dp += double(dout[at + std::size_t(d)]) * v[kj(b, j, g) + std::size_t(d)];
          }
          p[std::size_t(j)] = visible ? std::exp(score * scale - lse[std::size_t((b * s.Tq + i) * Hq + h)]) : 0.0;
          ds[std::size_t(j)] = p[std::size_t(j)] * (dp - D);
        }
        for (idx j = 0; j < s.Tk; ++j)
          for (idx d = 0; d < hd; ++d) {
            const std::size_t qd = at + std::size_t(d), kd = kj(b, j, g) + std::size_t(d);
            const double pj = p[std::size_t(j)], dsj = std::fabs(ds[std::size_t(j)]);
            m.out[qd] += pj * std::fabs(v[kd]);
            m.dv[kd] += pj * std::fabs(dout[qd]);
            m.dq[qd] += scale * dsj * std::fabs(k[kd]);
            m.dk[kd] += scale * dsj * std::fabs(q[qd]);
          }
      }
  return m;
}

// The worst |got - want| / (2 (2^-8 m + 2^-8 |want|) + 1e-3 max m): at most 1 passes.
double error_vs_bound(const std::vector<float>& got, const std::vector<float>& want, const std::vector<double>& m) {
  const double floor = 1e-3 * *std::max_element(m.begin(), m.end()) + 1e-30;
  double worst = 0;
  for (std::size_t i = 0; i < want.size(); ++i)
    worst = std::max(worst, std::fabs(double(got[i]) - want[i]) /
                                (2 * std::ldexp(m[i] + std::fabs(double(want[i])), -8) + floor));
  return worst;
}

std::vector<bf16> to_bf16(const std::vector<float>& x) { return round_to_bf16(x).stored; }

TEST(CudaAttentionCudnn, MatchesTheFp32CpuOnRoundedInputs) {
  std::uint64_t seed = 1;
  for (const Case& c : kCases) {
    const AttentionShape s = shape_of(c);
    SCOPED_TRACE("B=" + std::to_string(s.B) + " Tq=" + std::to_string(s.Tq) + " Tk=" + std::to_string(s.Tk) +
                 " Hq=" + std::to_string(s.n_heads) + " Hkv=" + std::to_string(s.n_kv_heads) +
                 " hd=" + std::to_string(s.head_dim) + (s.causal ? " causal" : " non-causal"));
    ASSERT_TRUE(cuda::cudnn_attention_supports<bf16>(s));
    const std::size_t nq = q_elems(s), nk = k_elems(s), nl = lse_elems(s);
    const Bf16Rounded q = round_to_bf16(random_vector<float>(nq, seed++, -2.0, 2.0)),
                      k = round_to_bf16(random_vector<float>(nk, seed++)),
                      v = round_to_bf16(random_vector<float>(nk, seed++)),
                      dout = round_to_bf16(random_vector<float>(nq, seed++));

    // Forward.
    std::vector<float> out(nq), lse(nl);
    attention_forward(kCpu, out.data(), lse.data(), q.value.data(), k.value.data(), v.value.data(), s);
    DeviceBuffer<bf16> g_q = on_gpu(q.stored), g_k = on_gpu(k.stored), g_v = on_gpu(v.stored),
                       g_dout = on_gpu(dout.stored), g_out(kGpu, idx(nq));
    DeviceBuffer<float> g_lse(kGpu, idx(nl));
    cuda::cudnn_attention_forward(kGpu, g_out.data(), g_lse.data(), g_q.data(), g_k.data(), g_v.data(), s);

    // Backward from the same out (the CPU's, rounded) and lse on both sides.
    const Bf16Rounded out_b = round_to_bf16(out);
    const Magnitudes m = magnitudes(s, q.value, k.value, v.value, out_b.value, dout.value, lse);
    EXPECT_LE(error_vs_bound(to_float(on_host(g_out)), out, m.out), 1.0) << "out";
    EXPECT_LE(max_rel_diff(on_host(g_lse), lse, 1.0), 1e-4) << "lse";

    std::vector<float> dq(nq, 0.0f), dk(nk, 0.0f), dv(nk, 0.0f);
    attention_backward(kCpu, dq.data(), dk.data(), dv.data(), dout.value.data(), q.value.data(), k.value.data(),
                       v.value.data(), out_b.value.data(), lse.data(), s);
    DeviceBuffer<bf16> g_out_b = on_gpu(out_b.stored);
    DeviceBuffer<float> g_lse_cpu = on_gpu(lse);
    auto gpu_backward = [&](const std::vector<bf16>& dq0, const std::vector<bf16>& dk0, const std::vector<bf16>& dv0) {
      DeviceBuffer<bf16> g_dq = on_gpu(dq0), g_dk = on_gpu(dk0), g_dv = on_gpu(dv0);
      cuda::cudnn_attention_backward(kGpu, g_dq.data(), g_dk.data(), g_dv.data(), g_dout.data(), g_q.data(),
                                     g_k.data(), g_v.data(), g_out_b.data(), g_lse_cpu.data(), s);
      return std::vector<std::vector<bf16>>{on_host(g_dq), on_host(g_dk), on_host(g_dv)};
    };
    const std::vector<bf16> zq(nq, bf16(0.0f)), zk(nk, bf16(0.0f));
    const auto grads = gpu_backward(zq, zk, zk);
    EXPECT_LE(error_vs_bound(to_float(grads[0]), dq, m.dq), 1.0) << "dq";
    EXPECT_LE(error_vs_bound(to_float(grads[1]), dk, m.dk), 1.0) << "dk";
    EXPECT_LE(error_vs_bound(to_float(grads[2]), dv, m.dv), 1.0) << "dv";

    // Deterministic, and accumulating: from dq0 the result is bf16(dq0 + the gradient alone).
    const std::vector<bf16> dq0 = to_bf16(random_vector<float>(nq, seed++)),
                            dk0 = to_bf16(random_vector<float>(nk, seed++)),
                            dv0 = to_bf16(random_vector<float>(nk, seed++));
    const auto added = gpu_backward(dq0, dk0, dv0);
    const auto again = gpu_backward(dq0, dk0, dv0);
    const std::vector<bf16>* start[3] = {&dq0, &dk0, &dv0};
    for (std::size_t t = 0; t < 3; ++t) {
      EXPECT_TRUE(same_bits(added[t], again[t])) << "gradient " << t << " differs between two runs";
      std::vector<bf16> want(start[t]->size());
      for (std::size_t i = 0; i < want.size(); ++i) want[i] = bf16(float((*start[t])[i]) + float(grads[t][i]));
      EXPECT_TRUE(same_bits(added[t], want)) << "gradient " << t << " is not added to what was there";
    }
  }
}

TEST(CudaAttentionCudnn, RefusesCallsItCannotExpress) {
  AttentionShape s{1, 16, 16, 2, 1, 64, 32, 0, true, {}};  // a ring block
  DeviceBuffer<bf16> q(kGpu, 16 * 2 * 64), kv(kGpu, 16 * 64), out(kGpu, 16 * 2 * 64);
  DeviceBuffer<float> lse(kGpu, 16 * 2);
  EXPECT_THROW(cuda::cudnn_attention_forward(kGpu, out.data(), lse.data(), q.data(), kv.data(), kv.data(), s),
               std::invalid_argument);
  s.q_pos0 = 0;
  EXPECT_THROW(cuda::cudnn_attention_forward(kGpu, out.data() + 1, lse.data(), q.data(), kv.data(), kv.data(), s),
               std::invalid_argument);  // not 16-byte aligned
}

#else

TEST(CudaAttentionCudnn, NotBuilt) {
  GTEST_SKIP() << "this build has no cuDNN attention (no cudnn-frontend headers or no cuDNN 9 at configure time)";
}

#endif

}  // namespace
}  // namespace nexus
