// The mixed-precision adds (copy_widened, add_widened, add_narrowed) on the GPU against the CPU
// backend. Tolerances:
//  - float and double: accum_t<T> = T, each element is one IEEE copy or add, rounded to nearest
//    on both sides (the CPU's axpy with alpha 1 adds 1 * x = x exactly): the same bits.
//  - bf16: widening a bf16 value to fp32 is exact, so add_widened is the fp32 add of the CPU's
//    float op on the bf16 values, bit for bit; add_narrowed is that fp32 add followed by the one
//    rounding to bf16, which both sides do with the same round-to-nearest-even (bf16's converting
//    constructor, shared host/device code): the same bits too, so "exact up to the final rounding"
//    needs no tolerance at all.
//  - The use they exist for, k bf16 terms summed in fp32 and added to a bf16 y with one rounding,
//    element by element against the exact (double) sum. The k fp32 adds (k - 1 widened, one in
//    add_narrowed) each round by at most 2^-24 of a partial sum, and every partial sum is at most
//    M = |y| + sum|terms| (plus earlier errors, 2^-21 of it at most): e32 <= k 2^-24 M (1 + 2^-21).
//    The narrowing rounds by at most half an ulp of bf16's 8-bit significand, 2^-8 of the value
//    (a strict per-element bound; 2^-9 is the typical size): at most 2^-8 (|exact| + e32). In all
//    2^-8 |exact| + (1 + 2^-8) e32 <= 2^-8 |exact| + 2 k 2^-24 M, the check's bound. Summing in
//    bf16 instead would round k times, 2^-8 of a partial sum each.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "cuda/gpu_buffers.h"
#include "kernels/device_memory.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using namespace test;  // kCpu, kGpu, on_gpu, on_host, round_to_bf16, same_bits, random_vector

// Sizes around one 256-thread block and beyond one launch's grid, and empty.
const idx kSizes[] = {0, 1, 17, 256, 257, 100003};

template <typename T>
void match_the_cpu_bit_for_bit() {
  for (idx n : kSizes) {
    const std::size_t un = std::size_t(n);
    const std::vector<T> x = random_vector<T>(un, 1), y = random_vector<T>(un, 2, -1e3, 1e3);
    DeviceBuffer<T> gx = on_gpu(x), gacc(kGpu, n), gy = on_gpu(y);
    std::vector<T> acc(un);

    copy_widened(kCpu, acc.data(), x.data(), n);
    copy_widened(kGpu, gacc.data(), gx.data(), n);
    EXPECT_TRUE(same_bits(on_host(gacc), acc)) << "copy_widened n=" << n;

    for (int rep = 0; rep < 3; ++rep) {  // acc = 4 x, in three rounded adds
      add_widened(kCpu, acc.data(), x.data(), n);
      add_widened(kGpu, gacc.data(), gx.data(), n);
    }
    EXPECT_TRUE(same_bits(on_host(gacc), acc)) << "add_widened n=" << n;

    std::vector<T> want = y;
    add_narrowed(kCpu, want.data(), acc.data(), n);
    add_narrowed(kGpu, gy.data(), gacc.data(), n);
    EXPECT_TRUE(same_bits(on_host(gy), want)) << "add_narrowed n=" << n;
  }
}

TEST(CudaWidenedAdds, MatchTheCpuBitForBitInFloat) { match_the_cpu_bit_for_bit<float>(); }
TEST(CudaWidenedAdds, MatchTheCpuBitForBitInDouble) { match_the_cpu_bit_for_bit<double>(); }

TEST(CudaWidenedAdds, Bf16IsTheCpuFloatOpOnTheBf16ValuesRoundedOnce) {
  for (idx n : kSizes) {
    const std::size_t un = std::size_t(n);
    const Bf16Rounded x = round_to_bf16(random_vector<float>(un, 3)),
                      y = round_to_bf16(random_vector<float>(un, 4, -8.0, 8.0));
    DeviceBuffer<bf16> gx = on_gpu(x.stored), gy = on_gpu(y.stored);
    DeviceBuffer<float> gacc(kGpu, n);
    std::vector<float> acc(un);

    copy_widened(kCpu, acc.data(), x.value.data(), n);
    copy_widened(kGpu, gacc.data(), gx.data(), n);
    EXPECT_TRUE(same_bits(on_host(gacc), acc)) << "copy_widened n=" << n;

    for (int rep = 0; rep < 3; ++rep) {
      add_widened(kCpu, acc.data(), x.value.data(), n);
      add_widened(kGpu, gacc.data(), gx.data(), n);
    }
    EXPECT_TRUE(same_bits(on_host(gacc), acc)) << "add_widened n=" << n;

    std::vector<float> sum = y.value;
    add_narrowed(kCpu, sum.data(), acc.data(), n);
    add_narrowed(kGpu, gy.data(), gacc.data(), n);
    EXPECT_TRUE(same_bits(on_host(gy), round_to_bf16(sum).stored)) << "add_narrowed n=" << n;
  }
}

// k bf16 terms of mixed signs summed in fp32 and added to a bf16 y: one bf16 rounding in all.
TEST(CudaWidenedAdds, Bf16TermsSummedInFp32RoundOnceAgainstTheExactSum) {
  const idx n = 4099;
  const int k = 7;
  const std::size_t un = std::size_t(n);
  const Bf16Rounded y = round_to_bf16(random_vector<float>(un, 5));
  std::vector<Bf16Rounded> terms;
  for (int t = 0; t < k; ++t) terms.push_back(round_to_bf16(random_vector<float>(un, 6 + std::uint64_t(t))));
  DeviceBuffer<bf16> gy = on_gpu(y.stored), gterm(kGpu, n);
  DeviceBuffer<float> gacc(kGpu, n);
  for (int t = 0; t < k; ++t) {
    copy_to_device(kGpu, gterm.data(), terms[std::size_t(t)].stored.data(), gterm.bytes());
    if (t == 0)
      copy_widened(kGpu, gacc.data(), gterm.data(), n);
    else
      add_widened(kGpu, gacc.data(), gterm.data(), n);
  }
  add_narrowed(kGpu, gy.data(), gacc.data(), n);
  const std::vector<bf16> got = on_host(gy);
  for (std::size_t i = 0; i < un; ++i) {
    double exact = y.value[i], magnitude = std::fabs(y.value[i]);
    for (const Bf16Rounded& term : terms) {
      exact += term.value[i];
      magnitude += std::fabs(term.value[i]);
    }
    const double bound = std::ldexp(std::fabs(exact), -8) + 2.0 * double(k) * std::ldexp(magnitude, -24);
    ASSERT_LE(std::fabs(double(float(got[i])) - exact), bound) << "i=" << i;
  }
}

}  // namespace
}  // namespace nexus
