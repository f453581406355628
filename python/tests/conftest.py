"""Shared set-up of the Python tests: the package from this source tree (unless SPARSEBOX_TEST_INSTALLED
is set, to test an installed copy found on sys.path), and the golden reference files of the original
(tests/golden; FORMAT.md there describes them)."""
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if not os.environ.get("SPARSEBOX_TEST_INSTALLED"):
    sys.path.insert(0, os.path.dirname(HERE))

GOLDEN_DIR = os.environ.get("SPARSEBOX_GOLDEN_DIR", os.path.join(HERE, "..", "..", "tests", "golden"))


class Golden:
    """One golden case: header keys (strings) and arrays (float64, every number as written)."""

    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)[:-4]
        self.keys = {}
        self.arrays = {}
        with open(path) as f:
            text = f.read()
        head, _, body = text.partition("\n\n")
        for line in head.splitlines():
            k, _, v = line.partition(":")
            self.keys[k.strip()] = v.strip()
        tokens = body.split()
        i = 0
        while i < len(tokens) and tokens[i] != "end":
            name, n = tokens[i], int(tokens[i + 1])
            self.arrays[name] = [float(t) for t in tokens[i + 2:i + 2 + n]]
            i += 2 + n

    def ints(self, key):
        return tuple(int(v) for v in self.keys[key].split())

    def array(self, name, shape_key=None):
        import numpy as np
        a = np.array(self.arrays[name], dtype=np.float64)
        return a.reshape(self.ints(shape_key)) if shape_key else a

    def has(self, name):
        return name in self.arrays

    @property
    def ok(self):
        return self.keys["expect"] == "ok"


def golden_paths(prefix):
    return sorted(glob.glob(os.path.join(GOLDEN_DIR, prefix + "*.txt")))


def golden_ids(paths):
    return [os.path.basename(p)[:-4] for p in paths]
