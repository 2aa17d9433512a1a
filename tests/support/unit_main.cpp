// GoogleTest main for the unit suites: the BLAS kernels users get (select_blas_core), then every test.
#include <gtest/gtest.h>

#include "kernels/cpu/blas_runtime.h"

int main(int argc, char** argv) {
  nexus::select_blas_core(argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
