"""Files written by numpy.save and scipy.io.mmwrite are read by sparsebox (through `sbx convert`), and
the files sparsebox writes are read back equal by numpy.load and scipy.io.mmread.

Usage: test_interop.py PATH/TO/sbx SCRATCH_DIR. Exits 77 (skipped) without numpy or scipy."""
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    import scipy.io
    import scipy.sparse
    from numpy.lib import format as npformat
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)

SBX, TMP = sys.argv[1], sys.argv[2]
shutil.rmtree(TMP, ignore_errors=True)
os.makedirs(TMP)
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def sbx(*args):
    r = subprocess.run([SBX, *args], capture_output=True, text=True)
    if r.returncode != 0:
        print("sbx", *args, "->", r.returncode, r.stderr.strip())
    return r.returncode


def path(name):
    return os.path.join(TMP, name)


rng = np.random.default_rng(20261127)
DTYPES = ["float32", "float64", "int8", "int16", "int32", "int64",
          "uint8", "uint16", "uint32", "uint64", "bool"]


def sample(dtype, shape):
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith("float"):
        return (rng.standard_normal(shape) * 1e3).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


# numpy -> sparsebox -> numpy: every dtype, shapes from 0-d to 8-d, header versions 1.0 to 3.0,
# C and Fortran order, little- and big-endian.
for dtype in DTYPES:
    for shape in [(), (0,), (5,), (3, 4), (2, 0, 3), (2, 3, 1, 2), (1, 2, 1, 2, 1, 2, 1, 2)]:
        a = sample(dtype, shape)
        variants = [("c", a), ("f", np.asfortranarray(a)), ("be", a.astype(a.dtype.newbyteorder(">")))]
        for name, v in variants:
            for version in [(1, 0), (2, 0), (3, 0)]:
                src, dst = path("in.npy"), path("out.npy")
                with open(src, "wb") as f:
                    npformat.write_array(f, v, version=version)
                what = f"{dtype} {shape} {name} v{version}"
                if sbx("convert", src, dst) != 0:
                    check(False, what + ": sbx convert failed")
                    continue
                b = np.load(dst)
                check(b.dtype == a.dtype and b.dtype.byteorder in "=|<" and b.shape == v.shape
                      and b.flags.c_contiguous and np.array_equal(v, b), what)
        # numpy.save itself, and sbx's .npy read as a Matrix Market file by scipy for 2-d arrays.
        if len(shape) == 2 and dtype != "uint64":
            np.save(path("m.npy"), a)
            check(sbx("convert", path("m.npy"), path("m.mtx")) == 0, f"{dtype} {shape} -> mtx")
            m = scipy.io.mmread(path("m.mtx"))
            # float32 values are written with 9 digits: they read back exactly once rounded to float32.
            check(np.array_equal(scipy.sparse.coo_matrix(m).toarray().astype(a.dtype), a),
                  f"{dtype} {shape}: mmread of sbx's .mtx")


def sparse_sample(m, n, density, kind):
    s = scipy.sparse.random(m, n, density=density, format="coo", random_state=rng)
    if kind == "integer":
        s.data = rng.integers(-1000, 1000, size=s.nnz).astype(np.int64)
    if kind == "symmetric":
        s = scipy.sparse.coo_matrix(s + s.T)
    if kind == "skew":
        s = scipy.sparse.coo_matrix(s - s.T)
    return s


# scipy.io.mmwrite -> sparsebox -> numpy and scipy.
for kind in ["real", "integer", "symmetric", "skew", "pattern"]:
    for (m, n) in [(1, 1), (7, 5), (40, 40), (0, 3), (25, 60)]:
        if kind in ("symmetric", "skew") and m != n:
            continue
        s = sparse_sample(m, n, 0.2, kind)
        field = "pattern" if kind == "pattern" else None
        symmetry = {"symmetric": "symmetric", "skew": "skew-symmetric"}.get(kind)
        scipy.io.mmwrite(path("s.mtx"), s, field=field, symmetry=symmetry)
        want = scipy.io.mmread(path("s.mtx"))
        want = want.toarray() if scipy.sparse.issparse(want) else np.asarray(want)
        what = f"mmwrite {kind} {m}x{n}"
        check(sbx("convert", path("s.mtx"), path("s.npy")) == 0, what + ": to .npy")
        got = np.load(path("s.npy"))
        check(got.shape == want.shape and np.array_equal(got, want), what + ": values")
        for fmt in ["csr", "csc"]:
            check(sbx("convert", path("s.mtx"), path("back.mtx"), "--format", fmt) == 0, what + ": to .mtx")
            back = scipy.io.mmread(path("back.mtx"))
            check(np.array_equal(back.toarray(), want), what + f": mmread of sbx's {fmt} .mtx")

# Dense Matrix Market (array format), general and symmetric.
for sym in ["general", "symmetric"]:
    a = rng.standard_normal((6, 6))
    if sym == "symmetric":
        a = a + a.T
    scipy.io.mmwrite(path("d.mtx"), a, symmetry=sym)
    check(sbx("convert", path("d.mtx"), path("d.npy")) == 0, f"array {sym}: convert")
    check(np.array_equal(np.load(path("d.npy")), scipy.io.mmread(path("d.mtx"))), f"array {sym}: values")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
