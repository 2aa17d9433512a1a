#!/usr/bin/env bash
# A CPU run of a CUDA build loads none of the large CUDA libraries: the backend opens cuBLASLt and
# cuDNN (whose frontend then opens NVRTC) on first use (kernels/cuda/lazy_library.h), so `nexus
# plan` and a few training steps on the CPU must not map them; linked, they cost such a run about
# 230 MiB resident (bench/results/2026-12-07-cpu-run-cuda-build-memory.md). The loader's own trace
# (LD_DEBUG=files, one file per process) names every library it opens, linked or dlopen'ed.
# Exits 77 (skipped) in a build without the CUDA backend, where nothing could load them.
#   usage: cpu_run_libraries.sh NEXUS_BINARY SOURCE_DIR
set -uo pipefail
nexus=$1
src=$2
source "$src/tests/e2e/e2e_lib.sh"  # pass, fail, finish
if [ "${NEXUS_HAS_CUDA:-0}" != 1 ]; then
  echo "SKIPPED: this build has no CUDA backend (NEXUS_HAS_CUDA != 1): no CUDA library to keep out"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# traced NAME ARGS...: runs nexus ARGS with the loader's trace in $work/NAME.ld.<pid>.
traced() {
  local name=$1
  shift
  LD_DEBUG=files LD_DEBUG_OUTPUT="$work/$name.ld" "$nexus" "$@" >"$work/$name.log" 2>&1 ||
    { fail "nexus $* exited with an error"; cat "$work/$name.log"; }
}
# loaded NAME LIB: whether a process of run NAME opened LIB.so (any version, any folder).
loaded() { grep -qE "file=([^ ]*/)?$2\.so" "$work/$1".ld.*; }

traced plan plan --config "$src/configs/tiny.ini"
traced train train --config "$src/configs/tiny.ini" --runtime.device=cpu --train.steps=3 --train.eval_every=0 \
  --checkpoint.every=0 --train.out_dir="$work/run"
for run in plan train; do
  # The trace works and this is a CUDA build: the (small, linked) CUDA runtime shows in it.
  loaded $run libcudart && pass "$run: the loader trace lists the CUDA runtime" ||
    fail "$run: no libcudart in the loader trace (the check below would prove nothing)"
  for lib in libcublasLt libcublas libcudnn libnvrtc; do
    loaded $run $lib && fail "$run on the CPU loaded $lib" ||
      pass "$run on the CPU did not load $lib"
  done
done
finish
