// bf16 conversions against an independent reference: the nearest representable bf16 found by
// comparing exact distances in double (bf16 and float values are all exact doubles), ties to the
// even bit pattern, and the IEEE rules for NaN, Inf and overflow.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <type_traits>

#include "kernels/types.h"

namespace nexus {
namespace {

double bf16_value(std::uint16_t bits) { return double(std::bit_cast<float>(std::uint32_t(bits) << 16)); }

// Round-to-nearest-even by search: the candidates are the truncation and the next pattern away
// from zero; whichever is nearer (exact in double) wins, a tie goes to the even pattern. Past the
// largest finite bf16 by half an ulp or more, the result is Inf (IEEE overflow under RNE).
std::uint16_t reference_round(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t lo = std::uint16_t(u >> 16), hi = std::uint16_t(lo + 1);
  const double x = double(f), dl = std::abs(x - bf16_value(lo));
  const std::uint16_t sign = lo & 0x8000u;
  if ((hi & 0x7fffu) == 0x7f80u) {  // hi is Inf: compare with where the next finite value would be
    const double max_finite = bf16_value(std::uint16_t(sign | 0x7f7fu));
    const double ulp = std::ldexp(1.0, 127 - 7);
    const double overflow_at = std::abs(max_finite) + ulp / 2;
    return std::abs(x) >= overflow_at ? std::uint16_t(sign | 0x7f80u) : lo;
  }
  const double dh = std::abs(x - bf16_value(hi));
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1u) ? hi : lo;
}

TEST(Bf16, EveryPatternConvertsToFloatExactlyAndBack) {
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const bf16 h = bf16::from_bits(std::uint16_t(b));
    const float f = float(h);
    EXPECT_EQ(std::bit_cast<std::uint32_t>(f), b << 16) << "bits " << b;
    if (std::isnan(f)) continue;  // NaNs come back quiet, checked below
    EXPECT_EQ(bf16(f).bits, b) << "bits " << b;
  }
}

TEST(Bf16, RoundsToNearestEvenLikeTheReference) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::uint32_t> any;
  int checked = 0;
  for (int i = 0; i < 2000000; ++i) {
    const float f = std::bit_cast<float>(any(rng));
    if (std::isnan(f)) continue;
    ASSERT_EQ(bf16(f).bits, reference_round(f)) << "float bits " << std::bit_cast<std::uint32_t>(f);
    ++checked;
  }
  EXPECT_GT(checked, 1900000);
}

TEST(Bf16, TiesGoToTheEvenPattern) {
  // 1 + 2^-8 lies exactly between bf16 1 (0x3f80, even) and 1 + 2^-7 (0x3f81): down to even.
  EXPECT_EQ(bf16(1.0f + 0x1p-8f).bits, 0x3f80u);
  // 1 + 3 * 2^-8 lies between 0x3f81 (odd) and 0x3f82 (even): up to even.
  EXPECT_EQ(bf16(1.0f + 3 * 0x1p-8f).bits, 0x3f82u);
  // Just above a tie rounds up, just below rounds down.
  EXPECT_EQ(bf16(std::nextafter(1.0f + 0x1p-8f, 2.0f)).bits, 0x3f81u);
  EXPECT_EQ(bf16(std::nextafter(1.0f + 3 * 0x1p-8f, 0.0f)).bits, 0x3f81u);
  // Negative ties mirror the positive ones.
  EXPECT_EQ(bf16(-(1.0f + 0x1p-8f)).bits, 0xbf80u);
  EXPECT_EQ(bf16(-(1.0f + 3 * 0x1p-8f)).bits, 0xbf82u);
  // A tie in the subnormal range: half of the smallest bf16 subnormal (2^-133) goes to +0.
  EXPECT_EQ(bf16(0x1p-134f).bits, 0x0000u);
  EXPECT_EQ(bf16(3 * 0x1p-134f).bits, 0x0002u);
}

TEST(Bf16, InfinitiesOverflowAndSignedZeros) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(bf16(inf).bits, 0x7f80u);
  EXPECT_EQ(bf16(-inf).bits, 0xff80u);
  EXPECT_EQ(bf16(std::numeric_limits<float>::max()).bits, 0x7f80u);  // rounds past the largest bf16
  EXPECT_EQ(bf16(std::bit_cast<float>(0x7f7f7fffu)).bits, 0x7f7fu);  // just below the overflow tie
  EXPECT_EQ(bf16(std::bit_cast<float>(0x7f7f8000u)).bits, 0x7f80u);  // the tie itself: odd, so up to Inf
  EXPECT_EQ(bf16(0.0f).bits, 0x0000u);
  EXPECT_EQ(bf16(-0.0f).bits, 0x8000u);
  EXPECT_TRUE(std::isinf(float(bf16(inf))));
}

TEST(Bf16, NaNStaysNaNWithItsSign) {
  // A signalling NaN whose payload lives only in the low 16 bits must not truncate to Inf.
  const float low_payload = std::bit_cast<float>(0x7f800001u);
  const float neg_low_payload = std::bit_cast<float>(0xff800001u);
  EXPECT_TRUE(std::isnan(float(bf16(low_payload))));
  EXPECT_TRUE(std::isnan(float(bf16(neg_low_payload))));
  EXPECT_TRUE(std::signbit(float(bf16(neg_low_payload))));
  EXPECT_FALSE(std::signbit(float(bf16(low_payload))));
  EXPECT_TRUE(std::isnan(float(bf16(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN with all mantissa bits set must not carry into the sign.
  EXPECT_EQ(bf16(std::bit_cast<float>(0x7fffffffu)).bits & 0x8000u, 0u);
}

TEST(Accumulator, IsFloatForBf16AndTheTypeItselfOtherwise) {
  static_assert(std::is_same_v<accum_t<bf16>, float>);
  static_assert(std::is_same_v<accum_t<float>, float>);
  static_assert(std::is_same_v<accum_t<double>, double>);
  SUCCEED();
}

}  // namespace
}  // namespace nexus
