// main() of the CUDA suites: with no CUDA device visible, say why and exit 77 (ctest: skipped),
// so a machine without a GPU builds and lists these tests but never reports them as passed.
#include <gtest/gtest.h>

#include <cstdio>

#include "kernels/cuda/backend.h"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  const char* why = "";
  if (nexus::cuda::visible_devices(&why) == 0 && !testing::GTEST_FLAG(list_tests)) {
    std::printf("SKIPPED: no CUDA device visible (%s); these tests compare the CUDA ops with the CPU backend "
                "and need a GPU\n", why);
    return 77;
  }
  return RUN_ALL_TESTS();
}
