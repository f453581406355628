#!/bin/sh
# Tests of the sbx command as a user runs it: exit statuses, messages, outputs, no partial files.
# Usage: test_cli.sh PATH/TO/sbx SCRATCH_DIR
SBX=$1
T=$2
rm -rf "$T" && mkdir -p "$T" || exit 1
passed=0
failed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }

# expect STATUS NEEDLE -- command...: exit status and a text found in stdout+stderr.
expect() {
  want=$1 needle=$2
  shift 3
  "$@" >"$T/out" 2>&1
  got=$?
  if [ "$got" != "$want" ]; then bad "$* exited $got, wanted $want: $(cat "$T/out")"; return; fi
  if ! grep -qF -- "$needle" "$T/out"; then bad "$*: output lacks '$needle': $(cat "$T/out")"; return; fi
  ok
}

# same FILE EXPECTED_TEXT: the file holds exactly that text.
same() {
  printf '%s' "$2" >"$T/expected"
  if cmp -s "$1" "$T/expected"; then ok; else bad "$1 differs: $(cat "$1")"; fi
}

absent() { if [ -e "$1" ]; then bad "$1 exists"; else ok; fi; }

# Usage and help.
expect 2 "usage: sbx" -- "$SBX"
expect 0 "convert" -- "$SBX" --help
expect 2 "unknown subcommand 'frobnicate'" -- "$SBX" frobnicate
expect 0 "usage: sbx convert IN OUT" -- "$SBX" convert --help
expect 0 "usage: sbx info FILE" -- "$SBX" info -h
expect 2 "sbx: convert: needs an input and an output file" -- "$SBX" convert a.mtx
expect 2 "sbx: convert: unknown option '--bogus'" -- "$SBX" convert a.mtx b.npy --bogus
expect 2 "sbx: convert: option --format needs a value" -- "$SBX" convert a.mtx b.npy --format
expect 2 "format name 'coo' is unknown" -- "$SBX" convert a.mtx b.npy --format coo
expect 2 "dtype name 'float16' is unknown" -- "$SBX" convert a.mtx b.npy --dtype=float16
expect 2 "input 'a.txt' is neither .npy nor .mtx" -- "$SBX" convert a.txt b.npy
expect 2 "sbx: convert: unexpected argument 'c.npy'" -- "$SBX" convert a.mtx b.npy c.npy
expect 2 "sbx: info: needs exactly one file" -- "$SBX" info

# A small matrix: [[0 1.5 0] [2 0 -3]].
cat >"$T/a.mtx" <<'MTX'
%%MatrixMarket matrix coordinate real general
% a comment
2 3 3
2 3 -3
1 2 1.5
2 1 2
MTX
expect 0 "a.mtx -> " -- "$SBX" convert "$T/a.mtx" "$T/a.npy"
expect 0 "shape: 2 3" -- "$SBX" info "$T/a.npy"
expect 0 "nnz: 3" -- "$SBX" info "$T/a.npy"
expect 0 "-> " -- "$SBX" convert "$T/a.npy" "$T/csc.mtx" --format csc
same "$T/csc.mtx" "%%MatrixMarket matrix coordinate real general
2 3 3
2 1 2
1 2 1.5
2 3 -3
"
expect 0 "-> " -- "$SBX" convert "$T/a.mtx" "$T/csr.mtx"
same "$T/csr.mtx" "%%MatrixMarket matrix coordinate real general
2 3 3
1 2 1.5
2 1 2
2 3 -3
"
expect 0 "-> " -- "$SBX" convert "$T/a.npy" "$T/f.npy" --dtype float32
expect 0 "dtype: float32" -- "$SBX" info "$T/f.npy"
printf '%s\n' '%%MatrixMarket matrix coordinate integer general' '1 1 1' '1 1 7' >"$T/int.mtx"
expect 0 "dtype: int64" -- "$SBX" info "$T/int.mtx"
expect 0 "entries: 1" -- "$SBX" info "$T/int.mtx"
printf '%s\n' '%%MatrixMarket matrix coordinate real symmetric' '3 3 2' '2 1 4' '3 3 1' >"$T/sym.mtx"
expect 0 "nnz: 3" -- "$SBX" info "$T/sym.mtx"
expect 0 "format: mtx coordinate real symmetric" -- "$SBX" info "$T/sym.mtx"

# Failures: exit 1, a message naming the problem, no output file and no temporary left behind.
expect 1 "sbx: convert: input/output error: cannot open" -- "$SBX" convert "$T/missing.mtx" "$T/m.npy"
absent "$T/m.npy"
printf '%s\n' '%%MatrixMarket matrix coordinate real general' '2 2 2' '1 1 1' >"$T/short.mtx"
expect 1 "the file ends after 1 of the 2 entries" -- "$SBX" convert "$T/short.mtx" "$T/s.npy"
absent "$T/s.npy"
expect 1 "element 1 = 1.5 is not exactly representable as int8" -- "$SBX" convert "$T/a.npy" "$T/i8.npy" --dtype int8
absent "$T/i8.npy"
# An existing output survives a failed conversion untouched.
cp "$T/a.npy" "$T/keep.npy"
expect 1 "not exactly representable" -- "$SBX" convert "$T/a.mtx" "$T/keep.npy" --dtype uint8
if cmp -s "$T/a.npy" "$T/keep.npy"; then ok; else bad "keep.npy was changed by a failed conversion"; fi
expect 1 "cannot create a temporary file beside" -- "$SBX" convert "$T/a.mtx" "$T/no-such-dir/x.npy"
leftovers=$(ls "$T" | grep -c '\.npy\.\|\.mtx\.')
if [ "$leftovers" = 0 ]; then ok; else bad "temporary files left: $(ls "$T")"; fi
# A 3-d array cannot become a matrix. The .npy file is made by hand: its header is padded with spaces
# and a newline to a multiple of 64 bytes, the length being written in octal for printf.
dict="{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1), }"
hlen=$(((10 + ${#dict} + 1 + 63) / 64 * 64 - 10))
pad=$((hlen - ${#dict} - 1))
printf "\223NUMPY\001\000\\$(printf '%o' $hlen)\000%s%*s\n" "$dict" $pad '' >"$T/three.npy"
printf '\000\000\000\000\000\000\360\077' >>"$T/three.npy"
expect 0 "shape: 1 1 1" -- "$SBX" info "$T/three.npy"
expect 0 "nnz: 1" -- "$SBX" info "$T/three.npy"
expect 1 "3 dimensions, a sparse matrix needs 2" -- "$SBX" convert "$T/three.npy" "$T/three.mtx"
absent "$T/three.mtx"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
