#!/bin/sh
# demo --classify: trains a short run, then classifies test image 0 of Fashion-MNIST written as PNG
# files of several kinds (8-bit gray, RGB, 16-bit gray with alpha, palette: the same class for all),
# and refuses a 32 x 20 image (naming the file and its size) and a file that is not a PNG, with exit
# status 1 and no crash. Skipped (77) without the Fashion-MNIST files or a python3 to write the PNGs.
# usage: test_classify.sh DEMO TMPDIR [PYTHON] [DATA_DIR]
demo=$1
tmp=$2
python=${3:-python3}
data=${4:-/usr/share/datasets/fashion-mnist}
here=$(dirname "$0")
if [ ! -f "$data/t10k-images-idx3-ubyte.gz" ]; then
    echo "skipped: no Fashion-MNIST files in $data (apt-get install dataset-fashion-mnist)"
    exit 77
fi
if ! "$python" -c "import zlib, gzip, struct" 2>/dev/null; then
    echo "skipped: no $python to write the PNG files"
    exit 77
fi
rm -rf "$tmp" && mkdir -p "$tmp/png" || exit 1
label=$("$python" "$here/write_pngs.py" "$data" "$tmp/png") || { echo "FAIL: write_pngs.py"; exit 1; }
if ! "$demo" --train-size 3000 --test-size 1000 --epochs 1 --data "$data" --out "$tmp/out" >"$tmp/train.log" 2>&1; then
    echo "FAIL: training:"
    cat "$tmp/train.log"
    exit 1
fi
failures=0
fail() {
    echo "FAIL: $1"
    failures=$((failures + 1))
}

p="$tmp/png"
"$demo" --out "$tmp/out" --classify "$p/gray.png" "$p/rgb.png" "$p/gray16a.png" "$p/palette.png" >"$tmp/good.out" 2>"$tmp/good.err"
rc=$?
cat "$tmp/good.out"
[ "$rc" -eq 0 ] || fail "--classify on good files: exit status $rc: $(cat "$tmp/good.err")"
[ "$(wc -l <"$tmp/good.out")" -eq 4 ] || fail "expected 4 lines"
classes=$(sed 's/^.*\.png: //' "$tmp/good.out" | sort -u)
[ "$(echo "$classes" | wc -l)" -eq 1 ] || fail "the four encodings of one image gave different classes: $classes"
case "$classes" in
"T-shirt/top" | Trouser | Pullover | Dress | Coat | Sandal | Shirt | Sneaker | Bag | "Ankle boot") ;;
*) fail "not a class name: '$classes'" ;;
esac
echo "test image 0 (label $label) classified as $classes"

"$demo" --out "$tmp/out" --classify "$p/wide.png" >"$tmp/wide.out" 2>"$tmp/wide.err"
rc=$?
[ "$rc" -eq 1 ] || fail "a 32 x 20 image: exit status $rc (expected 1)"
grep -q "wide.png is 32 x 20 pixels (width x height), not 28 x 28" "$tmp/wide.err" ||
    fail "a 32 x 20 image: stderr '$(cat "$tmp/wide.err")'"
cat "$tmp/wide.err"

"$demo" --out "$tmp/out" --classify "$p/notpng.png" "$p/gray.png" >"$tmp/bad.out" 2>"$tmp/bad.err"
rc=$?
[ "$rc" -eq 1 ] || fail "a file that is not a PNG: exit status $rc (expected 1)"
grep -q "notpng.png: not a readable PNG file" "$tmp/bad.err" || fail "not a PNG: stderr '$(cat "$tmp/bad.err")'"
grep -q "gray.png: " "$tmp/bad.out" || fail "the good file after a bad one was not classified"
cat "$tmp/bad.err"

"$demo" --out "$tmp/none" --classify "$p/gray.png" >"$tmp/none.out" 2>"$tmp/none.err"
rc=$?
[ "$rc" -eq 1 ] || fail "no trained parameters: exit status $rc (expected 1)"
grep -q "conv1_kernels.npy" "$tmp/none.err" || fail "no trained parameters: stderr '$(cat "$tmp/none.err")'"
cat "$tmp/none.err"

if grep -l "Sanitizer\|runtime error" "$tmp"/*.err "$tmp"/*.log; then
    fail "a sanitizer report in the files above"
fi
[ "$failures" -eq 0 ] || { echo "$failures check(s) failed"; exit 1; }
