#!/bin/bash
# A benchmark under several attention neighborhoods and sequence lengths, one process per point
# (so each peak RSS is its own), one JSON line each on stdout. BENCH picks the program:
# bench_model (forward + backward of the whole model, the default) or bench_attention (the
# attention kernels alone, at the config's head shapes).
#
#   bench/neighborhood_sweep.sh [CONFIG] [ITERS] > results.jsonl
#   BENCH=bench_attention NEIGHBORHOODS="full sliding:512" LENGTHS="2048 4096" bench/neighborhood_sweep.sh
#   BENCH_DIR=/path/to/copies ...   (copies of the binaries, so that rebuilding does not swap them mid-sweep)
# Points of 8192 tokens and more skip the warm-up step (a step there is seconds of steady work).
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/small.ini}
iters=${2:-1}
bench=${BENCH_DIR:-build/bench}/${BENCH:-bench_model}
neighborhoods=${NEIGHBORHOODS:-full sliding:512 log block:256}
lengths=${LENGTHS:-2048 4096 8192 16384 32768}
for T in $lengths; do
  for nb in $neighborhoods; do
    warmup=1
    [ "$T" -ge 8192 ] && warmup=0
    "$bench" "$config" --iters "$iters" --seq-len "$T" --warmup "$warmup" --model.attention_neighborhood="$nb"
  done
done
