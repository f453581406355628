#!/bin/sh
# The demo on bad data: each damaged set of IDX files (gzipped here) gives its message on stderr and
# exit status 1, never a crash (nor a sanitizer's report, whose exit status may be 1 too); a small
# well-formed set trains.
# usage: test_bad_data.sh DEMO TMPDIR
demo=$1
tmp=$2
rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
failures=0

# $1 file, then the header's 32-bit words (decimal), big-endian
header() {
    f=$1
    shift
    : >"$f"
    for w in "$@"; do
        printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $((w >> 24 & 255)) $((w >> 16 & 255)) $((w >> 8 & 255)) $((w & 255)))" >>"$f"
    done
}
# $1 file, $2 count: count bytes cycling through the labels 0-9
labels() {
    i=0
    while [ "$i" -lt "$2" ]; do
        printf "\\$(printf '%03o' $((i % 10)))" >>"$1"
        i=$((i + 1))
    done
}
# A well-formed split in folder $1: $2 prefix, $3 images
split() {
    header "$1/$2-images-idx3-ubyte" 2051 "$3" 28 28
    head -c $(($3 * 784)) /dev/zero >>"$1/$2-images-idx3-ubyte"
    header "$1/$2-labels-idx1-ubyte" 2049 "$3"
    labels "$1/$2-labels-idx1-ubyte" "$3"
}
gz() { for f in "$1"/*-ubyte; do gzip -n -f "$f"; done; } # -n: no name, a 10-byte gzip header
good() {
    rm -rf "$tmp/$1" && mkdir -p "$tmp/$1"
    split "$tmp/$1" train 128
    split "$tmp/$1" t10k 20
}

# $1 case name, $2 the text stderr must hold; the data in $tmp/$1
expect_error() {
    "$demo" --data "$tmp/$1" --out "$tmp/$1-out" --epochs 1 >"$tmp/$1.out" 2>"$tmp/$1.err"
    rc=$?
    if grep -q "Sanitizer\|runtime error" "$tmp/$1.err"; then
        echo "FAIL: $1: a sanitizer report:"
        cat "$tmp/$1.err"
        failures=$((failures + 1))
    elif [ "$rc" -ne 1 ]; then
        echo "FAIL: $1: exit status $rc (expected 1)"
        cat "$tmp/$1.err"
        failures=$((failures + 1))
    elif ! grep -q -- "$2" "$tmp/$1.err"; then
        echo "FAIL: $1: stderr lacks '$2':"
        cat "$tmp/$1.err"
        failures=$((failures + 1))
    else
        echo "ok: $1: $(cat "$tmp/$1.err")"
    fi
}

# missing files: the message names the Debian package
mkdir -p "$tmp/missing"
expect_error missing "apt-get install dataset-fashion-mnist"
good missing_test
rm "$tmp/missing_test"/t10k-*
gz "$tmp/missing_test"
expect_error missing_test "t10k-images-idx3-ubyte.gz: No such file or directory"

# wrong magic numbers: the images' (0x0802) and the labels' (0x0803)
good magic
header "$tmp/magic/train-images-idx3-ubyte" 2050 128 28 28
head -c $((128 * 784)) /dev/zero >>"$tmp/magic/train-images-idx3-ubyte"
gz "$tmp/magic"
expect_error magic "wrong magic number 0x00000802 (expected 0x00000803"
good magic_labels
header "$tmp/magic_labels/train-labels-idx1-ubyte" 2051 128
labels "$tmp/magic_labels/train-labels-idx1-ubyte" 128
gz "$tmp/magic_labels"
expect_error magic_labels "wrong magic number 0x00000803 (expected 0x00000801"

# dimensions that disagree with the file's size: too few bytes, too many, a header cut short
good short
header "$tmp/short/train-images-idx3-ubyte" 2051 128 28 28
head -c $((127 * 784)) /dev/zero >>"$tmp/short/train-images-idx3-ubyte"
gz "$tmp/short"
expect_error short "need 100352 bytes after the header, but the file holds only 99568"
good long
printf 'xyz' >>"$tmp/long/train-labels-idx1-ubyte"
gz "$tmp/long"
expect_error long "account for 128 bytes after the header, but the file holds 131"
good cut
header "$tmp/cut/train-images-idx3-ubyte" 2051 128
gz "$tmp/cut"
expect_error cut "the header ends after 8 bytes"
good huge
header "$tmp/huge/train-images-idx3-ubyte" 2051 4000000000 4000000000 28
gz "$tmp/huge"
expect_error huge "ask for more than"

# images and labels that disagree in number; images of another size
good count
header "$tmp/count/t10k-labels-idx1-ubyte" 2049 19
labels "$tmp/count/t10k-labels-idx1-ubyte" 19
gz "$tmp/count"
expect_error count "holds 20 images but .*t10k-labels-idx1-ubyte.gz holds 19 labels"
good side
header "$tmp/side/train-images-idx3-ubyte" 2051 128 32 32
head -c $((128 * 1024)) /dev/zero >>"$tmp/side/train-images-idx3-ubyte"
gz "$tmp/side"
expect_error side "images of 32 x 32 pixels; the network takes 28 x 28"

# a label outside 0-9
good label
header "$tmp/label/train-labels-idx1-ubyte" 2049 128
labels "$tmp/label/train-labels-idx1-ubyte" 100
printf '\012' >>"$tmp/label/train-labels-idx1-ubyte"
labels "$tmp/label/train-labels-idx1-ubyte" 27
gz "$tmp/label"
expect_error label "label 10 of image 100 is outside 0-9"

# gzip data cut short, and damaged
good truncated
gz "$tmp/truncated"
head -c 60 "$tmp/truncated/train-images-idx3-ubyte.gz" >"$tmp/truncated/x" && mv "$tmp/truncated/x" "$tmp/truncated/train-images-idx3-ubyte.gz"
expect_error truncated "damaged gzip data (unexpected end of file)"
good corrupt
gz "$tmp/corrupt"
{ head -c 10 "$tmp/corrupt/train-labels-idx1-ubyte.gz"; printf 'garbage garbage garbage garbage'; } >"$tmp/corrupt/x"
mv "$tmp/corrupt/x" "$tmp/corrupt/train-labels-idx1-ubyte.gz"
expect_error corrupt "damaged gzip data (invalid block type)"

# and a small well-formed set trains
good fine
gz "$tmp/fine"
if "$demo" --data "$tmp/fine" --out "$tmp/fine-out" --epochs 1 >"$tmp/fine.out" 2>&1 &&
    grep -q "^test accuracy: .* (20 images)" "$tmp/fine.out"; then
    echo "ok: a well-formed set of 128 + 20 images trains"
else
    echo "FAIL: the well-formed set:"
    cat "$tmp/fine.out"
    failures=$((failures + 1))
fi

[ "$failures" -eq 0 ] || { echo "$failures case(s) failed"; exit 1; }
