#!/usr/bin/env bash
# `nexus plan` against real runs (CPU). usage: plan_vs_run.sh NEXUS SOURCE_DIR MODE CONFIG ARGS...
#   MODE peak:    plan, then one training step with the same options: the run's activation arena is
#                 the plan's (the run logs MiB; tests/trainer/test_plan.cpp checks the bytes), and the
#                 run's peak resident memory (VmHWM) is within 5% of the plan's predicted peak.
#   MODE longest: plan with --memory ARGS[0] (or, written +N MiB, N MiB over the process's own
#                 measured runtime) gives the longest train.seq_len T that fits; a run with
#                 runtime.memory_limit = that budget at T trains (and peaks within 5% of the budget),
#                 and at the next valid length past 1.1 T it refuses before starting, naming the memory
#                 it would need.
#   MODE errors:  bad flags and values exit 2 naming the flag (or key) and the value.
# NEXUS_LAUNCH (e.g. "mpirun --oversubscribe -np 2") launches the training runs (cp groups).
set -uo pipefail
nexus=$1
src=$2
mode=$3
config="$src/configs/$4"
shift 4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
run_opts=(--train.steps=1 --train.eval_every=0 --checkpoint.every=0 --train.out_dir="$work/run")
failures=0
pass() { echo "ok: $1"; }
fail() { echo "FAIL: $1"; failures=$((failures + 1)); }
# field LABEL FILE: the first number after LABEL on the line that starts with it.
field() { awk -v l="$1" 'index($0, l) == 1 { s = substr($0, length(l) + 1); match(s, /[0-9]+/); print substr(s, RSTART, RLENGTH); exit }' "$2"; }
# within_5pct A B: |A - B| <= 5% of B
within_5pct() { [ $(( ($1 - $2) * 100 )) -le $(( $2 * 5 )) ] && [ $(( ($2 - $1) * 100 )) -le $(( $2 * 5 )) ]; }

if [ "$mode" = peak ]; then
  "$nexus" plan "$config" "$@" >"$work/plan" 2>&1 || { cat "$work/plan"; exit 1; }
  ${NEXUS_LAUNCH:-} "$nexus" train "$config" "$@" "${run_opts[@]}" >"$work/train" 2>&1 || { cat "$work/train"; exit 1; }
  predicted=$(field "predicted peak per rank:" "$work/plan")
  arena=$(field "activation arena:" "$work/plan")
  measured=$(field "peak memory of rank 0:" "$work/train")
  run_arena=$(grep -oE 'activation arena [0-9]+ MiB' "$work/train" | grep -oE '[0-9]+')
  echo "$* : predicted $predicted B, measured $measured B; arena planned $arena B, run $run_arena MiB"
  [ -n "$arena" ] && [ "$(( arena >> 20 ))" = "$run_arena" ] && pass "arena as planned"     || fail "arena $arena B vs run $run_arena MiB"
  within_5pct "$measured" "$predicted" && pass "peak within 5%" || fail "peak $measured vs predicted $predicted"
elif [ "$mode" = longest ]; then
  budget=$1
  shift
  if [[ $budget == +* ]]; then
    # "+N MiB": N MiB over this build's own runtime, which the plan measures (a build with the
    # CUDA backend maps cudart and cuBLASLt: ~100 MiB more resident than a CPU-only one).
    "$nexus" plan "$config" "$@" --memory 1048576MiB >"$work/base" 2>&1 || { cat "$work/base"; exit 1; }
    runtime=$(awk '$1 == "runtime" { print $4; exit }' "$work/base")
    [ -n "$runtime" ] || { cat "$work/base"; exit 1; }
    budget="$(( (runtime >> 20) + 1 + $(echo "${budget#+}" | grep -oE '^[0-9]+') ))MiB"
  fi
  "$nexus" plan "$config" "$@" --memory "$budget" >"$work/plan" 2>&1 || { cat "$work/plan"; exit 1; }
  T=$(field "longest train.seq_len that fits:" "$work/plan")
  [ -n "$T" ] && [ "$T" -gt 0 ] || { cat "$work/plan"; exit 1; }
  limit=(--runtime.memory_limit="$budget")
  if "$nexus" train "$config" "$@" "${limit[@]}" --train.seq_len="$T" "${run_opts[@]}" >"$work/fit" 2>&1; then
    peak=$(field "peak memory of rank 0:" "$work/fit")
    bytes=$(( $(echo "$budget" | grep -oE '^[0-9]+') << 20 ))  # the budget is given in MiB
    [ "$peak" -le $(( bytes + bytes / 20 )) ] && pass "T = $T fits $budget (peak $peak B)" \
      || fail "T = $T ran past the budget: peak $peak B > $bytes B + 5%"
  else
    fail "T = $T refused or failed under $budget:"; cat "$work/fit"
  fi
  big=$(( (T * 11 + 9) / 10 ))
  if "$nexus" train "$config" "$@" "${limit[@]}" --train.seq_len="$big" "${run_opts[@]}" >"$work/big" 2>&1; then
    fail "T = $big (1.1x) was not refused"
  elif grep -q "this run needs .* but only .* is available (runtime.memory_limit = $budget" "$work/big" &&
       ! grep -q "^done:" "$work/big"; then
    pass "T = $big refused before starting: $(grep -o 'needs [0-9.]* GiB' "$work/big")"
  else
    fail "T = $big: not the refusal expected:"; cat "$work/big"
  fi
elif [ "$mode" = errors ]; then
  check() {  # check EXPECTED_TEXT ARGS...: `nexus plan ARGS` exits 2 with the text on stderr
    local text=$1
    shift
    "$nexus" plan "$config" "$@" >"$work/out" 2>"$work/err"
    local rc=$?
    if [ "$rc" -eq 2 ] && grep -qF -- "$text" "$work/err"; then pass "$*"; else fail "$* (exit $rc):"; cat "$work/err"; fi
  }
  check "--device a100 is not one of cpu, h100-80g, h200" --device a100
  check "--memory 80gigs is not a size such as 512MiB" --memory 80gigs
  check "--generate-batch 0 is not a positive integer" --generate-batch 0
  check "--device needs a value" --device
  check "--world 0 is not a positive integer" --world 0
  check "--world 3 is not a multiple of parallel.cp = 2" --parallel.cp=2 --world 3
  check "train.global_batch = 32 is not divisible by train.micro_batch * dp = 16 * 4" --world 4
  check 'train.recompute = "attn" names '"'attn'" --train.recompute=attn
  check "unknown option '--bogus'" --bogus
  check "--resume does not apply" --resume latest
else
  echo "unknown mode $mode"; exit 2
fi
[ "$failures" -eq 0 ]
