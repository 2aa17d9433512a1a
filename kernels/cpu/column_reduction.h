// The last step of a race-free, run-to-run reproducible column reduction (dweight of the norms):
// each thread sums its own rows into a private double buffer, then the buffers are added into the
// destination one thread after another, in thread order, so no two threads write it at once and
// the order of the additions never changes.
#pragma once

#include <omp.h>

#include "kernels/types.h"

namespace nexus::cpu {

// Adds every thread's `part` into dst, one thread after another in thread order. Must be reached
// by all threads of the enclosing parallel region; ends with a barrier.
template <typename T>
void add_in_thread_order(T* __restrict dst, const double* __restrict part, idx width) {
  const int threads = omp_get_num_threads();
#pragma omp for ordered schedule(static, 1)
  for (int t = 0; t < threads; ++t) {  // schedule(static, 1): iteration t runs on thread t
#pragma omp ordered
    for (idx j = 0; j < width; ++j) dst[j] = T(double(dst[j]) + part[j]);
  }
}

}  // namespace nexus::cpu
