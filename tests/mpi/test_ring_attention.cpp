// Ring attention over a cp group equals causal attention over the whole sequence on one rank,
// sliced to the rank's zigzag chunks: out, lse, dq, dk, dv. Groups: the whole world, a single
// rank (no communication), and the world split into cp = 2 groups (dp x cp, cp-inner). Also the
// Communicator pieces it is built on: split() and non-blocking point-to-point. Every attention
// neighborhood likewise, with the hops that no local query needs sending and receiving nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "mpi/world.h"
#include "parallel/ring_attention.h"
#include "support/check.h"
#include "support/naive_neighborhood.h"

namespace nexus {
namespace {

using test::max_rel_diff;
using test::random_vector;

TEST(CommunicatorSplit, GroupsOwnTheirCommAndPassMessagesInPieces) {
  const Communicator& w = test::world();
  const int group = 2 <= w.size() ? 2 : 1;
  Communicator copy = Communicator::self();
  {
    const Communicator g = w.split(w.rank() / group, w.rank());
    EXPECT_EQ(g.size(), std::min(group, w.size() - w.rank() / group * group));
    EXPECT_EQ(g.rank(), w.rank() % group);
    copy = g;  // the copy keeps the MPI_Comm alive after g is gone
  }
  // A ring exchange in 7-byte pieces (ragged last piece), tags kept apart in both directions.
  const int next = (copy.rank() + 1) % copy.size(), prev = (copy.rank() + copy.size() - 1) % copy.size();
  std::vector<double> mine(101), from_prev(101, -1.0), from_next(101, -1.0);
  for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = 1000.0 * w.rank() + double(i);
  std::vector<Request> r;
  r.push_back(copy.isend_bytes(mine.data(), mine.size() * sizeof(double), next, 1, 7));
  r.push_back(copy.isend_bytes(mine.data(), mine.size() * sizeof(double), prev, 2, 7));
  r.push_back(copy.irecv_bytes(from_prev.data(), from_prev.size() * sizeof(double), prev, 1, 7));
  r.push_back(copy.irecv_bytes(from_next.data(), from_next.size() * sizeof(double), next, 2, 7));
  wait_all(r);
  const int w_prev = w.rank() / group * group + prev, w_next = w.rank() / group * group + next;
  for (std::size_t i = 0; i < mine.size(); ++i) {
    ASSERT_EQ(from_prev[i], 1000.0 * w_prev + double(i)) << i;
    ASSERT_EQ(from_next[i], 1000.0 * w_next + double(i)) << i;
  }
  EXPECT_THROW((void)w.split(-1, 0), std::invalid_argument);
}

constexpr idx kB = 2, kHq = 4, kHkv = 2, kHd = 16;

// local[B, 2c, width] = chunks r and 2cp-1-r of each sequence of full[B, 2cp c, width].
template <typename T>
std::vector<T> zigzag_part(const std::vector<double>& full, idx c, idx width, int cp, int r) {
  const idx T_full = 2 * cp * c;
  std::vector<T> local(std::size_t(kB * 2 * c * width));
  for (idx b = 0; b < kB; ++b)
    for (idx half = 0; half < 2; ++half) {
      const idx chunk = half == 0 ? r : 2 * cp - 1 - r;
      for (idx t = 0; t < c; ++t)
        for (idx e = 0; e < width; ++e)
          local[std::size_t(((b * 2 + half) * c + t) * width + e)] =
              T(full[std::size_t((b * T_full + chunk * c + t) * width + e)]);
    }
  return local;
}

template <typename T>
std::vector<double> minus(const std::vector<T>& a, const std::vector<T>& b) {
  std::vector<double> d(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) d[i] = double(a[i]) - double(b[i]);
  return d;
}

struct Errors {
  double out, lse, dq, dk, dv;
  RingStats forward, backward;  // what the ring's two calls counted on this rank
};

// The same full random problem (from `seed`) on every rank of `cp`; the single-rank reference in
// double over all T = 2 cp c tokens; the ring in T on this rank's zigzag part. Returns the
// relative errors of the ring against the reference's slice.
template <typename T>
Errors ring_vs_single_rank(const Communicator& cp, idx c, std::uint64_t seed, const Neighborhood& nb = {}) {
  const int P = cp.size(), r = cp.rank();
  const idx T_full = 2 * P * c, wq = kHq * kHd, wk = kHkv * kHd;
  const auto q = random_vector(std::size_t(kB * T_full * wq), seed);
  const auto k = random_vector(std::size_t(kB * T_full * wk), seed + 1);
  const auto v = random_vector(std::size_t(kB * T_full * wk), seed + 2);
  const auto dout = random_vector(std::size_t(kB * T_full * wq), seed + 3);

  const AttentionShape full{kB, T_full, T_full, kHq, kHkv, kHd, 0, 0, true, nb};
  std::vector<double> out(q.size()), lse(std::size_t(kB * T_full * kHq));
  std::vector<double> dq(q.size(), 0.0), dk(k.size(), 0.0), dv(v.size(), 0.0);
  attention_forward(Exec{}, out.data(), lse.data(), q.data(), k.data(), v.data(), full);
  attention_backward(Exec{}, dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(), out.data(),
                     lse.data(), full);

  const RingShape s{kB, c, kHq, kHkv, kHd, nb};
  RingStats fwd, bwd;
  const auto lq = zigzag_part<T>(q, c, wq, P, r), lk = zigzag_part<T>(k, c, wk, P, r),
             lv = zigzag_part<T>(v, c, wk, P, r), ldout = zigzag_part<T>(dout, c, wq, P, r);
  const T nan = std::numeric_limits<T>::quiet_NaN();
  // NaN everywhere the ring should overwrite or never read, and a guard past the workspace's end.
  const idx ws = ring_attention_workspace<T>(s), guard = 256;
  std::vector<T> work(std::size_t(ws + guard), nan);
  for (idx i = ws; i < ws + guard; ++i) work[std::size_t(i)] = T(12345);
  std::vector<T> lout(lq.size(), nan), llse(std::size_t(kB * 2 * c * kHq), nan);
  ring_attention_forward(Exec{}, lout.data(), llse.data(), lq.data(), lk.data(), lv.data(), s, cp, work.data(), &fwd);
  // The gradients accumulate: start them at random values and compare what was added.
  const auto dq0 = zigzag_part<T>(random_vector(q.size(), seed + 4), c, wq, P, r);
  const auto dk0 = zigzag_part<T>(random_vector(k.size(), seed + 5), c, wk, P, r);
  const auto dv0 = zigzag_part<T>(random_vector(k.size(), seed + 6), c, wk, P, r);
  auto ldq = dq0, ldk = dk0, ldv = dv0;
  ring_attention_backward(Exec{}, ldq.data(), ldk.data(), ldv.data(), ldout.data(), lq.data(), lk.data(), lv.data(),
                          lout.data(), llse.data(), s, cp, work.data(), &bwd);
  for (idx i = ws; i < ws + guard; ++i) EXPECT_EQ(work[std::size_t(i)], T(12345)) << "workspace overrun at " << i;

  return {max_rel_diff(lout, zigzag_part<double>(out, c, wq, P, r)),
          max_rel_diff(llse, zigzag_part<double>(lse, c, kHq, P, r)),
          max_rel_diff(minus(ldq, dq0), zigzag_part<double>(dq, c, wq, P, r)),
          max_rel_diff(minus(ldk, dk0), zigzag_part<double>(dk, c, wk, P, r)),
          max_rel_diff(minus(ldv, dv0), zigzag_part<double>(dv, c, wk, P, r)),
          fwd,
          bwd};
}

void expect_below(const Errors& e, double tol, const std::string& what) {
  EXPECT_LT(e.out, tol) << what << ": out";
  EXPECT_LT(e.lse, tol) << what << ": lse";
  EXPECT_LT(e.dq, tol) << what << ": dq";
  EXPECT_LT(e.dk, tol) << what << ": dk";
  EXPECT_LT(e.dv, tol) << what << ": dv";
}

// fp64: the ring does the same sums as the single rank in another order (blocks merged through
// lse), so only rounding differs: ~1e-15 relative; 1e-12 leaves room and catches any wrong
// block, mask or position (O(1) errors).
constexpr double kDoubleTol = 1e-12;
// fp32 against the fp64 reference: inputs rounded to fp32 (6e-8 relative) and every sum (scores
// over 16 dims, softmax and P V over up to 560 keys, dK/dV over up to 560 queries) in fp32 with
// the kernel's 1.5-ulp exp. Round-off of such sums grows like sqrt(n) eps ~ 2e-6 (measured: at
// most 3e-6, in dk/dv at c = 70); 2e-5 keeps a 7x margin and is far below what a wrong block,
// mask or missing accumulator gives (O(1): a key position off by one gives 0.6 to 1).
constexpr double kFloatTol = 2e-5;

void check_group(const Communicator& cp, std::uint64_t seed, const std::string& name) {
  // c = 13: far below and c = 70: just above the kernel's 64-row tile, neither a multiple of it.
  for (idx c : {idx(13), idx(70)}) {
    const std::string what = name + " cp=" + std::to_string(cp.size()) + " rank " + std::to_string(cp.rank()) +
                             " c=" + std::to_string(c);
    const Errors d = ring_vs_single_rank<double>(cp, c, seed);
    expect_below(d, kDoubleTol, what + " double");
    const Errors f = ring_vs_single_rank<float>(cp, c, seed);
    expect_below(f, kFloatTol, what + " float");
    if (test::world().is_root())
      std::printf("%s: double max rel err %.2g, float %.2g\n", what.c_str(),
                  std::max({d.out, d.lse, d.dq, d.dk, d.dv}), std::max({f.out, f.lse, f.dq, f.dk, f.dv}));
  }
}

TEST(RingAttention, WholeWorldAsOneCpGroupMatchesOneRank) { check_group(test::world(), 100, "world"); }

TEST(RingAttention, SingleRankGroupNeedsNoCommunication) {
  check_group(Communicator::self(), 200 + std::uint64_t(test::world().rank()), "self");
}

// dp x cp with cp = 2, cp-inner: each group works on its own problem (seeded by group), so a
// message crossing groups would show.
TEST(RingAttention, CpGroupsOfTwoWithinTheWorld) {
  const Communicator& w = test::world();
  if (w.size() % 2 != 0) GTEST_SKIP() << "world size " << w.size() << " is not a multiple of cp = 2";
  const int cp = 2, color = w.rank() / cp;
  const Communicator group = w.split(color, w.rank());
  ASSERT_EQ(group.size(), cp);
  check_group(group, 300 + 10 * std::uint64_t(color), "dp" + std::to_string(color));
}

// Whether any query of cp-rank dst reads any key of cp-rank src, by brute force over positions
// with the rule written out (support/naive_neighborhood.h): the hop the ring may not skip.
bool naive_hop_needed(const Neighborhood& nb, int dst, int src, int cp, idx c) {
  for (int qh = 0; qh < 2; ++qh)
    for (int kh = 0; kh < 2; ++kh) {
      const idx gq = qh == 0 ? dst : 2 * cp - 1 - dst, gk = kh == 0 ? src : 2 * cp - 1 - src;
      for (idx i = 0; i < c; ++i)
        for (idx j = 0; j < c; ++j)
          if (test::naive_visible(nb, gq * c + i, gk * c + j)) return true;
    }
  return false;
}

// Every neighborhood through the ring equals the single-rank kernel under it (itself checked
// against naive masked attention), and each rank sends, receives and skips exactly the hops the
// brute-force rule says: a skipped hop moves no byte in either direction.
TEST(RingAttention, EveryNeighborhoodMatchesOneRankAndSkipsUnneededHops) {
  const Communicator& cp = test::world();
  const int P = cp.size(), r = cp.rank();
  for (idx c : {idx(13), idx(70)}) {
    using K = Neighborhood::Kind;
    const Neighborhood cases[] = {
        test::make_neighborhood(K::kSliding, c - 4),   test::make_neighborhood(K::kSliding, 2 * c + 5),
        test::make_neighborhood(K::kDilated, 3, c + 1), test::make_neighborhood(K::kLog),
        test::make_neighborhood(K::kBlock, c),          test::make_neighborhood(K::kBlock, 20),
        test::make_neighborhood(K::kSliding, 5, 1, 3),  test::make_neighborhood(K::kBlock, 2 * c, 1, 1),
    };
    for (const Neighborhood& nb : cases) {
      const std::string what = "cp=" + std::to_string(P) + " rank " + std::to_string(r) + " c=" + std::to_string(c) +
                               " kind " + std::to_string(int(nb.kind)) + " width " + std::to_string(nb.width) +
                               " dilation " + std::to_string(nb.dilation) + " sink " + std::to_string(nb.sink);
      const Errors d = ring_vs_single_rank<double>(cp, c, 400, nb);
      expect_below(d, kDoubleTol, what + " double");
      const Errors f = ring_vs_single_rank<float>(cp, c, 400, nb);
      expect_below(f, kFloatTol, what + " float");

      const std::size_t kv_bytes = 2 * std::size_t(kB * 2 * c * kHkv * kHd) * sizeof(float);  // K and V
      idx needed_in = 0, needed_out = 0;
      for (int step = 1; step < P; ++step) {
        needed_in += naive_hop_needed(nb, r, (r - step + P) % P, P, c) ? 1 : 0;
        needed_out += naive_hop_needed(nb, (r + step) % P, r, P, c) ? 1 : 0;
      }
      EXPECT_EQ(f.forward.hops, needed_in) << what;
      EXPECT_EQ(f.forward.hops_skipped, P - 1 - needed_in) << what;
      EXPECT_EQ(f.forward.bytes_sent, std::size_t(needed_out) * kv_bytes) << what;
      EXPECT_EQ(f.forward.bytes_received, std::size_t(needed_in) * kv_bytes) << what;
      // Backward: K/V again, and the dK/dV contributions back along each used hop.
      EXPECT_EQ(f.backward.bytes_sent, std::size_t(needed_out + needed_in) * kv_bytes) << what;
      EXPECT_EQ(f.backward.bytes_received, std::size_t(needed_in + needed_out) * kv_bytes) << what;
      EXPECT_EQ(f.forward.block_calls, f.backward.block_calls) << what;
      // Within a window shorter than a chunk, only the neighbours in sequence order are needed.
      if (nb.kind == Neighborhood::kSliding && nb.width <= c && nb.sink == 0) {
        EXPECT_LE(needed_in, 2) << what;
      }
    }
  }
}

// Under full every hop is used (zigzag gives each rank a chunk after every other rank's).
TEST(RingAttention, FullNeighborhoodUsesEveryHop) {
  const Communicator& cp = test::world();
  const Errors f = ring_vs_single_rank<float>(cp, 13, 500);
  EXPECT_EQ(f.forward.hops, cp.size() - 1);
  EXPECT_EQ(f.forward.hops_skipped, 0);
}

// Timing, not a check: mpirun -np 2 test_ring_attention --gtest_also_run_disabled_tests
// --gtest_filter='*Timing*'. Ring over the world vs the whole sequence on one rank (each rank
// runs it at once, on its own cores).
// The workspace holds the forward's partial lse and the backward's sum of arrived dK/dV
// contributions in accum_t<T>: for bf16 each fp32 value takes two elements, so the backward's 12
// K/V-sized buffers (the larger part at these shapes) become 14.
TEST(RingAttention, WorkspaceCountsTheAccumulatorsInTheAccumulatorType) {
  for (idx c : {idx(3), idx(40)})
    for (idx hd : {idx(1), idx(16)}) {
      const RingShape s{kB, c, kHq, 1, hd, {}};
      const idx kv = 2 * kB * c * hd, q_chunk = c * kHq * hd, lse_chunk = c * kHq;
      EXPECT_EQ(ring_attention_workspace<float>(s), std::max(4 * kv + lse_chunk + q_chunk, 12 * kv));
      EXPECT_EQ(ring_attention_workspace<double>(s), std::max(4 * kv + lse_chunk + q_chunk, 12 * kv));
      EXPECT_EQ(ring_attention_workspace<bf16>(s), std::max(4 * kv + 2 * lse_chunk + q_chunk, 14 * kv));
    }
}

TEST(RingAttention, DISABLED_Timing) {
  const Communicator& w = test::world();
  const idx T_full = 4096, Hq = 8, Hkv = 2, hd = 64, c = T_full / (2 * w.size());
  const RingShape s{1, c, Hq, Hkv, hd, {}};
  const AttentionShape full{1, T_full, T_full, Hq, Hkv, hd, 0, 0, true, {}};
  const idx nq = T_full * Hq * hd, nk = T_full * Hkv * hd;
  const auto q = random_vector<float>(std::size_t(nq), 1), k = random_vector<float>(std::size_t(nk), 2),
             v = random_vector<float>(std::size_t(nk), 3), dout = random_vector<float>(std::size_t(nq), 4);
  const auto n = [](idx count) { return static_cast<std::size_t>(count); };
  std::vector<float> out(n(nq)), lse(n(T_full * Hq)), dq(n(nq)), dk(n(nk)), dv(n(nk)),
      work(n(ring_attention_workspace<float>(s)));
  // Best of 5 in wall time and in this process's CPU time (max over ranks): on a shared machine
  // the CPU time says what the work costs when the rank has its core to itself (MPI waits spin, so
  // they count too).
  struct Time {
    double wall = 1e30, cpu = 1e30;
  };
  auto cpu_now = [] {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
  };
  auto best_of = [&](auto&& f) {
    Time best;
    for (int rep = 0; rep < 5; ++rep) {
      w.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      const double c0 = cpu_now();
      f();
      const double cpu = w.max(cpu_now() - c0);
      w.barrier();
      best.wall = std::min(best.wall, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      best.cpu = std::min(best.cpu, cpu);
    }
    return best;
  };
  // Local tensors are prefixes of the full ones: contents do not matter for timing.
  const Time ring_f = best_of(
      [&] { ring_attention_forward(Exec{}, out.data(), lse.data(), q.data(), k.data(), v.data(), s, w, work.data()); });
  const Time ring_b = best_of([&] {
    ring_attention_backward(Exec{}, dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(),
                            out.data(), lse.data(), s, w, work.data());
  });
  const Time one_f =
      best_of([&] { attention_forward(Exec{}, out.data(), lse.data(), q.data(), k.data(), v.data(), full); });
  const Time one_b = best_of([&] {
    attention_backward(Exec{}, dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(), out.data(),
                       lse.data(), full);
  });
  if (w.is_root())
    std::printf("T=%ld Hq=%ld Hkv=%ld hd=%ld, %d ranks, wall (cpu) s: ring fwd %.3f (%.3f) bwd %.3f (%.3f) | "
                "one rank fwd %.3f (%.3f) bwd %.3f (%.3f)\n",
                long(T_full), long(Hq), long(Hkv), long(hd), w.size(), ring_f.wall, ring_f.cpu, ring_b.wall,
                ring_b.cpu, one_f.wall, one_f.cpu, one_b.wall, one_b.cpu);
}

}  // namespace
}  // namespace nexus
