#!/bin/sh
# sh tests/valgrind/run.sh BUILD: every C test executable of BUILD (test_* under BUILD/tests) under
# valgrind memcheck; fails on any memory error or any definite or indirect leak (or a failing test).
# `make test-valgrind` runs it on the gcc Release build.
#  - test_fit (goodness of fit) runs with 4096 draws per point, one chunk, instead of 3.5e8: every
#    sampler path runs, the statistics are the release build's job. Its fixed cost, the exact pmfs of
#    every point, is most of its time here.
#  - test_layers' finite-difference checks (test_gradients) take 4 coordinates of each array
#    (SBX_TEST_FD_POINTS=4) instead of every one: the same paths, about 435 s less under memcheck.
#  - The rest run as they are, VALGRIND_JOBS (default 2) at a time, the longest first (test_layers,
#    test_op_conv).
#  - OMP_WAIT_POLICY=passive: valgrind runs one thread at a time, and OpenMP threads spinning at a
#    barrier would only take its turns. Results do not depend on it.
#  - No suppressions: nothing outside the library gives an error. libgomp's worker threads leave their
#    TLS block (pthread_create's allocate_dtv) "possibly lost" at exit, which is not counted.
# Each test's log is BUILD/valgrind/NAME.log; a failing one is printed.
set -u
if [ $# -ne 1 ] || [ ! -d "$1/tests" ]; then
    echo "usage: sh tests/valgrind/run.sh BUILD (a configured and built build folder)" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
command -v valgrind >/dev/null 2>&1 || { echo "valgrind is not installed" >&2; exit 2; }
logs="$build/valgrind"
rm -rf "$logs"
mkdir -p "$logs/tmp"

# The executables, the longest first.
all=$(find "$build/tests" -type f -name 'test_*' -perm -u+x ! -name '*.*' | sort)
first=""
rest=""
for exe in $all; do
    case $(basename "$exe") in
    test_layers | test_op_conv) first="$first $exe" ;;
    *) rest="$rest $exe" ;;
    esac
done
[ -n "$first$rest" ] || { echo "no test executables under $build/tests" >&2; exit 2; }

start=$(date +%s)
# One executable: its log, a line with its time and verdict; exit status 1 when it failed.
one='
logs=$1 exe=$2
name=$(basename "$exe")
args=""
[ "$name" = test_fit ] && args=4096
t0=$(date +%s)
SBX_TEST_TMP="$logs/tmp" OMP_WAIT_POLICY=passive SBX_TEST_FD_POINTS=4 \
  valgrind --tool=memcheck --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
  --show-leak-kinds=definite,indirect --log-file="$logs/$name.log" "$exe" $args >"$logs/$name.out" 2>&1
rc=$?
t=$(( $(date +%s) - t0 ))
if [ $rc -eq 0 ]; then
    echo "valgrind: $name ok ($t s)"
else
    echo "valgrind: $name FAILED (exit $rc, $t s)"
    tail -n 30 "$logs/$name.out"
    cat "$logs/$name.log"
    exit 1
fi
'
# Lines appear as each test ends; the verdict is counted from them (a pipe would hide xargs's status).
printf '%s\n' $first $rest | xargs -P "${VALGRIND_JOBS:-2}" -n 1 sh -c "$one" sh "$logs" 2>&1 | tee "$logs/summary"
n=$(printf '%s\n' $first $rest | wc -l)
ok=$(grep -c '^valgrind: .* ok (' "$logs/summary")
echo "valgrind: $ok of $n executables clean, $(( $(date +%s) - start )) s in all"
[ "$ok" -eq "$n" ]
