// Depthwise causal conv1d + SiLU: forward against a naive double reference (with and without a
// halo, several widths K, a segment shorter than the halo), the split property that makes
// sequence-parallel segments exact, the float forward, and every gradient (dx through a strided
// slice, dhalo, dw, dbias) against finite differences of L = <R, out>.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "kernels/ops.h"
#include "tests/support/check.h"

namespace nexus {
namespace {

using namespace test;  // the gradient-check helpers (tests/support/check.h)

// The input is a column slice of a wider buffer, as the xBC slice of in_proj's output is; dx is a
// slice of another width, so a mixed-up stride cannot go unnoticed.
struct Case {
  idx B, Tn, C, K;
  idx ld_x = C + 10, x_off = 3;
  idx ld_dx = C + 4, dx_off = 1;
};

// C = 75: a full 64-channel tile and a ragged one; Tn = 37: two full 16-token tiles and a tail.
const Case kMain{2, 37, 75, 4};

// xin[b, s, c]: x for s >= 0, halo row (K-1)+s for s < 0, zero without a halo.
double xin(const std::vector<double>& x, const std::vector<double>* halo, const Case& c, idx b, idx s, idx ch) {
  if (s >= 0) return x[(b * c.Tn + s) * c.C + ch];
  return halo ? (*halo)[(b * (c.K - 1) + (c.K - 1) + s) * c.C + ch] : 0.0;
}

// out[b, t, c] = silu(bias[c] + sum_k w[c, k] xin[b, t - (K-1) + k, c]), from a compact x [B,Tn,C].
std::vector<double> reference_forward(const std::vector<double>& x, const std::vector<double>* halo,
                                      const std::vector<double>& w, const std::vector<double>& bias, const Case& c) {
  std::vector<double> out(c.B * c.Tn * c.C);
  for (idx b = 0; b < c.B; ++b)
    for (idx t = 0; t < c.Tn; ++t)
      for (idx ch = 0; ch < c.C; ++ch) {
        double pre = bias[ch];
        for (idx k = 0; k < c.K; ++k) pre += w[ch * c.K + k] * xin(x, halo, c, b, t - (c.K - 1) + k, ch);
        out[(b * c.Tn + t) * c.C + ch] = pre / (1.0 + std::exp(-pre));
      }
  return out;
}

// compact [rows, C] placed at columns [off, off + C) of a [rows, ld] buffer filled with `fill`.
template <typename T>
std::vector<T> widen(const std::vector<T>& compact, idx rows, idx C, idx ld, idx off, T fill) {
  std::vector<T> wide(rows * ld, fill);
  for (idx r = 0; r < rows; ++r)
    for (idx ch = 0; ch < C; ++ch) wide[r * ld + off + ch] = compact[r * C + ch];
  return wide;
}

template <typename T>
std::vector<T> kernel_forward(const std::vector<T>& x, const std::vector<T>* halo, const std::vector<T>& w,
                              const std::vector<T>& bias, const Case& c) {
  const auto xw = widen(x, c.B * c.Tn, c.C, c.ld_x, c.x_off, T(0));
  std::vector<T> out(c.B * c.Tn * c.C);
  conv1d_silu_forward(Exec{}, out.data(), xw.data() + c.x_off, c.ld_x, halo ? halo->data() : nullptr, w.data(),
                      bias.data(), c.B, c.Tn, c.C, c.K);
  return out;
}

struct Inputs {
  std::vector<double> x, halo, w, bias;
};
Inputs make_inputs(const Case& c, unsigned seed) {
  return {random_vector(c.B * c.Tn * c.C, seed, -2.0, 2.0), random_vector(c.B * (c.K - 1) * c.C, seed + 1, -2.0, 2.0),
          random_vector(c.C * c.K, seed + 2), random_vector(c.C, seed + 3)};
}

TEST(Conv1d, ForwardMatchesReference) {
  // K = 1 has no halo at all; K = 6 is wider than the model's; Tn = 2 < K-1 reads three halo rows
  // for its first output and two for its second.
  for (const Case& c : {kMain, Case{2, 37, 75, 1}, Case{2, 11, 75, 6}, Case{2, 2, 75, 4}, Case{3, 1, 17, 4}}) {
    const Inputs in = make_inputs(c, 1);
    for (const bool with_halo : {true, false}) {
      const std::vector<double>* halo = with_halo ? &in.halo : nullptr;
      EXPECT_LT(max_rel_diff(kernel_forward(in.x, halo, in.w, in.bias, c), reference_forward(in.x, halo, in.w, in.bias, c)),
                1e-14)
          << "Tn " << c.Tn << " K " << c.K << " halo " << with_halo;
    }
  }
}

// Float: K+1 products and sums of O(1) terms, then one exp: within ~10 ulp (6e-7) of exact, so
// 1e-5 relative to the largest output leaves an order of margin.
TEST(Conv1d, FloatForwardMatchesDouble) {
  const Case& c = kMain;
  const Inputs in = make_inputs(c, 1);
  auto f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  const auto halo_f = f(in.halo);
  const auto out = kernel_forward(f(in.x), &halo_f, f(in.w), f(in.bias), c);
  const auto halo_d = test::to_double(halo_f);
  const auto ref = reference_forward(test::to_double(f(in.x)), &halo_d, test::to_double(f(in.w)),
                                     test::to_double(f(in.bias)), c);
  EXPECT_LT(max_rel_diff(out, ref), 1e-5);
}

// Running a sequence as two segments, the second with the first's last K-1 inputs as its halo,
// gives the unsplit output; with a first segment shorter than K-1, the second's halo still
// reaches back into the first's own halo.
TEST(Conv1d, SplitSegmentsEqualUnsplit) {
  const Case full{2, 20, 75, 4};
  const Inputs in = make_inputs(full, 5);
  const auto whole = kernel_forward(in.x, &in.halo, in.w, in.bias, full);
  const idx H = full.K - 1;
  for (const idx T1 : {idx(9), idx(2)}) {
    const Case first{full.B, T1, full.C, full.K}, second{full.B, full.Tn - T1, full.C, full.K};
    std::vector<double> x1(full.B * T1 * full.C), x2(full.B * (full.Tn - T1) * full.C), halo2(full.B * H * full.C);
    for (idx b = 0; b < full.B; ++b)
      for (idx ch = 0; ch < full.C; ++ch) {
        for (idx t = 0; t < full.Tn; ++t) {
          const double v = in.x[(b * full.Tn + t) * full.C + ch];
          if (t < T1) x1[(b * T1 + t) * full.C + ch] = v;
          else x2[(b * (full.Tn - T1) + t - T1) * full.C + ch] = v;
        }
        for (idx j = 0; j < H; ++j) halo2[(b * H + j) * full.C + ch] = xin(in.x, &in.halo, full, b, T1 - H + j, ch);
      }
    const auto out1 = kernel_forward(x1, &in.halo, in.w, in.bias, first);
    const auto out2 = kernel_forward(x2, &halo2, in.w, in.bias, second);
    std::vector<double> joined(whole.size());
    for (idx b = 0; b < full.B; ++b)
      for (idx t = 0; t < full.Tn; ++t)
        for (idx ch = 0; ch < full.C; ++ch)
          joined[(b * full.Tn + t) * full.C + ch] = t < T1 ? out1[(b * T1 + t) * full.C + ch]
                                                          : out2[(b * (full.Tn - T1) + t - T1) * full.C + ch];
    EXPECT_LT(max_rel_diff(joined, whole), 1e-15) << "split at " << T1;
  }
}

void check_backward(const Case& c, bool with_halo, bool want_dhalo) {
  Inputs in = make_inputs(c, 21);
  const auto R = random_vector(c.B * c.Tn * c.C, 25);
  const auto dw_prior = random_vector(c.C * c.K, 26, 2.0, 3.0), dbias_prior = random_vector(c.C, 27, 2.0, 3.0);
  const std::string where = "Tn " + std::to_string(c.Tn) + " K " + std::to_string(c.K) + " halo " +
                            std::to_string(with_halo) + " dhalo " + std::to_string(want_dhalo);
  const std::vector<double>* halo = with_halo ? &in.halo : nullptr;
  const auto loss = centred_loss(R, [&] { return reference_forward(in.x, halo, in.w, in.bias, c); });

  constexpr double kStale = 1e3;  // dx and dhalo are overwritten; gaps of dx's wide rows untouched
  const auto xw = widen(in.x, c.B * c.Tn, c.C, c.ld_x, c.x_off, 0.0);
  std::vector<double> dxw(c.B * c.Tn * c.ld_dx, kStale), dhalo(in.halo.size(), kStale);
  std::vector<double> dw = dw_prior, dbias = dbias_prior;
  conv1d_silu_backward(Exec{}, dxw.data() + c.dx_off, c.ld_dx, want_dhalo ? dhalo.data() : nullptr, dw.data(),
                       dbias.data(), R.data(), xw.data() + c.x_off, c.ld_x, halo ? halo->data() : nullptr, in.w.data(),
                       in.bias.data(), c.B, c.Tn, c.C, c.K);

  std::vector<double> dx(in.x.size());
  for (idx r = 0; r < c.B * c.Tn; ++r)
    for (idx j = 0; j < c.ld_dx; ++j) {
      const double v = dxw[r * c.ld_dx + j];
      if (j >= c.dx_off && j < c.dx_off + c.C) dx[r * c.C + j - c.dx_off] = v;
      else EXPECT_EQ(v, kStale) << where << ": dx row " << r << " column " << j << " outside the slice";
    }
  std::vector<double> dw_added(dw.size()), dbias_added(dbias.size());
  for (std::size_t i = 0; i < dw.size(); ++i) dw_added[i] = dw[i] - dw_prior[i];
  for (std::size_t i = 0; i < dbias.size(); ++i) dbias_added[i] = dbias[i] - dbias_prior[i];

  const auto gx = check_gradient(in.x, dx, loss, 300);
  EXPECT_LT(gx.max_rel_error, 1e-6) << where << ": dx " << describe(gx);
  const auto gw = check_gradient(in.w, dw_added, loss, in.w.size());
  EXPECT_LT(gw.max_rel_error, 1e-6) << where << ": dw " << describe(gw);
  const auto gb = check_gradient(in.bias, dbias_added, loss, in.bias.size());
  EXPECT_LT(gb.max_rel_error, 1e-6) << where << ": dbias " << describe(gb);
  if (want_dhalo) {
    // Without a halo the input is zeros, and dhalo is the gradient there.
    if (!with_halo) std::fill(in.halo.begin(), in.halo.end(), 0.0);
    halo = &in.halo;
    const auto gh = check_gradient(in.halo, dhalo, loss, in.halo.size());
    EXPECT_LT(gh.max_rel_error, 1e-6) << where << ": dhalo " << describe(gh);
  }
}

TEST(Conv1d, BackwardMatchesFiniteDifferences) {
  check_backward(kMain, true, true);
  check_backward(kMain, true, false);
  check_backward(kMain, false, false);
  check_backward(kMain, false, true);
}

TEST(Conv1d, BackwardShortSegmentAndOtherWidths) {
  check_backward(Case{2, 2, 75, 4}, true, true);   // Tn < K-1: some halo rows feed both outputs
  check_backward(Case{2, 11, 75, 6}, true, true);  // wider kernel
  check_backward(Case{2, 13, 19, 1}, false, false);  // K = 1: a per-channel scale, no halo
}

// The float backward against the verified double one: every entry is a short sum of O(1) products
// (dw and dbias add up to B*Tn = 74 terms), so 1e-5 relative to the largest is safe.
TEST(Conv1d, FloatBackwardMatchesDouble) {
  const Case& c = kMain;
  const Inputs in = make_inputs(c, 31);
  const auto R = random_vector(c.B * c.Tn * c.C, 32);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    auto cast = [](const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); };
    const auto x = cast(in.x), halo = cast(in.halo), w = cast(in.w), bias = cast(in.bias), dout = cast(R);
    std::vector<T> dx(x.size()), dhalo(halo.size()), dw(w.size(), T(1)), dbias(bias.size(), T(1));
    conv1d_silu_backward(Exec{}, dx.data(), c.C, dhalo.data(), dw.data(), dbias.data(), dout.data(), x.data(), c.C,
                         halo.data(), w.data(), bias.data(), c.B, c.Tn, c.C, c.K);
    return std::vector<std::vector<double>>{test::to_double(dx), test::to_double(dhalo), test::to_double(dw),
                                            test::to_double(dbias)};
  };
  const auto f = run(0.0f), d = run(0.0);
  for (std::size_t i = 0; i < f.size(); ++i) EXPECT_LT(max_rel_diff(f[i], d[i]), 1e-5) << "gradient " << i;
}

}  // namespace
}  // namespace nexus
