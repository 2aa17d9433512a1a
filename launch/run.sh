#!/usr/bin/env bash
# The main job: installs dependencies, builds, and trains configs/tiny.ini (an 8-layer hybrid,
# MMMMAMMM, on the built-in associative-recall task) on 2 MPI ranks — interrupted halfway and
# resumed from its checkpoint, as a preempted job would be — then exports the result as a
# Hugging Face Bamba folder and asks it to recall. Extra arguments go to both `nexus train` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
bash launch/build.sh
run=runs/tiny
rm -rf "$run"  # the demo starts fresh each time; --train.out_dir=... elsewhere keeps a run

echo "== train steps 1-500 on 2 ranks, then stop with a checkpoint"
bash launch/mpirun.sh 2 train --config configs/tiny.ini --train.out_dir="$run" --train.exit_after=500 "$@"
echo "== resume from the latest checkpoint and finish"
bash launch/mpirun.sh 2 train --config configs/tiny.ini --train.out_dir="$run" --resume latest "$@"

echo "== export to a Hugging Face folder"
build/nexus export "$run/checkpoints" --out "$run/hf" --dtype fp32
echo "== recall with the exported model: pairs (3,12) (5,9), then query 5: the answer should be 9"
build/nexus generate --model "$run/hf" --tokens 3,12,5,9,0,0,5 --max-new-tokens 1 --temperature 0
echo "metrics: $run/metrics.jsonl (plot: trainer/plot_metrics.py $run/metrics.jsonl)"
