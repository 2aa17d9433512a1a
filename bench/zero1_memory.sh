#!/bin/bash
# ZeRO-1 against zero 0: optimizer-state bytes per rank, peak RSS per rank and step time, for short
# `nexus train` runs on NP local ranks (one line per rank, tab-separated, on stdout). Each run is
# its own mpirun; every rank runs under /usr/bin/time, so each peak RSS is that rank's own.
#
#   bench/zero1_memory.sh [CONFIG] [STEPS] > table.tsv
#   NPS="2 4" ZEROS="0 1" EXTRA="--train.seq_len=512" bench/zero1_memory.sh configs/small.ini 4
#   CKPT_EVERY=4 ...   (write checkpoints: under zero 1 rank 0 then stages the whole moments)
# Step time: the mean of the logged step times after the first (the first step warms up).
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/small.ini}
steps=${2:-4}
nexus=${NEXUS:-$PWD/build/nexus}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
printf 'np\tzero\trank\tadamw_moments_MiB_per_rank\tpeak_rss_MiB\tstep_ms\n'
for np in ${NPS:-2 4}; do
  for zero in ${ZEROS:-0 1}; do
    run="$work/np${np}_zero${zero}"
    mkdir -p "$run"
    # shellcheck disable=SC2086  # EXTRA is a list of options
    mpirun --oversubscribe --bind-to none -np "$np" -x OMP_NUM_THREADS=1 \
      bash -c 'exec /usr/bin/time -f "%M" -o "$0/rss_${OMPI_COMM_WORLD_RANK}" "$@"' "$run" \
      "$nexus" train --config "$config" --train.steps="$steps" --train.global_batch=4 --train.micro_batch=$((4 / np)) \
      --train.eval_every=0 --checkpoint.every="${CKPT_EVERY:-0}" --train.log_every=1 --parallel.zero="$zero" \
      --train.out_dir="$run/out" ${EXTRA:-} > "$run/log" 2>&1 || { cat "$run/log" >&2; exit 1; }
    moments_kib=$(sed -n 's/.*AdamW moments: \([0-9]*\) KiB per rank.*/\1/p' "$run/log" | head -1)
    step_ms=$(python3 -c 'import json,sys
ms=[json.loads(l)["ms"] for l in open(sys.argv[1]) if "grad_norm" in l][1:]
print(f"{sum(ms)/len(ms):.0f}")' "$run/out/metrics.jsonl")
    for ((r = 0; r < np; ++r)); do
      printf '%s\t%s\t%s\t%.1f\t%.1f\t%s\n' "$np" "$zero" "$r" "$(echo "$moments_kib / 1024" | bc -l)" \
        "$(echo "$(cat "$run/rss_$r") / 1024" | bc -l)" "$step_ms"
    done
  done
done
