#!/usr/bin/env bash
# Runs `nexus` on NP local MPI ranks with the cores shared out evenly between them.
#   launch/mpirun.sh NP nexus-arguments...      e.g. launch/mpirun.sh 2 train --config configs/tiny.ini
set -euo pipefail
cd "$(dirname "$0")/.."
np=${1:?usage: launch/mpirun.sh NP nexus-arguments...}
shift
threads=$(( $(nproc) / np ))
(( threads >= 1 )) || threads=1
if [ "$(id -u)" -eq 0 ]; then  # containers and CI run as root; Open MPI refuses that unless told
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
exec mpirun --oversubscribe --bind-to none -np "$np" -x OMP_NUM_THREADS="$threads" build/nexus "$@"
