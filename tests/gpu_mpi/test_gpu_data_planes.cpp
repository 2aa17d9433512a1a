// The GPU data planes under mpirun (labels gpu and mpi): every operation on device buffers against
// the MPI Communicator on host copies of the same data.
// - StagedDataPlane on GPU buffers: runs whenever each rank sees a GPU, also with several ranks on
//   one GPU (the multi-rank GPU code path where NCCL cannot run).
// - NcclDataPlane over the whole world and a dp x cp Mesh's groups: needs one GPU per rank (NCCL
//   refuses two ranks on one GPU); with fewer GPUs than ranks the output says "NOT RUN" and why,
//   and one-rank NCCL communicators (each rank alone) are checked instead.
// Without a visible GPU every rank says so and the run exits 77 (ctest: skipped).
// The NCCL plane completes in stream order (the host does not wait): every check reads results with
// copy_to_host, which synchronizes the caller's stream, as data_plane.h requires of host reads.
// Tolerance: none. The values are small integers, so every sum is exact in float and double and
// NCCL's reduction order cannot change a bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "gpu_mpi/gpu_world.h"
#include "kernels/cuda/backend.h"
#include "kernels/device_memory.h"
#include "parallel/mesh.h"
#include "parallel/staged_data_plane.h"
#if NEXUS_HAS_NCCL
#include "parallel/nccl_data_plane.h"
#endif

namespace nexus {
namespace {

constexpr Exec kGpu{Device::cuda, nullptr};

void say(const std::string& line) {
  if (test::gpu_world().is_root()) std::printf("%s\n", line.c_str());
}

template <typename T>
std::vector<T> values(idx n, int rank, int salt) {
  std::vector<T> v(static_cast<std::size_t>(n));
  for (idx i = 0; i < n; ++i) v[std::size_t(i)] = T((i * 5 + salt) % 19 + 50 * rank);
  return v;
}

template <typename T>
DeviceBuffer<T> on_gpu(const std::vector<T>& host) {
  DeviceBuffer<T> d(kGpu, idx(host.size()));
  copy_to_device(kGpu, d.data(), host.data(), d.bytes());
  return d;
}

template <typename T>
std::vector<T> on_host(const DeviceBuffer<T>& d) {
  std::vector<T> host(static_cast<std::size_t>(d.size()));
  copy_to_host(kGpu, host.data(), d.data(), d.bytes());
  return host;
}

// Every operation of `gpu` (a data plane on device buffers over the same ranks as `host`) against
// `host` on host copies.
template <typename T>
void planes_agree(const DataPlane& gpu, const DataPlane& host, const std::string& what) {
  ASSERT_EQ(gpu.size(), host.size()) << what;
  ASSERT_EQ(gpu.rank(), host.rank()) << what;
  const int P = host.size(), r = host.rank();
  for (idx n : {idx(1), idx(257), idx(4099)}) {
    auto expect = values<T>(n, r, 1);
    auto d = on_gpu(expect);
    host.allreduce_sum(expect.data(), n);
    gpu.allreduce_sum(d.data(), n);
    EXPECT_EQ(on_host(d), expect) << what << ": all-reduce of " << n;

    // The non-blocking all-reduce with the caller's stream busy while it is in flight: three
    // buckets of one buffer posted (the NCCL plane's event pool grows to three), a memset of
    // another buffer enqueued on the caller's stream, the waits (the NCCL plane's make the stream
    // wait and return at once), then a copy that synchronizes the stream.
    auto buckets = values<T>(3 * n, r, 5);
    auto d_buckets = on_gpu(buckets);
    auto other = on_gpu(values<T>(n, r, 6));
    host.allreduce_sum(buckets.data(), 3 * n);
    Request pending[3];
    for (idx j = 2; j >= 0; --j) pending[j] = gpu.iallreduce_sum(d_buckets.data() + j * n, n);
    zero_device_bytes(kGpu, other.data(), other.bytes());
    wait_all(pending);
    EXPECT_EQ(on_host(d_buckets), buckets) << what << ": three overlapped all-reduces of " << n;
    EXPECT_EQ(on_host(other), std::vector<T>(std::size_t(n), T(0))) << what << ": the memset beside them";
    // test() until complete, then a read: test() true means the data has moved.
    auto tested = values<T>(n, r, 7);
    auto d_tested = on_gpu(tested);
    host.allreduce_sum(tested.data(), n);
    Request probe = gpu.iallreduce_sum(d_tested.data(), n);
    while (!probe.test()) {
    }
    EXPECT_EQ(on_host(d_tested), tested) << what << ": all-reduce completed by test() of " << n;

    // The reduce-scatter with a count per rank (ZeRO-1's buckets), two in flight at once; rank 1
    // receives nothing, the others ragged parts.
    std::vector<idx> counts(static_cast<std::size_t>(P));
    idx total = 0;
    for (int q = 0; q < P; ++q) total += counts[std::size_t(q)] = q == 1 ? 0 : n + q;
    const idx mine_count = counts[std::size_t(r)];
    const auto low = values<T>(total, r, 8), high = values<T>(total, r, 9);
    auto low_scratch = low, high_scratch = high;  // the inputs are the planes' scratch
    std::vector<T> low_sum(static_cast<std::size_t>(mine_count)), high_sum(static_cast<std::size_t>(mine_count));
    host.ireduce_scatter_sum(low_scratch.data(), counts, low_sum.data()).wait();
    host.ireduce_scatter_sum(high_scratch.data(), counts, high_sum.data()).wait();
    auto d_low = on_gpu(low), d_high = on_gpu(high);
    DeviceBuffer<T> d_low_sum(kGpu, std::max<idx>(mine_count, 1)), d_high_sum(kGpu, std::max<idx>(mine_count, 1));
    Request scatters[2] = {gpu.ireduce_scatter_sum(d_high.data(), counts, d_high_sum.data()),
                           gpu.ireduce_scatter_sum(d_low.data(), counts, d_low_sum.data())};
    wait_all(scatters);
    if (mine_count > 0) {
      auto got_low = on_host(d_low_sum), got_high = on_host(d_high_sum);
      got_low.resize(std::size_t(mine_count));
      got_high.resize(std::size_t(mine_count));
      EXPECT_EQ(got_low, low_sum) << what << ": reduce-scatter with counts, n " << n;
      EXPECT_EQ(got_high, high_sum) << what << ": reduce-scatter with counts, n " << n;
    }

    const auto mine = values<T>(n, r, 2);
    std::vector<T> gathered(static_cast<std::size_t>(P * n));
    host.allgather(mine.data(), n, gathered.data());
    auto d_mine = on_gpu(mine);
    DeviceBuffer<T> d_gathered(kGpu, P * n);
    gpu.allgather(d_mine.data(), n, d_gathered.data());
    EXPECT_EQ(on_host(d_gathered), gathered) << what << ": all-gather of " << n;

    const auto blocks = values<T>(P * n, r, 3);
    std::vector<T> reduced(static_cast<std::size_t>(n));
    host.reduce_scatter_sum(blocks.data(), n, reduced.data());
    auto d_blocks = on_gpu(blocks);
    DeviceBuffer<T> d_reduced(kGpu, n);
    gpu.reduce_scatter_sum(d_blocks.data(), n, d_reduced.data());
    EXPECT_EQ(on_host(d_reduced), reduced) << what << ": reduce-scatter of " << n;

    // One ring step, posted before anything is waited on.
    const int to = (r + 1) % P, from = (r - 1 + P) % P;
    const auto sent = values<T>(n, r, 4);
    auto d_sent = on_gpu(sent);
    DeviceBuffer<T> d_got(kGpu, n);
    Request reqs[2] = {gpu.irecv(d_got.data(), n, from, 9), gpu.isend(d_sent.data(), n, to, 9)};
    wait_all(reqs);
    EXPECT_EQ(on_host(d_got), (values<T>(n, from, 4))) << what << ": ring send/receive of " << n;
  }
}

TEST(GpuDataPlanes, StagedOnGpuBuffersEqualsTheCommunicator) {
  const Communicator& w = test::gpu_world();
  const StagedDataPlane staged(w, kGpu, 4096);  // smaller than the largest messages: pieces
  planes_agree<float>(staged, w, "staged world, float");
  planes_agree<double>(staged, w, "staged world, double");
  planes_agree<std::int64_t>(staged, w, "staged world, int64");
  for (idx cp = 1; cp <= w.size(); ++cp) {
    if (w.size() % cp != 0) continue;
    const Mesh mesh(w, cp, DataTransport::staged, kGpu, 1 << 20);
    planes_agree<float>(mesh.cp_data(), mesh.cp_group(), "staged cp group, cp " + std::to_string(cp));
    planes_agree<float>(mesh.dp_data(), mesh.dp_group(), "staged dp group, cp " + std::to_string(cp));
  }
}

#if NEXUS_HAS_NCCL
TEST(GpuDataPlanes, NcclEqualsTheCommunicator) {
  const Communicator& w = test::gpu_world();
  const GpuPlacement& gpus = test::gpu_placement();
  if (gpus.ranks_per_gpu > 1) {
    say("NOT RUN: NCCL over " + std::to_string(w.size()) + " ranks: " + std::to_string(gpus.ranks_per_gpu) +
        " ranks share a GPU (" + std::to_string(gpus.visible) +
        " visible) and NCCL refuses two ranks on one GPU; needs one GPU per rank. Checked instead: one-rank NCCL "
        "communicators, and the multi-rank GPU path over the staged plane (above).");
    const Communicator alone = Communicator::self();
    const NcclDataPlane nccl(alone, kGpu);
    planes_agree<float>(nccl, alone, "nccl, one rank");
    planes_agree<double>(nccl, alone, "nccl, one rank, double");
    GTEST_SKIP() << "NCCL over several ranks needs one GPU per rank";
  }
  const NcclDataPlane nccl(w, kGpu, std::chrono::seconds(120));
  EXPECT_EQ(nccl.timeout(), std::chrono::seconds(120));
  planes_agree<float>(nccl, w, "nccl world, float");
  planes_agree<double>(nccl, w, "nccl world, double");
  planes_agree<std::int32_t>(nccl, w, "nccl world, int32");
  planes_agree<std::int64_t>(nccl, w, "nccl world, int64");
  for (idx cp = 1; cp <= w.size(); ++cp) {
    if (w.size() % cp != 0) continue;
    const Mesh mesh(w, cp, DataTransport::nccl, kGpu, 0);
    planes_agree<float>(mesh.world_data(), mesh.world(), "nccl mesh world, cp " + std::to_string(cp));
    planes_agree<float>(mesh.cp_data(), mesh.cp_group(), "nccl cp group, cp " + std::to_string(cp));
    planes_agree<float>(mesh.dp_data(), mesh.dp_group(), "nccl dp group, cp " + std::to_string(cp));
  }
}
#else
TEST(GpuDataPlanes, NcclEqualsTheCommunicator) {
  say("NOT RUN: this build has no NCCL data plane (NCCL not found at configure time)");
  GTEST_SKIP() << "no NCCL in this build";
}
#endif

}  // namespace
}  // namespace nexus
