#!/bin/sh
# The demo trains to the same bytes at any thread count: a short run (2000 images, 1 epoch, evaluated
# on 1000 test images) at 1 and at 2 threads, and at auto (which switches between the two as it
# goes), every params/*.npy compared byte for byte. Skipped (77) without the Fashion-MNIST files.
# usage: test_determinism.sh DEMO TMPDIR [DATA_DIR]
demo=$1
tmp=$2
data=${3:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
    echo "skipped: no Fashion-MNIST files in $data (apt-get install dataset-fashion-mnist)"
    exit 77
fi
rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
for t in 1 2 auto; do
    if ! "$demo" --train-size 2000 --test-size 1000 --epochs 1 --threads $t --seed 7 --data "$data" --out "$tmp/threads$t" \
        >"$tmp/threads$t.log" 2>&1; then
        echo "FAIL: the run at $t thread(s) failed:"
        cat "$tmp/threads$t.log"
        exit 1
    fi
    grep "^test accuracy" "$tmp/threads$t.log" | sed "s/^/$t thread(s): /"
done
n=0
for f in "$tmp"/threads1/params/*.npy; do
    [ -f "$f" ] || break
    b=$(basename "$f")
    for other in 2 auto; do
        if ! cmp -s "$f" "$tmp/threads$other/params/$b"; then
            echo "FAIL: params/$b differs between --threads 1 and --threads $other"
            exit 1
        fi
    done
    n=$((n + 1))
done
if [ "$n" -ne 6 ]; then
    echo "FAIL: expected 6 parameter files in $tmp/threads1/params, found $n"
    exit 1
fi
echo "the $n parameter files are the same bytes at --threads 1, 2 and auto"
