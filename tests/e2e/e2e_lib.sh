# Helpers shared by the script-style end-to-end tests (sourced, not run): pass/fail bookkeeping,
# what a run logged in its metrics.jsonl, comparisons with a tolerance, waiting for a step,
# processes of an mpirun job, and the GPU check of the `gpu` tests. Needs bash and python3.

failures=0
pass() { echo "ok: $1"; }
fail() { echo "FAIL: $1"; failures=$((failures + 1)); }
# Ends a script: the count, and its exit status (0 when nothing failed).
finish() {
  echo "$failures failure(s)"
  [ "$failures" -eq 0 ]
}

# Containers and CI run as root; Open MPI refuses that unless told.
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

# require_gpu: exits 77 (ctest: skipped), saying why, unless this build has the CUDA backend
# (NEXUS_HAS_CUDA=1, set by tests/CMakeLists.txt) and nvidia-smi lists a GPU.
require_gpu() {
  if [ "${NEXUS_HAS_CUDA:-0}" != 1 ]; then
    echo "SKIPPED: this build has no CUDA backend (NEXUS_HAS_CUDA != 1); these checks run nexus on a GPU"
    exit 77
  fi
  if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    echo "SKIPPED: no CUDA device visible (nvidia-smi -L lists none); these checks run nexus on a GPU"
    exit 77
  fi
}
# The number of GPUs nvidia-smi lists (respecting nothing else: CUDA_VISIBLE_DEVICES narrows it).
gpu_count() {
  local n
  n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    local visible
    visible=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .)
    ((visible < n)) && n=$visible
  fi
  echo "$n"
}

# metric RUN_DIR KEY: KEY of every step line of RUN_DIR/metrics.jsonl in file order, one per line,
# at full precision (repr). Eval lines ("eval_loss") and notes are not step lines.
metric() {
  python3 -c 'import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "step" in r and sys.argv[2] in r and "eval_loss" not in r: print(repr(r[sys.argv[2]]))' \
    "$1/metrics.jsonl" "$2"
}
losses() { metric "$1" loss; }
grad_norms() { metric "$1" grad_norm; }

# close A B TOL: the numbers in files A and B (one a line) agree within TOL relative to B, line by
# line, and there are as many of each (at least one). Prints the worst relative difference.
close() {
  python3 -c 'import sys
a = [float(x) for x in open(sys.argv[1])]; b = [float(x) for x in open(sys.argv[2])]
if len(a) != len(b) or not a:
    print("different lengths: %d vs %d" % (len(a), len(b))); sys.exit(1)
worst = max(abs(x - y) / abs(y) for x, y in zip(a, b))
print("max relative difference %.3g (tolerance %s)" % (worst, sys.argv[3])); sys.exit(0 if worst <= float(sys.argv[3]) else 1)' \
    "$1" "$2" "$3"
}

# logged_step METRICS N: METRICS holds the line of step N (eval lines end in "step":N}).
logged_step() { grep -qE "\"step\":$2," "$1" 2>/dev/null; }

# gone PID...: every pid given has exited (a zombie not yet reaped counts as exited).
gone() {
  local p state
  for p in "$@"; do
    state=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || continue
    [ -z "$state" ] || [ "$state" = Z ] || return 1
  done
}

# wait_for PID SECONDS CONDITION...: polls CONDITION every 50 ms until it holds (0), PID has
# exited (1) or SECONDS have passed (2).
wait_for() {
  local pid=$1 deadline=$(($(date +%s) + $2))
  shift 2
  until "$@"; do
    gone "$pid" && return 1
    (($(date +%s) < deadline)) || return 2
    sleep 0.05
  done
}

# mpi_ranks PID: "RANK PID" for every MPI rank among PID's descendants (Open MPI marks a rank's
# environment with OMPI_COMM_WORLD_RANK; launch/mpirun.sh -> mpirun -> ranks).
mpi_ranks() {
  local queue=("$1") p child rank
  while ((${#queue[@]})); do
    p=${queue[0]}
    queue=("${queue[@]:1}")
    for child in $(pgrep -P "$p"); do
      rank=$(tr '\0' '\n' <"/proc/$child/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
      [ -n "$rank" ] && echo "$rank $child"
      queue+=("$child")
    done
  done
}
