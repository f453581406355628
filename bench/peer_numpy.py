"""The numpy and scipy peer of bench_random.c.

Usage:
    peer_numpy.py --versions   print the Python, numpy and scipy versions
    peer_numpy.py DIR          time numpy's samplers and the original's sparse random ops, one
                               command of standard input at a time

DIR holds what bench_random writes: cases.txt, one "key values..." line each (the settings both
sides share, and a "draw KIND ..." line per sampler), and two float64 CSR matrices as .npy files,
poisson_{indptr,indices,data}.npy (the Poisson means) and multinomial_{indptr,indices,data}.npy
(rows of probabilities, each summing to 1).

bench_random sends one command a line and waits for its answer, so that it can time its own side
between the peer's calls (a slower phase of the machine then falls on both sides alike):
    warm I     case I: sizes its vectorised calls (N draws, about draw_seconds of this thread's CPU
               clock) and warms up at that size; answers "draw I NS N" for the warm-up call
    draw I     one timed call of size N: "draw I NS N", ns per draw (per row for a multinomial)
    op KEY     the original's path for op KEY (binomial, binomial_sparse, poisson, multinomial), with
               the legacy np.random generator as the original: "op KEY SECONDS NNZ", the median
               seconds of its calls after a warm-up and the stored entries of its result
Each answer ends with a "done" line; end of input ends the peer. Before the first answer it prints
python_version, numpy_version and scipy_version lines. When numpy or scipy cannot be imported it
prints "skip <reason>" and exits with status 3; an unknown command prints "error <command>" and
exits with status 2.
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


def most_draws(settings, width):
    """The most draws whose results (width int64 each) fit max_bytes: whole blocks, at least one (as
    bench_random's most_draws)."""
    block = number(settings, "block")
    return max(block, number(settings, "max_bytes") // (width * 8) // block * block)


def draws_for(settings, seconds, count, most):
    """Draws for one run of about draw_seconds, given that count draws took seconds: whole blocks,
    at least one, at most most (as bench_random's draws_for)."""
    block = number(settings, "block")
    target = number(settings, "draw_seconds", float)
    want = target / seconds * count if seconds > 0 else float(most)
    blocks = math.floor((want + block - 1) / block)
    if blocks < 1:
        return block
    return most if blocks > most // block else blocks * block


def calibrate(settings, fn, width):
    """Doubles the size from one block until a call takes calibrate_seconds, sizes the timed calls
    from the last one and warms up once at that size: (size, seconds of the warm-up)."""
    count, most = number(settings, "block"), most_draws(settings, width)
    enough = number(settings, "calibrate_seconds", float)
    while True:
        seconds = cpu_timed(fn, count)
        if seconds >= enough or count >= most:
            break
        count = min(2 * count, most)
    count = draws_for(settings, seconds, count, most)
    return count, cpu_timed(fn, count)


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


def serve(np, scipy, folder, commands):
    """Answers bench_random's commands (see the module's text) until their end: the exit status."""
    settings, cases = read_cases(folder)
    rng = np.random.default_rng(number(settings, "seed"))
    samplers = [sampler(np, rng, case) for case in cases]
    legacy = np.random.RandomState(number(settings, "seed"))
    ops = dict(sparse_ops(np, scipy, legacy, folder, settings))
    sizes = {}
    for line in iter(commands.readline, ""):
        words = line.split()
        if len(words) == 2 and words[0] in ("warm", "draw") and words[1].isdigit() and int(words[1]) < len(cases):
            i = int(words[1])
            if words[0] == "warm":
                width = len(cases[i][2].split(",")) if cases[i][0] == "multinomial" else 1
                sizes[i], seconds = calibrate(settings, samplers[i], width)
            elif i in sizes:
                seconds = cpu_timed(samplers[i], sizes[i])
            else:
                print("error", f"draw {i} before warm {i}", flush=True)
                return 2
            print("draw", i, repr(seconds / sizes[i] * 1e9), sizes[i])
        elif len(words) == 2 and words[0] == "op" and words[1] in ops:
            seconds, nnz = time_op(settings, ops[words[1]])
            print("op", words[1], repr(seconds), nnz)
        else:
            print("error", line.strip(), flush=True)
            return 2
        print("done", flush=True)
    return 0


def main(argv):
    np, scipy, status = peer_common.numpy_and_scipy(argv)
    if status is not None:
        return status
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    return serve(np, scipy, argv[1], sys.stdin)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
