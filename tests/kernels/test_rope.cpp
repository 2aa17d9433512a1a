// RoPE against a literal transcription of Hugging Face's apply_rotary_pos_emb (partial rotary),
// its position offset, its backward by finite differences, and the norm it must preserve.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using test::random_vector;

struct RopeShape {
  idx B, Tn, H, hd, r;
  idx pos0;
  double theta;
  std::size_t size() const { return std::size_t(B * Tn * H * hd); }
};

// HF: inv_freq = 1 / theta^(arange(0, r, 2) / r); emb = cat(freqs, freqs); cos/sin of emb;
// rotate_half(x) = cat(-x2, x1); x_rot = x * cos + rotate_half(x) * sin on the first r dims.
std::vector<double> rope_reference(const std::vector<double>& x, const RopeShape& s) {
  std::vector<double> y = x;
  const idx half = s.r / 2;
  for (idx b = 0; b < s.B; ++b)
    for (idx t = 0; t < s.Tn; ++t)
      for (idx h = 0; h < s.H; ++h) {
        const double* xi = &x[std::size_t(((b * s.Tn + t) * s.H + h) * s.hd)];
        double* yi = &y[std::size_t(((b * s.Tn + t) * s.H + h) * s.hd)];
        std::vector<double> emb(std::size_t(s.r)), rot(std::size_t(s.r));
        for (idx i = 0; i < half; ++i) {
          const double inv_freq = 1.0 / std::pow(s.theta, double(2 * i) / double(s.r));
          emb[std::size_t(i)] = emb[std::size_t(i + half)] = double(s.pos0 + t) * inv_freq;
          rot[std::size_t(i)] = -xi[i + half];
          rot[std::size_t(i + half)] = xi[i];
        }
        for (idx d = 0; d < s.r; ++d)
          yi[d] = xi[d] * std::cos(emb[std::size_t(d)]) + rot[std::size_t(d)] * std::sin(emb[std::size_t(d)]);
      }
  return y;
}

template <typename T>
std::vector<T> rope(std::vector<T> x, const RopeShape& s) {
  rope_forward(Exec{}, x.data(), s.B, s.Tn, s.H, s.hd, s.r, s.pos0, s.theta);
  return x;
}

// Bamba's r = hd/2; also an r that is not a multiple of the vector width and one with r = hd.
const RopeShape kShapes[] = {
    {2, 13, 3, 16, 8, 0, 10000.0},
    {1, 9, 2, 12, 6, 4090, 10000.0},
    {2, 5, 2, 20, 20, 7, 500.0},
    {1, 6, 1, 256, 160, 2000, 10000.0},  // 80 frequencies: more than one 64-pair chunk
};

TEST(Rope, ForwardMatchesHuggingFaceFormula) {
  for (const RopeShape& s : kShapes) {
    const auto x = random_vector(s.size(), 1);
    const auto ref = rope_reference(x, s);
    EXPECT_LT(test::max_rel_diff(rope(x, s), ref), 1e-12) << "hd " << s.hd;
    // float: one rounding of cos/sin and two products per element, ~1e-7 relative.
    EXPECT_LT(test::max_rel_diff(rope(random_vector<float>(s.size(), 1), s), ref), 1e-6) << "hd " << s.hd;
  }
}

TEST(Rope, PassThroughDimsUntouchedAndRotaryNormPreserved) {
  const RopeShape s = kShapes[0];
  const auto x = random_vector(s.size(), 2);
  const auto y = rope(x, s);
  for (idx row = 0; row < s.B * s.Tn * s.H; ++row) {
    double nx = 0, ny = 0;
    for (idx d = 0; d < s.r; ++d) {
      nx += x[std::size_t(row * s.hd + d)] * x[std::size_t(row * s.hd + d)];
      ny += y[std::size_t(row * s.hd + d)] * y[std::size_t(row * s.hd + d)];
    }
    EXPECT_NEAR(ny, nx, 1e-13 * nx);
    for (idx d = s.r; d < s.hd; ++d) EXPECT_EQ(y[std::size_t(row * s.hd + d)], x[std::size_t(row * s.hd + d)]);
  }
}

TEST(Rope, PositionOffsetEqualsSliceOfFullSequence) {
  RopeShape full{2, 20, 2, 16, 8, 0, 10000.0};
  const auto x = random_vector(full.size(), 3);
  const auto y = rope(x, full);
  const idx k = 7, len = 9;  // tokens [k, k + len) of each sequence
  RopeShape part = full;
  part.Tn = len;
  part.pos0 = k;
  const idx row = full.H * full.hd;
  std::vector<double> xs, ys;
  for (idx b = 0; b < full.B; ++b) {
    const auto first = std::size_t((b * full.Tn + k) * row), last = first + std::size_t(len * row);
    xs.insert(xs.end(), x.begin() + long(first), x.begin() + long(last));
    ys.insert(ys.end(), y.begin() + long(first), y.begin() + long(last));
  }
  EXPECT_LT(test::max_rel_diff(rope(xs, part), ys), 1e-15);
}

TEST(Rope, BackwardMatchesFiniteDifferences) {
  for (const RopeShape& s : kShapes) {
    auto x = random_vector(s.size(), 4);
    const auto R = random_vector(s.size(), 5);
    auto dx = R;  // dL/dout for L = <R, rope(x)>, turned into dL/dx in place
    rope_backward(Exec{}, dx.data(), s.B, s.Tn, s.H, s.hd, s.r, s.pos0, s.theta);
    const auto r = test::check_gradient(x, dx, [&] { return test::dot(R, rope(x, s)); });
    EXPECT_LT(r.max_rel_error, 1e-6) << test::describe(r);
  }
}

TEST(Rope, BackwardInvertsForward) {
  const RopeShape s = kShapes[1];
  const auto x = random_vector(s.size(), 6);
  auto y = rope(x, s);
  rope_backward(Exec{}, y.data(), s.B, s.Tn, s.H, s.hd, s.r, s.pos0, s.theta);
  EXPECT_LT(test::max_rel_diff(y, x), 1e-14);
}

}  // namespace
}  // namespace nexus
