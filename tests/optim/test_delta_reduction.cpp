// DeltaReduction against a recording data plane (no MPI): buckets go out as soon as
// enough contiguous deltas are final, cover [0, n) exactly once, top down; finish() posts the rest;
// under zero 1 each bucket is reduce-scattered to the shards it overlaps; a range out of order is
// refused. And the real Model's backward reports ranges that tile its
// parameter buffer top down, so the reduction sums every delta exactly once.
#include <gtest/gtest.h>

#include <span>
#include <utility>
#include <vector>

#include "model/model.h"
#include "optim/delta_reduction.h"
#include "support/model_configs.h"

namespace nexus {
namespace {

// Records each non-blocking all-reduce's range (relative to `base`) and "sums" over two identical
// ranks by doubling, so a range posted twice or never shows in the values; records each
// reduce-scatter's range, counts and receive offset (relative to `recv_base`) as rank `rank` of
// `ranks`, and "sums" by doubling this rank's part into recv.
class RecordingPlane final : public DataPlane {
 public:
  explicit RecordingPlane(const float* base, int ranks = 2, int rank = 0, const float* recv_base = nullptr)
      : base_(base), recv_base_(recv_base), ranks_(ranks), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return ranks_; }
  mutable std::vector<std::pair<idx, idx>> posted;  // (offset, count) in posting order
  mutable std::vector<std::vector<idx>> counts;     // per reduce-scatter: every rank's count
  mutable std::vector<idx> recv_at;                 // per reduce-scatter: recv - recv_base

 private:
  Request do_iallreduce_sum(void* data, idx count, DType t) const override {
    EXPECT_EQ(t, DType::f32);
    auto* p = static_cast<float*>(data);
    posted.emplace_back(idx(p - base_), count);
    for (idx i = 0; i < count; ++i) p[i] *= 2.0f;
    return Request();
  }
  Request do_ireduce_scatter_sum(void* send, std::span<const idx> c, void* recv, DType t) const override {
    EXPECT_EQ(t, DType::f32);
    const auto* s = static_cast<const float*>(send);
    auto* r = static_cast<float*>(recv);
    idx total = 0, first = 0;
    for (int q = 0; q < ranks_; ++q) {
      if (q < rank_) first += c[std::size_t(q)];
      total += c[std::size_t(q)];
    }
    posted.emplace_back(idx(s - base_), total);
    counts.emplace_back(c.begin(), c.end());
    recv_at.push_back(idx(r - recv_base_));
    for (idx i = 0; i < c[std::size_t(rank_)]; ++i) r[i] = 2.0f * s[first + i];
    return Request();
  }
  [[noreturn]] static void unused() { throw std::logic_error("RecordingPlane: only the non-blocking sums"); }
  void do_allreduce_sum(void*, idx, DType) const override { unused(); }
  void do_allgather(const void*, void*, idx, DType) const override { unused(); }
  void do_reduce_scatter_sum(const void*, void*, idx, DType) const override { unused(); }
  Request do_isend(const void*, idx, DType, int, int) const override { unused(); }
  Request do_irecv(void*, idx, DType, int, int) const override { unused(); }
  const float* base_;
  const float* recv_base_;
  int ranks_, rank_;
};

TEST(DeltaReduction, BucketsGoOutWhenFullAndCoverTheBufferOnce) {
  std::vector<float> deltas(100, 1.0f);
  RecordingPlane plane(deltas.data());
  DeltaReduction r(plane, deltas.data(), 100, 32 * sizeof(float));  // 32-element buckets
  r.ready(90, 10);  // 10 pending: not yet
  EXPECT_TRUE(plane.posted.empty());
  r.ready(60, 30);  // 40 pending: one bucket [60, 100)
  ASSERT_EQ(plane.posted.size(), 1u);
  EXPECT_EQ(plane.posted[0], std::make_pair(idx(60), idx(40)));
  r.ready(50, 10);
  EXPECT_EQ(plane.posted.size(), 1u);
  r.finish();  // [0, 60): the pending [50, 60) and the never-reported [0, 50)
  ASSERT_EQ(plane.posted.size(), 2u);
  EXPECT_EQ(plane.posted[1], std::make_pair(idx(0), idx(60)));
  EXPECT_EQ(deltas, std::vector<float>(100, 2.0f)) << "every delta summed exactly once";

  r.begin();  // the next step starts over
  plane.posted.clear();
  r.ready(0, 100);
  EXPECT_EQ(plane.posted.size(), 1u);
  r.finish();
  EXPECT_EQ(plane.posted.size(), 1u) << "nothing left to post";

  // bucket_bytes 0 (parallel.overlap_kib = 0): nothing during the backward, all of it at finish().
  plane.posted.clear();
  DeltaReduction after(plane, deltas.data(), 100, 0);
  after.ready(50, 50);
  after.ready(0, 50);
  EXPECT_TRUE(plane.posted.empty());
  after.finish();
  EXPECT_EQ(plane.posted, (std::vector<std::pair<idx, idx>>{{0, 100}}));
}

// Zero 1: each bucket is reduce-scattered with the bucket's piece of each shard as that rank's
// count (flat_shard: 100 over 3 ranks is [0, 33), [33, 66), [66, 100)), and rank 1 receives its
// pieces where they belong in its shard, so the buckets fill its [33, 66) exactly once.
TEST(DeltaReduction, ZeroOneReduceScattersEachBucketToTheShards) {
  std::vector<float> deltas(100);
  for (std::size_t i = 0; i < deltas.size(); ++i) deltas[i] = float(i);
  std::vector<float> shard(33, -1.0f);
  RecordingPlane plane(deltas.data(), 3, 1, shard.data());
  DeltaReduction r(plane, deltas.data(), 100, 40 * sizeof(float), flat_shard(100, 3, 1), shard.data());
  r.ready(70, 30);
  EXPECT_TRUE(plane.posted.empty());
  r.ready(50, 20);  // the bucket [50, 100): 16 of rank 1's shard, 34 of rank 2's
  using P = std::pair<idx, idx>;
  using C = std::vector<idx>;
  EXPECT_EQ(plane.posted, (std::vector<P>{{50, 50}}));
  EXPECT_EQ(plane.counts, (std::vector<C>{{0, 16, 34}}));
  EXPECT_EQ(plane.recv_at, (std::vector<idx>{17}));  // element 50 is rank 1's 17th
  r.ready(0, 50);  // the bucket [0, 50): rank 0's 33, rank 1's first 17
  r.finish();
  EXPECT_EQ(plane.posted, (std::vector<P>{{50, 50}, {0, 50}}));
  EXPECT_EQ(plane.counts, (std::vector<C>{{0, 16, 34}, {33, 17, 0}}));
  EXPECT_EQ(plane.recv_at, (std::vector<idx>{17, 0}));
  for (idx i = 0; i < 33; ++i) EXPECT_EQ(shard[std::size_t(i)], 2.0f * float(33 + i)) << "shard element " << i;

  // Fewer elements than ranks: no equal blocks, the last rank holds everything.
  std::vector<float> few(2, 1.0f), last_shard(2, 0.0f);
  RecordingPlane three(few.data(), 3, 2, last_shard.data());
  DeltaReduction tiny(three, few.data(), 2, 1 << 20, flat_shard(2, 3, 2), last_shard.data());
  tiny.ready(0, 2);
  tiny.finish();
  EXPECT_EQ(three.counts, (std::vector<C>{{0, 0, 2}}));
  EXPECT_EQ(last_shard, (std::vector<float>{2.0f, 2.0f}));

  // A shard that is not this rank's (the optimizer laid out over another group) is refused.
  EXPECT_THROW(DeltaReduction(plane, deltas.data(), 100, 0, flat_shard(100, 3, 0), shard.data()),
               std::invalid_argument);
  EXPECT_THROW(DeltaReduction(plane, deltas.data(), 100, 0, flat_shard(100, 2, 1), shard.data()),
               std::invalid_argument);
}

TEST(DeltaReduction, ARangeOutOfOrderIsRefused) {
  std::vector<float> deltas(10, 1.0f);
  RecordingPlane plane(deltas.data());
  DeltaReduction r(plane, deltas.data(), 10, 1 << 20);
  r.ready(5, 5);
  EXPECT_THROW(r.ready(6, 2), std::logic_error);  // overlaps what is already final
  EXPECT_THROW(r.ready(0, 3), std::logic_error);  // leaves a gap
}

TEST(DeltaReduction, TheModelsBackwardReportsItsBufferTopDown) {
  for (const bool tied : {false, true}) {
    ModelConfig c = test::tiny_hybrid(8, 16);
    c.tie_embeddings = tied;
    Model<float> m(c, BatchShape{1, 24});
    m.init(3);
    std::vector<std::int32_t> tokens(24), targets(24);
    for (idx t = 0; t < 24; ++t) tokens[std::size_t(t)] = targets[std::size_t(t)] = std::int32_t(t % c.vocab_size);
    m.forward(tokens.data(), targets.data());
    std::vector<std::pair<idx, idx>> ranges;
    m.backward(1.0, [&](idx offset, idx count) { ranges.emplace_back(offset, count); });
    ASSERT_EQ(ranges.size(), std::size_t(c.n_layers + 2)) << "head, every layer, embedding";
    idx expect_end = m.num_params();
    for (const auto& [offset, count] : ranges) {
      EXPECT_EQ(offset + count, expect_end) << "contiguous, top down (tied = " << tied << ")";
      expect_end = offset;
    }
    EXPECT_EQ(expect_end, 0) << "down to the embedding";
  }
}

}  // namespace
}  // namespace nexus
