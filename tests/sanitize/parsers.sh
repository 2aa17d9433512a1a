#!/usr/bin/env bash
# The input parsers under AddressSanitizer + UBSan, as the fault-injection campaign ran them:
# INI / command-line options and size bounds, config.json and safetensors (exports), HDF5
# checkpoints, llm.c token shards and HDF5 token files. A separate build of only these test
# targets (-DNEXUS_SANITIZE=ON, -O1) in BUILD_DIR; ccache makes a rebuild after a small change cheap.
#   usage: parsers.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
targets=(test_options test_size_bounds test_shard test_hdf5_tokens test_checkpoint test_export test_export_integrity)
start=$SECONDS
# No -Werror here: GCC 12's -Wmaybe-uninitialized misfires inside libstdc++'s <regex> when the
# sanitizers instrument it; the warning policy is the main build's job.
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS=-O1 -DNEXUS_SANITIZE=ON \
  -DNEXUS_WERROR=OFF -DNEXUS_CUDA=OFF >/dev/null  # the parsers are host code: no nvcc time here
if ! cmake --build "$build" -j2 --target "${targets[@]}" >"$build/build.log" 2>&1; then
  tail -40 "$build/build.log"
  echo "sanitizer build failed (log: $build/build.log)"
  exit 1
fi
echo "configure + build: $((SECONDS - start)) s"
# Any report fails the test: UBSan is recoverable by default, so it must be told to halt.
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for t in "${targets[@]}"; do
  "$build/tests/$t" --gtest_brief=1
done
echo "sanitizer parser tests passed in $((SECONDS - start)) s"
