#!/usr/bin/env bash
# The main job: installs dependencies, builds, and trains configs/tiny.ini (an 8-layer hybrid on
# the built-in associative-recall task) on 2 MPI ranks. Extra arguments go to `nexus train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
bash launch/build.sh
bash launch/mpirun.sh 2 train --config configs/tiny.ini "$@"
