// The whole-buffer ops (fills, copies, scale, axpy, the widened and narrowed adds, strided copies,
// the gradient reductions, counting targets) against plain loops written here, and the dispatch layer's refusal of a device
// this build has no backend for.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using test::random_vector;

// Sizes on both sides of the ops' parallel threshold (2^15) and of the reduction block (2^15).
const idx kSizes[] = {0, 1, 17, 32768, 32769, 100003};

TEST(BufferOps, FillCopyScaleAxpyMatchPlainLoops) {
  for (idx n : kSizes) {
    const std::size_t un = std::size_t(n);
    std::vector<float> x = random_vector<float>(un, 1), y = random_vector<float>(un, 2);
    std::vector<float> a(un, 7.0f);
    fill_constant(Exec{}, a.data(), n, -2.5f);
    for (float v : a) ASSERT_EQ(v, -2.5f);

    std::vector<float> c(un, 0.0f);
    copy_values(Exec{}, c.data(), static_cast<const float*>(x.data()), n);
    EXPECT_EQ(c, x);

    std::vector<float> s = x, ref = x;
    scale_inplace(Exec{}, s.data(), n, 0.37f);
    for (std::size_t i = 0; i < un; ++i) ref[i] *= 0.37f;
    EXPECT_EQ(s, ref) << "n = " << n;

    std::vector<double> yd = random_vector(un, 3), xd = random_vector(un, 4), want = yd;
    axpy(Exec{}, yd.data(), static_cast<const double*>(xd.data()), n, -1.5);
    for (std::size_t i = 0; i < un; ++i) want[i] += -1.5 * xd[i];
    for (std::size_t i = 0; i < un; ++i) ASSERT_NEAR(yd[i], want[i], 1e-15) << "n = " << n << " i = " << i;
  }
}

// Where accum_t<T> = T (all the CPU computes), the widened and narrowed adds are plain copies and
// adds: the same bits as copy_values and y[i] += x[i], whatever the values.
template <typename T>
void widened_and_narrowed_adds_are_plain_adds() {
  for (idx n : kSizes) {
    const std::size_t un = std::size_t(n);
    const std::vector<T> x = random_vector<T>(un, 10), y = random_vector<T>(un, 11, -1e3, 1e3);
    std::vector<T> acc(un, T(7)), want = y;
    copy_widened(Exec{}, acc.data(), x.data(), n);
    EXPECT_EQ(acc, x) << "copy_widened n = " << n;
    acc = y;
    add_widened(Exec{}, acc.data(), x.data(), n);
    for (std::size_t i = 0; i < un; ++i) want[i] += x[i];
    EXPECT_EQ(acc, want) << "add_widened n = " << n;
    std::vector<T> narrowed = y;
    add_narrowed(Exec{}, narrowed.data(), x.data(), n);
    EXPECT_EQ(narrowed, want) << "add_narrowed n = " << n;
  }
}
TEST(BufferOps, WidenedAndNarrowedAddsArePlainAddsInFloat) { widened_and_narrowed_adds_are_plain_adds<float>(); }
TEST(BufferOps, WidenedAndNarrowedAddsArePlainAddsInDouble) { widened_and_narrowed_adds_are_plain_adds<double>(); }

TEST(BufferOps, StridedCopyAndAddVisitExactlyTheView) {
  // dst [3, 4, 10] read as a view of [3 x 2 x 5] at row stride 10, plane stride 40, from a src
  // [3 x 2 x 5] with its own strides (7, 20): every element outside the view stays as it was.
  const Strided3 v{3, 2, 5, 40, 10, 20, 7};
  const std::vector<double> src = random_vector(60, 5);
  std::vector<double> dst = random_vector(120, 6), want = dst, added = dst, want_added = dst, zeroed = dst,
                      want_zeroed = dst;
  for (idx i0 = 0; i0 < v.n0; ++i0)
    for (idx i1 = 0; i1 < v.n1; ++i1)
      for (idx i2 = 0; i2 < v.n2; ++i2) {
        const std::size_t d = std::size_t(i0 * v.dst_ld0 + i1 * v.dst_ld1 + i2);
        const double s = src[std::size_t(i0 * v.src_ld0 + i1 * v.src_ld1 + i2)];
        want[d] = s;
        want_added[d] += s;
        want_zeroed[d] = 0.0;
      }
  copy_strided(Exec{}, dst.data(), src.data(), v);
  add_strided(Exec{}, added.data(), src.data(), v);
  copy_strided(Exec{}, zeroed.data(), static_cast<const double*>(nullptr), v);
  EXPECT_EQ(dst, want);
  EXPECT_EQ(added, want_added);
  EXPECT_EQ(zeroed, want_zeroed);
}

TEST(BufferOps, SumOfSquaresMatchesALongDoubleSumAndIsDeterministic) {
  for (idx n : kSizes) {
    const std::vector<float> x = random_vector<float>(std::size_t(n), 8, -3.0, 3.0);
    long double ref = 0;
    for (float v : x) ref += (long double)v * (long double)v;
    const double got = sum_of_squares(Exec{}, x.data(), n);
    EXPECT_NEAR(got, double(ref), 1e-13 * double(ref) + 1e-300) << "n = " << n;
    EXPECT_EQ(got, sum_of_squares(Exec{}, x.data(), n));  // bit for bit, run to run
  }
}

TEST(BufferOps, AllFiniteFindsOneBadElementAnywhere) {
  for (double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                     -std::numeric_limits<double>::infinity()}) {
    for (idx at : {idx(0), idx(12345), idx(40000)}) {
      std::vector<double> x = random_vector(40001, 9);
      EXPECT_TRUE(all_finite(Exec{}, x.data(), idx(x.size())));
      x[std::size_t(at)] = bad;
      EXPECT_FALSE(all_finite(Exec{}, x.data(), idx(x.size()))) << bad << " at " << at;
    }
  }
  const float big = std::numeric_limits<float>::max();
  const std::vector<float> edge = {big, -big, 0.0f, -0.0f, std::numeric_limits<float>::denorm_min()};
  EXPECT_TRUE(all_finite(Exec{}, edge.data(), idx(edge.size())));
}

TEST(BufferOps, CountTargetsCountsTheNonNegativeOnes) {
  const std::vector<std::int32_t> t = {0, -1, 5, -100, 3, 3, -1, 0};
  EXPECT_EQ(count_targets(Exec{}, t.data(), idx(t.size())), 5);
  EXPECT_EQ(count_targets(Exec{}, t.data(), 0), 0);
}

TEST(Dispatch, ACudaContextIsRefusedNamingTheOp) {
#if NEXUS_HAS_CUDA
  GTEST_SKIP() << "this build has the CUDA backend: tests/cuda/ checks its ops";
#endif
  std::vector<float> x(4, 1.0f);
  const Exec cuda{Device::cuda, nullptr};
  try {
    fill_constant(cuda, x.data(), idx(4), 0.0f);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "fill_constant: this build has no CUDA backend");
  }
  EXPECT_EQ(x, std::vector<float>(4, 1.0f));  // nothing ran
  EXPECT_THROW(matmul_forward(cuda, x.data(), static_cast<const float*>(x.data()), static_cast<const float*>(x.data()),
                              idx(1), idx(1), idx(1)),
               std::runtime_error);
  EXPECT_THROW(sum_of_squares(cuda, x.data(), idx(4)), std::runtime_error);
}

}  // namespace
}  // namespace nexus
