// Flash attention on the GPU against the CPU kernel of the same type: forward (out, lse) and
// backward (dq, dk, dv accumulated onto nonzero buffers, from the CPU's final out and lse), over
// B > 1, GQA ratios 1, 2 and 4, Tq != Tk, lengths that are not multiples of the tiles, head_dim
// 16, 64, 80, 128 and 256, every neighborhood kind, non-causal, and the offsets ring attention
// uses (keys before, overlapping, after the queries: rows, then a whole block, with no visible key,
// which must give out = 0 and lse = -inf exactly). The backward must give identical bits twice.
//
// Tolerances, relative to max(|reference|, 1): both sides sum the same terms in different orders
// (and the CPU's fp32 exp is a polynomial within 1.5 ulp); a score is a dot product of <= 256
// terms of |q k| <= 4, an output a convex combination of values in [-1, 1], and a gradient a sum of
// <= 4 * 100 products of such values: the rounding error is a few hundred ulps of the result's
// scale at worst, so 2e-5 (forward) and 1e-4 (backward) in fp32, 1e-12 in fp64, while any
// indexing or masking mistake shows as O(1e-2) or more. lse is compared absolutely with the same
// bounds (|lse| <= ~10). bf16 against the CPU fp32 kernel run on the same bf16-rounded inputs:
// the GPU computes in fp32 and rounds each stored output once (relative 2^-9), plus the fp32
// differences; lse stays fp32 (2e-5). The bf16 forward at head_dim 64 and 128 is the tensor-core
// kernel (the cases at those head dims test it, the others the CUDA-core one), which also rounds
// the softmax weights to bf16 before P V: at most 2^-9 max|v| more, so 2^-8 of the scale covers
// both roundings.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/device_memory.h"
#include "kernels/ops.h"
#include "support/check.h"
#include "support/naive_neighborhood.h"

namespace nexus {
namespace {

using namespace test;  // kCpu, kGpu, on_gpu, on_host, round_to_bf16, to_float, same_bits (cuda/gpu_buffers.h)

struct Case {
  std::string name;
  AttentionShape s;
};

AttentionShape shape(idx B, idx Tq, idx Tk, idx Hq, idx Hkv, idx hd, idx q_pos0 = 0, idx k_pos0 = 0,
                     bool causal = true, Neighborhood nb = {}) {
  return AttentionShape{B, Tq, Tk, Hq, Hkv, hd, q_pos0, k_pos0, causal, nb};
}

std::vector<Case> cases() {
  std::vector<Case> c = {
      {"full B=2 T=70 hd=16", shape(2, 70, 70, 4, 4, 16)},
      {"full ring keys before+overlap hd=64 gqa=2", shape(2, 45, 100, 4, 2, 64, 55, 0)},
      {"full ring keys partly after (rows without keys) hd=80 gqa=4", shape(1, 33, 50, 8, 2, 80, 0, 20)},
      {"full ring keys all after (lse=-inf) hd=128", shape(2, 40, 40, 2, 1, 128, 0, 40)},
      {"full ring hd=128 gqa=4", shape(2, 70, 90, 4, 1, 128, 20, 0)},
      {"full T=1 hd=16", shape(3, 1, 1, 2, 1, 16)},
      {"non-causal hd=64 gqa=4", shape(2, 37, 53, 4, 1, 64, 0, 0, false)},
      {"full hd=256 gqa=2", shape(1, 40, 40, 2, 1, 256)},
      {"full hd=200", shape(1, 17, 30, 1, 1, 200, 13, 0)},
  };
  const struct {
    const char* name;
    Neighborhood nb;
  } kinds[] = {
      {"sliding:20", make_neighborhood(Neighborhood::kSliding, 20)},
      {"dilated:4:7", make_neighborhood(Neighborhood::kDilated, 4, 7)},
      {"log", make_neighborhood(Neighborhood::kLog)},
      {"block:23", make_neighborhood(Neighborhood::kBlock, 23)},
      {"sink:3+sliding:10", make_neighborhood(Neighborhood::kSliding, 10, 1, 3)},
  };
  for (const auto& k : kinds) {
    c.push_back({std::string(k.name) + " hd=16 gqa=2", shape(2, 100, 100, 4, 2, 16, 30, 30, true, k.nb)});
    c.push_back({std::string(k.name) + " ring hd=64", shape(1, 50, 70, 2, 1, 64, 90, 10, true, k.nb)});
  }
  return c;
}

std::size_t q_size(const AttentionShape& s) { return std::size_t(s.B * s.Tq * s.n_heads * s.head_dim); }
std::size_t k_size(const AttentionShape& s) { return std::size_t(s.B * s.Tk * s.n_kv_heads * s.head_dim); }
std::size_t lse_size(const AttentionShape& s) { return std::size_t(s.B * s.Tq * s.n_heads); }

// Rows with no visible key carry -inf on both sides exactly; the others differ by at most tol.
template <typename A, typename B>
void expect_lse_near(const std::vector<A>& got, const std::vector<B>& want, double tol, const std::string& where) {
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (std::isinf(double(want[i]))) {
      ASSERT_EQ(double(got[i]), double(want[i])) << where << " lse row " << i;
    } else {
      ASSERT_NEAR(double(got[i]), double(want[i]), tol) << where << " lse row " << i;
    }
  }
}

template <typename T>
void attention_matches_the_cpu(double fwd_tol, double bwd_tol) {
  for (const Case& c : cases()) {
    const AttentionShape& s = c.s;
    const std::vector<T> q = random_vector<T>(q_size(s), 1, -2, 2), k = random_vector<T>(k_size(s), 2, -2, 2),
                         v = random_vector<T>(k_size(s), 3), dout = random_vector<T>(q_size(s), 4),
                         dq0 = random_vector<T>(q_size(s), 5), dk0 = random_vector<T>(k_size(s), 6),
                         dv0 = random_vector<T>(k_size(s), 7);
    std::vector<T> out(q_size(s)), lse(lse_size(s));
    attention_forward(kCpu, out.data(), lse.data(), q.data(), k.data(), v.data(), s);
    DeviceBuffer<T> g_q = on_gpu(q), g_k = on_gpu(k), g_v = on_gpu(v), g_dout = on_gpu(dout),
                    g_out(kGpu, idx(q_size(s))), g_lse(kGpu, idx(lse_size(s)));
    attention_forward(kGpu, g_out.data(), g_lse.data(), g_q.data(), g_k.data(), g_v.data(), s);
    EXPECT_LE(max_rel_diff(on_host(g_out), out, 1.0), fwd_tol) << c.name << " forward out";
    expect_lse_near(on_host(g_lse), lse, fwd_tol, c.name);

    std::vector<T> dq = dq0, dk = dk0, dv = dv0;
    attention_backward(kCpu, dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(), out.data(),
                       lse.data(), s);
    DeviceBuffer<T> cpu_out = on_gpu(out), cpu_lse = on_gpu(lse);
    std::vector<T> first[3];
    for (int run = 0; run < 2; ++run) {
      DeviceBuffer<T> g_dq = on_gpu(dq0), g_dk = on_gpu(dk0), g_dv = on_gpu(dv0);
      attention_backward(kGpu, g_dq.data(), g_dk.data(), g_dv.data(), g_dout.data(), g_q.data(), g_k.data(),
                         g_v.data(), cpu_out.data(), cpu_lse.data(), s);
      const std::vector<T> got[3] = {on_host(g_dq), on_host(g_dk), on_host(g_dv)};
      const std::vector<T>* want[3] = {&dq, &dk, &dv};
      const char* names[3] = {"dq", "dk", "dv"};
      for (int t = 0; t < 3; ++t) {
        if (run == 0) {
          EXPECT_LE(max_rel_diff(got[t], *want[t], 1.0), bwd_tol) << c.name << " " << names[t];
          first[t] = got[t];
        } else {
          EXPECT_TRUE(same_bits(got[t], first[t])) << c.name << " " << names[t] << " differs between two runs";
        }
      }
    }
  }
}

TEST(CudaAttention, Fp32MatchesTheCpu) { attention_matches_the_cpu<float>(2e-5, 1e-4); }
TEST(CudaAttention, Fp64MatchesTheCpu) { attention_matches_the_cpu<double>(1e-12, 1e-12); }

TEST(CudaAttention, Bf16MatchesTheFp32CpuOnRoundedInputs) {
  const double tol = std::ldexp(1.0, -8) + 1e-4;
  for (const Case& c : cases()) {
    const AttentionShape& s = c.s;
    const Bf16Rounded q = round_to_bf16(random_vector<float>(q_size(s), 1, -2, 2)),
                      k = round_to_bf16(random_vector<float>(k_size(s), 2, -2, 2)),
                      v = round_to_bf16(random_vector<float>(k_size(s), 3)),
                      dout = round_to_bf16(random_vector<float>(q_size(s), 4));
    std::vector<float> out(q_size(s)), lse(lse_size(s));
    attention_forward(kCpu, out.data(), lse.data(), q.value.data(), k.value.data(), v.value.data(), s);
    // The CPU has no bf16 kernels, so the public route cannot be instantiated for bf16 here.
    DeviceBuffer<bf16> g_q = on_gpu(q.stored), g_k = on_gpu(k.stored), g_v = on_gpu(v.stored),
                       g_dout = on_gpu(dout.stored), g_out(kGpu, idx(q_size(s)));
    DeviceBuffer<float> g_lse(kGpu, idx(lse_size(s)));
    cuda::attention_forward(kGpu, g_out.data(), g_lse.data(), g_q.data(), g_k.data(), g_v.data(), s);
    EXPECT_LE(max_rel_diff(to_float(on_host(g_out)), out, 1.0), tol) << c.name << " forward out";
    expect_lse_near(on_host(g_lse), lse, 2e-5, c.name);

    // The backward of both from the same (bf16-rounded) final out and the CPU's lse, gradients
    // from zero so that each is rounded to bf16 once.
    const Bf16Rounded out_r = round_to_bf16(out);
    std::vector<float> dq(q_size(s), 0.0f), dk(k_size(s), 0.0f), dv(k_size(s), 0.0f);
    attention_backward(kCpu, dq.data(), dk.data(), dv.data(), dout.value.data(), q.value.data(), k.value.data(),
                       v.value.data(), out_r.value.data(), lse.data(), s);
    DeviceBuffer<bf16> g_out_r = on_gpu(out_r.stored), g_dq(kGpu, idx(dq.size())), g_dk(kGpu, idx(dk.size())),
                       g_dv(kGpu, idx(dv.size()));
    DeviceBuffer<float> g_cpu_lse = on_gpu(lse);
    g_dq.zero();
    g_dk.zero();
    g_dv.zero();
    cuda::attention_backward(kGpu, g_dq.data(), g_dk.data(), g_dv.data(), g_dout.data(), g_q.data(), g_k.data(),
                             g_v.data(), g_out_r.data(), g_cpu_lse.data(), s);
    EXPECT_LE(max_rel_diff(to_float(on_host(g_dq)), dq, 1.0), tol) << c.name << " dq";
    EXPECT_LE(max_rel_diff(to_float(on_host(g_dk)), dk, 1.0), tol) << c.name << " dk";
    EXPECT_LE(max_rel_diff(to_float(on_host(g_dv)), dv, 1.0), tol) << c.name << " dv";
  }
}

// head_dim beyond the kernels' capacity is refused before anything runs.
TEST(CudaAttention, RefusesHeadDimAbove256) {
  const AttentionShape s = shape(1, 4, 4, 1, 1, 257);
  DeviceBuffer<float> buf(kGpu, idx(4 * 257)), lse(kGpu, 4);
  EXPECT_THROW(attention_forward(kGpu, buf.data(), lse.data(), buf.data(), buf.data(), buf.data(), s),
               std::invalid_argument);
}

}  // namespace
}  // namespace nexus
