// The collectives the trainer relies on, under mpirun -np 2 and -np 4.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "mpi/world.h"

namespace nexus {
namespace {

TEST(Communicator, BucketedAllreduceSumsEveryElement) {
  const Communicator& w = test::world();
  // Odd length and a tiny bucket: several buckets and a ragged last one.
  const idx n = 1001;
  std::vector<float> v(static_cast<std::size_t>(n));
  for (idx i = 0; i < n; ++i) v[std::size_t(i)] = float(i % 7) + float(w.rank());
  w.allreduce_sum(v.data(), n, 64 * sizeof(float));
  const float rank_sum = float(w.size() * (w.size() - 1) / 2);
  for (idx i = 0; i < n; ++i) ASSERT_EQ(v[std::size_t(i)], float(w.size()) * float(i % 7) + rank_sum) << i;
}

TEST(Communicator, ScalarsAndAgreement) {
  const Communicator& w = test::world();
  EXPECT_EQ(w.sum(std::int64_t(w.rank() + 1)), std::int64_t(w.size() * (w.size() + 1) / 2));
  EXPECT_DOUBLE_EQ(w.max(double(w.rank())), double(w.size() - 1));
  EXPECT_TRUE(w.all(true));
  EXPECT_FALSE(w.all(w.rank() != w.size() - 1));  // one rank says no: everybody hears it
  EXPECT_GE(w.local_rank(), 0);
  EXPECT_LT(w.local_rank(), w.local_size());
}

}  // namespace
}  // namespace nexus
