// The SSD scan on the GPU against the CPU kernel: ssd_forward and every output of ssd_backward,
// fp32 and fp64 against the CPU of the same type, bf16 against the CPU's fp32 on the same
// bf16-rounded inputs; and the backward's bits across two runs.
//
// Tolerances, as max |gpu - cpu| / max(max |cpu|, 1) per output (the outputs are O(1)): the GPU
// forms decays as exp of cumulative sums of dt A where the CPU multiplies per-token exp(dt A),
// and sums in other orders; both are faithful to ~Q ulps of the accumulator over a chunk of Q
// tokens and the sums of Q + N + P terms behind each output add a few more. So fp32: 2e-4 for the
// forward, 1e-3 for the gradients (which go through two such passes and the reverse cumulative
// sum of dacs); fp64: 1e-10 for both. bf16 activations (y, dx, dB, dC, ddt_raw) are rounded once
// to bf16 (relative 2^-8 of the value) on top of the fp32 error: 1e-2; the fp32 outputs of a bf16
// run (states, decay, the parameter gradients) keep the fp32 tolerance of the gradients.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cuda/gpu_buffers.h"
#include "cuda/ssd_support.h"
#include "kernels/ops.h"
#include "support/check.h"

namespace nexus {
namespace {

using namespace test;  // kCpu, kGpu, on_gpu, on_host (cuda/gpu_buffers.h), random_vector, max_rel_diff

// The cases: chunk sizes 8/16/64, Tn a multiple of Q, ragged, and shorter than Q; one and two
// groups with several heads each; P and N not powers of two; one or two sequences.
const Case kCases[] = {
    {1, 32, 2, 5, 1, 3, 8}, {2, 45, 4, 7, 2, 6, 16},   {2, 130, 2, 12, 2, 10, 64},
    {1, 5, 3, 3, 1, 4, 16}, {1, 70, 2, 40, 1, 33, 64}, {2, 48, 6, 9, 2, 17, 16},
};

struct Inputs {
  std::vector<double> rows, dt_bias, A_log, D, init, dy, dfinal, acc0;
};

// dt = softplus(dt_raw + dt_bias) in ~[0.02, 0.5] and A = -exp(A_log) in [-4.5, -1]: per-token
// decays from ~1 to ~0.1, so chunks both keep and flush their early tokens.
Inputs make_inputs(const Case& c, std::uint64_t seed) {
  Inputs in;
  in.rows = random_vector(c.rows(), seed);
  in.dt_bias = random_vector(std::size_t(c.H), seed + 1, -3.0, -1.5);
  in.A_log = random_vector(std::size_t(c.H), seed + 2, 0.0, 1.5);
  in.D = random_vector(std::size_t(c.H), seed + 3, 0.5, 1.5);
  in.init = random_vector(c.state(), seed + 4);
  in.dy = random_vector(std::size_t(c.B * c.Tn * c.HP()), seed + 5);
  in.dfinal = random_vector(c.state(), seed + 6);
  in.acc0 = random_vector(std::size_t(c.H), seed + 7);
  return in;
}

// Every input rounded to bf16 (the bf16 run's inputs, and the fp32 reference's).
Inputs rounded_to_bf16(Inputs in) {
  for (std::vector<double>* v : {&in.rows, &in.dt_bias, &in.A_log, &in.D, &in.dy})
    for (double& x : *v) x = round_to_bf16(x);
  return in;
}

// Everything the two ops write, as doubles. drows holds dx | dB | dC | ddt_raw in the inputs' row
// layout (the columns in between stay zero).
struct Outputs {
  std::vector<double> y, final_state, decay, drows, ddt_bias, dA_log, dD, dinit;
};

// ssd_forward then ssd_backward on ex. `options`: init_state, final_state, decay, dfinal_state
// and dinit_state given (otherwise all null).
template <typename T>
Outputs run(const Exec& ex, const Case& c, const Inputs& in, bool options) {
  using A = accum_t<T>;
  const SsdShape s = c.shape();
  const SsdStrides ld = c.strides();
  Buffer<T> rows(ex, in.rows), bias(ex, in.dt_bias), alog(ex, in.A_log), D(ex, in.D), dy(ex, in.dy);
  Buffer<T> y(ex, in.dy.size()), drows(ex, c.rows()), ws(ex, std::size_t(ssd_workspace<T>(s)));
  Buffer<A> init(ex, in.init), final_state(ex, c.state()), decay(ex, std::size_t(c.B * c.H)), dfinal(ex, in.dfinal),
      dinit(ex, c.state()), ddt_bias(ex, in.acc0), dA_log(ex, in.acc0), dD(ex, in.acc0);
  T* r = rows.data();
  T* dr = drows.data();
  A* opt_init = options ? init.data() : nullptr;
  NEXUS_SSD_TEST_CALL(T, ssd_forward, ex, y.data(), options ? final_state.data() : nullptr,
                      options ? decay.data() : nullptr, r + c.ox(), r + c.ob(), r + c.oc(), r + c.odt(), bias.data(),
                      alog.data(), D.data(), opt_init, s, ld, ws.data());
  NEXUS_SSD_TEST_CALL(T, ssd_backward, ex, dr + c.ox(), dr + c.ob(), dr + c.oc(), dr + c.odt(), ddt_bias.data(),
                      dA_log.data(), dD.data(), options ? dinit.data() : nullptr, dy.data(),
                      options ? dfinal.data() : nullptr, r + c.ox(), r + c.ob(), r + c.oc(), r + c.odt(), bias.data(),
                      alog.data(), D.data(), opt_init, s, ld, ws.data());
  return {y.read(),        final_state.read(), decay.read(), drows.read(),
          ddt_bias.read(), dA_log.read(),      dD.read(),    dinit.read()};
}

double rel_err(const std::vector<double>& a, const std::vector<double>& b) { return max_rel_diff(a, b, 1.0); }

// tol_act: y and the activation gradients; tol_acc: the accumulator outputs.
void expect_close(const Outputs& gpu, const Outputs& cpu, double tol_act, double tol_acc, const std::string& what) {
  EXPECT_LE(rel_err(gpu.y, cpu.y), tol_act) << "y " << what;
  EXPECT_LE(rel_err(gpu.drows, cpu.drows), tol_act) << "dx/dB/dC/ddt_raw " << what;
  EXPECT_LE(rel_err(gpu.final_state, cpu.final_state), tol_acc) << "final_state " << what;
  EXPECT_LE(rel_err(gpu.decay, cpu.decay), tol_acc) << "decay " << what;
  EXPECT_LE(rel_err(gpu.dinit, cpu.dinit), tol_acc) << "dinit_state " << what;
  EXPECT_LE(rel_err(gpu.ddt_bias, cpu.ddt_bias), tol_acc) << "ddt_bias " << what;
  EXPECT_LE(rel_err(gpu.dA_log, cpu.dA_log), tol_acc) << "dA_log " << what;
  EXPECT_LE(rel_err(gpu.dD, cpu.dD), tol_acc) << "dD " << what;
}

std::string describe(const Case& c, bool options) {
  return describe(c) + (options ? " with states" : " without states");
}

template <typename T>
void ssd_matches_the_cpu(double tol_forward, double tol_grad) {
  std::uint64_t seed = 10;
  for (const Case& c : kCases)
    for (const bool options : {false, true}) {
      const Inputs in = make_inputs(c, seed += 10);
      const Outputs cpu = run<T>(kCpu, c, in, options), gpu = run<T>(kGpu, c, in, options);
      const std::string what = describe(c, options);
      EXPECT_LE(rel_err(gpu.y, cpu.y), tol_forward) << "y " << what;
      EXPECT_LE(rel_err(gpu.final_state, cpu.final_state), tol_forward) << "final_state " << what;
      expect_close(gpu, cpu, tol_grad, tol_grad, what);
    }
}

TEST(CudaSsd, Fp32MatchesTheCpu) { ssd_matches_the_cpu<float>(2e-4, 1e-3); }
TEST(CudaSsd, Fp64MatchesTheCpu) { ssd_matches_the_cpu<double>(1e-10, 1e-10); }

TEST(CudaSsd, Bf16MatchesTheFp32CpuOnTheRoundedInputs) {
  std::uint64_t seed = 200;
  for (const Case& c : kCases)
    for (const bool options : {false, true}) {
      const Inputs in = rounded_to_bf16(make_inputs(c, seed += 10));
      expect_close(run<bf16>(kGpu, c, in, options), run<float>(kCpu, c, in, options), 1e-2, 1e-3, describe(c, options));
    }
}

// Fixed-order reductions only: the same inputs give the same bits, accumulators included.
template <typename T>
void backward_is_deterministic() {
  const Case c = kCases[2];
  const Inputs in = make_inputs(c, 77);
  const Outputs a = run<T>(kGpu, c, in, true), b = run<T>(kGpu, c, in, true);
  for (const auto member : {&Outputs::y, &Outputs::final_state, &Outputs::decay, &Outputs::drows, &Outputs::ddt_bias,
                            &Outputs::dA_log, &Outputs::dD, &Outputs::dinit}) {
    const std::vector<double>&va = a.*member, &vb = b.*member;
    ASSERT_EQ(va.size(), vb.size());
    EXPECT_EQ(std::memcmp(va.data(), vb.data(), va.size() * sizeof(double)), 0);
  }
}

TEST(CudaSsd, BackwardIsBitwiseDeterministic) {
  backward_is_deterministic<float>();
  backward_is_deterministic<bf16>();
}

}  // namespace
}  // namespace nexus
