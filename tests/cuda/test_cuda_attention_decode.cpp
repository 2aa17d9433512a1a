// Paged decode attention on the GPU against the CPU kernel of the same type, on the same pool:
// sequences of different lengths in one call (an empty one, a single token, more keys than a
// warp's share), GQA ratios 1 and 4, head_dim 16, 64, 80, 128, block sizes that do and do not
// divide the lengths, the blocks of every sequence shuffled through the pool, and every
// neighborhood kind — the bounded ones with their block table used cyclically past the pinned
// (sink) blocks, as model/inference.cpp uses it. Every pool row holding a key the query does not
// see is NaN, so reading any of them (or any block the table does not reach) shows in the result.
//
// Tolerances, relative to max(|reference|, 1): the same softmax summed in a different order over
// <= 200 keys with |score| <= ~10 and |v| <= 1: 2e-5 in fp32, 1e-12 in fp64. bf16 against the CPU
// fp32 kernel on the same bf16-rounded pool and queries: one rounding of each stored output
// (relative 2^-9; 2^-8 with margin) plus the fp32 differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/device_memory.h"
#include "kernels/ops.h"
#include "support/check.h"
#include "support/naive_neighborhood.h"

namespace nexus {
namespace {

using namespace test;  // kCpu, kGpu, on_gpu, on_host (cuda/gpu_buffers.h), random_vector

struct Named {
  std::string name;
  Neighborhood nb;
  idx span;  // keys a query reads back from itself (0: unbounded, the table is not reused)
};

const Named kNeighborhoods[] = {
    {"full", make_neighborhood(Neighborhood::kFull), 0},
    {"sliding:20", make_neighborhood(Neighborhood::kSliding, 20), 20},
    {"dilated:4:7", make_neighborhood(Neighborhood::kDilated, 4, 7), 22},
    {"log", make_neighborhood(Neighborhood::kLog), 0},
    {"block:23", make_neighborhood(Neighborhood::kBlock, 23), 23},
    {"sink:3+sliding:10", make_neighborhood(Neighborhood::kSliding, 10, 1, 3), 10},
};

// A filled cache in fp64: its shape, pool, table and lengths.
struct Cache {
  PagedKvShape s;
  std::vector<double> q, k_pool, v_pool;
  std::vector<std::int32_t> table;
  std::vector<idx> kv_len;
};

Cache make_cache(const Named& n, idx Hq, idx Hkv, idx hd, idx block_tokens, const std::vector<idx>& lens,
                 std::uint64_t seed) {
  Cache c;
  const idx B = idx(lens.size()), longest = *std::max_element(lens.begin(), lens.end());
  const idx pinned = n.span == 0 ? 0 : (n.nb.sink + block_tokens - 1) / block_tokens;
  const idx blocks_per_seq = n.span == 0 ? (longest + block_tokens - 1) / block_tokens + 1
                                         : pinned + (n.span + block_tokens - 1) / block_tokens + 1;
  c.s = PagedKvShape{B, Hq, Hkv, hd, block_tokens, blocks_per_seq, n.nb, pinned};
  const idx num_blocks = B * blocks_per_seq, row = Hkv * hd;
  std::vector<std::int32_t> ids(static_cast<std::size_t>(num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64(seed));
  c.table.assign(ids.begin(), ids.end());
  c.kv_len = lens;
  c.q = random_vector(std::size_t(B * Hq * hd), seed + 1, -2, 2);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  c.k_pool.assign(std::size_t(num_blocks * block_tokens * row), nan);
  c.v_pool = c.k_pool;
  std::vector<idx> owner(std::size_t(num_blocks * block_tokens), -1);  // the token a pool row holds
  for (idx b = 0; b < B; ++b) {
    const auto k = random_vector(std::size_t(lens[std::size_t(b)] * row), seed + 2 + std::uint64_t(b), -2, 2),
               v = random_vector(std::size_t(lens[std::size_t(b)] * row), seed + 100 + std::uint64_t(b));
    auto pool_row = [&](idx j) {
      return idx(c.table[std::size_t(b * blocks_per_seq + paged_slot(c.s, j / block_tokens))]) * block_tokens +
             j % block_tokens;
    };
    for (idx j = 0; j < lens[std::size_t(b)]; ++j) {  // in order: a reused slot keeps the latest token
      const idx r = pool_row(j);
      owner[std::size_t(r)] = j;
      std::copy_n(k.begin() + long(j * row), row, c.k_pool.begin() + long(r * row));
      std::copy_n(v.begin() + long(j * row), row, c.v_pool.begin() + long(r * row));
    }
    const idx qpos = lens[std::size_t(b)] - 1;
    for (idx j = 0; j < lens[std::size_t(b)]; ++j) {
      const idx r = pool_row(j);
      if (owner[std::size_t(r)] == j && !naive_visible(n.nb, qpos, j)) {
        std::fill_n(c.k_pool.begin() + long(r * row), row, nan);
        std::fill_n(c.v_pool.begin() + long(r * row), row, nan);
      }
    }
  }
  return c;
}

template <typename T>
std::vector<T> as(const std::vector<double>& x) {
  std::vector<T> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) r[i] = T(float(x[i]));
  return r;
}
template <>
std::vector<double> as(const std::vector<double>& x) {
  return x;
}

// The CPU kernel's output in CpuT and the GPU kernel's in GpuT (run through `gpu_op`), widened to
// double, on the same cache (the CPU reading it rounded to GpuT when that is narrower).
template <typename CpuT, typename GpuT, typename GpuOp>
void run_both(const Cache& c, std::vector<double>& want, std::vector<double>& got, GpuOp gpu_op) {
  const std::vector<GpuT> q = as<GpuT>(c.q), k = as<GpuT>(c.k_pool), v = as<GpuT>(c.v_pool);
  auto widen = [](const std::vector<GpuT>& x) {
    std::vector<CpuT> r(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) r[i] = CpuT(x[i]);
    return r;
  };
  const std::vector<CpuT> cq = widen(q), ck = widen(k), cv = widen(v);
  std::vector<CpuT> out(c.q.size());
  attention_decode_paged(kCpu, out.data(), cq.data(), ck.data(), cv.data(), c.table.data(), c.kv_len.data(), c.s);
  want.assign(out.begin(), out.end());
  DeviceBuffer<GpuT> g_q = on_gpu(q), g_k = on_gpu(k), g_v = on_gpu(v), g_out(kGpu, idx(c.q.size()));
  DeviceBuffer<std::int32_t> g_table = on_gpu(c.table);
  DeviceBuffer<idx> g_len = on_gpu(c.kv_len);
  gpu_op(g_out.data(), g_q.data(), g_k.data(), g_v.data(), g_table.data(), g_len.data(), c.s);
  got.clear();
  for (const GpuT& x : on_host(g_out)) {
    if constexpr (std::is_same_v<GpuT, bf16>) got.push_back(double(float(x)));
    else got.push_back(double(x));
  }
}

template <typename CpuT, typename GpuT, typename GpuOp>
void decode_matches_the_cpu(double tol, GpuOp gpu_op) {
  const std::vector<idx> lens[] = {{150, 0, 1, 37}, {64, 200, 5}};
  const idx heads[][2] = {{4, 4}, {8, 2}};  // {Hq, Hkv}
  for (const Named& n : kNeighborhoods)
    for (const idx hd : {idx(16), idx(64), idx(80), idx(128)})
      for (const idx block_tokens : {idx(16), idx(7)})
        for (std::size_t l = 0; l < 2; ++l) {
          const Cache c = make_cache(n, heads[l][0], heads[l][1], hd, block_tokens, lens[l], 40 + std::uint64_t(hd));
          std::vector<double> want, got;
          run_both<CpuT, GpuT>(c, want, got, gpu_op);
          const std::string where = n.name + " hd=" + std::to_string(hd) + " block_tokens=" +
                                    std::to_string(block_tokens) +
                                    " Hq/Hkv=" + std::to_string(heads[l][0] / heads[l][1]);
          ASSERT_TRUE(std::all_of(want.begin(), want.end(), [](double x) { return std::isfinite(x); })) << where;
          EXPECT_LE(max_rel_diff(got, want, 1.0), tol) << where;
        }
}

template <typename T>
void public_op(T* out, const T* q, const T* k, const T* v, const std::int32_t* table, const idx* len,
               const PagedKvShape& s) {
  attention_decode_paged(kGpu, out, q, k, v, table, len, s);
}

TEST(CudaAttentionDecode, Fp32MatchesTheCpu) { decode_matches_the_cpu<float, float>(2e-5, public_op<float>); }
TEST(CudaAttentionDecode, Fp64MatchesTheCpu) { decode_matches_the_cpu<double, double>(1e-12, public_op<double>); }

// The CPU has no bf16 kernels, so the public route cannot be instantiated for bf16 here.
TEST(CudaAttentionDecode, Bf16MatchesTheFp32CpuOnRoundedInputs) {
  decode_matches_the_cpu<float, bf16>(std::ldexp(1.0, -8) + 1e-4,
                                      [](bf16* out, const bf16* q, const bf16* k, const bf16* v,
                                         const std::int32_t* table, const idx* len, const PagedKvShape& s) {
                                        cuda::attention_decode_paged(kGpu, out, q, k, v, table, len, s);
                                      });
}

}  // namespace
}  // namespace nexus
