// The host-staged data plane (parallel/staged_data_plane.h) against the plain Communicator on the
// same data, under mpirun -np 2 and -np 4. With Exec{cpu} its copies are memcpy, so this checks
// the piece arithmetic of every operation: staging buffers far smaller than the messages, sizes
// that are not a multiple of a piece, pieces that split an element (point-to-point), and the slab
// pool reaching its peak in the first round and reusing it after. The values are small integers,
// so every sum is exact in float and the two planes must agree bit for bit whatever order MPI
// sums in.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "mpi/world.h"
#include "parallel/staged_data_plane.h"

namespace nexus {
namespace {

constexpr Exec kCpu{};

template <typename T>
std::vector<T> values(idx n, int rank, int salt) {
  std::vector<T> v(static_cast<std::size_t>(n));
  // Bytes stay below 256 / ranks: Open MPI's vectorised byte sum saturates where the scalar one wraps.
  const int scale = sizeof(T) == 1 ? 1 : 100;
  for (idx i = 0; i < n; ++i) v[std::size_t(i)] = T((i * 7 + salt) % 23 + scale * rank);
  return v;
}

// Staging sizes: smaller than one element of most types, ragged, and larger than every message.
const std::size_t kStagings[] = {12, 40, 1000, 1 << 16};

template <typename T>
void allreduce_matches(const Communicator& w, std::size_t staging) {
  const StagedDataPlane staged(w, kCpu, staging);
  for (idx n : {idx(0), idx(1), idx(37), idx(1001)}) {
    auto expect = values<T>(n, w.rank(), 3), got = expect;
    w.allreduce_sum(expect.data(), n);
    if (staging < sizeof(T) && n > 0 && w.size() > 1) {
      EXPECT_THROW(staged.allreduce_sum(got.data(), n), std::invalid_argument);
      continue;
    }
    staged.allreduce_sum(got.data(), n);
    EXPECT_EQ(got, expect) << "n " << n << " staging " << staging;
  }
}

// The reduce-scatter with a count per rank, piece by piece: equal to the communicator's for ragged
// counts, a rank that receives nothing, and parts larger than the staging buffer.
template <typename T>
void reduce_scatter_counts_match(const Communicator& w, std::size_t staging) {
  const StagedDataPlane staged(w, kCpu, staging);
  const DataPlane& host = w;
  const int P = w.size();
  for (const idx scale : {idx(1), idx(300)}) {
    std::vector<idx> counts(static_cast<std::size_t>(P));
    idx total = 0;
    for (int q = 0; q < P; ++q) total += counts[std::size_t(q)] = q == 1 ? 0 : scale * (q + 1);
    auto send = values<T>(total, w.rank(), 4), scratch = send;  // the inputs are the planes' scratch
    std::vector<T> expect(static_cast<std::size_t>(counts[std::size_t(w.rank())]), T(-1)), got = expect;
    host.ireduce_scatter_sum(scratch.data(), counts, expect.data()).wait();
    if (staging < 2 * sizeof(T)) {
      EXPECT_THROW(staged.ireduce_scatter_sum(send.data(), counts, got.data()), std::invalid_argument);
      continue;
    }
    staged.ireduce_scatter_sum(send.data(), counts, got.data()).wait();
    EXPECT_EQ(got, expect) << "scale " << scale << " staging " << staging;
  }
}

TEST(StagedDataPlane, ReduceScatterWithCountsEqualsTheCommunicatorInEveryPieceSize) {
  for (std::size_t staging : kStagings) {
    reduce_scatter_counts_match<float>(test::world(), staging);
    reduce_scatter_counts_match<double>(test::world(), staging);
    reduce_scatter_counts_match<std::int64_t>(test::world(), staging);
  }
}

TEST(StagedDataPlane, AllreduceEqualsTheCommunicatorInEveryPieceSize) {
  for (std::size_t staging : kStagings) {
    allreduce_matches<float>(test::world(), staging);
    allreduce_matches<double>(test::world(), staging);
    allreduce_matches<std::int32_t>(test::world(), staging);
    allreduce_matches<std::int64_t>(test::world(), staging);
    allreduce_matches<std::uint8_t>(test::world(), staging);
  }
}

template <typename T>
void gather_and_scatter_match(const Communicator& w, std::size_t staging) {
  const StagedDataPlane staged(w, kCpu, staging);
  const idx P = w.size();
  const bool fits = staging >= std::size_t(P + 1) * sizeof(T);
  for (idx count : {idx(1), idx(5), idx(53)}) {
    const auto mine = values<T>(count, w.rank(), 1);
    std::vector<T> expect(std::size_t(P * count), T(-1)), got = expect;
    w.allgather(mine.data(), count, expect.data());
    if (!fits) {
      EXPECT_THROW(staged.allgather(mine.data(), count, got.data()), std::invalid_argument);
    } else {
      staged.allgather(mine.data(), count, got.data());
      EXPECT_EQ(got, expect) << "all-gather count " << count << " staging " << staging;
    }

    const auto blocks = values<T>(P * count, w.rank(), 2);
    std::vector<T> reduced(std::size_t(count), T(-1)), staged_reduced = reduced;
    w.reduce_scatter_sum(blocks.data(), count, reduced.data());
    if (!fits) {
      EXPECT_THROW(staged.reduce_scatter_sum(blocks.data(), count, staged_reduced.data()), std::invalid_argument);
    } else {
      staged.reduce_scatter_sum(blocks.data(), count, staged_reduced.data());
      EXPECT_EQ(staged_reduced, reduced) << "reduce-scatter count " << count << " staging " << staging;
    }
  }
}

TEST(StagedDataPlane, AllgatherAndReduceScatterEqualTheCommunicatorPieceByPiece) {
  for (std::size_t staging : kStagings) {
    gather_and_scatter_match<float>(test::world(), staging);
    gather_and_scatter_match<double>(test::world(), staging);
    gather_and_scatter_match<std::int64_t>(test::world(), staging);
    gather_and_scatter_match<std::uint8_t>(test::world(), staging);
  }
}

// A ring exchange posted before anything is waited on (as ring attention posts it), twice: the
// second round must find every slab it needs in the pool.
TEST(StagedDataPlane, RingSendReceiveInPiecesThatSplitElements) {
  const Communicator& w = test::world();
  const int P = w.size(), r = w.rank(), to = (r + 1) % P, from = (r - 1 + P) % P;
  for (std::size_t staging : kStagings) {
    const StagedDataPlane staged(w, kCpu, staging);
    std::size_t slabs_after_first = 0;
    for (int round = 0; round < 2; ++round) {
      const idx n = 29;  // 232 bytes of double: ragged in every staging size above
      const auto a = values<double>(n, r, round), b = values<double>(n + 3, r, round + 5);
      std::vector<double> got_a(std::size_t(n), -1.0), got_b(std::size_t(n + 3), -1.0);
      Request reqs[4] = {staged.irecv(got_a.data(), n, from, 1), staged.irecv(got_b.data(), n + 3, from, 2),
                         staged.isend(a.data(), n, to, 1), staged.isend(b.data(), n + 3, to, 2)};
      while (!reqs[0].test()) {
      }
      wait_all(reqs);
      EXPECT_EQ(got_a, (values<double>(n, from, round))) << "staging " << staging;
      EXPECT_EQ(got_b, (values<double>(n + 3, from, round + 5))) << "staging " << staging;
      if (round == 0) slabs_after_first = staged.slabs_made();
    }
    const std::size_t pieces = (29 * 8 + staging - 1) / staging + (32 * 8 + staging - 1) / staging;
    EXPECT_EQ(staged.slabs_made(), 2 * pieces) << "staging " << staging;  // sends and receives in flight at once
    EXPECT_EQ(staged.slabs_made(), slabs_after_first) << "the second round allocated";
  }
}

// bf16 (what ring attention and the conv halos move for Model<bf16>) through the staged plane:
// bit patterns arrive unchanged in every staging size, also an odd one whose point-to-point pieces
// split elements in half, and a bf16 sum is refused as by the Communicator underneath.
std::vector<bf16> bf16_values(idx n, int rank, int salt) {
  std::vector<bf16> v(static_cast<std::size_t>(n));
  for (idx i = 0; i < n; ++i)
    v[std::size_t(i)] = bf16::from_bits(std::uint16_t((i * 2654435761u + idx(salt)) ^ idx(rank << 12)));
  return v;
}
std::vector<std::uint16_t> bits_of(const std::vector<bf16>& v) {
  std::vector<std::uint16_t> b(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) b[i] = v[i].bits;
  return b;
}

TEST(StagedDataPlane, Bf16MovesBitForBitInEveryPieceSize) {
  const Communicator& w = test::world();
  const int P = w.size(), r = w.rank(), to = (r + 1) % P, from = (r - 1 + P) % P;
  for (std::size_t staging : {std::size_t(13), std::size_t(40), std::size_t(1000), std::size_t(1 << 16)}) {
    const StagedDataPlane staged(w, kCpu, staging);
    const bool fits = staging >= std::size_t(P + 1) * sizeof(bf16);
    for (idx count : {idx(1), idx(53), idx(1001)}) {
      const auto mine = bf16_values(count, r, 1);
      std::vector<bf16> expect(std::size_t(P * count)), got(expect.size());
      w.allgather(mine.data(), count, expect.data());
      if (fits) {
        staged.allgather(mine.data(), count, got.data());
        EXPECT_EQ(bits_of(got), bits_of(expect)) << "all-gather count " << count << " staging " << staging;
      }
      std::vector<bf16> received(static_cast<std::size_t>(count));
      Request reqs[2] = {staged.irecv(received.data(), count, from, 4), staged.isend(mine.data(), count, to, 4)};
      wait_all(reqs);
      EXPECT_EQ(bits_of(received), bits_of(bf16_values(count, from, 1))) << "ring count " << count << " staging "
                                                                          << staging;
    }
    std::vector<bf16> x(std::size_t(P), bf16(1.0f)), y(1);
    EXPECT_THROW(staged.allreduce_sum(x.data(), idx(x.size())), std::invalid_argument) << "staging " << staging;
    EXPECT_THROW(staged.reduce_scatter_sum(x.data(), 1, y.data()), std::invalid_argument) << "staging " << staging;
  }
}

TEST(StagedDataPlane, EmptyMessagesAndAZeroBufferAreHandled) {
  const Communicator& w = test::world();
  EXPECT_THROW(StagedDataPlane(w, kCpu, 0), std::invalid_argument);
  const StagedDataPlane staged(w, kCpu, 64);
  const int P = w.size(), r = w.rank();
  float x = 1.0f;
  Request reqs[2] = {staged.irecv(&x, 0, (r - 1 + P) % P, 7), staged.isend(&x, 0, (r + 1) % P, 7)};
  wait_all(reqs);
  EXPECT_EQ(x, 1.0f);
  EXPECT_EQ(staged.rank(), w.rank());
  EXPECT_EQ(staged.size(), w.size());
}

}  // namespace
}  // namespace nexus
