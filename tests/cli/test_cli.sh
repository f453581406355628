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
expect 1 "holds a 3-d array; a .mtx file holds a 2-d matrix" -- "$SBX" convert "$T/three.npy" "$T/three.mtx"
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

# PNG images in, pictures out (sbx convolve, local, maxpool). First what needs no python3: a picture
# the tool draws (ones.npy as one 2 x 2 map: constant, so mid-gray), read back as an image.
expect 0 "usage: sbx convolve --images X.npy|X.png [--imgshp C,H,W]" -- "$SBX" convolve --help
expect 0 "X.png: a batch of one float32 image, each sample scaled to [0, 1]" -- "$SBX" convolve --help
expect 0 "alpha and transparency are dropped" -- "$SBX" maxpool --help
expect 0 "each map scaled to its own min..max" -- "$SBX" maxpool --help
expect 0 "output: $T/flat.png: a 2 x 2 picture of the 1 feature map of image 1 of 1" -- "$SBX" maxpool --images "$T/ones.npy" --imgshp 2,2 --poolshp 1,1 --stride 1,1 -o "$T/flat.png"
expect 0 "imgshp: 1 2 2" -- "$SBX" maxpool --images "$T/flat.png" --poolshp 1,1 --stride 1,1 -o "$T/flat.npy"
expect 0 "dtype: float32" -- "$SBX" info "$T/flat.npy"
expect 0 "shape: 1 4" -- "$SBX" info "$T/flat.npy"
expect 0 "outshp: 1 1 1" -- "$SBX" convolve --images "$T/flat.png" --imgshp 2,2 --kerns "$T/ones.npy" --kshp 2,2 --nkern 1 -o "$T/fc.npy"
expect 0 "outshp: 1 1" -- "$SBX" maxpool --images "$T/flat.png" --imgshp 1,2,2 --poolshp 2,2 -o "$T/fm.npy"
expect 0 "a 1 x 1 picture of the 1 feature map" -- "$SBX" convolve --images "$T/flat.png" --kerns "$T/ones.npy" --kshp 2,2 --nkern 1 -o "$T/fc.png"
# Outputs get the mode of any new file (0666 less the umask), not mkstemp's 0600.
(umask 022 && "$SBX" maxpool --images "$T/flat.png" --poolshp 1,1 --stride 1,1 -o "$T/mode.png" >/dev/null)
case $(ls -l "$T/mode.png") in -rw-r--r--*) ok ;; *) bad "mode.png: $(ls -l "$T/mode.png")" ;; esac
# Bad PNGs: exit 1, the file named, nothing written.
printf 'not a picture\n' >"$T/text.png"
expect 1 "sbx: maxpool: --images '$T/text.png': it is not a PNG file: it does not begin with the PNG signature" -- "$SBX" maxpool --images "$T/text.png" --poolshp 1,1 -o "$T/bad.png"
: >"$T/empty.png"
expect 1 "--images '$T/empty.png': it is not a PNG file: it is empty" -- "$SBX" maxpool --images "$T/empty.png" --poolshp 1,1 -o "$T/bad.png"
head -c 45 "$T/flat.png" >"$T/trunc.png"
expect 1 "sbx: convolve: --images '$T/trunc.png': it is truncated" -- "$SBX" convolve --images "$T/trunc.png" --kerns "$T/ones.npy" --kshp 2,2 --nkern 1 -o "$T/bad.png"
head -c 5 "$T/flat.png" >"$T/sig.png"
expect 1 "--images '$T/sig.png': it is truncated: the file ends inside the PNG signature" -- "$SBX" maxpool --images "$T/sig.png" --poolshp 1,1 -o "$T/bad.npy"
expect 1 "--images '$T/missing.png': cannot open it" -- "$SBX" maxpool --images "$T/missing.png" --poolshp 1,1 -o "$T/bad.png"
absent "$T/bad.png"
absent "$T/bad.npy"
# An existing picture survives a failed run untouched.
cp "$T/flat.png" "$T/keep.png"
expect 1 "it is truncated" -- "$SBX" maxpool --images "$T/trunc.png" --poolshp 1,1 -o "$T/keep.png"
if cmp -s "$T/flat.png" "$T/keep.png"; then ok; else bad "keep.png was changed by a failed run"; fi
# Bad usage with a PNG: exit 2.
expect 2 "sbx: maxpool: --imgshp '1,3,3' disagrees with the PNG '$T/flat.png', whose shape (C,H,W) is 1,2,2" -- "$SBX" maxpool --images "$T/flat.png" --imgshp 1,3,3 --poolshp 1,1 -o "$T/bad.png"
expect 2 "--imgshp '3,2' disagrees with the PNG '$T/flat.png', whose shape (C,H,W) is 1,2,2" -- "$SBX" convolve --images "$T/flat.png" --imgshp 3,2 --kerns "$T/ones.npy" --kshp 2,2 --nkern 1 -o "$T/bad.npy"
expect 2 "--imgshp '2,x' is not a list" -- "$SBX" convolve --images "$T/flat.png" --imgshp 2,x --kerns "$T/ones.npy" --kshp 2,2 --nkern 1 -o "$T/bad.png"
expect 2 "the PNG '$T/flat.png' is a 2-d image: --kshp must have two entries, not '1,1,1'" -- "$SBX" convolve --images "$T/flat.png" --kerns "$T/ones.npy" --kshp 1,1,1 --nkern 1 -o "$T/bad.png"
expect 2 "sbx: maxpool: needs --poolshp" -- "$SBX" maxpool --images "$T/flat.png" -o "$T/bad.png"
expect 2 "-o '$T/bad.jpg' must be a .npy or .png file" -- "$SBX" maxpool --images "$T/flat.png" --poolshp 1,1 -o "$T/bad.jpg"
expect 2 "--images '$T/x.jpg' must be a .npy or .png file" -- "$SBX" convolve --images "$T/x.jpg" --kerns "$T/ones.npy" --kshp 2,2 --nkern 1 -o "$T/bad.png"
expect 2 "--no-flatten shapes a .npy output, not the picture -o '$T/bad.png'" -- "$SBX" convolve --images "$T/flat.png" --kerns "$T/ones.npy" --kshp 2,2 --nkern 1 --no-flatten -o "$T/bad.png"
expect 2 "--grad-images '$T/g.png' must be a .npy file" -- "$SBX" maxpool --images "$T/flat.png" --poolshp 1,1 -o "$T/bad.png" --grad-out "$T/fm.npy" --grad-images "$T/g.png"
expect 2 "--grad-kerns '$T/g.png' must be a .npy file" -- "$SBX" convolve --images "$T/flat.png" --kerns "$T/ones.npy" --kshp 2,2 --nkern 1 -o "$T/bad.png" --grad-out "$T/fc.npy" --grad-kerns "$T/g.png"
expect 2 "a picture shows 1-d or 2-d feature maps; these are 3-d (write .npy)" -- "$SBX" maxpool --images "$T/three.npy" --imgshp 1,1,1 --poolshp 1,1,1 --stride 1,1,1 -o "$T/bad.png"
absent "$T/bad.png"
absent "$T/g.png"
# The picture is of the first image: an empty batch has none.
dict="{'descr': '<f8', 'fortran_order': False, 'shape': (0, 4), }"
hlen=$(((10 + ${#dict} + 1 + 63) / 64 * 64 - 10))
pad=$((hlen - ${#dict} - 1))
printf "\223NUMPY\001\000\\$(printf '%o' $hlen)\000%s%*s\n" "$dict" $pad '' >"$T/none.npy"
expect 1 "sbx: maxpool: -o '$T/bad.png': the batch is empty: there is no image to draw" -- "$SBX" maxpool --images "$T/none.npy" --imgshp 2,2 --poolshp 1,1 -o "$T/bad.png"
absent "$T/bad.png"

# check COMMAND...: it succeeds (its output is shown when it does not).
check() {
  if "$@" >"$T/out" 2>&1; then ok; else bad "$*: $(cat "$T/out")"; fi
}

# With python3: PNGs of every kind written by hand, and the pictures decoded and checked pixel by
# pixel against the .npy output of the same run.
if command -v python3 >/dev/null 2>&1; then
  cat >"$T/pngtool.py" <<'PY'
# PNG helpers for test_cli.sh, standard library only (zlib, struct).
#   make DIR               writes the test PNGs and .npy files, and NAME.expect: the float32 values sbx
#                          should read from NAME.png (one per line, maps one after another)
#   check-npy NPY EXPECT   the .npy holds exactly those values, float32, shape (1, n)
#   check-grid PNG NPY MAPS H W
#                          PNG is the grid sbx draws of the first row of NPY (MAPS maps of H x W)
#   pixels PNG             prints an 8-bit grayscale PNG's pixels, a line per row
import ast, math, struct, sys, zlib


def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)


CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png(w, h, depth, ctype, rows, extra=b'', interlaced=False):
    """rows: h lists of w * channels samples."""
    ch = CHANNELS[ctype]

    def pack(samples):
        if depth == 16:
            return b''.join(struct.pack('>H', s) for s in samples)
        if depth == 8:
            return bytes(samples)
        out, acc, n = bytearray(), 0, 0
        for s in samples:
            acc, n = acc << depth | s, n + depth
            if n == 8:
                out.append(acc)
                acc = n = 0
        if n:
            out.append(acc << (8 - n))
        return bytes(out)

    raw = b''
    if interlaced:  # Adam7: seven passes, each a small image of its own
        for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
            xs = range(x0, w, dx)
            for y in range(y0, h, dy) if xs else ():
                raw += b'\0' + pack([s for x in xs for s in rows[y][x * ch:(x + 1) * ch]])
    else:
        raw = b''.join(b'\0' + pack(r) for r in rows)
    ihdr = struct.pack('>IIBBBBB', w, h, depth, ctype, 0, 0, int(interlaced))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + extra + chunk(b'IDAT', zlib.compress(raw)) +
            chunk(b'IEND', b''))


def f32(v):
    return struct.unpack('<f', struct.pack('<f', v))[0]


def npy(path, values, shape, code='<f8'):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (code, ''.join('%d, ' % n for n in shape))
    header += ' ' * ((10 + len(header) + 1 + 63) // 64 * 64 - 10 - len(header) - 1) + '\n'
    body = struct.pack('<%d%s' % (len(values), {'<f4': 'f', '<f8': 'd'}[code]), *values)
    open(path, 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(header)) + header.encode() + body)


def read_npy(path):
    data = open(path, 'rb').read()
    assert data[:6] == b'\x93NUMPY', path
    if data[6] == 1:
        n, start = struct.unpack('<H', data[8:10])[0], 10
    else:
        n, start = struct.unpack('<I', data[8:12])[0], 12
    h = ast.literal_eval(data[start:start + n].decode())
    count = 1
    for e in h['shape']:
        count *= e
    code = {'<f4': 'f', '<f8': 'd'}[h['descr']]
    return h['descr'], h['shape'], struct.unpack('<%d%s' % (count, code), data[start + n:start + n + count * struct.calcsize(code)])


def make(d):
    def lcg(seed):
        while True:
            seed = (seed * 1103515245 + 12345) % 2 ** 31
            yield seed >> 8
    def save(name, w, h, depth, ctype, rows, maps, extra=b'', interlaced=False):
        """maps(x, y) -> the feature-map samples of the pixel (alpha dropped) and the largest sample."""
        open('%s/%s.png' % (d, name), 'wb').write(png(w, h, depth, ctype, rows, extra, interlaced))
        per = [maps(x, y) for y in range(h) for x in range(w)]
        top = 2 ** depth - 1 if ctype != 3 else 255
        with open('%s/%s.expect' % (d, name), 'w') as f:
            for c in range(len(per[0])):
                for p in per:
                    f.write(repr(f32(p[c] / top)) + '\n')
    r = lcg(7)
    g8 = [[(37 * x + 11 * y * y) % 256 for x in range(6)] for y in range(5)]
    save('g8', 6, 5, 8, 0, g8, lambda x, y: [g8[y][x]])
    g16 = [[(x * 13107 + y * 4001 + 7) % 65536 for x in range(5)] for y in range(4)]
    save('g16', 5, 4, 16, 0, g16, lambda x, y: [g16[y][x]])
    g1 = [[(x * y + x) % 2 for x in range(9)] for y in range(3)]
    save('g1', 9, 3, 1, 0, g1, lambda x, y: [g1[y][x]])
    g4 = [[(x + 5 * y) % 16 for x in range(7)] for y in range(2)]
    save('g4', 7, 2, 4, 0, g4, lambda x, y: [g4[y][x]])
    ga = [[v for x in range(4) for v in ((60 * x + y) % 256, 255 - 80 * y)] for y in range(3)]
    save('ga8', 4, 3, 8, 4, ga, lambda x, y: [ga[y][2 * x]])
    rgb = [[next(r) % 256 for _ in range(7 * 3)] for y in range(5)]
    save('rgb8', 7, 5, 8, 2, rgb, lambda x, y: rgb[y][3 * x:3 * x + 3])
    rgba = [[next(r) % 65536 for _ in range(4 * 4)] for y in range(4)]
    save('rgba16', 4, 4, 16, 6, rgba, lambda x, y: rgba[y][4 * x:4 * x + 3])
    palette = [(255, 0, 0), (0, 128, 255), (10, 20, 30), (200, 200, 200)]
    idx = [[(x + 2 * y) % 4 for x in range(5)] for y in range(3)]
    extra = chunk(b'PLTE', bytes(v for p in palette for v in p)) + chunk(b'tRNS', bytes([0, 128]))
    save('pal', 5, 3, 8, 3, idx, lambda x, y: list(palette[idx[y][x]]), extra)
    il = [[next(r) % 256 for _ in range(10 * 3)] for y in range(9)]
    save('interlaced', 10, 9, 8, 2, il, lambda x, y: il[y][3 * x:3 * x + 3], interlaced=True)
    noise = [[next(r) % 256 for _ in range(128)] for y in range(128)]
    open(d + '/noise.png', 'wb').write(png(128, 128, 8, 0, noise))
    # Broken files: an impossible kind (4-bit RGB), a bad CRC, cut inside the image data, cut before IEND.
    open(d + '/rgb4.png', 'wb').write(png(3, 2, 4, 2, [[0] * 9] * 2))
    good = png(6, 5, 8, 0, g8)
    crc = bytearray(good)
    crc[45] ^= 0xff
    open(d + '/crc.png', 'wb').write(bytes(crc))
    open(d + '/cut.png', 'wb').write(good[:len(good) - 20])
    open(d + '/noend.png', 'wb').write(good[:len(good) - 12])
    # Kernels: 10 of 2x2 for g8 (kernel 3 zero: a constant map, the bias), 2 of 3x3x3 for rgb8.
    npy(d + '/k10.npy', [((i * 7 + j * 3) % 11 - 5) / 4 if i != 3 else 0.0 for i in range(10) for j in range(4)], (10, 4))
    npy(d + '/b10.npy', [i / 10 for i in range(10)], (10,))
    npy(d + '/lw.npy', [((i * 3) % 13 - 6) / 5 for i in range(160)], (160,))  # local: 2 maps of 4 x 5 from g8
    npy(d + '/k2.npy', [((i * 5 + j) % 9 - 4) / 8 for i in range(2) for j in range(27)], (2, 27))
    # Two 3x4 gray images (float64): -o Y.png draws the first; non-finite values in map 0 of a 2-map image.
    npy(d + '/two.npy', [float((i * 5) % 12) for i in range(12)] + [float(i) for i in range(12)], (2, 12))
    npy(d + '/odd.npy', [math.inf, -math.inf, math.nan, 1.0, 2.0, 3.0] + [4.5] * 6, (1, 12))
    # Ranges at the ends of float64: max - min overflows; max - min is the smallest subnormal.
    npy(d + '/ends.npy', [-1.5e308, 0.0, 1.5e308, 0.0, 5e-324, 5e-324], (1, 6))


def check_npy(path, expect):
    descr, shape, values = read_npy(path)
    want = [float(line) for line in open(expect)]
    if descr != '<f4' or tuple(shape) != (1, len(want)):
        sys.exit('%s is %s %s, wanted <f4 (1, %d)' % (path, descr, shape, len(want)))
    bad = [i for i, (a, b) in enumerate(zip(values, want)) if a != b]
    if bad:
        sys.exit('%s: %d values differ, the first at %d: %r, wanted %r' % (path, len(bad), bad[0], values[bad[0]], want[bad[0]]))


def decode_gray8(path):
    data = open(path, 'rb').read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n', path + ' has no PNG signature'
    pos, idat, ihdr = 8, b'', None
    while pos < len(data):
        n, kind = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert struct.unpack('>I', data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body) & 0xffffffff
        if kind == b'IHDR':
            ihdr = struct.unpack('>IIBBBBB', body)
        elif kind == b'IDAT':
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    assert (depth, ctype, interlace) == (8, 0, 0), 'not 8-bit grayscale, non-interlaced: %r' % (ihdr,)
    raw, rows, prev = zlib.decompress(idat), [], [0] * w
    for y in range(h):
        f, line = raw[y * (w + 1)], list(raw[y * (w + 1) + 1:(y + 1) * (w + 1)])
        for x in range(w):
            a, b, c = line[x - 1] if x else 0, prev[x], prev[x - 1] if x else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, rows


def shade(v, lo, hi):
    if math.isnan(v) or v == -math.inf:
        return 0
    if v == math.inf:
        return 255
    if not hi > lo:
        return 128
    if math.isfinite(hi - lo):
        t = (v - lo) / (hi - lo)
    else:
        t = (v * 0.5 - lo * 0.5) / (hi * 0.5 - lo * 0.5)
    return math.floor(min(max(t, 0.0), 1.0) * 255.0 + 0.5)


def check_grid(path, npy_path, maps, h, w):
    maps, h, w = int(maps), int(h), int(w)
    _, shape, values = read_npy(npy_path)
    cols, nrows = min(maps, 8), (maps + 7) // 8
    pw, ph, rows = decode_gray8(path)
    if (pw, ph) != (cols * (w + 1) - 1, nrows * (h + 1) - 1):
        sys.exit('%s is %d x %d, wanted %d x %d' % (path, pw, ph, cols * (w + 1) - 1, nrows * (h + 1) - 1))
    want = [[0] * pw for _ in range(ph)]
    for m in range(maps):
        v = values[m * h * w:(m + 1) * h * w]
        finite = [e for e in v if math.isfinite(e)]
        lo, hi = (min(finite), max(finite)) if finite else (math.inf, -math.inf)
        for i in range(h):
            for j in range(w):
                want[m // 8 * (h + 1) + i][m % 8 * (w + 1) + j] = shade(v[i * w + j], lo, hi)
    bad = [(y, x) for y in range(ph) for x in range(pw) if abs(rows[y][x] - want[y][x]) > 1]
    if bad:
        y, x = bad[0]
        sys.exit('%s: %d pixels differ, the first (x %d, y %d): %d, wanted %d' % (path, len(bad), x, y, rows[y][x], want[y][x]))


def pixels(path):
    for row in decode_gray8(path)[2]:
        print(' '.join(str(v) for v in row))


if __name__ == '__main__':
    {'make': make, 'check-npy': check_npy, 'check-grid': check_grid, 'pixels': pixels}[sys.argv[1]](*sys.argv[2:])
PY
  check python3 "$T/pngtool.py" make "$T"
  # Every kind reads as its samples over 2^depth - 1, maps one after another (an identity pooling
  # writes them back), float32.
  while read -r name shape; do
    expect 0 "imgshp: $shape" -- "$SBX" maxpool --images "$T/$name.png" --poolshp 1,1 --stride 1,1 -o "$T/$name.npy"
    check python3 "$T/pngtool.py" check-npy "$T/$name.npy" "$T/$name.expect"
  done <<'KINDS'
g8 1 5 6
g16 1 4 5
g1 1 3 9
g4 1 2 7
ga8 1 3 4
rgb8 3 5 7
rgba16 3 4 4
pal 3 3 5
interlaced 3 9 10
KINDS
  # convolve: 10 maps, two rows of the grid (8, then 2 and empty cells); kernel 3 is zero, so its map
  # is the bias alone (constant: mid-gray).
  expect 0 "outshp: 10 4 5" -- "$SBX" convolve --images "$T/g8.png" --kerns "$T/k10.npy" --bias "$T/b10.npy" --kshp 2,2 --nkern 10 -o "$T/c10.npy"
  expect 0 "dtype: float32" -- "$SBX" info "$T/c10.npy"
  expect 0 "output: $T/c10.png: a 47 x 9 picture of the 10 feature maps of image 1 of 1" -- "$SBX" convolve --images "$T/g8.png" --kerns "$T/k10.npy" --bias "$T/b10.npy" --kshp 2,2 --nkern 10 -o "$T/c10.png"
  check python3 "$T/pngtool.py" check-grid "$T/c10.png" "$T/c10.npy" 10 4 5
  # RGB in (three maps), --imgshp given and agreeing.
  expect 0 "outshp: 2 3 5" -- "$SBX" convolve --images "$T/rgb8.png" --imgshp 3,5,7 --kerns "$T/k2.npy" --kshp 3,3 --nkern 2 -o "$T/r2.npy"
  expect 0 "a 11 x 3 picture of the 2 feature maps" -- "$SBX" convolve --images "$T/rgb8.png" --imgshp 3,5,7 --kerns "$T/k2.npy" --kshp 3,3 --nkern 2 -o "$T/r2.png"
  check python3 "$T/pngtool.py" check-grid "$T/r2.png" "$T/r2.npy" 2 3 5
  # maxpool: the C maps, the original's placement.
  expect 0 "outshp: 2 3" -- "$SBX" maxpool --images "$T/rgb8.png" --poolshp 2,2 -o "$T/mp.npy"
  expect 0 "a 11 x 2 picture of the 3 feature maps" -- "$SBX" maxpool --images "$T/rgb8.png" --poolshp 2,2 -o "$T/mp.png"
  check python3 "$T/pngtool.py" check-grid "$T/mp.png" "$T/mp.npy" 3 2 3
  # local takes convolve's options, PNGs included.
  expect 0 "outshp: 2 4 5" -- "$SBX" local --images "$T/g8.png" --kerns "$T/lw.npy" --kshp 2,2 --nkern 2 -o "$T/l2.npy"
  expect 0 "a 11 x 4 picture of the 2 feature maps" -- "$SBX" local --images "$T/g8.png" --kerns "$T/lw.npy" --kshp 2,2 --nkern 2 -o "$T/l2.png"
  check python3 "$T/pngtool.py" check-grid "$T/l2.png" "$T/l2.npy" 2 4 5
  # A .npy batch of two: the picture is of the first image.
  expect 0 "of image 1 of 2" -- "$SBX" maxpool --images "$T/two.npy" --imgshp 3,4 --poolshp 1,1 --stride 1,1 -o "$T/two.png"
  check python3 "$T/pngtool.py" check-grid "$T/two.png" "$T/two.npy" 1 3 4
  # Non-finite values (float64): +inf white, -inf and NaN black, 1 2 3 as 0 128 255; a constant map.
  expect 0 "a 7 x 2 picture of the 2 feature maps" -- "$SBX" maxpool --images "$T/odd.npy" --imgshp 2,2,3 --poolshp 1,1 --stride 1,1 -o "$T/odd.png"
  python3 "$T/pngtool.py" pixels "$T/odd.png" >"$T/odd.txt" 2>&1
  same "$T/odd.txt" "255 0 0 0 128 128 128
0 128 255 0 128 128 128
"
  expect 0 "a 7 x 1 picture of the 2 feature maps" -- "$SBX" maxpool --images "$T/ends.npy" --imgshp 2,1,3 --poolshp 1,1 --stride 1,1 -o "$T/ends.png"
  python3 "$T/pngtool.py" pixels "$T/ends.png" >"$T/ends.txt" 2>&1
  same "$T/ends.txt" "0 128 255 0 0 255 255
"
  # Gradients with a PNG input, as .npy.
  expect 0 "outshp: 2 3" -- "$SBX" maxpool --images "$T/rgb8.png" --poolshp 2,2 -o "$T/mp2.png" --grad-out "$T/mp.npy" --grad-images "$T/mpg.npy"
  expect 0 "shape: 1 105" -- "$SBX" info "$T/mpg.npy"
  # Damaged PNGs: an impossible kind (4-bit RGB), a corrupted image, cut in the data, cut before IEND.
  expect 1 "sbx: maxpool: --images '$T/rgb4.png': a damaged or unsupported PNG" -- "$SBX" maxpool --images "$T/rgb4.png" --poolshp 1,1 -o "$T/bad.png"
  expect 1 "--images '$T/crc.png': a damaged or unsupported PNG" -- "$SBX" maxpool --images "$T/crc.png" --poolshp 1,1 -o "$T/bad.png"
  expect 1 "--images '$T/cut.png': it is truncated: the file ends before the PNG does" -- "$SBX" convolve --images "$T/cut.png" --kerns "$T/k10.npy" --kshp 2,2 --nkern 10 -o "$T/bad.png"
  expect 1 "--images '$T/noend.png': it is truncated" -- "$SBX" maxpool --images "$T/noend.png" --poolshp 1,1 -o "$T/bad.npy"
  absent "$T/bad.png"
  absent "$T/bad.npy"
  # A write failing half-way (a file-size limit, SIGXFSZ ignored: write gives EFBIG) leaves neither
  # the picture nor its temporary.
  expect 1 "sbx: maxpool: -o '$T/big.png': cannot write it" -- sh -c "trap '' XFSZ; ulimit -f 8; exec \"\$0\" maxpool --images \"\$1\" --poolshp 1,1 --stride 1,1 -o \"\$2\"" "$SBX" "$T/noise.png" "$T/big.png"
  absent "$T/big.png"
  expect 0 "a 128 x 128 picture" -- "$SBX" maxpool --images "$T/noise.png" --poolshp 1,1 --stride 1,1 -o "$T/big.png"
else
  echo "python3 not found: the PNG checks that need it are skipped"
fi
leftovers=$(ls "$T" | grep -c '\.png\.')
if [ "$leftovers" = 0 ]; then ok; else bad "temporary files left: $(ls "$T")"; fi

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
