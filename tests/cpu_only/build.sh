#!/usr/bin/env bash
# The CPU-only configuration (-DNEXUS_CUDA=OFF: what a machine without the CUDA toolkit builds)
# with warnings as errors, in BUILD_DIR: the `nexus` binary and every library under it. The main
# build compiles the CUDA side of each `#if NEXUS_HAS_CUDA`; this compiles the other side (a
# parameter only the CUDA branch reads, a helper only it calls), which CI would otherwise never
# build. Then the binary trains two steps of configs/tiny.ini and refuses a CUDA run, naming why.
#   usage: build.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
start=$SECONDS
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNEXUS_WERROR=ON -DNEXUS_CUDA=OFF >/dev/null
if ! cmake --build "$build" -j2 --target nexus >"$build/build.log" 2>&1; then
  tail -40 "$build/build.log"
  echo "FAIL: the CPU-only build (-DNEXUS_CUDA=OFF, -Werror) failed (log: $build/build.log)"
  exit 1
fi
echo "configure + build: $((SECONDS - start)) s"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$build/nexus" train --config "$src/configs/tiny.ini" --train.steps=2 --train.eval_every=0 --checkpoint.every=0 \
  --train.out_dir="$out/run" >"$out/train.log" 2>&1 || { tail -20 "$out/train.log"; echo "FAIL: CPU-only train"; exit 1; }
if "$build/nexus" train --config "$src/configs/tiny.ini" --runtime.device=cuda --train.out_dir="$out/cuda" \
  >"$out/cuda.log" 2>&1; then
  echo "FAIL: the CPU-only binary accepted runtime.device = cuda"
  exit 1
fi
grep -q "no CUDA backend" "$out/cuda.log" || { cat "$out/cuda.log"; echo "FAIL: the refusal does not say why"; exit 1; }
echo "CPU-only build, 2 training steps and the CUDA refusal passed in $((SECONDS - start)) s"
