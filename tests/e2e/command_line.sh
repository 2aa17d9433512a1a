#!/usr/bin/env bash
# The `nexus` command as a user meets it: help, configuration errors (message and exit code),
# clean stops on SIGTERM / SIGUSR1, and attention neighborhoods through export, generate, inspect.   usage: command_line.sh NEXUS_BINARY SOURCE_DIR
set -uo pipefail
nexus=$1
src=$2
tiny="$src/configs/tiny.ini"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$src/tests/e2e/e2e_lib.sh"  # pass, fail, gone; Open MPI allowed to run as root

# expect_error NAME EXPECTED_TEXT COMMAND...: non-zero exit and the text in stderr.
expect_error() {
  local name=$1 text=$2
  shift 2
  if "$@" >"$work/out" 2>"$work/err"; then
    fail "$name: exited 0"
  elif grep -qF -- "$text" "$work/err"; then
    pass "$name"
  else
    fail "$name: stderr lacks '$text':"; cat "$work/err"
  fi
}

"$nexus" --help | grep -q "train" && pass "nexus --help" || fail "nexus --help"
"$nexus" train --help >"$work/help" && grep -q "train.steps" "$work/help" && grep -q "model.d_model" "$work/help" \
  && pass "nexus train --help lists options" || fail "nexus train --help"

expect_error "unknown key on the command line" "train.bogus" "$nexus" train --config "$tiny" --train.bogus=1
printf '[train]\nstepz = 3\n' >"$work/bad.ini"
expect_error "unknown key in a file" "stepz" "$nexus" train --config "$work/bad.ini"
expect_error "malformed value" "train.steps" "$nexus" train --config "$tiny" --train.steps=abc
expect_error "impossible batch" "global_batch" mpirun --oversubscribe -np 2 "$nexus" train --config "$tiny" \
  --train.global_batch=3 --train.micro_batch=1
expect_error "missing data file" "no_such_file.bin" "$nexus" train --config "$tiny" --data.source=shards \
  --data.path="$work/no_such_file.bin"
expect_error "unknown command" "unknown command" "$nexus" frobnicate
if [ "${NEXUS_HAS_CUDA:-0}" != 1 ]; then
  expect_error "cuda on a CPU-only build" "no CUDA backend" "$nexus" train --config "$tiny" --runtime.device=cuda
elif ! nvidia-smi -L >/dev/null 2>&1; then  # CI and the dev machine: the toolkit, no GPU
  expect_error "cuda with no GPU visible" "no CUDA device is visible" "$nexus" train --config "$tiny" --runtime.device=cuda
fi
expect_error "text is not a trainer source" "nexus data prepare" "$nexus" train --config "$tiny" --data.source=text \
  --data.path="$work/doc.txt"

# Impossible inputs are refused before any work, naming the key (or the file) and the problem.
expect_error "config given a directory" "is a directory" "$nexus" train --config "$src/configs"
# (Every absurd size of the issue is checked in test_size_bounds and test_options; these show the
# exit path of the command.)
for kv in model.n_layers=1000000000 model.mamba_expand=9223372036854775807; do
  expect_error "absurd ${kv%%=*}" "${kv%%=*} = ${kv#*=} is out of range" "$nexus" train --config "$tiny" --"$kv" \
    --train.out_dir="$work/absurd"
done
expect_error "seq_len * micro_batch past the bound" "train.seq_len = 4611686018427387904 is out of range" \
  "$nexus" train --config "$tiny" --train.seq_len=4611686018427387904 --train.micro_batch=16
expect_error "more memory than the machine has" "GiB is available" "$nexus" train --config "$tiny" \
  --model.d_model=65536 --model.n_layers=1024 --train.out_dir="$work/huge"
if ! grep -qE "needs [0-9.]+ GiB \(parameters" "$work/err"; then fail "memory refusal shows the need"; cat "$work/err"; fi
mkdir -p "$work/empty"
expect_error "--resume DIR with nothing to resume" "--resume $work/empty: no checkpoint there" "$nexus" train \
  --config "$tiny" --train.steps=1 --train.out_dir="$work/resume_empty" --resume "$work/empty"
if "$nexus" train --config "$tiny" --train.steps=1 --train.eval_every=0 --train.out_dir="$work/fresh" --resume latest >"$work/fresh.log" 2>&1 &&
  grep -q "no checkpoint in $work/fresh/checkpoints (checkpoint.dir) yet, starting fresh" "$work/fresh.log"; then
  pass "--resume latest with nothing there starts fresh and says so"
else
  fail "--resume latest fresh start"; tail -3 "$work/fresh.log"
fi

# data prepare: text files to llm.c shards; usage errors named.
printf 'first document\n\nsecond document, a little longer\n' >"$work/doc.txt"
if "$nexus" data prepare --out "$work/shards/doc" --shard-tokens=16 --separator $'\n\n' "$work/doc.txt" >"$work/prep" &&
  [ -s "$work/shards/doc_val_000000.bin" ] && [ -s "$work/shards/doc_train_000001.bin" ]; then
  pass "data prepare writes val and train shards"
else
  fail "data prepare"; cat "$work/prep"
fi
if "$nexus" train --config "$tiny" --data.source=shards --data.path="$work/shards" --model.vocab_size=257 \
  --train.seq_len=8 --train.global_batch=2 --train.micro_batch=1 --train.steps=1 --train.eval_every=0 \
  --train.out_dir="$work/dirdata" >"$work/dirdata.log" 2>&1; then
  pass "data.path = DIR trains on the shards in it"
else
  fail "data.path = DIR"; tail -3 "$work/dirdata.log"
fi
expect_error "data prepare: unknown option" "unknown option --bogus" "$nexus" data prepare --bogus "$work/doc.txt"
expect_error "data prepare: bad number" "--shard-tokens x is not an integer" "$nexus" data prepare --out "$work/x" \
  --shard-tokens x "$work/doc.txt"

# A stop signal ends the run at the next step boundary with a checkpoint (even with periodic
# checkpoints off) and exit code 0.
stop_test() {
  local name=$1 signal=$2
  shift 2
  "$@" --config "$tiny" --train.steps=100000 --train.log_every=1 --checkpoint.every=0 \
    --train.out_dir="$work/$name" >"$work/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 600); do
    grep -q '"step"' "$work/$name/metrics.jsonl" 2>/dev/null && break
    sleep 0.1
  done
  kill -"$signal" "$pid"
  if wait "$pid" && grep -q "stop requested by signal" "$work/$name.log" &&
    compgen -G "$work/$name/checkpoints/step_*.h5" >/dev/null; then
    pass "$name"
  else
    fail "$name"; tail -5 "$work/$name.log"
  fi
}
stop_test "SIGTERM stops cleanly" TERM "$nexus" train
stop_test "SIGUSR1 through mpirun stops cleanly" USR1 mpirun --oversubscribe -np 2 "$nexus" train
# The documented stop path under plain mpirun: SIGTERM to launch/mpirun.sh (mpirun itself would
# kill the ranks mid-step and exit 1).
NEXUS="$nexus" stop_test "SIGTERM to launch-mpirun.sh stops cleanly" TERM bash "$src/launch/mpirun.sh" 2 train

# A stop signal during setup (here held at a failpoint) ends the process at once, with a message.
NEXUS_FAILPOINT=train_setup:pause "$nexus" train --config "$tiny" --train.out_dir="$work/setup" >"$work/setup.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do grep -q "failpoint train_setup: pausing" "$work/setup.log" && break; sleep 0.1; done
kill -TERM "$pid"
start=$(date +%s%N)
wait "$pid"
status=$?
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
if [ "$status" -eq 143 ] && ((elapsed_ms < 2000)) && grep -q "SIGTERM during setup" "$work/setup.log"; then
  pass "SIGTERM during setup ends promptly ($elapsed_ms ms)"
else
  fail "SIGTERM during setup: exit $status after $elapsed_ms ms"; tail -3 "$work/setup.log"
fi

# kill -9 of mpirun: the orphaned ranks stop within a second and publish no new checkpoint
# (before: they trained on and wrote checkpoints for a second or more).
# kill(2) returns before mpirun is dead, and a rank may have asked launcher_gone() a moment before
# its parent died and be renaming that step's file now: that one checkpoint was in flight at the
# launcher's death and may land. So the reference point is mpirun reaped (the kernel re-parents
# its ranks before it tells us), and at most that one in-flight step may follow it; a rank that
# trained on (the bug) publishes dozens more within the 0.5 s watched here (tiny steps, every=1).
newest_step() { ls "$1" 2>/dev/null | grep -E '^step_[0-9]+\.h5$' | sort | tail -1; }
step_number() { local s=${1#step_}; s=${s%.h5}; echo $((10#${s:-0})); }
mpirun --oversubscribe -np 2 "$nexus" train --config "$tiny" --train.steps=100000 --train.log_every=1 \
  --checkpoint.every=1 --checkpoint.keep=0 --train.out_dir="$work/orphan" >"$work/orphan.log" 2>&1 &
launcher=$!
for _ in $(seq 1 600); do [ -n "$(newest_step "$work/orphan/checkpoints")" ] && break; sleep 0.1; done
ranks=$(pgrep -P "$launcher" | tr '\n' ' ')
start=$(date +%s%N)
kill -KILL "$launcher"
wait "$launcher" 2>/dev/null
at_kill=$(newest_step "$work/orphan/checkpoints")
for _ in $(seq 1 100); do gone $ranks && break; sleep 0.02; done
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
sleep 0.5  # anything a surviving rank would still publish
after=$(newest_step "$work/orphan/checkpoints")
published=$(( $(step_number "$after") - $(step_number "$at_kill") ))
if [ -n "$ranks" ] && gone $ranks && ((elapsed_ms < 1000)) && [ -n "$at_kill" ] && ((published <= 1)); then
  pass "ranks stop without publishing when mpirun is killed ($elapsed_ms ms, $published in-flight step landed)"
else
  fail "ranks after kill -9 of mpirun: ranks '$ranks', ${elapsed_ms} ms, newest checkpoint $at_kill -> $after"
fi

# A damaged export is refused (non-zero exit, the tensor named), never evaluated as "loss: nan".
if "$nexus" export "$work/SIGTERM stops cleanly/checkpoints" --out "$work/hf" --dtype fp32 >/dev/null 2>&1; then
  python3 - "$work/hf/model.safetensors" <<'PY'
import struct, sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", data[:8])[0]
data[8 + n + (len(data) - 8 - n) // 2] ^= 0x40  # one bit in the middle of the weights
open(path, "wb").write(data)
PY
  expect_error "bit flip in an export" "fails its checksum" "$nexus" eval --model "$work/hf" --tokens 1,2,3
else
  fail "export for the bit-flip check"
fi

# Attention neighborhoods: a short sliding-window run; export refuses it without --allow-lossy
# (writing nothing) and keeps it in config.json with it; generate reads it back and bounds its KV
# cache; inspect --receptive-field checks the closed form and writes the plot.
if "$nexus" train --config "$tiny" --model.attention_neighborhood=sliding:4 --train.steps=4 --train.ckpt_every=4 \
  --train.out_dir="$work/nb" >"$work/nb.log" 2>&1; then
  pass "train with a sliding window"
else
  fail "train with a sliding window"; tail -5 "$work/nb.log"
fi
expect_error "export refuses a sliding window" "--allow-lossy" "$nexus" export "$work/nb/checkpoints" --out "$work/nb_hf"
[ ! -e "$work/nb_hf/config.json" ] && pass "a refused export writes nothing" || fail "a refused export wrote config.json"
if "$nexus" export "$work/nb/checkpoints" --out "$work/nb_hf" --allow-lossy >"$work/nb_export" 2>&1 &&
  grep -q '"attention_neighborhood": "sliding:4"' "$work/nb_hf/config.json"; then
  pass "export --allow-lossy keeps the neighborhood in config.json"
else
  fail "export --allow-lossy"; cat "$work/nb_export"
fi
if "$nexus" generate --model "$work/nb_hf" --tokens 3,12,5,9,0,0,5 --max-new-tokens 40 --temperature 0 \
  >"$work/nb_gen" 2>"$work/nb_gen_err" && grep -q "sliding:4; KV cache 2 blocks of 16 tokens (bounded" "$work/nb_gen_err"; then
  pass "generate reads the neighborhood back and bounds its cache"
else
  fail "generate with a sliding window"; cat "$work/nb_gen_err"
fi
if "$nexus" inspect --receptive-field "$tiny" --model.n_layers=4 --model.pattern=AAAA \
  --model.attention_neighborhood=sliding:9 --seq-len 100 --out "$work/rf.png" >"$work/rf" 2>&1 &&
  grep -q "closed form: reach after l layers = min(l \* 8, T - 1): matches" "$work/rf" && [ -s "$work/rf.png" ]; then
  pass "inspect --receptive-field"
else
  fail "inspect --receptive-field"; cat "$work/rf"
fi
expect_error "inspect --receptive-field: bad neighborhood" 'model.attention_neighborhood = "dilated:2"' \
  "$nexus" inspect --receptive-field "$tiny" --model.attention_neighborhood=dilated:2

if ((failures)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all command-line checks passed"
