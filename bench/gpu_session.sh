#!/usr/bin/env bash
# The one prepared command of a GPU session (../shared/device/README.md: build here with
# -DNEXUS_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES=90a, pack into .devbundle/, send it along), run from
# the repository root on the GPU machine with OUT set to the folder whose files come back:
#   1. env.txt      the GPU, driver, clocks, CUDA libraries
#   2. summary.txt, tests.tsv, tests.log   every `gpu` test (the CUDA ops against the CPU, the
#                   whole model, bitwise repeat, tests/e2e/gpu_train.sh)
#   3. bench.jsonl  bench_cuda_ops at configs/350m.ini T = 8192 (GB/s against the copy bandwidth,
#                   TFLOP/s against cuBLASLt's bf16 GEMM, same run), and the training step of
#                   350m.ini at T = 8192 on the GPU (tokens/s, MFU, peak GPU memory)
# No `set -e`: every step has its own timeout, ~7 min in all, so a cut-short run still returns
# what it finished. Record what comes back under bench/results/ with the date and the GPU.
#   usage: OUT=/path bash bench/gpu_session.sh [TEST_BUDGET_S]
mkdir -p "$OUT"
source .devbundle/env.sh || exit 1
{
  timeout 20 nvidia-smi
  timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv
  cat "$NEXUS_BUNDLE/bundle.info"
  echo "CUDA libs: $NEXUS_CUDA_LIBPATH"
  nproc
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
budget=${1:-240}
timeout $((budget + 30)) bash .devbundle/run-tests.sh -L gpu --timeout 150 --budget "$budget" --results "$OUT" \
  >"$OUT/summary.txt" 2>&1
tail -n 25 "$OUT/summary.txt"
{
  timeout 90 bench_cuda_ops configs/350m.ini --seq-len 8192 --iters 10
  run=$(mktemp -d)
  timeout 150 nexus train --config configs/350m.ini --runtime.device=cuda --train.seq_len=8192 \
    --train.micro_batch=1 --train.global_batch=1 --train.steps=8 --train.log_every=1 --checkpoint.every=0 \
    --train.out_dir="$run" >"$run/stdout" 2>&1
  # The last step line: steady state (the first steps include cuBLASLt's heuristics and clocks up).
  python3 -c 'import json,sys
lines = [json.loads(l) for l in open(sys.argv[1]) if "tokens_per_s" in l]
if lines:
    r = lines[-1]; r.update(bench="train_step", config="configs/350m.ini", seq_len=8192, device="cuda", dtype="fp32")
    print(json.dumps(r))' "$run/metrics.jsonl"
  tail -n 5 "$run/stdout" >&2
} >"$OUT/bench.jsonl" 2>"$OUT/bench.err"
cat "$OUT/bench.jsonl"
ls -la "$OUT"
