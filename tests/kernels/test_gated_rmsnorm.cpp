// Gated RMSNorm, one rstd per group of C / groups channels (Bamba's BambaRMSNormGated): forward
// against a naive double reference with z a strided slice, the float forward against it, and the
// backward (dy, dz through another strided slice, dweight) against finite differences of
// L = <R, out>, with one group and with several, on a narrow row and on rows wider than the
// kernel's 4096-column dweight chunk (one of them with groups straddling the chunk boundary).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "kernels/ops.h"
#include "tests/support/check.h"

namespace nexus {
namespace {

using namespace test;  // the gradient-check helpers (tests/support/check.h)

constexpr double kEps = 1e-5;

// z (and dz) are column slices of wider rows, as z is of in_proj's output. G groups of C / G.
struct Shape {
  idx N, C, G = 1;
  idx ld_z = C + 9, z_off = 5;
  idx ld_dz = C + 3, dz_off = 2;
};

// R = double, or long double for the finite-difference loss.
template <typename R = double>
struct Ref {
  std::vector<R> out, rstd;
};

// u = y * z / (1 + exp(-z)); per group g of Cg = C / G columns,
// out = u / sqrt(mean_g(u^2) + eps) * w, from a compact z [N,C]; rstd [N,G].
template <typename R = double>
Ref<R> reference_forward(const std::vector<double>& y, const std::vector<double>& z, const std::vector<double>& w,
                         const Shape& s) {
  Ref<R> r{std::vector<R>(s.N * s.C), std::vector<R>(s.N * s.G)};
  const idx Cg = s.C / s.G;
  for (idx n = 0; n < s.N; ++n)
    for (idx g = 0; g < s.G; ++g) {
      std::vector<R> u(Cg);
      R ss = 0;
      for (idx j = 0; j < Cg; ++j) {
        const idx i = n * s.C + g * Cg + j;
        const R zc = z[i];
        u[j] = y[i] * zc / (1 + std::exp(-zc));
        ss += u[j] * u[j];
      }
      const R rstd = 1 / std::sqrt(ss / R(Cg) + R(kEps));
      r.rstd[n * s.G + g] = rstd;
      for (idx j = 0; j < Cg; ++j) r.out[n * s.C + g * Cg + j] = u[j] * rstd * w[g * Cg + j];
    }
  return r;
}

// compact [N, C] placed at columns [off, off + C) of a [N, ld] buffer filled with `fill`.
template <typename T>
std::vector<T> widen(const std::vector<T>& compact, const Shape& s, idx ld, idx off, T fill) {
  std::vector<T> wide(s.N * ld, fill);
  for (idx n = 0; n < s.N; ++n) std::copy_n(compact.begin() + n * s.C, s.C, wide.begin() + n * ld + off);
  return wide;
}

struct Inputs {
  std::vector<double> y, z, w;
};
Inputs make_inputs(const Shape& s, unsigned seed) {
  return {random_vector(s.N * s.C, seed), random_vector(s.N * s.C, seed + 1, -4.0, 4.0),
          random_vector(s.C, seed + 2, 0.5, 1.5)};
}

template <typename T>
Ref<> kernel_forward(const std::vector<T>& y, const std::vector<T>& z, const std::vector<T>& w, const Shape& s) {
  const auto zw = widen(z, s, s.ld_z, s.z_off, T(0));
  std::vector<T> out(s.N * s.C), rstd(s.N * s.G);
  gated_rmsnorm_forward(Exec{}, out.data(), rstd.data(), y.data(), zw.data() + s.z_off, s.ld_z, w.data(), s.N, s.C, s.G,
                        kEps);
  return {test::to_double(out), test::to_double(rstd)};
}

// One group, two, three, and one channel per group (rstd = 1 / sqrt(u^2 + eps) per element).
const Shape kForwardShapes[] = {{13, 53, 1}, {13, 54, 2}, {13, 54, 3}, {5, 12, 12}};

TEST(GatedRmsNorm, ForwardMatchesReference) {
  for (const Shape& s : kForwardShapes) {
    const Inputs in = make_inputs(s, 1);
    const Ref<> got = kernel_forward(in.y, in.z, in.w, s), ref = reference_forward(in.y, in.z, in.w, s);
    EXPECT_LT(max_rel_diff(got.out, ref.out), 1e-13) << "C " << s.C << ", groups " << s.G;
    EXPECT_LT(max_rel_diff(got.rstd, ref.rstd), 1e-13) << "C " << s.C << ", groups " << s.G;
  }
}

// The groups really are normalised apart: with one group scaled up 100x, the other groups' outputs
// are those of the unscaled input (a single-group norm would shrink them ~100x).
TEST(GatedRmsNorm, GroupsAreIndependent) {
  const Shape s{4, 30, 3};
  Inputs in = make_inputs(s, 5);
  const Ref<> before = kernel_forward(in.y, in.z, in.w, s);
  for (idx n = 0; n < s.N; ++n)
    for (idx j = 0; j < 10; ++j) in.y[n * s.C + 10 + j] *= 100.0;  // group 1
  const Ref<> after = kernel_forward(in.y, in.z, in.w, s);
  for (idx n = 0; n < s.N; ++n)
    for (idx c = 0; c < s.C; ++c) {
      const std::size_t i = n * s.C + c;
      if (c < 10 || c >= 20) EXPECT_NEAR(after.out[i], before.out[i], 1e-12) << "row " << n << " column " << c;
      else EXPECT_NEAR(after.out[i], before.out[i], 1e-3 * std::abs(before.out[i]) + 1e-12);  // scale-free up to eps
    }
}

// Float: u is one exp (a few ulp) and three float operations, rstd comes from a double sum rounded
// once, out is two more products: within ~10 ulp (6e-7) of exact, so 1e-5 relative to the largest
// entry leaves an order of margin.
TEST(GatedRmsNorm, FloatForwardMatchesDouble) {
  for (const Shape& s : kForwardShapes) {
    const Inputs in = make_inputs(s, 1);
    auto f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
    const Ref<> got = kernel_forward(f(in.y), f(in.z), f(in.w), s);
    const Ref<> ref =
        reference_forward(test::to_double(f(in.y)), test::to_double(f(in.z)), test::to_double(f(in.w)), s);
    EXPECT_LT(max_rel_diff(got.out, ref.out), 1e-5) << "C " << s.C << ", groups " << s.G;
    EXPECT_LT(max_rel_diff(got.rstd, ref.rstd), 1e-5) << "C " << s.C << ", groups " << s.G;
  }
}

// fd_entries: entries of each input checked by finite differences.
void check_backward(const Shape& s, std::size_t fd_entries = 200) {
  Inputs in = make_inputs(s, 11);
  const auto R = random_vector(s.N * s.C, 14);
  const auto dw_prior = random_vector(s.C, 15, 2.0, 3.0);
  const auto loss = centred_loss(R, [&] { return reference_forward<long double>(in.y, in.z, in.w, s).out; });

  constexpr double kStale = 1e3;  // dy and dz are overwritten; the gaps of dz's wide rows untouched
  const auto zw = widen(in.z, s, s.ld_z, s.z_off, 0.0);
  const Ref<> fwd = reference_forward(in.y, in.z, in.w, s);
  std::vector<double> dy(s.N * s.C, kStale), dzw(s.N * s.ld_dz, kStale), dw = dw_prior;
  gated_rmsnorm_backward(Exec{}, dy.data(), dzw.data() + s.dz_off, s.ld_dz, dw.data(), R.data(), in.y.data(),
                         zw.data() + s.z_off, s.ld_z, in.w.data(), fwd.rstd.data(), s.N, s.C, s.G);

  std::vector<double> dz(s.N * s.C), dw_added(s.C);
  for (idx n = 0; n < s.N; ++n)
    for (idx j = 0; j < s.ld_dz; ++j) {
      const double v = dzw[n * s.ld_dz + j];
      if (j >= s.dz_off && j < s.dz_off + s.C) dz[n * s.C + j - s.dz_off] = v;
      else EXPECT_EQ(v, kStale) << "dz row " << n << " column " << j << " outside the slice";
    }
  for (idx c = 0; c < s.C; ++c) dw_added[c] = dw[c] - dw_prior[c];

  const auto gy = check_gradient(in.y, dy, loss, fd_entries);
  EXPECT_LT(gy.max_rel_error, 1e-6) << "dy, C " << s.C << ", groups " << s.G << ": " << describe(gy);
  const auto gz = check_gradient(in.z, dz, loss, fd_entries);
  EXPECT_LT(gz.max_rel_error, 1e-6) << "dz, C " << s.C << ", groups " << s.G << ": " << describe(gz);
  const auto gw = check_gradient(in.w, dw_added, loss, fd_entries);
  EXPECT_LT(gw.max_rel_error, 1e-6) << "dweight, C " << s.C << ", groups " << s.G << ": " << describe(gw);

  // Finite differences sample fd_entries columns; every column of dweight (each chunk boundary
  // included) against its closed form sum_n dout u rstd = sum_n dout out / w.
  std::vector<double> dw_closed(s.C, 0.0);
  for (idx n = 0; n < s.N; ++n)
    for (idx c = 0; c < s.C; ++c) dw_closed[c] += R[n * s.C + c] * fwd.out[n * s.C + c] / in.w[c];
  EXPECT_LT(max_rel_diff(dw_added, dw_closed), 1e-12) << "dweight, all columns, C " << s.C << ", groups " << s.G;
}

TEST(GatedRmsNorm, BackwardMatchesFiniteDifferences) {
  check_backward(Shape{13, 53, 1});
  check_backward(Shape{13, 54, 2});
  check_backward(Shape{13, 54, 3});
}

// Wider than the kernel's 4096-column dweight chunk: the second chunk is summed on a later pass.
// With 15 groups of 300 that pass starts inside group 13 (columns 3900..4200) and covers group 14.
// Each loss evaluation is a whole wide forward, so fewer sampled entries; the closed-form dweight
// check still covers every column.
TEST(GatedRmsNorm, BackwardMatchesFiniteDifferencesWideRows) {
  check_backward(Shape{3, 4133, 1}, 80);
  check_backward(Shape{3, 4500, 15}, 80);
}

// The float backward against the verified double one: per-element terms are a few float operations
// on O(1) values and dweight sums N = 29 of them, so again 1e-5 relative.
void check_float_backward(idx G) {
  const Shape s{29, 54, G, 54, 0, 54, 0};
  const Inputs in = make_inputs(s, 21);
  const auto R = random_vector(s.N * s.C, 22);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    auto cast = [](const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); };
    const auto y = cast(in.y), z = cast(in.z), w = cast(in.w), dout = cast(R);
    std::vector<T> out(s.N * s.C), rstd(s.N * s.G), dy(s.N * s.C), dz(s.N * s.C), dw(s.C, T(1));
    gated_rmsnorm_forward(Exec{}, out.data(), rstd.data(), y.data(), z.data(), s.C, w.data(), s.N, s.C, s.G, kEps);
    gated_rmsnorm_backward(Exec{}, dy.data(), dz.data(), s.C, dw.data(), dout.data(), y.data(), z.data(), s.C, w.data(),
                           rstd.data(), s.N, s.C, s.G);
    return std::vector<std::vector<double>>{test::to_double(dy), test::to_double(dz), test::to_double(dw)};
  };
  const auto f = run(0.0f), d = run(0.0);
  for (std::size_t i = 0; i < f.size(); ++i)
    EXPECT_LT(max_rel_diff(f[i], d[i]), 1e-5) << "gradient " << i << ", groups " << G;
}

TEST(GatedRmsNorm, FloatBackwardMatchesDouble) {
  check_float_backward(1);
  check_float_backward(3);
}

}  // namespace
}  // namespace nexus
