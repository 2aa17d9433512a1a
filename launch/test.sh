#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test suite (ctest labels: unit, mpi, e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
bash launch/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
