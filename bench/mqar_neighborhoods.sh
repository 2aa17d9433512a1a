#!/bin/bash
# MQAR recall per attention neighborhood after the same number of steps: the tiny hybrid
# (configs/tiny.ini, MMMMAMMM) on 64-token sequences of 8 key-value pairs and 8 queries, trained
# once per neighborhood with everything else equal; prints one JSON line per neighborhood with the
# held-out recall accuracy and loss of the last eval.
#
#   bench/mqar_neighborhoods.sh [STEPS] > mqar.jsonl
#   NEIGHBORHOODS="full sliding:16" bench/mqar_neighborhoods.sh 300
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-300}
neighborhoods=${NEIGHBORHOODS:-full sliding:16 log block:8}
out=${OUT_DIR:-runs/mqar_neighborhoods}
mkdir -p "$out"
for nb in $neighborhoods; do
  dir="$out/${nb//[:+,]/_}"
  "${NEXUS:-build/nexus}" train --config configs/tiny.ini --model.vocab_size=64 --train.seq_len=64 \
    --data.mqar_pairs=8 --data.mqar_queries=8 --train.steps="$steps" --train.eval_every=100 \
    --train.ckpt_every=0 --train.out_dir="$dir" --model.attention_neighborhood="$nb" >"$dir.log" 2>&1 ||
    { echo "training with $nb failed: see $dir.log" >&2; exit 1; }
  python3 - "$dir/metrics.jsonl" "$nb" "$steps" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ev = [r for r in rows if "eval_accuracy" in r][-1]
print(json.dumps({"bench": "mqar_recall", "attention_neighborhood": sys.argv[2], "steps": int(sys.argv[3]),
                  "eval_step": ev["step"], "eval_accuracy": ev["eval_accuracy"], "eval_loss": ev["eval_loss"]}))
PY
done
