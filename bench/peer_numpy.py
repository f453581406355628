"""The numpy and scipy peer of bench_random.c.

Usage:
    peer_numpy.py --versions   print the Python, numpy and scipy versions
    peer_numpy.py DIR          time numpy's samplers and the original's sparse random ops

DIR holds what bench_random writes: cases.txt, one "key values..." line each (the settings both
sides share, and a "draw KIND ..." line per sampler), and two float64 CSR matrices as .npy files,
poisson_{indptr,indices,data}.npy (the Poisson means) and multinomial_{indptr,indices,data}.npy
(rows of probabilities, each summing to 1).

Output, one "key value" line each, read by bench_random:
    python_version, numpy_version, scipy_version
    draw I NS N          case I: ns per draw (per row for a multinomial), median of draw_repeats
                         vectorised calls of size N after a warm-up, on this thread's CPU clock
    op KEY SECONDS NNZ   the original's path for op KEY (binomial, binomial_sparse, poisson,
                         multinomial), with the legacy np.random generator as the original: median
                         seconds, and the stored entries of its result
When numpy or scipy cannot be imported it prints "skip <reason>" and exits with status 3.
"""
import math
import os
import statistics
import sys
import time

import peer_common


def read_cases(folder):
    """The settings (key -> list of words) and the draw cases (lists of words after "draw")."""
    settings, draws = {}, []
    with open(os.path.join(folder, "cases.txt")) as f:
        for line in f:
            words = line.split()
            if not words:
                continue
            if words[0] == "draw":
                draws.append(words[1:])
            else:
                settings[words[0]] = words[1:]
    return settings, draws


def number(settings, key, kind=int, at=0):
    return kind(settings[key][at])


def timed(fn, *args, clock=time.perf_counter):
    """Seconds of one call; the result is dropped after the clock stops (bench_random does the same)."""
    t0 = clock()
    result = fn(*args)
    seconds = clock() - t0
    del result
    return seconds


def cpu_timed(fn, *args):
    """timed on this thread's CPU clock, as bench_random times its draws."""
    return timed(fn, *args, clock=time.thread_time)


# ---- ns per draw ----

def sampler(np, rng, case):
    """A function of size drawing one vectorised batch of the case."""
    kind = case[0]
    if kind == "binomial":
        n, p = int(case[1]), float(case[2])
        return lambda size: rng.binomial(n, p, size=size)
    if kind == "poisson":
        lam = float(case[1])
        return lambda size: rng.poisson(lam, size=size)
    if kind == "multinomial":
        n, pvals = int(case[1]), np.array([float(v) for v in case[2].split(",")])
        return lambda size: rng.multinomial(n, pvals, size=size)
    raise ValueError(f"unknown draw kind {kind!r}")


def draws_for(settings, seconds, count):
    """Draws for one run of about draw_seconds, given that count draws took seconds: whole blocks,
    at least one, at most max_draws (as bench_random's draws_for)."""
    block, most = number(settings, "block"), number(settings, "max_draws")
    target = number(settings, "draw_seconds", float)
    want = target / seconds * count if seconds > 0 else float(most)
    blocks = math.floor((want + block - 1) / block)
    if blocks < 1:
        return block
    return most if blocks > most // block else blocks * block


def time_draws(settings, fn):
    """Doubles the size from one block until a call takes calibrate_seconds (these calls are the
    warm-up), sizes the timed calls from the last one, warms up once at that size, then returns
    (median ns per draw, size)."""
    count, most = number(settings, "block"), number(settings, "max_draws")
    enough = number(settings, "calibrate_seconds", float)
    while True:
        seconds = cpu_timed(fn, count)
        if seconds >= enough or count >= most:
            break
        count *= 2
    count = draws_for(settings, seconds, count)
    cpu_timed(fn, count)
    runs = [cpu_timed(fn, count) for _ in range(number(settings, "draw_repeats"))]
    return statistics.median(runs) / count * 1e9, count


# ---- the original's sparse random ops ----

def load_csr(np, scipy, folder, prefix, shape):
    def part(name):
        return np.load(os.path.join(folder, f"{prefix}_{name}.npy"))

    return scipy.sparse.csr_matrix((part("data"), part("indices"), part("indptr")), shape=shape)


# The original's perform() methods (aesara.sparse.sandbox.sp2) draw from the global legacy generator,
# np.random (a RandomState, MT19937, with its legacy samplers); `legacy` below is one of those, seeded.

def original_binomial(np, scipy, legacy, n, p, shape):
    return scipy.sparse.csr_matrix(legacy.binomial(n, p, size=shape), dtype=np.float32)


def original_poisson(np, legacy, lam):
    out = lam.copy()
    out.data = np.asarray(legacy.poisson(out.data), dtype=lam.dtype)
    out.eliminate_zeros()
    return out


def original_multinomial(legacy, n, probs):
    """One rng.multinomial call per row, in a Python loop, as the original's Multinomial op."""
    out = probs.copy()
    indptr, data = probs.indptr, probs.data
    for row in range(probs.shape[0]):
        lo, hi = indptr[row], indptr[row + 1]
        out.data[lo:hi] = legacy.multinomial(n, data[lo:hi])
    return out


def repeats_for(settings, seconds):
    """Timed calls of an op whose warm-up took seconds: about op_budget in all, within limits."""
    least, most = number(settings, "min_repeats"), number(settings, "max_repeats")
    n = number(settings, "op_budget", float) / seconds if seconds > 0 else most
    return least if n < least else most if n > most else int(n)


def time_op(settings, fn):
    """(median seconds, nnz of the result) after a warm-up."""
    t0 = time.perf_counter()
    nnz = fn().nnz
    warm = time.perf_counter() - t0
    runs = [timed(fn) for _ in range(repeats_for(settings, warm))]
    return statistics.median(runs), nnz


def sparse_ops(np, scipy, legacy, folder, settings):
    """(key, function) of each op, on the inputs in folder."""
    n, p, nrows, ncols = settings["binomial_op"]
    sn, sp, snrows, sncols = settings["binomial_sparse_op"]
    lam = load_csr(np, scipy, folder, "poisson", tuple(int(v) for v in settings["poisson_shape"]))
    probs = load_csr(np, scipy, folder, "multinomial", tuple(int(v) for v in settings["multinomial_shape"]))
    trials = number(settings, "multinomial_n")
    return [
        ("binomial", lambda: original_binomial(np, scipy, legacy, int(n), float(p), (int(nrows), int(ncols)))),
        ("binomial_sparse",
         lambda: original_binomial(np, scipy, legacy, int(sn), float(sp), (int(snrows), int(sncols)))),
        ("poisson", lambda: original_poisson(np, legacy, lam)),
        ("multinomial", lambda: original_multinomial(legacy, trials, probs)),
    ]


def main(argv):
    np, scipy, status = peer_common.numpy_and_scipy(argv)
    if status is not None:
        return status
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    folder = argv[1]
    settings, draws = read_cases(folder)
    rng = np.random.default_rng(number(settings, "seed"))
    for i, case in enumerate(draws):
        ns, count = time_draws(settings, sampler(np, rng, case))
        print("draw", i, repr(ns), count, flush=True)
    legacy = np.random.RandomState(number(settings, "seed"))
    for key, fn in sparse_ops(np, scipy, legacy, folder, settings):
        seconds, nnz = time_op(settings, fn)
        print("op", key, repr(seconds), nnz, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
