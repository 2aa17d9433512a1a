#!/usr/bin/env bash
# One rank of a 2-rank training job dies (SIGKILL, as the OOM killer or a crash would end it) and
# the job must end, not hang: launched the documented way (launch/mpirun.sh 2 train ...), with the
# kill
#   - after step 3 of a dp 2 run (rank 1 killed: its peer waits in a collective),
#   - after step 3 of a cp 2 run (rank 0 killed),
#   - inside a checkpoint write: the dp 2 run resumed, rank 0 (the writer) held at the failpoint
#     checkpoint_write (its temporary file half written) and killed there.
# Each case asserts: the launcher exits non-zero within 30 s of the kill (the time is printed), no
# process of the job is left, every step_*.h5 in the run's checkpoint directory verifies
# (`nexus inspect`), every leftover temporary file fails verification, the newest checkpoint
# published before the kill is still there (or a newer one); after the kill inside the write, one
# rank resumes from the directory at its newest step file, past the temporary one.
#   usage: rank_fault.sh NEXUS_BINARY SOURCE_DIR [cpu|cuda]
# cuda (labels gpu and mpi): exits 77 without a GPU or CUDA build; with one GPU both ranks share it
# over the staged data plane (NCCL refuses two ranks on one GPU), with 2+ GPUs the cases run over
# staged and again over NCCL, plus a hung (not dead) rank that only a watchdog can end (on the CPU
# parallel.mpi_timeout_s, on NCCL parallel.nccl_timeout_s). It prints which variants ran and which could not.
set -uo pipefail
nexus=$1
src=$2
device=${3:-cpu}
source "$src/tests/e2e/e2e_lib.sh"
[ "$device" = cpu ] || require_gpu
tiny="$src/configs/tiny.ini"
work=$(mktemp -d)
launcher=""  # the running job's launch/mpirun.sh, this shell's child until reaped
victim_pid=""  # the rank the last fault case killed
# Kills the running job (its ranks, then the launcher) and reaps the launcher: the end of a job
# that failed to end by itself, and the cleanup.
stop_job() {
  [ -n "$launcher" ] || return 0
  local p
  for p in $(mpi_ranks "$launcher" | awk '{print $2}') $launcher; do kill -KILL "$p" 2>/dev/null; done
  wait "$launcher" 2>/dev/null
  launcher=""
}
trap 'stop_job; rm -rf "$work"' EXIT

# job_end LIMIT_S: waits at most LIMIT_S for the running job's launcher to exit; sets `status` (its
# exit status, or "timeout" after killing the job) and `elapsed_ms` (from the call).
job_end() {
  local start
  start=$(date +%s%N)
  status=0
  wait_for "$launcher" "$1" false
  elapsed_ms=$((($(date +%s%N) - start) / 1000000))
  if gone "$launcher"; then
    wait "$launcher" || status=$?
    launcher=""
  else
    status=timeout
    stop_job
  fi
}
# nothing_left NAME DIR: no process still runs the job that trained into DIR (ranks are reparented
# when mpirun goes, so look for the run's own option).
nothing_left() {
  local left
  left=$(pgrep -f -- "--train.out_dir=$2" | tr '\n' ' ')
  if [ -z "$left" ]; then
    pass "$1: no process of the job is left"
  else
    fail "$1: processes left: $left"
    kill -KILL $left 2>/dev/null
  fi
}

step_files() { ls "$1" 2>/dev/null | grep -E '^step_[0-9]+\.h5$' | sort; }
# The step of a step_*.h5 name, and the newest step of a directory's (empty: none).
step_of() { sed -nE 's/^step_0*([0-9]+)\.h5$/\1/p' | sed 's/^$/0/'; }
newest_step() { step_files "$1" | tail -1 | step_of; }

# fault NAME DIR KILL_RANK WAIT_FOR OPTIONS...: starts launch/mpirun.sh 2 train into DIR, waits
# until WAIT_FOR holds ("step N": step N is in metrics.jsonl; "failpoint": the writer announced
# the checkpoint_write failpoint), SIGKILLs rank KILL_RANK and checks what is left.
fault() {
  local name=$1 dir=$2 kill_rank=$3 until=$4
  shift 4
  local slug
  slug=$(tr -c 'A-Za-z0-9\n' _ <<<"$name")
  local log="$work/$slug.log"
  local condition=(logged_step "$dir/metrics.jsonl" "${until#step }")
  [ "$until" = failpoint ] && condition=(grep -q "failpoint checkpoint_write: pausing" "$log")
  NEXUS="$nexus" bash "$src/launch/mpirun.sh" 2 train --config "$tiny" --runtime.device="$device" \
    --train.steps=100000 --train.log_every=1 --train.eval_every=0 --checkpoint.every=2 --checkpoint.keep=2 \
    --train.out_dir="$dir" "$@" >>"$log" 2>&1 &
  launcher=$!
  if ! wait_for "$launcher" 120 "${condition[@]}"; then
    fail "$name: the job never reached '$until'"; tail -20 "$log"; stop_job; return
  fi
  local ranks victim before
  ranks=$(mpi_ranks "$launcher")
  victim=$(awk -v r="$kill_rank" '$1 == r {print $2}' <<<"$ranks")
  if [ -z "$victim" ] || [ "$(wc -l <<<"$ranks")" -ne 2 ]; then
    fail "$name: the ranks under launcher $launcher: '$ranks'"; stop_job; return
  fi
  before=$(step_files "$dir/checkpoints")
  kill -KILL "$victim"
  victim_pid=$victim
  local status elapsed_ms
  job_end 60
  echo "$name: rank $kill_rank (pid $victim) killed; the launcher exited with status $status after $elapsed_ms ms"
  if [ "$status" != 0 ] && [ "$status" != timeout ] && ((elapsed_ms <= 30000)); then
    pass "$name: the job ends with status $status, $elapsed_ms ms after the kill"
  else
    fail "$name: the launcher's status $status, $elapsed_ms ms after the kill (expected non-zero within 30 s)"
    tail -20 "$log"
  fi
  nothing_left "$name" "$dir"

  local f bad=0
  for f in $(step_files "$dir/checkpoints"); do
    "$nexus" inspect "$dir/checkpoints/$f" >"$work/inspect" 2>&1 || { bad=1; fail "$name: $f does not verify"; cat "$work/inspect"; }
  done
  for f in $(ls "$dir/checkpoints" | grep -F '.tmp-'); do
    echo "$name: leftover temporary file $f"
    if "$nexus" inspect "$dir/checkpoints/$f" >"$work/inspect" 2>&1; then
      bad=1; fail "$name: the half-written $f verifies"
    fi
  done
  ((bad)) || pass "$name: every checkpoint verifies ($(step_files "$dir/checkpoints" | tr '\n' ' ')), no temporary file does"
  local newest newest_before
  newest=$(newest_step "$dir/checkpoints")
  newest_before=$(echo "$before" | tail -1 | step_of)
  if [ -n "$newest_before" ] && [ -n "$newest" ] && ((newest >= newest_before)); then
    pass "$name: the newest checkpoint published before the kill (step $newest_before) is kept or superseded"
  else
    fail "$name: checkpoints before the kill: '$(echo $before)', after: '$(step_files "$dir/checkpoints" | tr '\n' ' ')'"
  fi
}

# resumes LABEL DIR: one rank continues from DIR/checkpoints at its newest step file, past any
# temporary file.
resumes() {
  local label=$1 dir=$2 newest
  newest=$(newest_step "$dir/checkpoints")
  local resume="$dir.resume"
  if OMP_NUM_THREADS=1 "$nexus" train --config "$tiny" --runtime.device="$device" --train.steps=$((newest + 1)) \
    --train.eval_every=0 --checkpoint.every=0 --train.out_dir="$resume" --resume "$dir/checkpoints" >"$resume.log" 2>&1 &&
    grep -q "resumed from $dir/checkpoints/$(printf 'step_%08d.h5' "$newest") at step $newest" "$resume.log"; then
    pass "$label: one rank resumes from the newest checkpoint (step $newest)"
  else
    fail "$label: resume from $dir/checkpoints"; tail -5 "$resume.log"
  fi
}

# variant LABEL OPTIONS...: the three cases with OPTIONS (device transport) added to every run.
variant() {
  local label=$1
  shift
  echo "== $label"
  local dir="$work/${label}_dp2"
  fault "$label dp 2, rank 1 killed after step 3" "$dir" 1 "step 3" "$@"
  fault "$label cp 2, rank 0 killed after step 3" "$work/${label}_cp2" 0 "step 3" --parallel.cp=2 "$@"
  # The dp 2 run's directory, resumed by both ranks: its checkpoints load after the kill, and the
  # first save of the resumed run holds at the failpoint, where its writer is killed.
  NEXUS_FAILPOINT=checkpoint_write:pause fault "$label dp 2 resumed, rank 0 killed inside a checkpoint write" \
    "$dir" 0 failpoint --resume latest "$@"
  local tmp
  tmp=$(ls "$dir/checkpoints" | grep -E "^step_[0-9]+\.h5\.tmp-$victim_pid\$")
  if [ -n "$tmp" ] && [ ! -e "$dir/checkpoints/${tmp%%.tmp-*}" ]; then
    pass "$label: the save killed mid-write left only its temporary file ($tmp), never ${tmp%%.tmp-*}"
  else
    fail "$label: after the kill inside the write: $(ls "$dir/checkpoints" | tr '\n' ' ')"
  fi
  resumes "$label dp 2 after the kill inside the write" "$dir"
}

# A rank that hangs rather than dies (rank 1 stops before a step's last delta all-reduce, as a rank
# stuck in I/O would): nothing fails, so a watchdog's timeout must end the job, on rank 0 with one
# line naming the rank and the blocking call, within the timeout and a few seconds. On the CPU the
# MPI watch (parallel.mpi_timeout_s), on NCCL the plane's (parallel.nccl_timeout_s).
#   hung_rank LABEL CALL_PATTERN OPTIONS...
hung_rank() {
  local name="$1 hung rank" pattern=$2
  shift 2
  local slug
  slug=$(tr -c 'A-Za-z0-9\n' _ <<<"$name")
  local dir="$work/$slug" log="$work/$slug.log"
  local status elapsed_ms
  mpirun --oversubscribe --bind-to none -np 2 -x OMP_NUM_THREADS=1 bash -c \
    '[ "${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-0}}" = 1 ] && export NEXUS_FAILPOINT=delta_reduction:pause; exec "$0" "$@"' \
    "$nexus" train --config "$tiny" --runtime.device="$device" --train.steps=20 --train.eval_every=0 \
    --checkpoint.every=0 --train.out_dir="$dir" "$@" >"$log" 2>&1 &
  launcher=$!
  job_end 90
  echo "$name: the launcher exited with status $status after $elapsed_ms ms (from the start)"
  local line
  line=$(grep -m1 -E "$pattern" "$log")
  if [ "$status" != 0 ] && [ "$status" != timeout ] && grep -q "failpoint delta_reduction: pausing" "$log" &&
    [ -n "$line" ] && grep -q "rank 0" <<<"$line"; then
    pass "$name: the watchdog ended the job (status $status): $line"
  else
    fail "$name: status $status; expected a non-zero exit and the watchdog's line naming rank 0 and the call"
    tail -20 "$log"
  fi
  nothing_left "$name" "$dir"
}

if [ "$device" = cpu ]; then
  variant cpu
  hung_rank cpu "MPI, rank 0: MPI_[A-Za-z_]+ not complete" --parallel.mpi_timeout_s=3
  echo "ran: cpu (MPI), cpu hung rank"
else
  gpus=$(gpu_count)
  variant staged --parallel.transport=staged
  ran="staged (2 ranks on $( ((gpus >= 2)) && echo "2 GPUs" || echo "one GPU"))"
  not_run=""
  if ((gpus < 2)); then
    not_run="nccl: needs 2 GPUs (one per rank; NCCL refuses two ranks on one GPU), $gpus visible"
  elif [ "${NEXUS_HAS_NCCL:-0}" != 1 ]; then
    not_run="nccl: this build has no NCCL"
  else
    variant nccl --parallel.transport=nccl
    hung_rank nccl "NCCL data plane, rank 0" --parallel.transport=nccl --parallel.nccl_timeout_s=5
    ran="$ran, nccl (2 GPUs), nccl hung rank"
  fi
  echo "ran: $ran"
  [ -z "$not_run" ] || echo "not run: $not_run"
fi
finish
