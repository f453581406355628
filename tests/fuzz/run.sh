#!/bin/sh
# make fuzz: runs every fuzzer of BUILD (made with -DSBX_FUZZ=ON) for SECONDS seconds on a scratch copy
# of its seed corpus (tests/fuzz/corpus/<target>, which is never written), one job each. Exit status 1
# when any crashes, naming the fuzzer and the file holding the input; the scratch folders are kept
# under BUILD/fuzz-run.
#   sh tests/fuzz/run.sh BUILD SECONDS [TARGET...]
set -u
if [ $# -lt 2 ]; then
  echo "usage: $0 BUILD SECONDS [TARGET...]" >&2
  exit 2
fi
build=$1
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=${*:-"npy mtx idx sparse conv random graph"}
out=$build/fuzz-run
failed=""
# The sanitizers as `make test` runs them; libomp's worker descriptors are released only at exit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/../lsan.supp}
export SBX_NUM_THREADS=1
for t in $targets; do
  bin=$build/tests/fuzz/fuzz_$t
  if [ ! -x "$bin" ]; then
    echo "run.sh: $bin is missing (build the target fuzzers first)" >&2
    exit 2
  fi
  dir=$out/$t
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/crashes"
  cp "$here/corpus/$t"/* "$dir/corpus/" 2>/dev/null
  echo "== fuzz_$t: $seconds s"
  "$bin" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="$dir/crashes/" -print_final_stats=1 "$dir/corpus" >"$dir/log" 2>&1
  rc=$?
  grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)" "$dir/log" | \
    sed 's/^/   /'
  crash=$(ls "$dir/crashes" 2>/dev/null | head -n 1)
  if [ $rc -ne 0 ] || [ -n "$crash" ]; then
    echo "   FAILED: fuzz_$t (exit $rc), input in $dir/crashes/$crash; log in $dir/log"
    failed="$failed fuzz_$t"
  fi
done
if [ -n "$failed" ]; then
  echo "fuzzers that crashed:$failed"
  exit 1
fi
echo "no crash in: $targets"
