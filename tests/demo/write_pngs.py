"""Writes the PNG files test_classify.sh hands to demo --classify, with the standard library only:
test image 0 of Fashion-MNIST as 8-bit gray, as 8-bit RGB, as 16-bit gray with alpha (opaque) and as
a palette image; a 32 x 20 image (the wrong size); and a file that is not a PNG.
usage: write_pngs.py DATA_DIR OUT_DIR"""
import gzip
import os
import struct
import sys
import zlib


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png(path, width, height, depth, color_type, rows, palette=None):
    """rows: one bytes object per row, already in the PNG's sample layout."""
    raw = b"".join(b"\0" + r for r in rows)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0))
    if palette is not None:
        data += chunk(b"PLTE", palette)
    data += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def main():
    data, out = sys.argv[1], sys.argv[2]
    with gzip.open(os.path.join(data, "t10k-images-idx3-ubyte.gz")) as f:
        header = f.read(16)
        magic, count, rows, cols = struct.unpack(">IIII", header)
        assert magic == 0x803 and rows == 28 and cols == 28, header
        pixels = f.read(28 * 28)
    with gzip.open(os.path.join(data, "t10k-labels-idx1-ubyte.gz")) as f:
        f.read(8)
        label = f.read(1)[0]
    lines = [pixels[28 * y:28 * (y + 1)] for y in range(28)]
    png(os.path.join(out, "gray.png"), 28, 28, 8, 0, lines)
    png(os.path.join(out, "rgb.png"), 28, 28, 8, 2, [bytes(v for p in r for v in (p, p, p)) for r in lines])
    png(os.path.join(out, "gray16a.png"), 28, 28, 16, 4,
        [b"".join(struct.pack(">HH", p * 257, 65535) for p in r) for r in lines])
    png(os.path.join(out, "palette.png"), 28, 28, 8, 3, lines, bytes(v for i in range(256) for v in (i, i, i)))
    png(os.path.join(out, "wide.png"), 32, 20, 8, 0, [bytes(32)] * 20)
    with open(os.path.join(out, "notpng.png"), "wb") as f:
        f.write(b"this is not a PNG file\n")
    print(label)


main()
