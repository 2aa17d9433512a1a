// The SSD's state ops and its one-token step on the GPU against the CPU kernels:
// ssd_state_output_forward/backward (tokens in and past a 256-token tile, and decays strong enough
// that the CPU stops at the flush threshold mid-sequence), decayed_state_update (rows ld_b apart)
// and ssd_step (several steps carrying the state). fp32 and fp64 against the CPU of the same type,
// bf16 against the CPU's fp32 on the same bf16-rounded inputs.
//
// Tolerances, as max |gpu - cpu| / max(max |cpu|, 1): every output is a short sum (N or P terms
// per token, or the Tn tokens of a state gradient) of the same products as on the CPU, the decays
// from the same fp64 sums of dt, so only the summation order, FMA contraction and the last bit of
// exp differ: 1e-5 in fp32 (2e-5 for the sums over Tn tokens), 1e-12 in fp64. bf16 outputs (y)
// are rounded once more to bf16, relative 2^-8 of the value: 1e-2; the fp32 state and state
// gradient of a bf16 run keep the fp32 tolerance.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cuda/gpu_buffers.h"
#include "cuda/ssd_support.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using namespace test;  // kCpu, kGpu, Case, Buffer, random_vector, max_rel_diff

double rel_err(const std::vector<double>& a, const std::vector<double>& b) { return max_rel_diff(a, b, 1.0); }

struct StateInputs {
  std::vector<double> rows, dt_bias, A_log, D, state, y0, dy;
};

// dt = softplus(dt_raw + dt_bias) in ~[0.002, 0.05]. strong: A = -exp(A_log) in [-20, -7.4], so
// e_t drops below the fp32 flush threshold within ~100 tokens; otherwise A in [-1, -0.2] and e_t
// stays above 1e-7 over 300 tokens.
StateInputs make_inputs(const Case& c, std::uint64_t seed, bool strong, bool bf16_inputs) {
  StateInputs in;
  in.rows = random_vector(c.rows(), seed);
  for (idx r = 0; r < c.B * c.Tn; ++r)
    for (idx h = 0; h < c.H; ++h) in.rows[std::size_t(c.odt() + r * c.ldt() + h)] -= 4.0;  // dt ~ 0.01 .. 0.05
  in.dt_bias = random_vector(std::size_t(c.H), seed + 1, -1.0, 0.0);
  in.A_log = strong ? random_vector(std::size_t(c.H), seed + 2, 2.0, 3.0)
                    : random_vector(std::size_t(c.H), seed + 2, -1.5, 0.0);
  in.D = random_vector(std::size_t(c.H), seed + 3, 0.5, 1.5);
  in.state = random_vector(c.state(), seed + 4);
  in.y0 = random_vector(std::size_t(c.B * c.Tn * c.HP()), seed + 5);
  in.dy = random_vector(std::size_t(c.B * c.Tn * c.HP()), seed + 6);
  if (bf16_inputs)
    for (std::vector<double>* v : {&in.rows, &in.dt_bias, &in.A_log, &in.D, &in.y0, &in.dy})
      for (double& x : *v) x = round_to_bf16(x);
  return in;
}

// y after ssd_state_output_forward (from y0), and dstate of ssd_state_output_backward.
template <typename T>
std::pair<std::vector<double>, std::vector<double>> run_state_output(const Exec& ex, const Case& c,
                                                                     const StateInputs& in) {
  using A = accum_t<T>;
  Buffer<T> rows(ex, in.rows), bias(ex, in.dt_bias), alog(ex, in.A_log), y(ex, in.y0), dy(ex, in.dy);
  Buffer<A> state(ex, in.state), dstate(ex, std::vector<double>(c.state(), 7.0));  // overwritten
  T* r = rows.data();
  NEXUS_SSD_TEST_CALL(T, ssd_state_output_forward, ex, y.data(), state.data(), r + c.oc(), r + c.odt(), bias.data(),
                      alog.data(), c.shape(), c.strides());
  NEXUS_SSD_TEST_CALL(T, ssd_state_output_backward, ex, dstate.data(), dy.data(), r + c.oc(), r + c.odt(), bias.data(),
                      alog.data(), c.shape(), c.strides());
  return {y.read(), dstate.read()};
}

const Case kStateCases[] = {{1, 300, 2, 5, 1, 7, 1}, {2, 37, 4, 3, 2, 9, 1}, {2, 260, 3, 16, 1, 12, 1}};

template <typename T>
void state_output_matches_the_cpu(double tol_y, double tol_state) {
  std::uint64_t seed = 300;
  for (const Case& c : kStateCases)
    for (const bool strong : {false, true}) {
      const StateInputs in = make_inputs(c, seed += 10, strong, false);
      const auto [y_cpu, ds_cpu] = run_state_output<T>(kCpu, c, in);
      const auto [y_gpu, ds_gpu] = run_state_output<T>(kGpu, c, in);
      EXPECT_LE(rel_err(y_gpu, y_cpu), tol_y) << "y " << describe(c) << " strong=" << strong;
      EXPECT_LE(rel_err(ds_gpu, ds_cpu), tol_state) << "dstate " << describe(c) << " strong=" << strong;
    }
}

TEST(CudaSsdState, OutputFp32MatchesTheCpu) { state_output_matches_the_cpu<float>(1e-5, 2e-5); }
TEST(CudaSsdState, OutputFp64MatchesTheCpu) { state_output_matches_the_cpu<double>(1e-12, 1e-12); }

TEST(CudaSsdState, OutputBf16MatchesTheFp32CpuOnTheRoundedInputs) {
  std::uint64_t seed = 400;
  for (const Case& c : kStateCases)
    for (const bool strong : {false, true}) {
      const StateInputs in = make_inputs(c, seed += 10, strong, true);
      const auto [y_cpu, ds_cpu] = run_state_output<float>(kCpu, c, in);
      const auto [y_gpu, ds_gpu] = run_state_output<bf16>(kGpu, c, in);
      EXPECT_LE(rel_err(y_gpu, y_cpu), 1e-2) << "y " << describe(c) << " strong=" << strong;
      EXPECT_LE(rel_err(ds_gpu, ds_cpu), 2e-5) << "dstate " << describe(c) << " strong=" << strong;
    }
}

template <typename T>
void decayed_update_matches_the_cpu(double tol) {
  const idx B = 3, H = 5, width = 300, ld_b = 7;  // rows b * ld_b + h: two unused rows per sequence
  const std::size_t rows = std::size_t((B - 1) * ld_b + H);
  const std::vector<double> state = random_vector(rows * width, 1), add = random_vector(rows * width, 2),
                            decay = random_vector(rows, 3, 0.0, 1.0);
  std::vector<std::vector<double>> out;
  for (const Exec& ex : {kCpu, kGpu}) {
    Buffer<T> s(ex, state), a(ex, add), d(ex, decay);
    decayed_state_update(ex, s.data(), d.data(), a.data(), B, H, width, ld_b);
    out.push_back(s.read());
  }
  EXPECT_LE(rel_err(out[1], out[0]), tol);
}

TEST(CudaSsdState, DecayedUpdateMatchesTheCpu) {
  decayed_update_matches_the_cpu<float>(1e-6);
  decayed_update_matches_the_cpu<double>(1e-15);
}

// Tn steps of ssd_step from in.state: every step's y, then the final state.
template <typename T>
std::pair<std::vector<double>, std::vector<double>> run_steps(const Exec& ex, const Case& c, const StateInputs& in) {
  using A = accum_t<T>;
  Buffer<T> rows(ex, in.rows), bias(ex, in.dt_bias), alog(ex, in.A_log), D(ex, in.D), y(ex, std::size_t(c.B * c.HP()));
  Buffer<A> state(ex, in.state);
  const SsdShape s{c.B, 1, c.H, c.P, c.G, c.N, 1};
  // The inputs hold [B, Tn, ld]: step t reads row t of each sequence, Tn * ld apart.
  const SsdStrides ld{c.Tn * c.ld(), c.Tn * c.ld(), c.Tn * c.ldt()};
  std::vector<double> ys;
  for (idx t = 0; t < c.Tn; ++t) {
    T* r = rows.data() + t * c.ld();
    T* dt = rows.data() + c.odt() + t * c.ldt();
    NEXUS_SSD_TEST_CALL(T, ssd_step, ex, y.data(), state.data(), r + c.ox(), r + c.ob(), r + c.oc(), dt, bias.data(),
                        alog.data(), D.data(), s, ld);
    const std::vector<double> yt = y.read();
    ys.insert(ys.end(), yt.begin(), yt.end());
  }
  return {ys, state.read()};
}

const Case kStepCases[] = {{1, 3, 2, 5, 1, 7, 1}, {2, 4, 4, 33, 2, 45, 1}, {3, 2, 6, 64, 2, 128, 1}};

template <typename T, typename R>
void step_matches_the_cpu(double tol_y, double tol_state, bool bf16_inputs) {
  std::uint64_t seed = 500;
  for (const Case& c : kStepCases) {
    const StateInputs in = make_inputs(c, seed += 10, false, bf16_inputs);
    const auto [y_cpu, st_cpu] = run_steps<R>(kCpu, c, in);
    const auto [y_gpu, st_gpu] = run_steps<T>(kGpu, c, in);
    EXPECT_LE(rel_err(y_gpu, y_cpu), tol_y) << "y " << describe(c);
    EXPECT_LE(rel_err(st_gpu, st_cpu), tol_state) << "state " << describe(c);
  }
}

TEST(CudaSsdStep, Fp32MatchesTheCpu) { step_matches_the_cpu<float, float>(1e-5, 1e-5, false); }
TEST(CudaSsdStep, Fp64MatchesTheCpu) { step_matches_the_cpu<double, double>(1e-12, 1e-12, false); }
TEST(CudaSsdStep, Bf16MatchesTheFp32CpuOnTheRoundedInputs) { step_matches_the_cpu<bf16, float>(1e-2, 1e-5, true); }

}  // namespace
}  // namespace nexus
