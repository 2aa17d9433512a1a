#!/usr/bin/env bash
# Registers, shared memory, stack and spills of every kernel in kernels/cuda/, as ptxas reports
# them (-Xptxas -v), for each architecture the build targets. No GPU needed. Prints one line per
# kernel and architecture: arch, registers, spill stores/loads (bytes), shared memory, kernel.
#   usage: bench/cuda_resource_usage.sh [ARCHS]     (default "90a 80")
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
archs=${1:-"90a 80"}
printf '%-6s %5s %12s %8s  %s\n' arch regs spill_st/ld smem kernel
for arch in $archs; do
  for src in kernels/cuda/*.cu; do
    "$nvcc" -std=c++20 -O3 -DNDEBUG --expt-relaxed-constexpr -I. -arch=sm_$arch -Xptxas -v -c "$src" -o /dev/null 2>&1 |
      awk -v arch="$arch" '
        /Compiling entry function/ { match($0, /'"'"'[^'"'"']+'"'"'/); fn = substr($0, RSTART + 1, RLENGTH - 2) }
        /bytes spill stores/ { split($0, a, " "); st = a[5]; ld = a[9] }
        /Used [0-9]+ registers/ {
          match($0, /Used [0-9]+ registers/); regs = substr($0, RSTART + 5, RLENGTH - 15)
          smem = 0; if (match($0, /[0-9]+ bytes smem/)) smem = substr($0, RSTART, RLENGTH - 11)
          cmd = "c++filt \"" fn "\""; cmd | getline name; close(cmd)
          printf "%-6s %5s %5s/%-6s %8s  %s\n", arch, regs, st, ld, smem, name
        }'
  done
done
