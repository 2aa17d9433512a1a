#include <chrono>
#include <vector>

#include "kernels/cpu/backend.h"
#include "kernels/cpu/blas_runtime.h"

namespace nexus {

double measure_gemm_peak_gflops(idx n, double seconds) {
  std::vector<float> a(std::size_t(n * n), 0.5f), b(std::size_t(n * n), 0.25f), c(std::size_t(n * n));
  cpu::matmul_forward(Exec{}, c.data(), a.data(), b.data(), n, n, n);  // warm-up: threads spun up, pages touched
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  idx reps = 0;
  do {
    cpu::matmul_forward(Exec{}, c.data(), a.data(), b.data(), n, n, n);
    ++reps;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < seconds);
  return 2.0 * double(n) * double(n) * double(n) * double(reps) / elapsed / 1e9;
}

}  // namespace nexus
