#!/usr/bin/env bash
# The `nexus` command on one GPU, end to end (label `gpu`): training on configs/tiny.ini against the
# same run on the CPU, bitwise repeatability, a GPU checkpoint resumed on the CPU and a CPU one on
# the GPU, then eval and generate on the GPU. Exits 77 (skipped) where no GPU is visible.
#   usage: gpu_train.sh NEXUS_BINARY SOURCE_DIR
set -uo pipefail
nexus=$1
src=$2
source "$src/tests/e2e/e2e_lib.sh"  # pass, fail, finish, losses, close, require_gpu
require_gpu
tiny="$src/configs/tiny.ini"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# train NAME DEVICE [OPTIONS...]: 40 steps of tiny.ini, a checkpoint every 20, into $work/NAME.
train() {
  local name=$1 device=$2
  shift 2
  "$nexus" train --config "$tiny" --runtime.device="$device" --train.steps=40 --train.log_every=1 \
    --checkpoint.every=20 --train.out_dir="$work/$name" "$@" >"$work/$name.log" 2>&1 ||
    { fail "train $name on $device"; cat "$work/$name.log"; }
}
train cpu cpu
train gpu cuda
train gpu_again cuda
losses "$work/cpu" >"$work/cpu.txt"
losses "$work/gpu" >"$work/gpu.txt"
losses "$work/gpu_again" >"$work/gpu_again.txt"
grep -q "gpu .* MiB" "$work/gpu.log" && pass "the GPU step line reports peak GPU memory" || fail "no GPU memory in the step line"
# fp32 on both devices; summation orders differ, so the curves differ by rounding that Adam
# amplifies a little over 40 steps (tests/cuda/test_cuda_model.cpp bounds the single step).
close "$work/gpu.txt" "$work/cpu.txt" 1e-3 && pass "GPU losses follow the CPU's" || fail "GPU losses vs CPU"
cmp -s "$work/gpu.txt" "$work/gpu_again.txt" && pass "two GPU runs give bit-identical losses" || fail "GPU runs differ"

# bf16 with fp32 master weights: the curve stays within bf16's noise of the fp32 one
# (tests/cuda/test_cuda_model_bf16.cpp derives 3e-2 for 50 steps), and its checkpoint (the fp32
# master) resumes on the CPU.
train gpu_bf16 cuda --runtime.dtype=bf16
losses "$work/gpu_bf16" >"$work/gpu_bf16.txt"
close "$work/gpu_bf16.txt" "$work/cpu.txt" 3e-2 && pass "bf16 GPU losses follow the fp32 CPU's" || fail "bf16 GPU losses vs CPU"
"$nexus" train --config "$tiny" --runtime.device=cpu --train.steps=40 --train.log_every=1 --checkpoint.every=0 \
  --train.out_dir="$work/resume_bf16" --resume "$work/gpu_bf16/checkpoints/step_00000020.h5" >"$work/resume_bf16.log" 2>&1 &&
  pass "a bf16 GPU checkpoint resumes on the CPU in fp32" || { fail "bf16 checkpoint on the CPU"; cat "$work/resume_bf16.log"; }

# bf16 with context parallelism: two ranks share the GPU over the staged data plane (cp = 2, dp = 1:
# the same global batch, each rank holding two zigzag chunks of every sequence); ring attention and
# the Mamba-2 state passing add a few bf16 roundings, well inside the same 3e-2 of the fp32 curve.
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mpirun --oversubscribe -np 2 "$nexus" train --config "$tiny" --runtime.device=cuda --train.steps=40 \
  --train.log_every=1 --checkpoint.every=0 --train.out_dir="$work/gpu_bf16_cp2" --runtime.dtype=bf16 \
  --parallel.cp=2 --parallel.transport=staged >"$work/gpu_bf16_cp2.log" 2>&1 ||
  { fail "train bf16 with cp = 2 on cuda"; cat "$work/gpu_bf16_cp2.log"; }
losses gpu_bf16_cp2 >"$work/gpu_bf16_cp2.txt"
close "$work/gpu_bf16_cp2.txt" "$work/cpu.txt" 3e-2 && pass "bf16 GPU losses with cp = 2 follow the fp32 CPU's" ||
  fail "bf16 cp = 2 GPU losses vs CPU"

# A GPU checkpoint resumes on the CPU and the reverse: steps 21-40 then follow the uninterrupted run.
for pair in "gpu cpu" "cpu cuda"; do
  set -- $pair
  from=$1 device=$2
  "$nexus" train --config "$tiny" --runtime.device="$device" --train.steps=40 --train.log_every=1 \
    --checkpoint.every=0 --train.out_dir="$work/resume_$from" --resume "$work/$from/checkpoints/step_00000020.h5" \
    >"$work/resume_$from.log" 2>&1 || { fail "resume $from's checkpoint on $device"; cat "$work/resume_$from.log"; }
  losses "$work/resume_$from" >"$work/resume_$from.txt"
  tail -n 20 "$work/$from.txt" >"$work/${from}_tail.txt"
  close "$work/resume_$from.txt" "$work/${from}_tail.txt" 1e-3 && pass "$from checkpoint resumed on $device" ||
    fail "$from checkpoint resumed on $device"
done

# eval and generate on the GPU give what they give on the CPU.
ckpt="$work/gpu/checkpoints"
for device in cpu cuda; do
  "$nexus" eval --model "$ckpt" --tokens 1,2,3,4,5,6,7,8 --device "$device" >"$work/eval_$device.txt" 2>&1 ||
    { fail "eval on $device"; cat "$work/eval_$device.txt"; }
  "$nexus" generate --model "$ckpt" --tokens 1,2,3 --max-new-tokens 8 --temperature 0 --device "$device" \
    >"$work/generate_$device.txt" 2>/dev/null || fail "generate on $device"
done
python3 -c 'import re,sys
f = lambda p: float(re.search(r"loss[^0-9]*([0-9.]+)", open(p).read()).group(1))
a, b = f(sys.argv[1]), f(sys.argv[2]); sys.exit(0 if abs(a - b) <= 1e-4 * abs(b) else 1)' \
  "$work/eval_cuda.txt" "$work/eval_cpu.txt" && pass "eval loss on the GPU equals the CPU's" || fail "eval loss GPU vs CPU"
cmp -s "$work/generate_cuda.txt" "$work/generate_cpu.txt" && pass "greedy generation on the GPU equals the CPU's" ||
  fail "greedy generation GPU vs CPU"

finish
