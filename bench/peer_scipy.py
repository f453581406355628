"""The scipy peer of bench_sparse.c.

Usage:
    peer_scipy.py --versions      print the Python, numpy and scipy versions
    peer_scipy.py DIR REPEATS     time scipy on the matrices in DIR and check sparsebox's results

DIR holds .npy files written by bench_sparse: shape.npy (nrows, ncols), A_indptr.npy, A_indices.npy
and A_data.npy (a CSR matrix), B.npy (the dense operand), and sparsebox's results
ours_csc_{indptr,indices,data}.npy (the CSC form of A) and ours_product.npy (A @ B).

Output, one "key value" line each, read by bench_sparse:
    python_version, numpy_version, scipy_version
    index_dtype     the index dtype scipy picked for A
    tocsc_seconds   median time of A.tocsc()
    matmul_seconds  median time of A @ B
    check           "ok", or "FAILED" and what differed
When numpy or scipy cannot be imported it prints "skip <reason>" and exits with status 3.
"""
import os
import statistics
import sys
import time

import peer_common

# Relative tolerance of the product check: max |ours - scipy| <= PRODUCT_RTOL * max |scipy|.
PRODUCT_RTOL = 1e-12


def median_seconds(fn, repeats):
    """One warm-up call, then the median of `repeats` timed calls. Each result is dropped after the
    clock stops, so freeing it is not timed (bench_sparse does the same)."""
    fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - t0)
        del result
    return statistics.median(runs)


def load_inputs(np, scipy, folder):
    def load(name):
        return np.load(os.path.join(folder, name))

    nrows, ncols = (int(v) for v in load("shape.npy"))
    a = scipy.sparse.csr_matrix((load("A_data.npy"), load("A_indices.npy"), load("A_indptr.npy")),
                                shape=(nrows, ncols))
    b = np.ascontiguousarray(load("B.npy"), dtype=np.float64)
    return a, b


def check_csc(np, folder, ref):
    """Empty string when sparsebox's CSC arrays equal scipy's exactly, else what differs."""
    ref.sort_indices()
    for part in ("indptr", "indices", "data"):
        ours = np.load(os.path.join(folder, f"ours_csc_{part}.npy"))
        theirs = getattr(ref, part)
        if ours.shape != theirs.shape:
            return f"csc {part}: shape {ours.shape} vs scipy's {theirs.shape}"
        if not np.array_equal(ours, theirs):
            first = int(np.flatnonzero(ours != theirs)[0])
            return f"csc {part}[{first}]: {ours[first]!r} vs scipy's {theirs[first]!r}"
    return ""


def check_product(np, folder, ref):
    """Empty string when sparsebox's product is within PRODUCT_RTOL of scipy's, else what differs."""
    ours = np.load(os.path.join(folder, "ours_product.npy"))
    if ours.shape != ref.shape:
        return f"product: shape {ours.shape} vs scipy's {ref.shape}"
    err = float(np.max(np.abs(ours - ref))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    if err > PRODUCT_RTOL * scale:
        return f"product: max abs difference {err:.3e} > {PRODUCT_RTOL:g} * max abs value {scale:.3e}"
    return ""


def main(argv):
    np, scipy, status = peer_common.numpy_and_scipy(argv)
    if status is not None:
        return status
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    folder, repeats = argv[1], int(argv[2])

    a, b = load_inputs(np, scipy, folder)
    print("index_dtype", a.indices.dtype)
    print("tocsc_seconds", repr(median_seconds(a.tocsc, repeats)))
    print("matmul_seconds", repr(median_seconds(lambda: a @ b, repeats)))

    problems = [p for p in (check_csc(np, folder, a.tocsc()), check_product(np, folder, a @ b)) if p]
    print("check", "ok" if not problems else "FAILED " + "; ".join(problems))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
