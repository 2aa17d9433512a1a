// The route's refusal of bf16 data on the CPU: the CPU has no bf16 kernels (cpu::op<bf16> is
// declared, never defined), so the route must not instantiate the CPU call for bf16 arguments and
// must throw, naming the op, before anything touches the buffers. This file linking at all (with
// or without the CUDA backend) is half the test: a route that instantiated cpu::op<bf16> would
// leave an undefined symbol.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/ops.h"

namespace nexus {
namespace {

// Runs `call`, expects the refusal for `op`.
template <typename Call>
void expect_bf16_refusal(const char* op, Call&& call) {
  try {
    call();
    ADD_FAILURE() << op << ": no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              std::string(op) + ": bf16 compute runs on the CUDA backend only (the CPU computes in fp32)");
  }
}

TEST(RouteBf16, TheCpuRefusesBf16DataNamingTheOpAndTouchesNothing) {
  std::vector<bf16> x(4, bf16(1.0f)), y(4, bf16(2.0f));
  std::vector<float> acc(4, 3.0f);
  const bf16* cx = x.data();
  // A routed op with a CUDA kernel, one without (in every build), one that returns a value, and
  // one whose compute copy is the only bf16 argument.
  expect_bf16_refusal("fill_constant", [&] { fill_constant(Exec{}, x.data(), idx(4), bf16(0.0f)); });
  expect_bf16_refusal("matmul_forward", [&] { matmul_forward(Exec{}, y.data(), cx, cx, idx(2), idx(2), idx(2)); });
  expect_bf16_refusal("decayed_state_update",
                      [&] { decayed_state_update(Exec{}, x.data(), cx, cx, idx(1), idx(1), idx(4), idx(1)); });
  expect_bf16_refusal("sum_of_squares", [&] {
    const double s = sum_of_squares(Exec{}, cx, idx(4));
    ADD_FAILURE() << "returned " << s;
  });
  expect_bf16_refusal("adamw_update", [&] {
    adamw_update(Exec{}, acc.data(), x.data(), static_cast<const float*>(acc.data()), acc.data(), acc.data(), idx(4),
                 AdamWCoefficients{});
  });
  // The mixed-precision adds: bf16 on one side only, fp32 on the other.
  expect_bf16_refusal("add_widened", [&] { add_widened(Exec{}, acc.data(), cx, idx(4)); });
  expect_bf16_refusal("add_narrowed",
                      [&] { add_narrowed(Exec{}, x.data(), static_cast<const float*>(acc.data()), idx(4)); });
  for (const bf16 v : x) EXPECT_EQ(float(v), 1.0f);
  for (const bf16 v : y) EXPECT_EQ(float(v), 2.0f);
  EXPECT_EQ(acc, std::vector<float>(4, 3.0f));
}

// The same ops on fp32 still reach the CPU kernels through the same routes.
TEST(RouteBf16, Fp32CallsStillRunOnTheCpu) {
  std::vector<float> x(4, 1.0f);
  fill_constant(Exec{}, x.data(), idx(4), 0.5f);
  EXPECT_EQ(x, std::vector<float>(4, 0.5f));
  EXPECT_EQ(sum_of_squares(Exec{}, static_cast<const float*>(x.data()), idx(4)), 1.0);
}

}  // namespace
}  // namespace nexus
