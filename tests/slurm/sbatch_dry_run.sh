#!/usr/bin/env bash
# The Slurm templates without Slurm: each runs as its batch step would, with `srun` a stub on PATH
# that records its command line, and the test checks what would have run.
#   train.sbatch:     no GPU options, runtime on the CPU (the defaults of `nexus train`)
#   train_gpu.sbatch: one GPU per task, runtime.device = cuda, the transport option, the NCCL
#                     environment, and the restart options of train.sbatch (--resume latest)
#   usage: sbatch_dry_run.sh NEXUS_SOURCE_DIR                        (ctest label `slurm`)
set -uo pipefail
src=$(cd "${1:?usage: sbatch_dry_run.sh NEXUS_SOURCE_DIR}" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/nexus-sbatch-dry-run.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$work/bin"
cat >"$work/bin/srun" <<'STUB'
#!/usr/bin/env bash
printf '%s\n' "$@" >"$NEXUS_DRY_RUN_ARGS"
env | grep '^NCCL_' >"$NEXUS_DRY_RUN_ARGS.env" || true
STUB
chmod +x "$work/bin/srun"

# run TEMPLATE: the template as a batch step of job 1 with 2 tasks; its srun arguments land in $work/args.
run() {
  rm -f "$work/args" "$work/args.env"
  env -i PATH="$work/bin:$PATH" HOME="$work" NEXUS_DRY_RUN_ARGS="$work/args" SLURM_SUBMIT_DIR="$src" \
    SLURM_JOB_ID=1 SLURM_NTASKS=2 SLURM_JOB_NODELIST=node1 SLURM_CPUS_PER_TASK=4 \
    NEXUS_CP=2 NEXUS_OVERRIDES="--train.steps=3" bash "$src/launch/slurm/$1" >"$work/log" 2>&1 ||
    { cat "$work/log"; fail "$1 exited with status $?"; }
  [ -f "$work/args" ] || { cat "$work/log"; fail "$1 did not call srun"; }
}
has() { grep -qxF -- "$2" "$work/args" || { cat "$work/args"; fail "$1: srun was not given '$2'"; }; }
lacks() { ! grep -qF -- "$2" "$work/args" || { cat "$work/args"; fail "$1: srun was given '$2'"; }; }

for t in train.sbatch train_gpu.sbatch; do
  bash -n "$src/launch/slurm/$t" || fail "$t: syntax error"
done

run train.sbatch
for a in --mpi=pmix --kill-on-bad-exit=1 build/nexus train --parallel.cp=2 --train.steps=3 --resume latest; do
  has train.sbatch "$a"
done
lacks train.sbatch gpu
lacks train.sbatch runtime.device

run train_gpu.sbatch
for a in --mpi=pmix --kill-on-bad-exit=1 --gpus-per-task=1 build/nexus train --runtime.device=cuda \
  --parallel.transport=auto --parallel.cp=2 --train.steps=3 --resume latest; do
  has train_gpu.sbatch "$a"
done
grep -qxF NCCL_DEBUG=WARN "$work/args.env" || fail "train_gpu.sbatch: NCCL_DEBUG=WARN not in the step's environment"
grep -q '^#SBATCH --gpus-per-task=1$' "$src/launch/slurm/train_gpu.sbatch" ||
  fail "train_gpu.sbatch: no '#SBATCH --gpus-per-task=1'"
echo "ok: train.sbatch and train_gpu.sbatch launch what they should"
