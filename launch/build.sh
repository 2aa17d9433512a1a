#!/usr/bin/env bash
# Configures and builds Nexus into build/ (Release, warnings as errors). Incremental: re-running
# rebuilds only what changed (ccache keeps object files across clean checkouts).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DNEXUS_WERROR=ON "$@" >/dev/null
cmake --build build -j "$(nproc)"
