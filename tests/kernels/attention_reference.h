// The plain references attention kernels are held to: softmax attention with the whole score row
// materialised in fp64, its mask from the neighborhood's definition written out independently of
// kernels/neighborhood.h (support/naive_neighborhood.h), and the helpers the tests share.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/ops.h"
#include "support/check.h"
#include "support/naive_neighborhood.h"

namespace nexus::test::attention {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

inline std::size_t q_size(const AttentionShape& s) { return std::size_t(s.B * s.Tq * s.n_heads * s.head_dim); }
inline std::size_t k_size(const AttentionShape& s) { return std::size_t(s.B * s.Tk * s.n_kv_heads * s.head_dim); }
inline std::size_t lse_size(const AttentionShape& s) { return std::size_t(s.B * s.Tq * s.n_heads); }

struct Attn {
  std::vector<double> out, lse;
};

// softmax(q k^T / sqrt(hd)) v over the visible keys, the full score row materialised.
inline Attn reference(const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
               const AttentionShape& s) {
  const idx hd = s.head_dim, Hq = s.n_heads, Hkv = s.n_kv_heads;
  Attn r{std::vector<double>(q_size(s), 0.0), std::vector<double>(lse_size(s), kNegInf)};
  for (idx b = 0; b < s.B; ++b)
    for (idx h = 0; h < Hq; ++h)
      for (idx i = 0; i < s.Tq; ++i) {
        const idx g = h / (Hq / Hkv);
        std::vector<double> score(std::size_t(s.Tk), kNegInf);
        double mx = kNegInf;
        for (idx j = 0; j < s.Tk; ++j) {
          if (s.causal && !naive_visible(s.neighborhood, s.q_pos0 + i, s.k_pos0 + j)) continue;
          double dotp = 0;
          for (idx d = 0; d < hd; ++d)
            dotp += q[std::size_t(((b * s.Tq + i) * Hq + h) * hd + d)] *
                    k[std::size_t(((b * s.Tk + j) * Hkv + g) * hd + d)];
          score[std::size_t(j)] = dotp / std::sqrt(double(hd));
          mx = std::max(mx, score[std::size_t(j)]);
        }
        if (mx == kNegInf) continue;  // no visible key: out = 0, lse = -inf
        double sum = 0;
        for (double sc : score) sum += std::exp(sc - mx);
        const double lse = mx + std::log(sum);
        r.lse[std::size_t((b * s.Tq + i) * Hq + h)] = lse;
        for (idx j = 0; j < s.Tk; ++j) {
          const double p = std::exp(score[std::size_t(j)] - lse);
          for (idx d = 0; d < hd; ++d)
            r.out[std::size_t(((b * s.Tq + i) * Hq + h) * hd + d)] +=
                p * v[std::size_t(((b * s.Tk + j) * Hkv + g) * hd + d)];
        }
      }
  return r;
}

template <typename T>
Attn forward(const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
             const AttentionShape& s) {
  const std::vector<T> qt(q.begin(), q.end()), kt(k.begin(), k.end()), vt(v.begin(), v.end());
  std::vector<T> out(q_size(s)), lse(lse_size(s));
  attention_forward(Exec{}, out.data(), lse.data(), qt.data(), kt.data(), vt.data(), s);
  return {test::to_double(out), test::to_double(lse)};
}

// Error of the finite lse entries relative to their scale; -inf must appear exactly where the
// reference has it (returns +inf otherwise).
inline double lse_rel_diff(const std::vector<double>& a, const std::vector<double>& ref) {
  double err = 0, scale = 1e-12;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    if ((ref[i] == kNegInf) != (a[i] == kNegInf)) return std::numeric_limits<double>::infinity();
    if (ref[i] == kNegInf) continue;
    scale = std::max(scale, std::abs(ref[i]));
    err = std::max(err, std::abs(a[i] - ref[i]));
  }
  return err / scale;
}

struct Grads {
  std::vector<double> dq, dk, dv;
};

inline Grads backward(const std::vector<double>& dout, const std::vector<double>& q, const std::vector<double>& k,
               const std::vector<double>& v, const Attn& fwd, const AttentionShape& s, Grads g) {
  attention_backward(Exec{}, g.dq.data(), g.dk.data(), g.dv.data(), dout.data(), q.data(), k.data(), v.data(),
                     fwd.out.data(), fwd.lse.data(), s);
  return g;
}

// <a, b> in extended precision. The gradient check below differentiates L = <R, out> - L(inputs),
// formed before rounding to double: the constant changes no derivative, but rounding an L of ~10
// would alone put ~1e-15 / h = 1e-10 of noise on every difference quotient — 1e-5 relative to the
// small entries of a softmax over ~70 keys, whose gradients are O(1e-3) with some near 1e-5.
inline long double dot_extended(const std::vector<double>& a, const std::vector<double>& b) {
  long double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<long double>(a[i]) * b[i];
  return s;
}

// The float backward (float forward's out and lse, polynomial exp, float sums) and the fp64 one,
// both from zero, on the same random problem of shape s: inputs from seeds 18..21.
struct FloatAndDouble {
  Grads f, d;
};
inline FloatAndDouble float_and_double_backward(const AttentionShape& s) {
  const auto q = random_vector(q_size(s), 18, -2, 2), k = random_vector(k_size(s), 19, -2, 2),
             v = random_vector(k_size(s), 20), R = random_vector(q_size(s), 21);
  const Grads d = backward(R, q, k, v, forward<double>(q, k, v, s), s,
                           {std::vector<double>(q_size(s)), std::vector<double>(k_size(s)),
                            std::vector<double>(k_size(s))});
  const auto cast = [](const std::vector<double>& x) { return std::vector<float>(x.begin(), x.end()); };
  const Attn ff = forward<float>(q, k, v, s);
  std::vector<float> dq(q_size(s)), dk(k_size(s)), dv(k_size(s));
  attention_backward(Exec{}, dq.data(), dk.data(), dv.data(), cast(R).data(), cast(q).data(), cast(k).data(),
                     cast(v).data(), cast(ff.out).data(), cast(ff.lse).data(), s);
  return {{to_double(dq), to_double(dk), to_double(dv)}, d};
}

}  // namespace nexus::test::attention
