// Mamba-2 SSD scan against the token-by-token recurrence in fp64 (chunk sizes that do and do not
// divide the sequence, G = 1 and 2, with and without an initial state, inputs read as column slices
// of a wider buffer); the segment properties the cross-rank scan relies on; the backward against
// finite differences of L = <R1, y> + <R2, final_state>; float against the fp64 reference.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using test::random_vector;
using Vec = std::vector<double>;

std::size_t sz(idx n) { return std::size_t(n); }

// Logical inputs in fp64, compact layouts: x [B,Tn,H,P], Bm/Cm [B,Tn,G,N], dt_raw [B,Tn,H].
struct Inputs {
  idx B, Tn, H, P, G, N;
  Vec x, Bm, Cm, dt_raw, dt_bias, A_log, D, init;  // init [B,H,P,N], empty = none
};

// Moderate magnitudes keep the finite differences well conditioned: dt = softplus(dt_raw +
// dt_bias) lies in ~[0.02, 0.3] and A = -exp(A_log) in [-4.5, -1], so per-token decays are
// exp(-0.02 .. -1.4) and neither the state nor sigmoid(dt_raw + dt_bias) gets tiny.
Inputs make_inputs(idx B, idx Tn, idx H, idx P, idx G, idx N, bool with_init, std::uint64_t seed) {
  Inputs in{B, Tn, H, P, G, N, {}, {}, {}, {}, {}, {}, {}, {}};
  in.x = random_vector(sz(B * Tn * H * P), seed + 1);
  in.Bm = random_vector(sz(B * Tn * G * N), seed + 2);
  in.Cm = random_vector(sz(B * Tn * G * N), seed + 3);
  in.dt_raw = random_vector(sz(B * Tn * H), seed + 4, -1.0, 1.0);
  in.dt_bias = random_vector(sz(H), seed + 5, -3.0, -2.0);
  in.A_log = random_vector(sz(H), seed + 6, 0.0, 1.5);
  in.D = random_vector(sz(H), seed + 7, 0.5, 1.5);
  if (with_init) in.init = random_vector(sz(B * H * P * N), seed + 8);
  return in;
}

// Tokens [t0, t1) of every sequence.
Inputs slice_time(const Inputs& in, idx t0, idx t1) {
  Inputs o = in;
  o.Tn = t1 - t0;
  auto cut = [&](const Vec& v, idx width) {
    Vec r;
    for (idx b = 0; b < in.B; ++b)
      r.insert(r.end(), v.begin() + std::ptrdiff_t((b * in.Tn + t0) * width),
               v.begin() + std::ptrdiff_t((b * in.Tn + t1) * width));
    return r;
  };
  o.x = cut(in.x, in.H * in.P);
  o.Bm = cut(in.Bm, in.G * in.N);
  o.Cm = cut(in.Cm, in.G * in.N);
  o.dt_raw = cut(in.dt_raw, in.H);
  return o;
}

struct Result {
  Vec y, final_state, decay;
};

// The recurrence itself, token by token.
Result reference(const Inputs& in) {
  const idx P = in.P, N = in.N, H = in.H;
  Result r{Vec(sz(in.B * in.Tn * H * P)), Vec(sz(in.B * H * P * N)), Vec(sz(in.B * H))};
  for (idx b = 0; b < in.B; ++b)
    for (idx h = 0; h < H; ++h) {
      const idx g = h / (H / in.G);
      const double A = -std::exp(in.A_log[sz(h)]);
      Vec S(sz(P * N), 0.0);
      if (!in.init.empty()) std::copy_n(in.init.begin() + std::ptrdiff_t((b * H + h) * P * N), P * N, S.begin());
      double sum_a = 0;
      for (idx t = 0; t < in.Tn; ++t) {
        const double dt = std::log1p(std::exp(in.dt_raw[sz((b * in.Tn + t) * H + h)] + in.dt_bias[sz(h)]));
        const double a = dt * A;
        sum_a += a;
        const double* x = &in.x[sz(((b * in.Tn + t) * H + h) * P)];
        const double* Bv = &in.Bm[sz(((b * in.Tn + t) * in.G + g) * N)];
        const double* Cv = &in.Cm[sz(((b * in.Tn + t) * in.G + g) * N)];
        double* y = &r.y[sz(((b * in.Tn + t) * H + h) * P)];
        for (idx p = 0; p < P; ++p) {
          double acc = 0;
          for (idx n = 0; n < N; ++n) {
            double& s = S[sz(p * N + n)];
            s = std::exp(a) * s + dt * x[p] * Bv[n];
            acc += s * Cv[n];
          }
          y[p] = acc + in.D[sz(h)] * x[p];
        }
      }
      std::copy(S.begin(), S.end(), r.final_state.begin() + std::ptrdiff_t((b * H + h) * P * N));
      r.decay[sz(b * H + h)] = std::exp(sum_a);
    }
  return r;
}

// x, B, C, dt_raw laid out in memory either compactly (four arrays) or, as in the model, as column
// slices of one in_proj-like buffer [z | x | B | C | dt | pad]. Gradients use the same layout.
struct Mem {
  idx ox, ob, oc, odt, ld_x, ld_bc, ld_dt, size;
  Mem(const Inputs& in, bool strided) {
    const idx rows = in.B * in.Tn, HP = in.H * in.P, GN = in.G * in.N;
    if (strided) {
      const idx ld = 2 * HP + 2 * GN + in.H + 3;
      ox = HP, ob = 2 * HP, oc = 2 * HP + GN, odt = 2 * HP + 2 * GN;
      ld_x = ld_bc = ld_dt = ld;
      size = rows * ld;
    } else {
      ox = 0, ob = rows * HP, oc = ob + rows * GN, odt = oc + rows * GN;
      ld_x = HP, ld_bc = GN, ld_dt = in.H;
      size = odt + rows * in.H;
    }
  }
  // Visits (logical index, memory index) of the `width` columns at `off` of every row.
  template <typename F>
  void each(const Inputs& in, idx off, idx ld, idx width, F f) const {
    for (idx r = 0; r < in.B * in.Tn; ++r)
      for (idx k = 0; k < width; ++k) f(sz(r * width + k), sz(off + r * ld + k));
  }
  template <typename T>
  std::vector<T> pack(const Inputs& in, double fill = 0.0) const {
    std::vector<T> m(sz(size), T(fill));
    each(in, ox, ld_x, in.H * in.P, [&](std::size_t l, std::size_t k) { m[k] = T(in.x[l]); });
    each(in, ob, ld_bc, in.G * in.N, [&](std::size_t l, std::size_t k) { m[k] = T(in.Bm[l]); });
    each(in, oc, ld_bc, in.G * in.N, [&](std::size_t l, std::size_t k) { m[k] = T(in.Cm[l]); });
    each(in, odt, ld_dt, in.H, [&](std::size_t l, std::size_t k) { m[k] = T(in.dt_raw[l]); });
    return m;
  }
  template <typename T>
  Vec unpack(const Inputs& in, const std::vector<T>& m, idx off, idx ld, idx width) const {
    Vec v(sz(in.B * in.Tn * width));
    each(in, off, ld, width, [&](std::size_t l, std::size_t k) { v[l] = double(m[k]); });
    return v;
  }
  SsdStrides strides() const { return {ld_x, ld_bc, ld_dt}; }
};

SsdShape shape_of(const Inputs& in, idx Q) { return {in.B, in.Tn, in.H, in.P, in.G, in.N, Q}; }

template <typename T>
std::vector<T> cast(const Vec& v) {
  return std::vector<T>(v.begin(), v.end());
}

template <typename T>
Result forward(const Inputs& in, idx Q, bool strided) {
  const SsdShape s = shape_of(in, Q);
  const Mem mem(in, strided);
  const std::vector<T> m = mem.pack<T>(in), bias = cast<T>(in.dt_bias), alog = cast<T>(in.A_log),
                       D = cast<T>(in.D), init = cast<T>(in.init);
  std::vector<T> y(sz(in.B * in.Tn * in.H * in.P)), fin(sz(in.B * in.H * in.P * in.N)), dec(sz(in.B * in.H)),
      ws(sz(ssd_workspace<T>(s)));
  ssd_forward(Exec{}, y.data(), fin.data(), dec.data(), m.data() + mem.ox, m.data() + mem.ob, m.data() + mem.oc,
              m.data() + mem.odt, bias.data(), alog.data(), D.data(), init.empty() ? nullptr : init.data(), s,
              mem.strides(), ws.data());
  return {test::to_double(y), test::to_double(fin), test::to_double(dec)};
}

void expect_close(const Result& got, const Result& ref, double tol, const std::string& what) {
  EXPECT_LT(test::max_rel_diff(got.y, ref.y), tol) << what << " y";
  EXPECT_LT(test::max_rel_diff(got.final_state, ref.final_state), tol) << what << " final_state";
  EXPECT_LT(test::max_rel_diff(got.decay, ref.decay), tol) << what << " decay";
}

TEST(Ssd, ForwardMatchesRecurrence) {
  // P = 20, N = 24 exercise the two-vector, one-vector and scalar-tail column tiles of the
  // kernel's GEMMs in double; Tn = 37 leaves a partial row tile and, for most Q, a short chunk.
  for (idx G : {1, 2})
    for (bool with_init : {false, true}) {
      const Inputs in = make_inputs(2, 37, 4, 20, G, 24, with_init, 100 + std::uint64_t(G));
      const Result ref = reference(in);
      for (idx Q : {1, 8, 16, 37, 64})
        for (bool strided : {false, true})
          expect_close(forward<double>(in, Q, strided), ref, 1e-12,
                       "G=" + std::to_string(G) + " init=" + std::to_string(with_init) +
                           " Q=" + std::to_string(Q) + " strided=" + std::to_string(strided));
    }
}

TEST(Ssd, NullFinalStateAndDecay) {
  const Inputs in = make_inputs(1, 19, 2, 5, 1, 6, true, 7);
  const SsdShape s = shape_of(in, 8);
  const Mem mem(in, false);
  const Vec m = mem.pack<double>(in);
  Vec y(sz(in.Tn * in.H * in.P)), ws(sz(ssd_workspace<double>(s)));
  ssd_forward(Exec{}, y.data(), nullptr, nullptr, m.data() + mem.ox, m.data() + mem.ob, m.data() + mem.oc,
              m.data() + mem.odt, in.dt_bias.data(), in.A_log.data(), in.D.data(), in.init.data(), s, mem.strides(),
              ws.data());
  EXPECT_LT(test::max_rel_diff(y, reference(in).y), 1e-12);
}

// Running Tn tokens at once equals running [0, t1) and then [t1, Tn) from the first part's final
// state; decays compose multiplicatively; and a segment's final state is
// decay * S_in + (its final state from a zero initial state).
TEST(Ssd, SegmentsCompose) {
  const Inputs in = make_inputs(2, 37, 4, 6, 2, 5, true, 200);
  const idx t1 = 20, Q = 8;  // the split is not a chunk boundary of the whole run
  const Result whole = forward<double>(in, Q, true);
  const Inputs first = slice_time(in, 0, t1);
  Inputs second = slice_time(in, t1, in.Tn);
  const Result r1 = forward<double>(first, Q, true);
  second.init = r1.final_state;
  const Result r2 = forward<double>(second, Q, false);

  Vec y;
  const idx row = in.H * in.P;
  for (idx b = 0; b < in.B; ++b) {
    y.insert(y.end(), r1.y.begin() + std::ptrdiff_t(b * t1 * row),
             r1.y.begin() + std::ptrdiff_t((b + 1) * t1 * row));
    const idx t2 = in.Tn - t1;
    y.insert(y.end(), r2.y.begin() + std::ptrdiff_t(b * t2 * row),
             r2.y.begin() + std::ptrdiff_t((b + 1) * t2 * row));
  }
  EXPECT_LT(test::max_rel_diff(y, whole.y), 1e-12);
  EXPECT_LT(test::max_rel_diff(r2.final_state, whole.final_state), 1e-12);
  Vec dec(r1.decay.size());
  for (std::size_t i = 0; i < dec.size(); ++i) dec[i] = r1.decay[i] * r2.decay[i];
  EXPECT_LT(test::max_rel_diff(dec, whole.decay), 1e-12);

  Inputs second0 = second;
  second0.init.clear();
  const Result local = forward<double>(second0, Q, true);
  Vec composed(local.final_state.size());
  const idx PN = in.P * in.N;
  for (std::size_t i = 0; i < composed.size(); ++i)
    composed[i] = r2.decay[i / sz(PN)] * second.init[i] + local.final_state[i];
  EXPECT_LT(test::max_rel_diff(composed, r2.final_state), 1e-12);
}

// Float against the fp64 recurrence on float-rounded inputs, at a size with full float tiles
// (64-row chunks, 32-wide column tiles) plus tails. Each output is a sum of at most a few hundred
// products, each carrying a handful of float roundings, and the decays are products of up to
// Q = 64 factors, so the worst-case error against the output's scale is ~Q * 2^-24 ~ 4e-6;
// observed ~2e-7. 1e-5 still catches any wrong term, which shows as O(1).
Inputs rounded_to_float(Inputs in) {
  for (Vec* v : {&in.x, &in.Bm, &in.Cm, &in.dt_raw, &in.dt_bias, &in.A_log, &in.D, &in.init})
    for (double& e : *v) e = double(float(e));
  return in;
}

TEST(Ssd, FloatMatchesReference) {
  const Inputs in = rounded_to_float(make_inputs(1, 200, 4, 40, 2, 48, true, 300));
  const Result ref = reference(in);
  for (idx Q : {64, 48}) expect_close(forward<float>(in, Q, true), ref, 1e-5, "float Q=" + std::to_string(Q));
}

// dt up to ~13 and A down to -e^3: exp(dt A) underflows, decays are flushed to zero; the result
// must stay finite and match the reference.
TEST(Ssd, StrongDecayStaysFinite) {
  Inputs in = rounded_to_float(make_inputs(1, 70, 2, 33, 1, 17, true, 400));
  for (double& v : in.dt_raw) v = v * 6 + 6;
  for (double& v : in.A_log) v += 1;
  const Result ref = reference(in);
  expect_close(forward<float>(in, 32, false), ref, 1e-5, "float");
  expect_close(forward<double>(in, 32, false), ref, 1e-12, "double");
}

// ---------------------------------------------------------------------------------------------
// Backward

struct Grads {
  Vec dx, dB, dC, ddt_raw, ddt_bias, dA_log, dD, dinit;
  std::vector<double> dmem;  // the whole strided gradient buffer, to check nothing else was written
};

constexpr double kSentinel = 7.0;

// dfinal / dinit empty = null. Accumulating gradients start at `acc0` (ddt_bias, dA_log, dD);
// everything overwritten starts at kSentinel so accumulation there would show.
template <typename T>
Grads backward(const Inputs& in, idx Q, bool strided, const Vec& dy, const Vec& dfinal, bool want_dinit,
               const Vec& acc0) {
  const SsdShape s = shape_of(in, Q);
  const Mem mem(in, strided);
  const std::vector<T> m = mem.pack<T>(in), bias = cast<T>(in.dt_bias), alog = cast<T>(in.A_log),
                       D = cast<T>(in.D), init = cast<T>(in.init), dyt = cast<T>(dy), dfin = cast<T>(dfinal);
  std::vector<T> dm(sz(mem.size), T(kSentinel)), dbias(acc0.begin(), acc0.end()),
      dalog = dbias, dD = dbias, dinit(sz(in.B * in.H * in.P * in.N), T(kSentinel)), ws(sz(ssd_workspace<T>(s)));
  ssd_backward(Exec{}, dm.data() + mem.ox, dm.data() + mem.ob, dm.data() + mem.oc, dm.data() + mem.odt, dbias.data(),
               dalog.data(), dD.data(), want_dinit ? dinit.data() : nullptr, dyt.data(),
               dfin.empty() ? nullptr : dfin.data(), m.data() + mem.ox, m.data() + mem.ob, m.data() + mem.oc,
               m.data() + mem.odt, bias.data(), alog.data(), D.data(), init.empty() ? nullptr : init.data(), s,
               mem.strides(), ws.data());
  Grads g;
  g.dx = mem.unpack(in, dm, mem.ox, mem.ld_x, in.H * in.P);
  g.dB = mem.unpack(in, dm, mem.ob, mem.ld_bc, in.G * in.N);
  g.dC = mem.unpack(in, dm, mem.oc, mem.ld_bc, in.G * in.N);
  g.ddt_raw = mem.unpack(in, dm, mem.odt, mem.ld_dt, in.H);
  g.ddt_bias = test::to_double(dbias);
  g.dA_log = test::to_double(dalog);
  g.dD = test::to_double(dD);
  g.dinit = test::to_double(dinit);
  g.dmem = test::to_double(dm);
  return g;
}

Vec minus(const Vec& a, const Vec& b) {
  Vec r(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) r[i] = a[i] - b[i];
  return r;
}

// <a, b> summed in long double. A double sum of thousands of O(1) terms rounds every partial sum
// at ~1e-16 |L|, differently in the +h and -h evaluations, which puts ~1e-9 of noise in each
// finite difference; what remains is the rounding of the outputs themselves, ~1e-10 absolute.
// Gradient entries that happen to be below ~1e-4 (cancellation) are therefore at the fp64 noise
// floor of a 1e-6 check; the fixed seeds below keep a 5x margin (worst ~2e-7 observed).
double accurate_dot(const Vec& a, const Vec& b) {
  long double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<long double>(a[i]) * b[i];
  return double(s);
}

void check_backward(idx Q, bool strided, std::uint64_t seed) {
  Inputs in = make_inputs(2, 37, 4, 20, 2, 24, true, seed);
  const Vec R1 = random_vector(sz(in.B * in.Tn * in.H * in.P), seed + 10);
  const Vec R2 = random_vector(sz(in.B * in.H * in.P * in.N), seed + 11);
  const Vec acc0 = random_vector(sz(in.H), seed + 12);  // pre-filled accumulators
  const Grads g = backward<double>(in, Q, strided, R1, R2, true, acc0);
  const auto loss = [&] {
    const Result r = forward<double>(in, Q, strided);
    return accurate_dot(R1, r.y) + accurate_dot(R2, r.final_state);
  };
  const std::string where = "Q=" + std::to_string(Q) + " strided=" + std::to_string(strided) + " ";
  struct Case {
    const char* name;
    Vec* param;
    Vec grad;
  };
  const Case cases[] = {
      {"x", &in.x, g.dx},
      {"B", &in.Bm, g.dB},
      {"C", &in.Cm, g.dC},
      {"dt_raw", &in.dt_raw, g.ddt_raw},
      {"dt_bias", &in.dt_bias, minus(g.ddt_bias, acc0)},
      {"A_log", &in.A_log, minus(g.dA_log, acc0)},
      {"D", &in.D, minus(g.dD, acc0)},
      {"init_state", &in.init, g.dinit},
  };
  // The ~2000 small forwards of the finite differences run on one thread: with the cores shared
  // by other test processes, each OpenMP barrier can cost a time slice (25 s instead of 0.5 s).
  // The analytic gradient above ran on all threads.
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  for (const Case& c : cases) {
    const test::GradCheck r = test::check_gradient(*c.param, c.grad, loss);
    EXPECT_LT(r.max_rel_error, 1e-6) << where << c.name << ": " << test::describe(r);
  }
  omp_set_num_threads(threads);
  // Outside the x / B / C / dt column slices the gradient buffer is untouched.
  if (strided) {
    const Mem mem(in, strided);
    std::vector<char> inside(sz(mem.size), 0);
    mem.each(in, mem.ox, mem.ld_x, in.H * in.P, [&](std::size_t, std::size_t k) { inside[k] = 1; });
    mem.each(in, mem.ob, mem.ld_bc, in.G * in.N, [&](std::size_t, std::size_t k) { inside[k] = 1; });
    mem.each(in, mem.oc, mem.ld_bc, in.G * in.N, [&](std::size_t, std::size_t k) { inside[k] = 1; });
    mem.each(in, mem.odt, mem.ld_dt, in.H, [&](std::size_t, std::size_t k) { inside[k] = 1; });
    std::size_t touched = 0;
    for (std::size_t k = 0; k < inside.size(); ++k) touched += !inside[k] && g.dmem[k] != kSentinel;
    EXPECT_EQ(touched, 0u) << where;
  }
}

TEST(Ssd, BackwardMatchesFiniteDifferences) {
  check_backward(16, true, 500);  // chunks of 16, 16, 5
  check_backward(7, false, 600);  // six chunks, the last of 2, compact layout
  check_backward(20, true, 700);  // chunks of 20, 17
}

// A null dfinal_state means zero; a null dinit_state changes nothing else.
TEST(Ssd, BackwardNullStateGradients) {
  const Inputs in = make_inputs(2, 23, 4, 6, 2, 5, true, 800);
  const Vec R1 = random_vector(sz(in.B * in.Tn * in.H * in.P), 801);
  const Vec zeros(sz(in.B * in.H * in.P * in.N), 0.0), acc0(sz(in.H), 0.0);
  const Grads a = backward<double>(in, 8, true, R1, zeros, true, acc0);
  const Grads b = backward<double>(in, 8, true, R1, {}, false, acc0);
  EXPECT_EQ(a.dmem, b.dmem);
  EXPECT_EQ(a.ddt_bias, b.ddt_bias);
  EXPECT_EQ(a.dA_log, b.dA_log);
  EXPECT_EQ(a.dD, b.dD);
}

// The float backward against the fp64 one at a size with full float tiles. Same per-term error as
// the forward, but dA_log and ddt_bias are sums over every token of terms that largely cancel
// (observed ~1e-5 relative to their scale, the per-token gradients ~5e-7), hence 1e-4.
TEST(Ssd, FloatBackwardMatchesDouble) {
  const Inputs in = rounded_to_float(make_inputs(1, 150, 4, 40, 2, 48, true, 900));
  const Vec R1 = random_vector(sz(in.B * in.Tn * in.H * in.P), 901);
  const Vec R2 = random_vector(sz(in.B * in.H * in.P * in.N), 902);
  const Vec acc0(sz(in.H), 0.0);
  const Grads d = backward<double>(in, 64, true, R1, R2, true, acc0);
  const Grads f = backward<float>(in, 64, true, R1, R2, true, acc0);
  const std::pair<const char*, std::pair<const Vec*, const Vec*>> all[] = {
      {"dx", {&f.dx, &d.dx}},
      {"dB", {&f.dB, &d.dB}},
      {"dC", {&f.dC, &d.dC}},
      {"ddt_raw", {&f.ddt_raw, &d.ddt_raw}},
      {"ddt_bias", {&f.ddt_bias, &d.ddt_bias}},
      {"dA_log", {&f.dA_log, &d.dA_log}},
      {"dD", {&f.dD, &d.dD}},
      {"dinit", {&f.dinit, &d.dinit}}};
  for (const auto& [name, pair] : all) EXPECT_LT(test::max_rel_diff(*pair.first, *pair.second), 1e-4) << name;
}

}  // namespace
}  // namespace nexus
