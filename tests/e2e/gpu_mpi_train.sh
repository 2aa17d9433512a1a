#!/usr/bin/env bash
# Multi-rank training on GPUs follows one GPU (labels gpu and mpi): configs/tiny.ini for 4 steps
# on one GPU, then on 2 and 4 ranks -- dp 2, cp 2, dp 2 x cp 2, dp 2 with ZeRO-1 -- in fp32 and in
# bf16, each against the one-GPU run of its dtype, step by step, in loss and in gradient norm (the
# norm shows the reduced gradient's scale, which AdamW's normalised update hides from the loss);
# ZeRO-1 also against zero 0 on the same ranks; and a CPU cp 2 run against the GPU cp 2 run
# (tests/e2e/gpu_train.sh compares one CPU rank with one GPU).
# Ranks get their own GPU and the NCCL data plane where there are enough GPUs; otherwise they share
# the GPUs over the staged data plane (NCCL refuses two ranks on one GPU). Each run prints its
# plane; a case the trainer refuses with its known message (bf16 with cp > 1) prints "not run".
#   usage: gpu_mpi_train.sh NEXUS_BINARY SOURCE_DIR [cuda|cpu]
# cpu: the same runs on the CPU over MPI (bf16 not run): a check of this script where no GPU is.
#
# Tolerances (relative, per step, over 4 steps):
#  - fp32: the layouts compute the same function in another summation order: deltas summed over
#    ranks instead of micro-batches, sequences split for cp (ring attention merges, per-segment
#    SSD sums), and on the GPU cuBLASLt may pick another kernel (split-K) for cp's halved row
#    count. Each value then differs by fp32 rounding (~1e-7), ~1e-5 on the loss after the 8
#    layers' forward and backward (tests/cuda/test_cuda_model.cpp bounds GPU vs CPU, the same
#    kind of difference, at 1e-5 for one step), which AdamW's normalisation carries into the
#    next steps. The CPU suite measures 7e-7 (dp) and 4.5e-6 (cp) on gradient norms after 3-6
#    steps and holds losses to 1e-5, norms to 1e-4 (tests/mpi/test_train_dp.cpp); here 1e-4 on
#    losses and 1e-3 on norms leave 10x for the GPU's other reduction orders, and stay far below
#    a wrong reduction (a factor of 2 in the norm), a wrong batch split (another batch's loss,
#    percents away) or a broken cp boundary (~1e-2). CPU cp 2 against GPU cp 2: the same bounds.
#  - ZeRO-1 vs zero 0 on the same 2 ranks: the reduce-scatter adds the same two values as the
#    all-reduce; only the norm's double partial sums are grouped per shard (~1e-16; the CPU suite
#    finds bit-identical losses on 2 ranks): 1e-5 on losses and on norms, its bound for 4 ranks.
#  - bf16, dp 2 and ZeRO-1: every micro-batch's bf16 forward and backward is the one-GPU run's
#    (same shapes, same weights); the fp32 deltas are summed in another order (~1e-7), which moves
#    an fp32 master weight across a bf16 rounding boundary only where it sat within 1e-7 of one:
#    a few compute weights per step change by one bf16 ulp (2^-8). Losses within 4e-3 (2^-8)
#    and norms within 1e-2 allow many such flips; a wrong scale or batch is far outside.
#  - bf16 with cp > 1: the sequence split changes which values are rounded to bf16 and in what
#    order, so the two runs carry independent bf16 noise: tests/cuda/test_cuda_model_bf16.cpp
#    derives 2e-2 for bf16 against fp32 (~80 roundings of 2^-9 compounding) and 3e-2 over 50
#    steps; two independent such noises: 3e-2 on losses, 10% on norms (its norm-ratio bound).
set -uo pipefail
nexus=$1
src=$2
device=${3:-cuda}
source "$src/tests/e2e/e2e_lib.sh"
gpus=0
if [ "$device" = cuda ]; then
  require_gpu
  gpus=$(gpu_count)
fi
tiny="$src/configs/tiny.ini"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
steps=4
not_run=()

# plane NP: the data plane for NP ranks: NCCL when each rank has its own GPU (and the build has
# NCCL), else staged; on the CPU, MPI.
plane() {
  if [ "$device" = cpu ]; then
    echo mpi
  elif (($1 <= gpus)) && [ "${NEXUS_HAS_NCCL:-0}" = 1 ]; then
    echo nccl
  else
    echo staged
  fi
}

# run NAME NP DTYPE OPTIONS...: $steps steps of tiny.ini (global batch 32 of 16-sequence
# micro-batches: grad_accum 2 on one rank, 1 on dp 2) on NP ranks into $work/NAME. Status 0: it
# trained; 1: it failed (counted); 2: the trainer refused bf16 with cp > 1 (reported as not run).
run() {
  local name=$1 np=$2 dtype=$3
  shift 3
  local args=(train --config "$tiny" --runtime.device="$device" --runtime.dtype="$dtype" --train.steps=$steps
    --train.micro_batch=16 --train.global_batch=32 --train.log_every=1 --train.eval_every=0 --checkpoint.every=0
    --train.out_dir="$work/$name" "$@")
  local log="$work/$name.log" status=0
  if ((np == 1)); then
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$nexus" "${args[@]}" >"$log" 2>&1 || status=$?
  else
    [ "$device" = cpu ] || args+=(--parallel.transport="$(plane "$np")")
    NEXUS="$nexus" bash "$src/launch/mpirun.sh" "$np" "${args[@]}" >"$log" 2>&1 || status=$?
  fi
  if ((status == 0)); then
    local used
    used=$(sed -n 's/^# device: .*data plane: //p' "$log" | head -1)
    echo "ran: $name ($np rank(s), $dtype, data plane ${used:-mpi (CPU)})"
    return 0
  fi
  if [ "$dtype" = bf16 ] && grep -q "context parallelism runs in fp32 only" "$log"; then
    not_run+=("$name: the trainer refuses bf16 with cp > 1 ('context parallelism runs in fp32 only')")
    echo "not run: ${not_run[-1]}"
    return 2
  fi
  fail "train $name ($np rank(s), $dtype): exit $status"
  tail -20 "$log"
  return 1
}

# compare NAME REF LOSS_TOL NORM_TOL: NAME's losses and gradient norms against REF's, step by step.
compare() {
  local name=$1 ref=$2
  losses "$work/$name" >"$work/$name.loss"
  losses "$work/$ref" >"$work/$ref.loss"
  grad_norms "$work/$name" >"$work/$name.norm"
  grad_norms "$work/$ref" >"$work/$ref.norm"
  if [ "$(wc -l <"$work/$ref.loss")" -ne "$steps" ]; then
    fail "$ref logged $(wc -l <"$work/$ref.loss") steps, not $steps"
    return
  fi
  close "$work/$name.loss" "$work/$ref.loss" "$3" && pass "$name: losses follow $ref's" ||
    fail "$name: losses vs $ref (tolerance $3)"
  close "$work/$name.norm" "$work/$ref.norm" "$4" && pass "$name: gradient norms follow $ref's" ||
    fail "$name: gradient norms vs $ref (tolerance $4)"
}

# case NAME REF NP DTYPE LOSS_TOL NORM_TOL OPTIONS...: run NAME, then compare it with REF.
case_() {
  local name=$1 ref=$2 np=$3 dtype=$4 loss_tol=$5 norm_tol=$6
  shift 6
  run "$name" "$np" "$dtype" "$@" && compare "$name" "$ref" "$loss_tol" "$norm_tol"
}

echo "== fp32 on $device ($gpus GPU(s) visible)"
if run one 1 fp32; then
  case_ dp2 one 2 fp32 1e-4 1e-3
  case_ cp2 one 2 fp32 1e-4 1e-3 --parallel.cp=2
  case_ dp2_cp2 one 4 fp32 1e-4 1e-3 --parallel.cp=2
  if case_ zero1 one 2 fp32 1e-4 1e-3 --parallel.zero=1 && [ -s "$work/dp2.loss" ]; then
    compare zero1 dp2 1e-5 1e-5
  fi
  if [ "$device" = cuda ] && [ -s "$work/cp2.loss" ]; then
    device=cpu case_ cpu_cp2 cp2 2 fp32 1e-4 1e-3 --parallel.cp=2
  fi
fi

if [ "$device" = cuda ]; then
  echo "== bf16 (fp32 master weights)"
  if run one_bf16 1 bf16; then
    case_ dp2_bf16 one_bf16 2 bf16 4e-3 1e-2
    case_ zero1_bf16 one_bf16 2 bf16 4e-3 1e-2 --parallel.zero=1
    case_ cp2_bf16 one_bf16 2 bf16 3e-2 1e-1 --parallel.cp=2
    case_ dp2_cp2_bf16 one_bf16 4 bf16 3e-2 1e-1 --parallel.cp=2
  fi
else
  not_run+=("bf16: needs runtime.device = cuda")
fi

echo "== summary"
for line in "${not_run[@]}"; do echo "not run: $line"; done
finish
