// copy_strided and add_strided on the GPU against the CPU kernels: padded rows on either side,
// zero fill (null src), untouched gaps between rows. Tolerance: none. A copy moves bits and an add
// is one rounded addition per element on both sides, so fp32 and fp64 equal the CPU bit for bit,
// and bf16 equals the CPU fp32 result rounded to bf16 (the GPU adds in fp32 and rounds once).
// Elementwise: no determinism test needed.
#include <gtest/gtest.h>

#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using namespace test;

const Strided3 kViews[] = {
    {1, 1, 1, 1, 1, 1, 1},
    {2, 3, 5, 40, 10, 30, 7},
    {4, 33, 17, 33 * 20, 20, 33 * 17, 17},
    {3, 2, 300, 700, 310, 600, 300},
};

std::size_t dst_size(const Strided3& s) { return std::size_t((s.n0 - 1) * s.dst_ld0 + (s.n1 - 1) * s.dst_ld1 + s.n2); }
std::size_t src_size(const Strided3& s) { return std::size_t((s.n0 - 1) * s.src_ld0 + (s.n1 - 1) * s.src_ld1 + s.n2); }

template <typename T>
void strided_ops_equal_the_cpu() {
  for (const Strided3& s : kViews) {
    const std::vector<T> src = random_vector<T>(src_size(s), 1);
    std::vector<T> copied = random_vector<T>(dst_size(s), 2), zeroed = copied, added = copied;
    DeviceBuffer<T> g_src = on_gpu(src), g_copied = on_gpu(copied), g_zeroed = on_gpu(zeroed), g_added = on_gpu(added);
    copy_strided(kCpu, copied.data(), src.data(), s);
    copy_strided(kCpu, zeroed.data(), static_cast<const T*>(nullptr), s);
    add_strided(kCpu, added.data(), src.data(), s);
    copy_strided(kGpu, g_copied.data(), g_src.data(), s);
    copy_strided(kGpu, g_zeroed.data(), static_cast<const T*>(nullptr), s);
    add_strided(kGpu, g_added.data(), g_src.data(), s);
    EXPECT_TRUE(same_bits(on_host(g_copied), copied)) << "copy n2=" << s.n2;
    EXPECT_TRUE(same_bits(on_host(g_zeroed), zeroed)) << "zero n2=" << s.n2;
    EXPECT_TRUE(same_bits(on_host(g_added), added)) << "add n2=" << s.n2;
  }
}

TEST(CudaStridedOps, Fp32EqualsTheCpu) { strided_ops_equal_the_cpu<float>(); }
TEST(CudaStridedOps, Fp64EqualsTheCpu) { strided_ops_equal_the_cpu<double>(); }

TEST(CudaStridedOps, Bf16EqualsTheRoundedFp32Cpu) {
  for (const Strided3& s : kViews) {
    const Bf16Rounded src = round_to_bf16(random_vector<float>(src_size(s), 1)),
                      dst = round_to_bf16(random_vector<float>(dst_size(s), 2));
    std::vector<float> copied = dst.value, added = dst.value;
    DeviceBuffer<bf16> g_src = on_gpu(src.stored), g_copied = on_gpu(dst.stored), g_added = on_gpu(dst.stored);
    copy_strided(kCpu, copied.data(), src.value.data(), s);
    add_strided(kCpu, added.data(), src.value.data(), s);
    cuda::copy_strided(kGpu, g_copied.data(), g_src.data(), s);
    cuda::add_strided(kGpu, g_added.data(), g_src.data(), s);
    EXPECT_TRUE(same_bits(to_float(on_host(g_copied)), copied)) << "copy n2=" << s.n2;
    EXPECT_TRUE(same_bits(to_float(on_host(g_added)), round_to_bf16(added).value)) << "add n2=" << s.n2;
  }
}

}  // namespace
}  // namespace nexus
