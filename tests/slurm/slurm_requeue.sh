#!/usr/bin/env bash
# A Slurm job that gets its time-limit warning mid-run checkpoints, requeues itself, resumes from
# that checkpoint and finishes, with every training step done exactly once.
#   usage: slurm_requeue.sh NEXUS_SOURCE_DIR BUILD_DIR        (ctest label `slurm`; needs root)
#
# It starts a private Slurm (launch/slurm/local-cluster.sh), submits launch/slurm/train.sbatch with
# 4 ranks (dp = 4 / cp), and once a few steps are logged sends SIGUSR1 to the batch script
# (`scancel --signal=USR1 --batch`: what `#SBATCH --signal=B:USR1@120` does before the time limit).
# Then it checks: the run stopped at a step boundary S and checkpointed step S; the job was
# requeued once and ended COMPLETED; the restart resumed at step S; and metrics.jsonl holds the
# steps 1..STEPS in order, once each. A step done after the last checkpoint but before the stop
# would show up twice (the restart redoes it); one never done would leave a gap.
#
# Environment: NEXUS_TEST_CP (default 2: the dp 2 x cp 2 layout; 1 gives plain data parallelism),
# NEXUS_TEST_KEEP=1 keeps the work directory. Bounded to 8 minutes; exit 0 on success.
set -uo pipefail
src=$(cd "${1:?usage: slurm_requeue.sh NEXUS_SOURCE_DIR BUILD_DIR}" && pwd)
build=$(cd "${2:?usage: slurm_requeue.sh NEXUS_SOURCE_DIR BUILD_DIR}" && pwd)
cluster_sh=$src/launch/slurm/local-cluster.sh

ranks=4
cp=${NEXUS_TEST_CP:-2}
dp=$((ranks / cp))
steps=40         # ~15 s at 4 ranks on 2 cores
ckpt_every=10
signal_after=13  # send the warning once this step is logged: between two periodic checkpoints
deadline=$((SECONDS + 480))

fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }  # ctest SKIP_RETURN_CODE
[ "$(id -u)" -eq 0 ] || skip "needs root (runs its own slurmctld, slurmd and munged)"
for tool in munged slurmctld slurmd sbatch python3; do
  command -v "$tool" >/dev/null || skip "$tool not found: install slurmctld slurmd slurm-client munge (launch/setup.sh)"
done
[ -x "$build/nexus" ] || fail "$build/nexus not built"

work=$(mktemp -d "${TMPDIR:-/tmp}/nexus-slurm-requeue.XXXXXX")
cluster=$work/cluster
jobid=
cleanup() {
  local rc=$?
  if ((rc != 0)); then
    echo "--- job log ($work/job.out) ---"; tail -n 40 "$work/job.out" 2>/dev/null | grep -v '^step '
    [ -n "$jobid" ] && scontrol show job "$jobid" 2>/dev/null | head -n 8
    echo "--- slurmctld log ---"; tail -n 15 "$cluster/log/slurmctld.log" 2>/dev/null
  fi
  "$cluster_sh" stop "$cluster" 2>/dev/null
  if [ "${NEXUS_TEST_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
  exit $rc
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

# wait_until SECONDS WHAT COMMAND...: polls COMMAND every half second; fails past SECONDS or the deadline.
wait_until() {
  local limit=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    ((SECONDS < limit && SECONDS < deadline)) || fail "timed out waiting for $what"
    sleep 0.5
  done
}

exports=$("$cluster_sh" start "$cluster") || fail "the local Slurm cluster did not start"
eval "$exports"
echo "ok: local Slurm up ($SLURM_CONF)"

# The job runs a private copy of the binary: a rebuild during the test cannot swap it mid-run.
cp "$build/nexus" "$work/nexus"
run=$work/run
overrides="--train.steps=$steps --checkpoint.every=$ckpt_every --checkpoint.keep=0 --train.global_batch=32"
overrides+=" --train.micro_batch=$((32 / dp)) --train.log_every=1 --train.eval_every=0 --train.out_dir=$run"
jobid=$(NEXUS_DIR=$src NEXUS_BIN=$work/nexus NEXUS_CONFIG=$src/configs/tiny.ini NEXUS_CP=$cp \
  NEXUS_OVERRIDES=$overrides sbatch --parsable --nodes=1 --ntasks-per-node=$ranks --cpus-per-task=1 \
  --time=10 --output="$work/job.out" "$src/launch/slurm/train.sbatch") || fail "sbatch failed"
jobid=${jobid%%;*}
echo "ok: submitted job $jobid ($ranks ranks, dp $dp x cp $cp, $steps steps, checkpoint every $ckpt_every)"

# Highest step in the metrics so far (0: none).
last_step() {
  python3 - "$run/metrics.jsonl" <<'EOF'
import json, sys
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    lines = []
steps = [json.loads(l)["step"] for l in lines if l.strip() and '"loss"' in l]
print(max(steps, default=0))
EOF
}
job_field() { scontrol show job -o "$jobid" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p"; }
job_over() {
  case $(job_field JobState) in
    COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE) return 0 ;;
  esac
  job_field JobState | grep -q . || fail "job $jobid vanished from slurmctld"
  return 1
}

logged_enough() {
  [ "$(last_step)" -ge "$signal_after" ] && return 0
  if job_over; then fail "job $jobid ended ($(job_field JobState), exit code $(job_field ExitCode)) before step $signal_after"; fi
  return 1
}
wait_until 120 "step $signal_after in $run/metrics.jsonl" logged_enough
((last_step_before = $(last_step)))
if ((last_step_before >= steps)); then fail "the run finished before the warning could be sent"; fi
scancel --signal=USR1 --batch "$jobid" || fail "scancel --signal=USR1 --batch $jobid failed"
echo "ok: SIGUSR1 sent to the batch script at step $last_step_before"
wait_until 300 "job $jobid to finish" job_over

state=$(job_field JobState) exit_code=$(job_field ExitCode) restarts=$(job_field Restarts)
if [ "$state" != COMPLETED ] || [ "$exit_code" != 0:0 ]; then fail "job ended $state with exit code $exit_code"; fi
[ "$restarts" = 1 ] || fail "job restarted $restarts times, expected 1"
echo "ok: job COMPLETED after $restarts requeue"

log=$work/job.out
stop_step=$(sed -n 's/^stop requested by signal 10: stopping after step \([0-9]*\)$/\1/p' "$log")
[ -n "$stop_step" ] || fail "no 'stop requested by signal 10' in the job log"
((stop_step >= last_step_before && stop_step < steps)) || fail "stopped after step $stop_step, signal at $last_step_before"
ckpt=$(printf '%s/checkpoints/step_%08d.h5' "$run" "$stop_step")
if ! grep -qxF "checkpoint: $ckpt" "$log" || [ ! -e "$ckpt" ]; then fail "no checkpoint written at the stop step $stop_step ($ckpt)"; fi
grep -q "requeueing job $jobid" "$log" || fail "the batch script did not requeue the job"
grep -q "job $jobid restart 1:" "$log" || fail "no restart in the job log"
grep -qE "^resumed from .* at step $stop_step\b" "$log" || fail "the restart did not resume at step $stop_step"
grep -q "^done: $steps steps" "$log" || fail "the restarted run did not finish $steps steps"
kind="a signal checkpoint between periodic ones"
((stop_step % ckpt_every == 0)) && kind="coincides with a periodic checkpoint"
echo "ok: stopped and checkpointed at step $stop_step ($kind), resumed there, finished $steps steps"

# Every step exactly once and in order across both runs; the stop and resume notes in between.
python3 - "$run/metrics.jsonl" "$steps" "$stop_step" <<'EOF' || fail "metrics check"
import json, re, sys
path, steps, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
records = [json.loads(l) for l in open(path) if l.strip()]
done = [r["step"] for r in records if "loss" in r]
if done != list(range(1, steps + 1)):
    repeats = sorted({s for s in done if done.count(s) > 1})
    gaps = sorted(set(range(1, steps + 1)) - set(done))
    sys.exit(f"steps logged {done}: repeated {repeats}, missing {gaps}")
notes = [(i, r["note"]) for i, r in enumerate(records) if "note" in r]
stop_at = [i for i, n in notes if n.startswith("stop requested by signal")]
resume_at = [i for i, n in notes if re.match(rf"resumed from .* at step {stop}\b", n)]
if len(stop_at) != 1 or len(resume_at) != 1:
    sys.exit(f"expected one stop note and one resume note, got {notes}")
before = [r["step"] for r in records[:stop_at[0]] if "loss" in r]
after = [r["step"] for r in records[resume_at[0]:] if "loss" in r]
if before[-1:] != [stop] or after[:1] != [stop + 1]:
    sys.exit(f"first run ended at {before[-1:]}, restart began at {after[:1]}; expected {stop} then {stop + 1}")
print(f"ok: metrics hold steps 1..{steps} once each: 1..{stop} before the requeue, {stop + 1}..{steps} after")
EOF
echo "PASS: slurm requeue ($SECONDS s)"
