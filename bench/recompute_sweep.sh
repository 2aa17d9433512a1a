#!/usr/bin/env bash
# Peak memory and throughput against the sequence length for train.recompute = none / mamba / all
# on configs/small.ini (CPU): one `nexus train` process per point, 2 steps of one sequence; the
# second step's tokens/s (the first warms up) and the process's peak resident memory (VmHWM), next
# to `nexus plan`'s prediction for the same options. Prints a Markdown table.
#   bench/recompute_sweep.sh [BUILD_DIR] [T ...]     (default: build, 256 512 1024 2048)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
lengths=("${@:-256 512 1024 2048}")
read -r -a lengths <<<"${lengths[*]}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
opts=(configs/small.ini --train.global_batch=1 --train.micro_batch=1)
echo "| seq_len | recompute | arena (MiB) | predicted peak (MiB) | measured peak (MiB) | tokens/s | step (s) |"
echo "|---:|---|---:|---:|---:|---:|---:|"
for T in "${lengths[@]}"; do
  for setting in none mamba all; do
    "$build/nexus" plan "${opts[@]}" --train.seq_len="$T" --train.recompute="$setting" >"$work/plan"
    "$build/nexus" train "${opts[@]}" --train.seq_len="$T" --train.recompute="$setting" --train.steps=2 \
      --train.log_every=1 --train.eval_every=0 --checkpoint.every=0 --train.out_dir="$work/run" >"$work/train" 2>&1
    arena=$(awk '/^activation arena:/ {print $3}' "$work/plan")
    predicted=$(awk '/^predicted peak per rank:/ {print $5}' "$work/plan")
    measured=$(awk '/^peak memory of rank 0:/ {print $6}' "$work/train")
    step=$(grep '^step *2/2' "$work/train")
    toks=$(echo "$step" | grep -oE '[0-9.]+ tok/s' | grep -oE '^[0-9.]+')
    ms=$(echo "$step" | grep -oE '[0-9.]+ ms' | grep -oE '^[0-9.]+')
    printf "| %s | %s | %.1f | %.1f | %.1f | %s | %.2f |\n" "$T" "$setting" "$(echo "$arena / 1048576" | bc -l)" \
      "$(echo "$predicted / 1048576" | bc -l)" "$(echo "$measured / 1048576" | bc -l)" "$toks" "$(echo "$ms / 1000" | bc -l)"
  done
done
