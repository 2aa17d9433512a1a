#!/usr/bin/env bash
# Runs `nexus` on NP local MPI ranks with the cores shared out evenly between them.
#   launch/mpirun.sh NP nexus-arguments...      e.g. launch/mpirun.sh 2 train --config configs/tiny.ini
#
# Stopping: send SIGTERM (or SIGUSR1) to this script. Plain mpirun kills its ranks on SIGTERM
# (they exit 1 about 2 s later, mid-step), but forwards SIGUSR1, which the ranks treat as a stop
# request: so a SIGTERM or SIGUSR1 here is passed on to mpirun as SIGUSR1, the ranks finish the
# step, checkpoint and exit 0, and this script waits for mpirun and exits with its status.
# NEXUS overrides the binary (default build/nexus).
set -euo pipefail
cd "$(dirname "$0")/.."
np=${1:?usage: launch/mpirun.sh NP nexus-arguments...}
shift
threads=$(( $(nproc) / np ))
(( threads >= 1 )) || threads=1
if [ "$(id -u)" -eq 0 ]; then  # containers and CI run as root; Open MPI refuses that unless told
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
mpirun --oversubscribe --bind-to none -np "$np" -x OMP_NUM_THREADS="$threads" "${NEXUS:-build/nexus}" "$@" &
launcher=$!
interrupted=0
forward_stop() {
  interrupted=1
  kill -USR1 "$launcher" 2>/dev/null || true
}
trap forward_stop TERM USR1
# A trapped signal makes `wait` return early (status > 128); wait again until mpirun has exited.
while :; do
  interrupted=0
  status=0
  wait "$launcher" || status=$?
  (( interrupted )) || break
done
exit "$status"
