#!/bin/bash
# MQAR recall per attention neighborhood after the same number of steps: the tiny hybrid of the
# main job (configs/tiny.ini as is: MMMMAMMM, 16-token sequences of 2 key-value pairs and 2
# queries, batch 32), trained once per neighborhood with everything else equal, the runs side by
# side (one thread each); prints one JSON line per neighborhood with the held-out recall accuracy
# and loss of the last eval. The default windows keep the ratios of sliding:512 / block:256 to
# small.ini's 2048 tokens (1/4, 1/8).
#
#   bench/mqar_neighborhoods.sh [STEPS] > mqar.jsonl
#   NEIGHBORHOODS="full sliding:4" bench/mqar_neighborhoods.sh 500
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-500}
neighborhoods=${NEIGHBORHOODS:-full sliding:4 log block:2}
out=${OUT_DIR:-runs/mqar_neighborhoods}
mkdir -p "$out"
for nb in $neighborhoods; do
  dir="$out/${nb//[:+,]/_}"
  OMP_NUM_THREADS=1 "${NEXUS:-build/nexus}" train --config configs/tiny.ini --train.steps="$steps" \
    --train.ckpt_every=0 --train.out_dir="$dir" --model.attention_neighborhood="$nb" >"$dir.log" 2>&1 &
done
if ! wait; then
  echo "a training run failed: see $out/*.log" >&2
  exit 1
fi
for nb in $neighborhoods; do
  dir="$out/${nb//[:+,]/_}"
  python3 - "$dir/metrics.jsonl" "$nb" "$steps" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ev = [r for r in rows if "eval_accuracy" in r][-1]
print(json.dumps({"bench": "mqar_recall", "attention_neighborhood": sys.argv[2], "steps": int(sys.argv[3]),
                  "eval_step": ev["step"], "eval_accuracy": ev["eval_accuracy"], "eval_loss": ev["eval_loss"]}))
PY
done
