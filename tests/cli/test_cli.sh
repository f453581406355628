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

# sbx indices: the golden case ci_ws0_in2_2x3_k2x2_s2x2_valid_n2, written by hand.
expect 0 "spmat_shape: 2 6" -- "$SBX" indices --inshp 2,3 --kshp 2,2 --step 2,2 --no-ws --nkern 2 -o "$T/ci.mtx" --kmap "$T/kmap.npy"
same "$T/ci.mtx" "%%MatrixMarket matrix coordinate integer general
2 6 8
1 1 1
2 1 5
1 2 2
2 2 6
1 4 3
2 4 7
1 5 4
2 5 8
"
expect 0 "size: 8" -- "$SBX" info "$T/kmap.npy"
expect 0 "outshp: 10 5 5" -- "$SBX" indices --inshp 2,8,8,8 --kshp 3,3,3 --stride 1,2,2 --mode full -o "$T/nd.mtx"
expect 0 "nnz: 6912" -- "$SBX" info "$T/nd.mtx"
# Step (dx, dy) against stride (sy, sx): the same matrix.
expect 0 "outshp: 3 7" -- "$SBX" indices --inshp 6,9 --kshp 2,3 --step 1,2 -o "$T/step.mtx"
expect 0 "outshp: 3 7" -- "$SBX" indices --inshp 6,9 --kshp 2,3 --stride 2,1 -o "$T/stride.mtx"
if cmp -s "$T/step.mtx" "$T/stride.mtx"; then ok; else bad "--step 1,2 and --stride 2,1 differ"; fi
expect 2 "gives an empty output for image (4,4)" -- "$SBX" indices --inshp 1,4,4 --kshp 5,5 -o "$T/e.mtx"
absent "$T/e.mtx"
expect 2 "kernel shape[1] = 0" -- "$SBX" indices --inshp 1,4,4 --kshp 5,0 -o "$T/e.mtx"
expect 2 "stride[0] = 0" -- "$SBX" indices --inshp 1,4,4 --kshp 2,2 --step 1,0 -o "$T/e.mtx"
expect 2 "--step (dx, dy) is for 2-d kernels" -- "$SBX" indices --inshp 1,4,4,4 --kshp 2,2,2 --step 1,1 -o "$T/e.mtx"
expect 2 "give --step or --stride, not both" -- "$SBX" indices --inshp 4,4 --kshp 2,2 --step 1,1 --stride 1,1 -o "$T/e.mtx"
expect 2 "--nkern 3 needs --no-ws" -- "$SBX" indices --inshp 4,4 --kshp 2,2 --nkern 3 -o "$T/e.mtx"
expect 2 "nkern 0 must be >= 1" -- "$SBX" indices --inshp 4,4 --kshp 2,2 --nkern 0 --no-ws -o "$T/e.mtx"
expect 2 "must have as many entries as --kshp" -- "$SBX" indices --inshp 1,1,4,4 --kshp 2,2 -o "$T/e.mtx"
expect 2 "--inshp '4,x' is not a list" -- "$SBX" indices --inshp 4,x --kshp 2,2 -o "$T/e.mtx"
expect 2 "mode 'same' is unknown" -- "$SBX" indices --inshp 4,4 --kshp 2,2 --mode same -o "$T/e.mtx"
expect 2 "needs -o M.mtx" -- "$SBX" indices --inshp 4,4 --kshp 2,2
expect 2 "needs --inshp and --kshp" -- "$SBX" indices --kshp 2,2 -o "$T/e.mtx"
expect 2 "must be a .npy file" -- "$SBX" indices --inshp 4,4 --kshp 2,2 -o "$T/e.mtx" --kmap "$T/k.mtx"
expect 1 "overflows int64" -- "$SBX" indices --inshp 3037000499,3037000499 --kshp 7,7 -o "$T/e.mtx"
absent "$T/e.mtx"

# sbx convolve / local / maxpool: a 1 x 2 x 2 image of ones (float64, the header padded to 64 bytes).
dict="{'descr': '<f8', 'fortran_order': False, 'shape': (1, 4), }"
hlen=$(((10 + ${#dict} + 1 + 63) / 64 * 64 - 10))
pad=$((hlen - ${#dict} - 1))
printf "\223NUMPY\001\000\\$(printf '%o' $hlen)\000%s%*s\n" "$dict" $pad '' >"$T/ones.npy"
printf '\000\000\000\000\000\000\360\077%.0s' 1 2 3 4 >>"$T/ones.npy"
expect 0 "outshp: 1 1 1" -- "$SBX" convolve --images "$T/ones.npy" --imgshp 2,2 --kerns "$T/ones.npy" --kshp 2,2 --nkern 1 -o "$T/c.npy"
expect 0 "shape: 1 1" -- "$SBX" info "$T/c.npy"
expect 0 "outshp: 1 3 3" -- "$SBX" convolve --images "$T/ones.npy" --imgshp 2,2 --kerns "$T/ones.npy" --kshp 2,2 --nkern 1 --mode full --no-flatten -o "$T/c3.npy"
expect 0 "shape: 1 1 9" -- "$SBX" info "$T/c3.npy"
expect 0 "outshp: 1 1" -- "$SBX" maxpool --images "$T/ones.npy" --imgshp 1,2,2 --poolshp 2,2 -o "$T/m.npy"
dict="{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }"
pad=$((hlen - ${#dict} - 1))
printf "\223NUMPY\001\000\\$(printf '%o' $hlen)\000%s%*s\n" "$dict" $pad '' >"$T/vec.npy"
printf '\000\000\000\000\000\000\360\077%.0s' 1 2 3 4 >>"$T/vec.npy"
expect 0 "outshp: 1 1" -- "$SBX" local --images "$T/ones.npy" --imgshp 2,2 --kerns "$T/vec.npy" --kshp 2,2 --nkern 1 -o "$T/l.npy" --grad-out "$T/c.npy" --grad-kerns "$T/lk.npy"
expect 0 "shape: 4" -- "$SBX" info "$T/lk.npy"
expect 1 "kerns must be 1 x 4; it is not 2-d" -- "$SBX" convolve --images "$T/ones.npy" --imgshp 2,2 --kerns "$T/kmap.npy" --kshp 2,2 --nkern 1 -o "$T/bad.npy"
absent "$T/bad.npy"
expect 1 "images must be batch x 9; it is 1 x 4" -- "$SBX" convolve --images "$T/ones.npy" --imgshp 3,3 --kerns "$T/ones.npy" --kshp 2,2 --nkern 1 -o "$T/bad.npy"
expect 1 "kerns must be a vector of 4 entries" -- "$SBX" local --images "$T/ones.npy" --imgshp 2,2 --kerns "$T/ones.npy" --kshp 2,2 --nkern 1 -o "$T/bad.npy"
expect 1 "--bias" -- "$SBX" convolve --images "$T/ones.npy" --imgshp 2,2 --kerns "$T/ones.npy" --kshp 2,2 --nkern 1 --bias "$T/missing.npy" -o "$T/bad.npy"
expect 1 "dtype int64: layers compute in float32 or float64" -- "$SBX" maxpool --images "$T/kmap.npy" --imgshp 2,4 --poolshp 2,2 -o "$T/bad.npy"
absent "$T/bad.npy"
expect 2 "needs --images, --kerns, --nkern and -o" -- "$SBX" convolve --images "$T/ones.npy"
expect 2 "--nkern '0' must be a positive integer" -- "$SBX" convolve --images a.npy --kerns b.npy --nkern 0 -o c.npy
expect 2 "--grad-out needs at least one of" -- "$SBX" convolve --images a.npy --kerns b.npy --nkern 1 -o c.npy --grad-out g.npy
expect 2 "need --grad-out" -- "$SBX" local --images a.npy --kerns b.npy --nkern 1 -o c.npy --grad-kerns g.npy
expect 2 "gives an empty output" -- "$SBX" convolve --images "$T/ones.npy" --imgshp 2,2 --kerns "$T/ones.npy" --kshp 3,3 --nkern 1 -o "$T/bad.npy"
expect 2 "takes --stride (shape order), not --step" -- "$SBX" maxpool --images "$T/ones.npy" --imgshp 2,2 --poolshp 2,2 --step 1,1 -o "$T/bad.npy"
expect 2 "--grad-out and --grad-images go together" -- "$SBX" maxpool --images "$T/ones.npy" --imgshp 2,2 --poolshp 2,2 --grad-out g.npy -o "$T/bad.npy"
expect 2 "without --stride" -- "$SBX" maxpool --images "$T/ones.npy" --imgshp 1,1,2,2 --poolshp 2,2,2 -o "$T/bad.npy"

# sbx sample: reproducible from the seed, whatever the thread count.
expect 0 "shape: 300 200" -- env SBX_NUM_THREADS=1 "$SBX" sample binomial --n 5 --p 0.25 --shape 300,200 --seed 11 -o "$T/b1.mtx"
expect 0 "nnz: " -- env SBX_NUM_THREADS=2 "$SBX" sample binomial --n 5 --p 0.25 --shape 300,200 --seed 11 -o "$T/b2.mtx"
if cmp -s "$T/b1.mtx" "$T/b2.mtx"; then ok; else bad "sample binomial differs between 1 and 2 threads"; fi
expect 0 "nnz: " -- "$SBX" sample binomial --n 5 --p 0.25 --shape 300,200 --seed 12 -o "$T/b3.mtx"
if cmp -s "$T/b1.mtx" "$T/b3.mtx"; then bad "seeds 11 and 12 gave the same matrix"; else ok; fi
expect 0 "shape: 300 200" -- "$SBX" sample poisson --x "$T/b1.mtx" --format csc --seed 3 -o "$T/p.mtx"
expect 0 "format: mtx coordinate real general" -- "$SBX" info "$T/p.mtx"
expect 0 "nnz: " -- "$SBX" sample multinomial --n 4 --p "$T/b1.mtx" --renormalize -o "$T/m.mtx"
expect 0 "dtype: int64" -- sh -c "\"$SBX\" sample binomial --n 3 --p 0.5 --shape 5,5 --dtype int32 -o \"$T/bi.mtx\" >/dev/null && \"$SBX\" info \"$T/bi.mtx\""
expect 1 "row 0 sums to" -- "$SBX" sample multinomial --n 4 --p "$T/b1.mtx" -o "$T/bad.mtx"
absent "$T/bad.mtx"
printf '%s\n' '%%MatrixMarket matrix coordinate real general' '2 2 1' '2 1 -5' >"$T/negative.mtx"
expect 1 "stored value 0 (row 1) = -5 is not a mean" -- "$SBX" sample poisson --x "$T/negative.mtx" -o "$T/bad.mtx"
expect 2 "binomial p = 1.5 is outside [0, 1]" -- "$SBX" sample binomial --n 5 --p 1.5 --shape 3,3 -o "$T/bad.mtx"
expect 2 "draws up to n do not fit int8" -- "$SBX" sample binomial --n 500 --p 0.5 --shape 3,3 --dtype int8 -o "$T/bad.mtx"
expect 2 "binomial needs --n, --p and --shape" -- "$SBX" sample binomial --n 5 -o "$T/bad.mtx"
expect 2 "unknown distribution 'gauss'" -- "$SBX" sample gauss -o "$T/bad.mtx"
expect 2 "one of --n, --n-file" -- "$SBX" sample multinomial --p "$T/b1.mtx" -o "$T/bad.mtx"
expect 2 "--seed '-3' must be a non-negative integer" -- "$SBX" sample binomial --n 1 --p 0.5 --shape 2,2 --seed -3 -o "$T/bad.mtx"
absent "$T/bad.mtx"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
