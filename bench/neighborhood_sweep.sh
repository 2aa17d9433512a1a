#!/bin/bash
# Forward + backward of a config under several attention neighborhoods and sequence lengths, one
# bench_model process per point (so each peak RSS is its own), one JSON line each on stdout.
#
#   bench/neighborhood_sweep.sh [CONFIG] [ITERS] > results.jsonl
#   NEIGHBORHOODS="full sliding:512" LENGTHS="2048 4096" bench/neighborhood_sweep.sh configs/small.ini 1
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/small.ini}
iters=${2:-1}
neighborhoods=${NEIGHBORHOODS:-full sliding:512 log block:256}
lengths=${LENGTHS:-2048 4096 8192 16384 32768}
for T in $lengths; do
  for nb in $neighborhoods; do
    build/bench/bench_model "$config" --iters "$iters" --seq-len "$T" --model.attention_neighborhood="$nb"
  done
done
