#!/usr/bin/env bash
# Planned memory per GPU under parallel.zero = 0 and 1 (issue 10), from `nexus plan`: the sizing
# code the run allocates with, at bf16 on an H100 80 GB. A plan, not a measurement: no GPU has run
# Nexus yet; on the CPU the same planner is within 0.5% of measured peaks (2026-12-07-recompute.md).
# Usage: bench/gpu_memory_plan.sh [nexus binary] [config ...]   (default: build/nexus, 350m and 7b)
set -euo pipefail
nexus=${1:-build/nexus}
shift || true
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(configs/350m.ini configs/7b.ini)
row() {  # the bytes column of one row of the plan
  awk -v k="$1" 'index($0, k) == 3 { for (i = 1; i <= NF; ++i) if ($i == "B") { print $(i - 1); exit } }'
}
mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
echo "| config | world (dp) | zero | master | deltas | moments | arena | total per GPU | longest seq_len: recompute none / all |"
echo "|---|---|---|---|---|---|---|---|---|"
for cfg in "${configs[@]}"; do
  for world in 1 8 64; do
    for zero in 0 1; do
      [ "$world" = 1 ] && [ "$zero" = 1 ] && continue
      out=$("$nexus" plan --config "$cfg" --device h100-80g --world "$world" --parallel.zero="$zero" \
            --train.global_batch="$world" --train.micro_batch=1)
      longest=$(awk '$1 == "none" { print $NF; exit }' <<<"$out")
      longest_all=$(awk '$1 == "all" { print $NF; exit }' <<<"$out")
      printf '| %s | %s | %s | %s MiB | %s MiB | %s MiB | %s MiB | %s MiB | %s / %s |\n' "$(basename "$cfg")" "$world" "$zero" \
        "$(mib "$(row "master weights" <<<"$out")")" "$(mib "$(row "deltas" <<<"$out")")" \
        "$(mib "$(row "AdamW moments" <<<"$out")")" "$(mib "$(row "activation arena" <<<"$out")")" \
        "$(mib "$(row "total per rank" <<<"$out")")" "$longest" "$longest_all"
    done
  done
done
