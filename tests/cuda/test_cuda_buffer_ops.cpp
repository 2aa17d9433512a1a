// The CUDA backend's device memory, whole-buffer ops and AdamW against the CPU backend on the same
// inputs. Elementwise ops and AdamW are written with explicitly rounded operations in the CPU's
// order, so they must match bit for bit; the sum of squares adds in a different order inside each
// 2^15-element block (a tree instead of a sequence), so it matches to the rounding of a double sum
// (relative 1e-12 is ~10^4 ulps of headroom for n = 10^5 terms, each error <= n * 2^-53 ~ 1e-11
// in the worst case and ~1e-14 typically).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/device_memory.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using namespace test;  // kCpu, kGpu, on_gpu, on_host (cuda/gpu_buffers.h), random_vector

// Sizes on both sides of the reduction block (2^15) and of one launch's grid.
const idx kSizes[] = {0, 1, 17, 32768, 32769, 100003};

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

TEST(CudaMemory, BuffersRoundTripAndZero) {
  const std::vector<float> host = test::random_vector<float>(1000, 3);
  DeviceBuffer<float> b = on_gpu(host);
  EXPECT_TRUE(same_bits(on_host(b), host));
  b.zero();
  EXPECT_TRUE(same_bits(on_host(b), std::vector<float>(1000, 0.0f)));
  HostMirror<float> mirror(kGpu, b.data(), b.size());
  EXPECT_NE(mirror.data(), b.data());  // a host copy, not device memory
  mirror.data()[7] = 2.5f;
  mirror.store();
  EXPECT_EQ(on_host(b)[7], 2.5f);
  DeviceBuffer<float> empty(kGpu, 0);
  EXPECT_NE(empty.data(), nullptr);
}

template <typename T>
void elementwise_ops_match_the_cpu() {
  for (idx n : kSizes) {
    const std::size_t un = std::size_t(n);
    const std::vector<T> x = test::random_vector<T>(un, 1), y = test::random_vector<T>(un, 2);
    DeviceBuffer<T> gx = on_gpu(x), gy = on_gpu(y), ga(kGpu, n);

    std::vector<T> cpu(un);
    fill_constant(kCpu, cpu.data(), n, T(-2.5));
    fill_constant(kGpu, ga.data(), n, T(-2.5));
    EXPECT_TRUE(same_bits(on_host(ga), cpu)) << "fill_constant n=" << n;

    copy_values(kGpu, ga.data(), gx.data(), n);
    EXPECT_TRUE(same_bits(on_host(ga), x)) << "copy_values n=" << n;

    cpu = x;
    scale_inplace(kCpu, cpu.data(), n, T(0.37));
    scale_inplace(kGpu, ga.data(), n, T(0.37));
    EXPECT_TRUE(same_bits(on_host(ga), cpu)) << "scale_inplace n=" << n;

    cpu = y;
    axpy(kCpu, cpu.data(), x.data(), n, T(-1.3));
    axpy(kGpu, gy.data(), gx.data(), n, T(-1.3));
    EXPECT_TRUE(same_bits(on_host(gy), cpu)) << "axpy n=" << n;

    const double want = sum_of_squares(kCpu, x.data(), n), got = sum_of_squares(kGpu, gx.data(), n);
    EXPECT_LE(std::fabs(got - want), 1e-12 * std::fabs(want)) << "sum_of_squares n=" << n;

    EXPECT_TRUE(all_finite(kGpu, gx.data(), n)) << n;
    if (n > 0) {
      for (T bad : {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                    -std::numeric_limits<T>::infinity()}) {
        std::vector<T> z = x;
        z[un - 1] = bad;  // the very last element: a grid-stride tail must be read too
        DeviceBuffer<T> gz = on_gpu(z);
        EXPECT_FALSE(all_finite(kGpu, gz.data(), n)) << n;
      }
    }
  }
}

TEST(CudaBufferOps, ElementwiseOpsAndReductionsMatchTheCpuFloat) { elementwise_ops_match_the_cpu<float>(); }
TEST(CudaBufferOps, ElementwiseOpsAndReductionsMatchTheCpuDouble) { elementwise_ops_match_the_cpu<double>(); }

// bf16 storage, float arithmetic: the same float operations on the host, rounded to bf16 once
// (round to nearest even on both sides), give the same bits; the sum of squares widens each
// element exactly to double, so it matches the CPU's fp32 sum over the widened values to 1e-12.
TEST(CudaBufferOps, Bf16ElementwiseOpsAndReductionsMatchFloatArithmeticRounded) {
  for (idx n : kSizes) {
    const std::size_t un = std::size_t(n);
    const Bf16Rounded x = round_to_bf16(random_vector<float>(un, 1)), y = round_to_bf16(random_vector<float>(un, 2));
    DeviceBuffer<bf16> gx = on_gpu(x.stored), gy = on_gpu(y.stored), ga(kGpu, n);
    const bf16 factor(0.37f), alpha(-1.3f);
    std::vector<bf16> want(un);

    fill_constant(kGpu, ga.data(), n, bf16(-2.5f));
    EXPECT_TRUE(same_bits(on_host(ga), std::vector<bf16>(un, bf16(-2.5f)))) << "fill_constant n=" << n;
    copy_values(kGpu, ga.data(), gx.data(), n);
    EXPECT_TRUE(same_bits(on_host(ga), x.stored)) << "copy_values n=" << n;
    scale_inplace(kGpu, ga.data(), n, factor);
    for (std::size_t i = 0; i < un; ++i) want[i] = bf16(x.value[i] * float(factor));
    EXPECT_TRUE(same_bits(on_host(ga), want)) << "scale_inplace n=" << n;
    axpy(kGpu, gy.data(), gx.data(), n, alpha);
    for (std::size_t i = 0; i < un; ++i) want[i] = bf16(y.value[i] + float(alpha) * x.value[i]);
    EXPECT_TRUE(same_bits(on_host(gy), want)) << "axpy n=" << n;

    const double ref = sum_of_squares(kCpu, x.value.data(), n), got = sum_of_squares(kGpu, gx.data(), n);
    EXPECT_LE(std::fabs(got - ref), 1e-12 * std::fabs(ref)) << "sum_of_squares n=" << n;
    EXPECT_TRUE(all_finite(kGpu, gx.data(), n)) << n;
    if (n > 0) {
      std::vector<bf16> z = x.stored;
      z[un / 2] = bf16(std::numeric_limits<float>::infinity());
      EXPECT_FALSE(all_finite(kGpu, on_gpu(z).data(), n)) << n;
    }
  }
}

TEST(CudaBufferOps, CountTargetsMatchesTheCpu) {
  for (idx n : kSizes) {
    std::vector<std::int32_t> t(static_cast<std::size_t>(n));
    for (idx i = 0; i < n; ++i) t[std::size_t(i)] = (i * 7919) % 5 == 0 ? -1 : std::int32_t(i % 100);
    DeviceBuffer<std::int32_t> g = on_gpu(t);
    EXPECT_EQ(count_targets(kGpu, g.data(), n), count_targets(kCpu, t.data(), n)) << n;
  }
}

TEST(CudaAdamW, StepsMatchTheCpuBitForBitWithAndWithoutDecay) {
  const idx n = 70001;
  const std::size_t un = std::size_t(n);
  std::vector<float> p = test::random_vector<float>(un, 4), m(un, 0.0f), v(un, 0.0f);
  DeviceBuffer<float> gp = on_gpu(p), gm = on_gpu(m), gv = on_gpu(v);
  for (int step = 1; step <= 5; ++step) {
    const std::vector<float> g = test::random_vector<float>(un, 10 + step);
    DeviceBuffer<float> gg = on_gpu(g);
    AdamWCoefficients k{};
    k.decay = step % 2 ? 1.0f : 1.0f - 1e-3f * 0.1f;
    k.step_size = float(1e-3 / (1.0 - std::pow(0.9, step)));
    k.bias2_sqrt = float(std::sqrt(1.0 - std::pow(0.95, step)));
    k.beta1 = 0.9f;
    k.beta2 = 0.95f;
    k.one_minus_beta1 = 0.1f;
    k.one_minus_beta2 = 0.05f;
    k.eps = 1e-8f;
    adamw_update(kCpu, p.data(), static_cast<float*>(nullptr), g.data(), m.data(), v.data(), n, k);
    adamw_update(kGpu, gp.data(), static_cast<float*>(nullptr), gg.data(), gm.data(), gv.data(), n, k);
    ASSERT_TRUE(same_bits(on_host(gp), p)) << "weights after step " << step;
    ASSERT_TRUE(same_bits(on_host(gm), m)) << "exp_avg after step " << step;
    ASSERT_TRUE(same_bits(on_host(gv), v)) << "exp_avg_sq after step " << step;
  }
}

TEST(CudaAdamW, TheBf16ComputeCopyIsTheRoundedMaster) {
  const idx n = 4099;
  const std::size_t un = std::size_t(n);
  std::vector<float> master = test::random_vector<float>(un, 5), m(un, 0.0f), v(un, 0.0f);
  const std::vector<float> g = test::random_vector<float>(un, 6);
  std::vector<bf16> compute(un);
  DeviceBuffer<float> gmaster = on_gpu(master), gm = on_gpu(m), gv = on_gpu(v), gg = on_gpu(g);
  DeviceBuffer<bf16> gcompute(kGpu, n);
  AdamWCoefficients k{0.9999f, 1e-2f, 0.2236068f, 0.9f, 0.95f, 0.1f, 0.05f, 1e-8f};
  cpu::adamw_update(kCpu, master.data(), compute.data(), g.data(), m.data(), v.data(), n, k);
  adamw_update(kGpu, gmaster.data(), gcompute.data(), gg.data(), gm.data(), gv.data(), n, k);
  EXPECT_TRUE(same_bits(on_host(gmaster), master));
  EXPECT_TRUE(same_bits(on_host(gcompute), compute));
}

}  // namespace
}  // namespace nexus
