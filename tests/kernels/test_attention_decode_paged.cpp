// attention_decode_paged: query t of a sequence against its first t+1 keys, read from a paged
// cache whose blocks are scattered through the pool in shuffled order, equals row t of the
// full-sequence causal attention_forward (itself checked against naive softmax attention in
// test_attention.cpp). GQA (3 query heads per kv head), sequences of different lengths in one
// call, more keys than one online-softmax tile, block sizes that do and do not divide it, an
// empty sequence, float against double.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/ops.h"
#include "tests/support/check.h"

namespace nexus {
namespace {

using test::max_rel_diff;
using test::random_vector;

constexpr idx kB = 2, kT = 150, kHq = 6, kHkv = 2, kHd = 12;

struct Inputs {
  std::vector<double> q, k, v;  // [B,T,Hq,hd], [B,T,Hkv,hd] x2
};

Inputs make_inputs(std::uint64_t seed) {
  // Scores of a few units, so the softmax is neither flat nor one-hot.
  return {random_vector(std::size_t(kB * kT * kHq * kHd), seed, -1.5, 1.5),
          random_vector(std::size_t(kB * kT * kHkv * kHd), seed + 1, -1.5, 1.5),
          random_vector(std::size_t(kB * kT * kHkv * kHd), seed + 2)};
}

std::vector<double> full_attention(const Inputs& in) {
  std::vector<double> out(in.q.size()), lse(std::size_t(kB * kT * kHq));
  attention_forward(Exec{}, out.data(), lse.data(), in.q.data(), in.k.data(), in.v.data(),
                    AttentionShape{kB, kT, kT, kHq, kHkv, kHd, 0, 0, true});
  return out;
}

// The pool, with every sequence's blocks at shuffled places, and the block table.
template <typename T>
struct Cache {
  idx block_tokens, max_blocks_per_seq;
  std::vector<T> k_pool, v_pool;    // [num_blocks, block_tokens, Hkv, hd]
  std::vector<std::int32_t> table;  // [B, max_blocks_per_seq], -1 where unused

  Cache(const Inputs& in, idx bt) : block_tokens(bt) {
    const idx per_seq = (kT + bt - 1) / bt, num_blocks = kB * per_seq + 3, row = kHkv * kHd;
    max_blocks_per_seq = per_seq + 2;
    std::vector<std::int32_t> ids(static_cast<std::size_t>(num_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), std::mt19937_64(bt));
    table.assign(std::size_t(kB * max_blocks_per_seq), -1);
    k_pool.assign(std::size_t(num_blocks * bt * row), T(1e30));  // garbage where no token was written
    v_pool = k_pool;
    for (idx b = 0; b < kB; ++b)
      for (idx j = 0; j < per_seq; ++j)
        table[std::size_t(b * max_blocks_per_seq + j)] = ids[std::size_t(b * per_seq + j)];
    for (idx b = 0; b < kB; ++b)
      for (idx t = 0; t < kT; ++t) {
        const idx blk = table[std::size_t(b * max_blocks_per_seq + t / bt)];
        for (idx e = 0; e < row; ++e) {
          const std::size_t dst = std::size_t((blk * bt + t % bt) * row + e), src = std::size_t((b * kT + t) * row + e);
          k_pool[dst] = T(in.k[src]);
          v_pool[dst] = T(in.v[src]);
        }
      }
  }
};

// Decodes, for every t, query row t of sequence 0 and row (t + 41) % T of sequence 1 (different
// lengths in one call); returns what the full attention would have at those rows, and the decode.
template <typename T>
void decode_all(const Inputs& in, const Cache<T>& cache, const std::vector<double>& full, std::vector<double>& got,
                std::vector<double>& want) {
  const idx qrow = kHq * kHd;
  std::vector<T> q(std::size_t(kB * qrow)), out(q.size());
  std::vector<idx> len(kB);
  const PagedKvShape s{kB, kHq, kHkv, kHd, cache.block_tokens, cache.max_blocks_per_seq};
  for (idx t = 0; t < kT; ++t) {
    for (idx b = 0; b < kB; ++b) {
      const idx pos = (t + 41 * b) % kT;
      len[std::size_t(b)] = pos + 1;
      for (idx e = 0; e < qrow; ++e) q[std::size_t(b * qrow + e)] = T(in.q[std::size_t((b * kT + pos) * qrow + e)]);
    }
    attention_decode_paged(Exec{}, out.data(), q.data(), cache.k_pool.data(), cache.v_pool.data(), cache.table.data(),
                           len.data(), s);
    for (idx b = 0; b < kB; ++b)
      for (idx e = 0; e < qrow; ++e) {
        got.push_back(double(out[std::size_t(b * qrow + e)]));
        want.push_back(full[std::size_t((b * kT + len[std::size_t(b)] - 1) * qrow + e)]);
      }
  }
}

TEST(AttentionDecodePaged, EqualsFullCausalAttentionRowByRow) {
  const Inputs in = make_inputs(17);
  const std::vector<double> full = full_attention(in);
  for (idx bt : {1, 5, 16, 64, 200}) {
    SCOPED_TRACE("block_tokens " + std::to_string(bt));
    const Cache<double> cache(in, bt);
    std::vector<double> got, want;
    decode_all(in, cache, full, got, want);
    EXPECT_LT(max_rel_diff(got, want), 1e-13);
  }
}

TEST(AttentionDecodePaged, EmptySequenceGivesZeros) {
  const Inputs in = make_inputs(3);
  const Cache<double> cache(in, 8);
  std::vector<double> q(in.q.begin(), in.q.begin() + kB * kHq * kHd), out(q.size(), 7.0);
  const std::vector<idx> len{0, 9};
  attention_decode_paged(Exec{}, out.data(), q.data(), cache.k_pool.data(), cache.v_pool.data(), cache.table.data(),
                         len.data(), PagedKvShape{kB, kHq, kHkv, kHd, 8, cache.max_blocks_per_seq});
  for (idx e = 0; e < kHq * kHd; ++e) EXPECT_EQ(out[std::size_t(e)], 0.0);
  for (idx e = kHq * kHd; e < 2 * kHq * kHd; ++e) EXPECT_TRUE(std::isfinite(out[std::size_t(e)]));
}

TEST(AttentionDecodePaged, FloatMatchesDouble) {
  const Inputs in = make_inputs(29);
  const std::vector<double> full = full_attention(in);
  const Cache<float> cache(in, 16);
  std::vector<double> got, want;
  decode_all(in, cache, full, got, want);
  // A convex combination of O(1) values with weights from hd-term dot products and exps: a few
  // float ulps (6e-8) per term, not growing with the number of keys; 1e-5 leaves a wide margin.
  EXPECT_LT(max_rel_diff(got, want), 1e-5);
}

}  // namespace
}  // namespace nexus
