// CPU-only helpers around the BLAS library: not ops (they run on no device buffers), so they
// live outside the op catalogue.
#pragma once

#include "kernels/types.h"

namespace nexus {

// The sgemm rate in GFLOP/s, measured on n x n x n products for about `seconds` after one
// warm-up: the peak that model FLOP utilisation is reported against on CPU. Allocates its own
// operands (it is a measurement, not a kernel).
double measure_gemm_peak_gflops(idx n = 1024, double seconds = 0.5);

// Debian 12's OpenBLAS (0.3.21) does not recognise some recent Xeons and falls back to its generic
// "Prescott" kernels, ~5x slower than its AVX-512 ones. It reads OPENBLAS_CORETYPE only while the
// library loads, before main, so a program that finds itself on the generic kernels re-executes
// itself once with the core named after the CPU's features. Call first thing in main (before
// MPI_Init). Does nothing when OPENBLAS_CORETYPE is already set or the core was recognised.
void select_blas_core(char** argv);

}  // namespace nexus
