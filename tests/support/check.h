// Shared test helpers: seeded random tensors, closeness measures, and the central finite-difference
// gradient check every backward is held to.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace nexus::test {

// Uniform values in [lo, hi), seeded so failures reproduce.
template <typename T = double>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(u(rng));
  return v;
}

template <typename T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// max_i |a_i - b_i| / max(max_i |b_i|, floor): error relative to the reference's scale, so an
// entry that happens to be near zero does not dominate.
template <typename A, typename B>
double max_rel_diff(const std::vector<A>& a, const std::vector<B>& b, double floor = 1e-12) {
  double scale = floor, err = 0.0;
  for (std::size_t i = 0; i < b.size(); ++i) scale = std::max(scale, std::abs(double(b[i])));
  for (std::size_t i = 0; i < b.size(); ++i) err = std::max(err, std::abs(double(a[i]) - double(b[i])));
  return err / scale;
}

struct GradCheck {
  double max_rel_error = 0.0;  // worst |analytic - numeric| / max(|analytic|, |numeric|, floor)
  std::size_t worst_index = 0;
  double analytic = 0.0, numeric = 0.0;
  std::size_t checked = 0;
};

// Fourth-order central differences
//   L'(x) ~ (8 (L(x+h) - L(x-h)) - (L(x+2h) - L(x-2h))) / 12h
// in fp64 on up to `max_entries` entries of `x` (all when it has fewer; otherwise an evenly
// strided subset that includes the first and last). With h = 1e-4 the truncation error is
// ~h^4 |L^(5)| / 30 ~ 1e-17 and the rounding error ~1e-16 |L| / h ~ 1e-12 for the O(1) losses
// used in tests, so a relative error of 1e-6 keeps a wide margin even for gradients of 1e-5
// (deep layers of a whole model), while any real mistake in a backward shows as O(1). Entries
// whose gradients are both below `floor` are compared absolutely against it, since a relative
// error of two ~0 numbers says nothing.
inline GradCheck check_gradient(std::vector<double>& x, const std::vector<double>& analytic,
                                const std::function<double()>& loss, std::size_t max_entries = 64,
                                double h = 1e-4, double floor = 1e-6) {
  GradCheck r;
  const std::size_t n = x.size();
  const std::size_t count = std::min(n, max_entries);
  for (std::size_t c = 0; c < count; ++c) {
    const std::size_t i = count == n ? c : (count == 1 ? 0 : c * (n - 1) / (count - 1));
    const double saved = x[i];
    auto at = [&](double offset) {
      x[i] = saved + offset;
      return loss();
    };
    const double d1 = at(h) - at(-h), d2 = at(2 * h) - at(-2 * h);
    x[i] = saved;
    const double numeric = (8 * d1 - d2) / (12 * h);
    const double denom = std::max({std::abs(analytic[i]), std::abs(numeric), floor});
    const double err = std::abs(analytic[i] - numeric) / denom;
    ++r.checked;
    if (c == 0 || err > r.max_rel_error) {
      r.max_rel_error = err;
      r.worst_index = i;
      r.analytic = analytic[i];
      r.numeric = numeric;
    }
  }
  return r;
}

inline std::string describe(const GradCheck& r) {
  return "max rel error " + std::to_string(r.max_rel_error) + " at index " + std::to_string(r.worst_index) +
         " (analytic " + std::to_string(r.analytic) + ", numeric " + std::to_string(r.numeric) + ", " +
         std::to_string(r.checked) + " entries checked)";
}

// <a, b> in fp64: the scalar loss L = <R, out> with a fixed random R makes dL/dout = R.
template <typename A, typename B>
double dot(const std::vector<A>& a, const std::vector<B>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += double(a[i]) * double(b[i]);
  return s;
}

// L(x) - L(x0) for L = <R, out(x)>, x0 being the inputs when it is made, summed in long double:
// the loss to hand check_gradient when out(x) (a callable returning the outputs as a vector) comes
// from the double instantiation. A finite difference of a plain double L of size ~1 carries L's
// final rounding, ~1e-16 / 2h = 5e-12: a relative 1e-5 on a gradient entry of 1e-6
// (check_gradient's floor), noise in the check rather than the kernel. Centred (so the returned
// value is small and its rounding is relative to the change, not to L) and summed wider, L keeps
// the digits that change. (Where one input moves a whole row of outputs, as in a norm, those
// outputs' own roundings add up likewise, so such tests compute the reference in long double too.)
template <typename Out>
std::function<double()> centred_loss(const std::vector<double>& R, Out out) {
  auto dot = [&R, out] {
    long double s = 0.0L;
    const auto o = out();
    for (std::size_t i = 0; i < R.size(); ++i) s += static_cast<long double>(R[i]) * o[i];
    return s;
  };
  const long double base = dot();
  return [dot, base] { return static_cast<double>(dot() - base); };
}

}  // namespace nexus::test
