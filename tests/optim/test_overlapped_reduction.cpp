// OverlappedDeltaReduction against a recording data plane (no MPI): buckets go out as soon as
// enough contiguous deltas are final, cover [0, n) exactly once, top down; finish() posts the rest;
// a range out of order is refused. And the real Model's backward reports ranges that tile its
// parameter buffer top down, so the reduction sums every delta exactly once.
#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "model/model.h"
#include "optim/overlapped_reduction.h"
#include "support/model_configs.h"

namespace nexus {
namespace {

// Records each non-blocking all-reduce's range (relative to `base`) and "sums" over two identical
// ranks by doubling, so a range posted twice or never shows in the values.
class RecordingPlane final : public DataPlane {
 public:
  explicit RecordingPlane(const float* base) : base_(base) {}
  int rank() const override { return 0; }
  int size() const override { return 2; }
  mutable std::vector<std::pair<idx, idx>> posted;  // (offset, count) in posting order

 private:
  Request do_iallreduce_sum(void* data, idx count, DType t) const override {
    EXPECT_EQ(t, DType::f32);
    auto* p = static_cast<float*>(data);
    posted.emplace_back(idx(p - base_), count);
    for (idx i = 0; i < count; ++i) p[i] *= 2.0f;
    return Request();
  }
  [[noreturn]] static void unused() { throw std::logic_error("RecordingPlane: only iallreduce_sum"); }
  void do_allreduce_sum(void*, idx, DType) const override { unused(); }
  void do_allgather(const void*, void*, idx, DType) const override { unused(); }
  void do_reduce_scatter_sum(const void*, void*, idx, DType) const override { unused(); }
  Request do_isend(const void*, idx, DType, int, int) const override { unused(); }
  Request do_irecv(void*, idx, DType, int, int) const override { unused(); }
  const float* base_;
};

TEST(OverlappedReduction, BucketsGoOutWhenFullAndCoverTheBufferOnce) {
  std::vector<float> deltas(100, 1.0f);
  RecordingPlane plane(deltas.data());
  OverlappedDeltaReduction r(plane, deltas.data(), 100, 32 * sizeof(float));  // 32-element buckets
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
}

TEST(OverlappedReduction, ARangeOutOfOrderIsRefused) {
  std::vector<float> deltas(10, 1.0f);
  RecordingPlane plane(deltas.data());
  OverlappedDeltaReduction r(plane, deltas.data(), 10, 1 << 20);
  r.ready(5, 5);
  EXPECT_THROW(r.ready(6, 2), std::logic_error);  // overlaps what is already final
  EXPECT_THROW(r.ready(0, 3), std::logic_error);  // leaves a gap
}

TEST(OverlappedReduction, TheModelsBackwardReportsItsBufferTopDown) {
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
