"""bench_python: what calling sparsebox from Python costs (issue 13, "Speed"), in one run:

 (i)  sparsebox.sp.convolve on configuration a of ANCHORS.md (batch 64, 1x28x28, 32 kernels 5x5,
      valid, float32), called as the original's users call it: convolve(kerns, kshp, nkern, images,
      imgshp); against the C call it wraps, sbx_conv_forward on the same arrays through ctypes, with
      the plan and the argument structs made once, as a C user would. Goal: ours / C <= 1.1.
 (ii) sparsebox.torch.LocallyConnected2d (no bias) forward + backward, y = layer(x) then
      torch.autograd.grad(y, (x, weight), g), against what PyTorch users write today (pytorch#499):
      y = einsum('blp,pnl->bnp', F.unfold(x), w) and the same autograd.grad, on the local connections
      of configurations a (batch 64, 1x28x28, 32 kernels 5x5) and b (batch 32, 3x32x32, 64 kernels
      3x3), float32. Goal: ours / torch <= 0.5.

Usage:
    SPARSEBOX_LIBRARY_DIR=build /usr/bin/python3 bench/bench_python.py
The package is the source tree's (../python from this file, put first on sys.path); the library the one
it finds (SPARSEBOX_LIBRARY_DIR: a build folder), and the C extension beside it where the build made one
(SPARSEBOX_NATIVE=0: ctypes alone). The three paths are printed.

Each pair is timed at 1 and 2 threads, both sides alike: sbx_set_num_threads(n), torch.set_num_threads(n)
and openblas_set_num_threads(n) on every OpenBLAS library loaded in the process; for the local pair with
n > 1 also with openblas_set_num_threads(1) (as bench_layers does for torch: its own threads split the
work and n BLAS threads inside each oversubscribe the cores), keeping the setting in which torch was
faster (column bl: OpenBLAS threads). After one warm-up call
of each side (whose time sets the repeat count, bench_layers' rule: about BUDGET seconds a side, within
[MIN_REPEATS, MAX_REPEATS]), the two sides' calls alternate, so that a change in the machine's load
falls on both; each figure is the median of its side's calls. Only the call is timed: its result is
freed after the clock stops. A pair whose process CPU time over wall time falls below BUSY_SHARE x
threads on either side (another process had the cores) is measured again, ATTEMPTS times at most,
keeping the attempt that got the most.

Checks: each pair's results agree within peer_torch.RTOL (float32: max |a - b| <= 1e-4 * (1 + max |b|)),
sp.convolve's output with the C call's, the layer's output and gradients (the weight gradient put back
into the layer's layout) with torch's. A failed check makes the exit status 1.

OpenBLAS reads OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE when it is loaded (torch's einsum runs on it):
as bench_layers, the table is taken with the environment as inherited, then the script runs itself
again with both removed and SBX_BENCH_CHILD=1 set, which prints the second table.
"""
import collections
import ctypes
import os
import platform
import statistics
import subprocess
import sys
import time
from ctypes import byref, c_int, c_int64, c_void_p

import numpy as np

import peer_torch

SOURCE_PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "python")

BUDGET, MIN_REPEATS, MAX_REPEATS, BUSY_SHARE, ATTEMPTS = 0.25, 5, 200, 0.7, 3
THREADS = (1, 2)
CONVOLVE_GOAL, LOCAL_GOAL = 1.1, 0.5
CHILD_VAR = "SBX_BENCH_CHILD"
BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# One line of a table: ours and peer are (median ms, cores, repeats); blas the OpenBLAS threads of the
# figures (-1: not found); problem is empty when the check passed.
Row = collections.namedtuple("Row", "label threads ours peer blas goal problem")

CONFIG_A = dict(batch=64, channels=1, shape=(28, 28), nkern=32, kernel=(5, 5))
CONFIG_B = dict(batch=32, channels=3, shape=(32, 32), nkern=64, kernel=(3, 3))


# ---- timing: two calls, alternated ----

def timed(fn, release):
    """(wall seconds, cpu seconds) of one call of fn; its result goes to release after the clock stops."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    release(result)
    return wall, cpu


def measure_pair_once(sides, rule):
    """[(median ms, cores, repeats)] of each side (fn, release) after a warm-up call each."""
    repeats = max(rule.repeats(timed(*side)[0]) for side in sides)
    walls, cpus = [[] for _ in sides], [[] for _ in sides]
    for r in range(repeats):
        order = range(len(sides)) if r % 2 == 0 else reversed(range(len(sides)))
        for i in order:
            wall, cpu = timed(*sides[i])
            walls[i].append(wall)
            cpus[i].append(cpu)
    return [(statistics.median(w) * 1e3, sum(c) / sum(w), repeats) for w, c in zip(walls, cpus)]


def measure_pair(sides, rule, threads):
    """measure_pair_once, again while a side did not get its cores; the attempt that got the most."""
    best = measure_pair_once(sides, rule)
    for _ in range(rule.attempts - 1):
        if min(f[1] for f in best) >= rule.share * threads:
            break
        again = measure_pair_once(sides, rule)
        if min(f[1] for f in again) > min(f[1] for f in best):
            best = again
    return best


def drop(_result):
    """The release of a result Python frees itself: when timed returns, after the clock stopped."""


# ---- threads ----

def set_threads(L, torch, blas, n, blas_n=None):
    L.lib.sbx_set_num_threads(n)
    peer_torch.set_threads(torch, blas, n, n if blas_n is None else blas_n)


def measure_pair_threads(L, torch, blas, sides, rule, n, try_one_blas):
    """(ours, peer, OpenBLAS threads) at n threads: measure_pair with n OpenBLAS threads, and with 1 too
    when try_one_blas and n > 1, keeping the one in which the peer (the second side) was faster."""
    best = None
    for blas_n in [n, 1] if try_one_blas and n > 1 and blas else [n]:
        set_threads(L, torch, blas, n, blas_n)
        figures = measure_pair(sides, rule, n) + [blas_n if blas else -1]
        if best is None or figures[1][0] < best[1][0]:
            best = figures
    return best


# ---- (i) sp.convolve against the C call ----

class CCall:
    """sbx_conv_forward through ctypes as a C user calls it: the library's functions through a CDLL
    object of its own (no argtypes, so ctypes converts nothing), the plan and the sbx_array structs over
    the same numpy arrays made once; each call returns the output's handle, freed after the clock."""

    def __init__(self, L, cfg, x, k):
        self.lib = ctypes.CDLL(L.lib._name)
        self.lib.sbx_conv_forward.restype = c_int
        shape = L.ConvShape()
        dims = ctypes.c_int64 * 2
        L.check(self.lib.sbx_conv_shape_make(c_int(2), c_int64(cfg["channels"]), dims(*cfg["shape"]),
                                             dims(*cfg["kernel"]), None, c_int(L.VALID), byref(shape)))
        self.plan = c_void_p()
        L.check(self.lib.sbx_conv_plan_create(byref(shape), c_int64(cfg["nkern"]), c_int(L.FLOAT32),
                                              byref(self.plan)))
        self.arrays = (x, k)  # the structs point into them
        self.xs, self.ks = L.array_struct(x), L.array_struct(k)
        self.out = c_void_p()
        self.args = (self.plan, byref(self.xs), byref(self.ks), None, byref(self.out))
        self.L = L

    def __call__(self):
        status = self.lib.sbx_conv_forward(*self.args)
        if status:
            self.L.check(status)
        return self.out.value

    def release(self, handle):
        self.lib.sbx_array_free(c_void_p(handle))

    def close(self):
        self.lib.sbx_conv_plan_free(self.plan)


def bench_convolve(L, sp, torch, blas, rule):
    """The Rows of sp.convolve against the C call."""
    cfg = CONFIG_A
    rng = np.random.default_rng(13)
    taps = cfg["channels"] * cfg["kernel"][0] * cfg["kernel"][1]
    images = rng.uniform(-1, 1, (cfg["batch"], cfg["channels"] * cfg["shape"][0] * cfg["shape"][1])).astype(np.float32)
    kerns = rng.uniform(-1, 1, (cfg["nkern"], taps)).astype(np.float32)
    imgshp = (cfg["channels"],) + cfg["shape"]
    c_call = CCall(L, cfg, images, kerns)

    def ours():
        return sp.convolve(kerns, cfg["kernel"], cfg["nkern"], images, imgshp)

    ours_out = ours()[0]
    c_out = L.take_array(c_call())
    problem = peer_torch.compare(np, "sp.convolve vs the C call", ours_out, c_out, peer_torch.RTOL["float32"])
    rows = []
    for n in THREADS:
        o, p, blas_n = measure_pair_threads(L, torch, blas, [(ours, drop), (c_call, c_call.release)], rule, n, False)
        rows.append(Row("sp.convolve a float32 forward %dt" % n, n, o, p, blas_n, CONVOLVE_GOAL, problem))
    c_call.close()
    return rows


# ---- (ii) LocallyConnected2d against unfold + einsum ----

def bench_local(L, sbt, torch, blas, rule, label, cfg):
    case = peer_torch.Case("local", label, 2, "valid", cfg["batch"], cfg["channels"], cfg["nkern"], cfg["shape"],
                           cfg["kernel"], (1, 1))
    gen = torch.Generator().manual_seed(14)
    x = torch.rand((case.batch, case.channels) + case.shape, generator=gen) * 2 - 1
    layer = sbt.LocallyConnected2d(case.channels, case.nkern, case.shape, case.kernel, bias=False,
                                   dtype=torch.float32)
    with torch.no_grad():
        layer.weight.uniform_(-1, 1, generator=gen)
    g = torch.rand((case.batch, case.nkern) + case.out, generator=gen) * 2 - 1
    xo = x.clone().requires_grad_(True)
    xt = x.clone().requires_grad_(True)
    # the layer's weight (C, N, *out, *kernel) is our vector's order; its copy in torch's layout is untimed
    wt = peer_torch.local_weights_to_torch(case, layer.weight.detach().reshape(-1)).requires_grad_(True)
    gt = g.reshape(case.batch, case.nkern, case.out_size)

    def ours():
        y = layer(xo)
        return (y,) + torch.autograd.grad(y, (xo, layer.weight), g)

    def theirs():
        y = peer_torch.local_forward(torch, case, xt, wt)
        return (y,) + torch.autograd.grad(y, (xt, wt), gt)

    a, b = ours(), theirs()
    rtol = peer_torch.RTOL["float32"]
    problems = [peer_torch.compare(np, "forward", a[0].detach().numpy(), b[0].detach().numpy(), rtol),
                peer_torch.compare(np, "grad images", a[1].numpy(), b[1].numpy(), rtol),
                peer_torch.compare(np, "grad weights", a[2].reshape(-1).numpy(),
                                   peer_torch.local_weights_from_torch(case, b[2]).numpy(), rtol)]
    problem = "; ".join(p for p in problems if p)
    rows = []
    for n in THREADS:
        o, p, blas_n = measure_pair_threads(L, torch, blas, [(ours, drop), (theirs, drop)], rule, n, True)
        rows.append(Row("LocallyConnected2d %s float32 fwd+bwd %dt" % (label, n), n, o, p, blas_n, LOCAL_GOAL,
                        problem))
    return rows


# ---- output ----

def print_rows(title, peer_name, rows, rule):
    print("\n %s" % title)
    print("  %-40s%10s %5s %10s %5s %3s %9s  %-6s  %s" % ("call", "ours ms", "cpu", peer_name + " ms", "cpu", "bl",
                                                        "ratio", "check", "goal"))
    met = missed = 0
    for row in rows:
        o, p = row.ours, row.peer
        busy = min(o[1], p[1]) < rule.share * row.threads
        ratio = o[0] / p[0]
        ok = ratio <= row.goal
        met, missed = met + ok, missed + (not ok)
        print("  %-40s%10.3f %5.2f %10.3f %5.2f %3d %9.3f  %-6s  <=%.1fx %s%s" % (
            row.label, o[0], o[1], p[0], p[1], row.blas, ratio, "FAILED" if row.problem else "ok", row.goal,
            "met" if ok else "MISSED", " (cores busy)" if busy else ""))
        if row.problem:
            print("    check FAILED: %s" % row.problem)
    return met, missed


def print_setting(child, torch, blas):
    if child:
        print("\n=== table 2 of 2: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed (re-executed, %s=1) ===" % CHILD_VAR)
    else:
        print("=== table 1 of 2: the environment as inherited ===")
    for var in BLAS_VARS:
        print("%s=%s" % (var, os.environ.get(var, "(unset)")))
    print("python %s, numpy %s, torch %s" % (platform.python_version(), np.__version__, torch.__version__))
    print("malloc:", peer_torch.keep_freed_memory())
    for path, lib in blas:
        print("blas %s: core %s" % (path, lib.openblas_get_corename().decode()))
    print("timing: the two calls of a pair alternate, median of >= %d calls each after 1 warm-up, ~%.2f s a side; "
          "cpu = process CPU time / wall time" % (MIN_REPEATS, BUDGET))


def run_table(child):
    sys.path.insert(0, os.path.normpath(SOURCE_PACKAGE))
    import sparsebox
    from sparsebox import _lib as L
    from sparsebox import sp
    import torch
    import sparsebox.torch as sbt
    blas = peer_torch.openblas_libraries()
    rule = peer_torch.Rule(BUDGET, MIN_REPEATS, MAX_REPEATS, BUSY_SHARE, ATTEMPTS)
    print_setting(child, torch, blas)
    print("package: %s (sparsebox %s), library: %s, C extension: %s" % (
        os.path.dirname(sparsebox.__file__), sparsebox.__version__, L.lib._name,
        L.native.__file__ if L.native is not None else "none (ctypes alone)"))
    rows = bench_convolve(L, sp, torch, blas, rule)
    met, missed = print_rows("sp.convolve(kerns, (5, 5), 32, images, (1, 28, 28)) against sbx_conv_forward "
                             "through ctypes (plan made once)", "C", rows, rule)
    local_rows = bench_local(L, sbt, torch, blas, rule, "a", CONFIG_A)
    local_rows += bench_local(L, sbt, torch, blas, rule, "b", CONFIG_B)
    m, x = print_rows("LocallyConnected2d forward + autograd.grad (x, weight) against einsum('blp,pnl->bnp', "
                      "F.unfold(x), w) + autograd.grad (x, w)", "torch", local_rows, rule)
    set_threads(L, torch, blas, THREADS[0])
    failed = any(r.problem for r in rows + local_rows)
    print("\n goals: %d met, %d missed; checks: %s" % (met + m, missed + x, "FAILED" if failed else "ok"))
    return 1 if failed else 0


def main():
    child = CHILD_VAR in os.environ
    status = run_table(child)
    if child:
        return status
    if not any(v in os.environ for v in BLAS_VARS):
        print("\nOPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are already unset: no second run")
        return status
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARS}
    env[CHILD_VAR] = "1"
    sys.stdout.flush()
    again = subprocess.run([sys.executable] + sys.argv, env=env).returncode
    return 1 if status or again else 0


if __name__ == "__main__":
    sys.exit(main())
