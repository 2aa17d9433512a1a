// The collectives the trainer relies on, under mpirun -np 2 and -np 4.
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "mpi/world.h"
#include "parallel/mesh.h"

namespace nexus {
namespace {

TEST(Communicator, BucketedAllreduceSumsEveryElement) {
  Communicator w = test::world();
  // Odd length and a tiny bucket: several buckets and a ragged last one.
  w.set_bucket_bytes(64 * sizeof(float));
  const idx n = 1001;
  std::vector<float> v(static_cast<std::size_t>(n));
  for (idx i = 0; i < n; ++i) v[std::size_t(i)] = float(i % 7) + float(w.rank());
  w.allreduce_sum(v.data(), n);
  const float rank_sum = float(w.size() * (w.size() - 1) / 2);
  for (idx i = 0; i < n; ++i) ASSERT_EQ(v[std::size_t(i)], float(w.size()) * float(i % 7) + rank_sum) << i;
}

// The reduce-scatter with a count per rank (ZeRO-1's overlapped buckets), against the sums
// written out by hand: ragged counts, a rank that receives nothing, two in flight at once (their
// inputs are the plane's scratch: the communicator sums in them), in several all-reduce buckets.
TEST(DataPlane, ReduceScatterWithACountPerRank) {
  Communicator w = test::world();
  w.set_bucket_bytes(4 * sizeof(float));
  const DataPlane& d = w;
  const int P = d.size(), r = d.rank();
  std::vector<idx> counts(static_cast<std::size_t>(P)), none(static_cast<std::size_t>(P), 0);
  for (int q = 0; q < P; ++q) counts[std::size_t(q)] = q == 1 ? 0 : 3 + 2 * q;  // rank 1 receives nothing
  idx total = 0, first = 0;
  for (int q = 0; q < P; ++q) {
    if (q < r) first += counts[std::size_t(q)];
    total += counts[std::size_t(q)];
  }
  std::vector<float> send(static_cast<std::size_t>(total)), other(static_cast<std::size_t>(total));
  for (idx i = 0; i < total; ++i) {
    send[std::size_t(i)] = float(i % 13) + 0.5f * float(r);
    other[std::size_t(i)] = float(i % 5) - float(r);
  }
  std::vector<float> recv(static_cast<std::size_t>(counts[std::size_t(r)]) + 1, -7.0f), recv_other = recv;
  Request pending[2] = {d.ireduce_scatter_sum(send.data(), counts, recv.data()),
                        d.ireduce_scatter_sum(other.data(), counts, recv_other.data())};
  wait_all(pending);
  const float half_rank_sum = 0.5f * float(P * (P - 1) / 2);
  for (idx i = 0; i < counts[std::size_t(r)]; ++i) {
    EXPECT_EQ(recv[std::size_t(i)], float(P) * float((first + i) % 13) + half_rank_sum) << i;
    EXPECT_EQ(recv_other[std::size_t(i)], float(P) * float((first + i) % 5) - 2.0f * half_rank_sum) << i;
  }
  EXPECT_EQ(recv.back(), -7.0f) << "nothing written past this rank's count";
  float x = 1.0f, y = 2.0f;
  d.ireduce_scatter_sum(&x, none, &y).wait();  // nothing moves anywhere
  EXPECT_EQ(y, 2.0f);
  EXPECT_THROW(d.ireduce_scatter_sum(&x, std::span<const idx>(counts).first(std::size_t(P - 1)), &y),
               std::invalid_argument);
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

// The data-plane collectives through the interface model/ and parallel/ see, against the sums
// and concatenations written out by hand.
TEST(DataPlane, ReduceScatterAndAllgatherThroughTheInterface) {
  const DataPlane& d = test::world();
  const int P = d.size(), r = d.rank();
  const idx count = 3;
  std::vector<double> send(std::size_t(P * count)), recv(std::size_t(count), -1.0);
  for (idx i = 0; i < P * count; ++i) send[std::size_t(i)] = double(i) + 100.0 * r;
  d.reduce_scatter_sum(send.data(), count, recv.data());
  const double rank_sum = 100.0 * P * (P - 1) / 2;
  for (idx i = 0; i < count; ++i) EXPECT_EQ(recv[std::size_t(i)], P * double(r * count + i) + rank_sum) << i;

  std::vector<std::int64_t> mine = {r, 10 * r}, all(std::size_t(2 * P), -1);
  d.allgather(mine.data(), 2, all.data());
  for (int q = 0; q < P; ++q) {
    EXPECT_EQ(all[std::size_t(2 * q)], q);
    EXPECT_EQ(all[std::size_t(2 * q + 1)], 10 * q);
  }
}

// bf16 has no MPI type: it moves as its 16 bits. Every one of the 65536 bit patterns (NaNs with
// payloads, infinities, -0, subnormals) must arrive unchanged through point-to-point and
// all-gather, each rank sending them rotated by its own offset; a bf16 sum is refused on every
// rank (MPI would add the bits as integers, and nothing sums bf16: gradients, statistics and
// states are fp32), before any message moves.
std::uint16_t bf16_pattern(int rank, idx i) { return std::uint16_t((i + 4099 * idx(rank)) & 0xffff); }

TEST(DataPlane, Bf16MovesBitForBitAndIsNeverSummed) {
  static_assert(dtype_of<bf16>() == DType::bf16);
  EXPECT_EQ(dtype_bytes(DType::bf16), 2u);
  const DataPlane& d = test::world();
  const int P = d.size(), r = d.rank(), to = (r + 1) % P, from = (r - 1 + P) % P;
  const idx n = 1 << 16;
  std::vector<bf16> mine(static_cast<std::size_t>(n)), got(mine.size()), all(mine.size() * std::size_t(P));
  for (idx i = 0; i < n; ++i) mine[std::size_t(i)] = bf16::from_bits(bf16_pattern(r, i));
  Request reqs[2] = {d.irecv(got.data(), n, from, 3), d.isend(mine.data(), n, to, 3)};
  wait_all(reqs);
  for (idx i = 0; i < n; ++i) ASSERT_EQ(got[std::size_t(i)].bits, bf16_pattern(from, i)) << i;
  d.allgather(mine.data(), n, all.data());
  for (int q = 0; q < P; ++q)
    for (idx i = 0; i < n; ++i) ASSERT_EQ(all[std::size_t(q * n + i)].bits, bf16_pattern(q, i)) << q << " " << i;

  std::vector<bf16> sums(std::size_t(P), bf16(1.0f));
  for (int round = 0; round < 2; ++round) {  // the group stays usable after a refusal
    try {
      d.allreduce_sum(sums.data(), 1);
      ADD_FAILURE() << "a bf16 all-reduce was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("does not sum bf16"), std::string::npos) << e.what();
    }
    EXPECT_THROW(d.reduce_scatter_sum(sums.data(), 1, got.data()), std::invalid_argument);
  }
  EXPECT_EQ(sums[0].bits, bf16(1.0f).bits);
  d.allgather(mine.data(), 1, all.data());
  EXPECT_EQ(all[std::size_t(from)].bits, bf16_pattern(from, 0));
}

// cp-inner: the cp group of a rank is the block of cp neighbours, the dp group the ranks with the
// same place in their block. Checked by summing world ranks over each group's data plane.
TEST(Mesh, CpInnerGroupsAndTheirDataPlanes) {
  const Communicator& w = test::world();
  for (idx cp = 1; cp <= w.size(); ++cp) {
    if (w.size() % cp != 0) {
      EXPECT_THROW(Mesh(w, cp), std::invalid_argument) << cp;
      continue;
    }
    const Mesh mesh(w, cp);
    EXPECT_EQ(mesh.dp() * mesh.cp(), w.size());
    EXPECT_EQ(mesh.dp_rank() * cp + mesh.cp_rank(), w.rank());
    EXPECT_EQ(mesh.cp_group().size(), cp);
    EXPECT_EQ(mesh.cp_group().rank(), mesh.cp_rank());
    EXPECT_EQ(mesh.dp_group().size(), mesh.dp());
    EXPECT_EQ(mesh.dp_group().rank(), mesh.dp_rank());
    std::int64_t in_cp = w.rank(), in_dp = w.rank(), in_world = w.rank();
    mesh.cp_data().allreduce_sum(&in_cp, 1);
    mesh.dp_data().allreduce_sum(&in_dp, 1);
    mesh.world_data().allreduce_sum(&in_world, 1);
    const idx first = mesh.dp_rank() * cp;  // the block's first rank
    EXPECT_EQ(in_cp, cp * first + cp * (cp - 1) / 2) << cp;
    EXPECT_EQ(in_dp, mesh.dp() * mesh.cp_rank() + cp * mesh.dp() * (mesh.dp() - 1) / 2) << cp;
    EXPECT_EQ(in_world, w.size() * (w.size() - 1) / 2);
  }
  EXPECT_THROW(Mesh(w, 0), std::invalid_argument);
}

}  // namespace
}  // namespace nexus
