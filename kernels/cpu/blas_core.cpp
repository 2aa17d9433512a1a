#include <cblas.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "kernels/cpu/blas_runtime.h"

namespace nexus {

void select_blas_core(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE")) return;  // chosen by the user, or already re-executed
  const char* core = openblas_get_corename();
  if (!core || std::strcmp(core, "Prescott") != 0) return;  // recognised: keep OpenBLAS's choice
  const char* want = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    want = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    want = "Haswell";
  if (!want) return;
  setenv("OPENBLAS_CORETYPE", want, 1);
  execv("/proc/self/exe", argv);  // returns only on failure: carry on with the generic kernels
}

}  // namespace nexus
