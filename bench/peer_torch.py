"""The torch peer of bench_layers.c.

Usage:
    peer_torch.py DIR

DIR holds manifest.txt and the .npy files bench_layers wrote. manifest.txt has the lines
    timing BUDGET MIN MAX SHARE ATTEMPTS   the repeat rule and the busy-core rule (below)
    threads N1 N2                the thread counts
    dtypes D1 D2                 the dtypes
    case KIND NAME B C H W N KH KW
KIND is "conv" (N kernels KH x KW, stride 1, valid) or "pool" (N = 0: a KH x KW max pool with stride
KH x KW, valid). For each case and dtype, KIND_NAME_DTYPE_PART.npy holds the images x (B x C*H*W), the
kernels k (conv: N x C*KH*KW), the output gradient g, and sparsebox's results: y (forward), gx and gk
(the gradients). For each conv case, KIND_NAME_float32_indptr.npy and _indices.npy hold the CSC patch
matrix of the original's path (sbx_conv_indices).

Timing: one warm-up call, whose time t sets the repeat count ceil-ish(BUDGET / t) within [MIN, MAX];
the median of the timed calls. Only the call is timed: its result is dropped after the clock stops.
A figure whose process CPU time over wall time falls below SHARE x threads did not get its cores
(another process had them): it is taken again, ATTEMPTS times at most, keeping the attempt with the
most cores busy.
Thread counts: torch.set_num_threads(n), and openblas_set_num_threads on every OpenBLAS library
loaded in this process (torch's float64 convolution and numpy's dot call it): n, and for n > 1 in
the float64 convolution also 1, keeping the faster (see measure_torch).

Output, one line each, read by bench_layers:
    python_version, numpy_version, scipy_version, torch_version
    torch_skip REASON                        torch cannot be imported (the original's path still runs)
    blas PATH: core CORENAME, CONFIG         each OpenBLAS library loaded here
    malloc WHAT                              the glibc malloc setting (see keep_freed_memory)
    time KIND NAME DTYPE OP THREADS MS CORES REPEATS BLAS_THREADS
    check KIND NAME DTYPE OP ok | FAILED what
OP is forward or backward; KIND "orig" is the original's path (float32 forward, 1 thread). CORES is
process CPU time over wall time during the timed calls; BLAS_THREADS the OpenBLAS thread count of
the figure (-1: no OpenBLAS found, not pinned). When numpy or scipy cannot be imported it
prints "skip <reason>" and exits with status 3.
"""
import ctypes
import os
import platform
import statistics
import sys
import time

# Checks: max |ours - reference| <= RTOL * (1 + max |reference|); 0 means equal.
RTOL = {"float32": 1e-4, "float64": 1e-10}


# glibc's mallopt parameters.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory():
    """By default glibc gives large freed blocks back to the kernel (munmap above the mmap threshold,
    heap trimming above the trim threshold), so every torch call page-faults its output and workspace
    afresh (config a float32: about 2300 faults and 3.4 ms a call instead of 0.4 ms). sparsebox's
    allocator keeps its blocks; so that both sides are timed on compute, not on page faults, glibc is
    told to keep freed memory too. Returns what was done."""
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallopt"):
        return "mallopt not found: default glibc malloc settings"
    mmap_ok = libc.mallopt(M_MMAP_THRESHOLD, 512 << 20)
    trim_ok = libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    return f"mallopt M_MMAP_THRESHOLD=512 MiB ({'ok' if mmap_ok else 'refused'}), " \
           f"M_TRIM_THRESHOLD=1 GiB ({'ok' if trim_ok else 'refused'}): freed memory is reused, not page-faulted again"


# ---- OpenBLAS ----

def openblas_libraries():
    """(path, handle) of every OpenBLAS library mapped into this process."""
    paths = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "libopenblas" in os.path.basename(path) and path not in paths:
                    paths.append(path)
    except OSError:
        return []
    found = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if hasattr(lib, "openblas_get_corename") and hasattr(lib, "openblas_set_num_threads"):
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            found.append((path, lib))
    return found


def set_threads(torch, blas, n, blas_n):
    if torch is not None:
        torch.set_num_threads(n)
    for _, lib in blas:
        lib.openblas_set_num_threads(blas_n)


# ---- timing ----

class Rule:
    def __init__(self, budget, least, most, share, attempts):
        self.budget, self.least, self.most = budget, least, most
        self.share, self.attempts = share, attempts

    def repeats(self, seconds):
        n = int(self.budget / seconds + 1) if seconds > 0 else self.most
        return max(self.least, min(self.most, n))


def measure_once(fn, rule):
    """(median ms, cores, repeats) of fn after one warm-up call."""
    t0 = time.perf_counter()
    fn()
    repeats = rule.repeats(time.perf_counter() - t0)
    runs = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - t0)
        del result
    cores = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    return statistics.median(runs) * 1e3, cores, repeats


def measure(fn, rule, threads):
    """measure_once, again while the figure did not get its threads' cores; the best attempt."""
    best = measure_once(fn, rule)
    for _ in range(rule.attempts - 1):
        if best[1] >= rule.share * threads:
            break
        again = measure_once(fn, rule)
        if again[1] > best[1]:
            best = again
    return best


def measure_torch(torch, blas, n, fn, rule, uses_blas):
    """(median ms, cores, repeats, OpenBLAS threads) of fn with n torch threads. OpenBLAS runs with n
    threads, and for n > 1 in a call that uses it (the float64 convolution: im2col + gemm) also with 1:
    torch's own threads already split the batch and n OpenBLAS threads inside each oversubscribe the
    cores (config b, 2 threads: 1.8 against 0.7 ms), while a batch of 1 needs the BLAS threads. The
    faster setting is kept."""
    best = None
    for blas_n in [n, 1] if n > 1 and blas and uses_blas else [n]:
        set_threads(torch, blas, n, blas_n)
        figures = measure(fn, rule, n) + (blas_n if blas else -1,)
        if best is None or figures[0] < best[0]:
            best = figures
    return best


def report_time(kind, name, dtype, op, threads, figures):
    ms, cores, repeats, blas_n = figures
    print("time", kind, name, dtype, op, threads, repr(ms), repr(cores), repeats, blas_n, flush=True)


# ---- the manifest and the files ----

class Case:
    def __init__(self, fields):
        self.kind, self.name = fields[0], fields[1]
        self.batch, self.channels, self.height, self.width, self.nkern, self.kh, self.kw = map(int, fields[2:9])
        if self.kind == "pool":
            self.oh, self.ow = self.height // self.kh, self.width // self.kw
        else:
            self.oh, self.ow = self.height - self.kh + 1, self.width - self.kw + 1


def read_manifest(folder):
    rule, threads, dtypes, cases = None, [], [], []
    with open(os.path.join(folder, "manifest.txt")) as f:
        for line in f:
            fields = line.split()
            if fields[0] == "timing":
                rule = Rule(float(fields[1]), int(fields[2]), int(fields[3]), float(fields[4]), int(fields[5]))
            elif fields[0] == "threads":
                threads = [int(v) for v in fields[1:]]
            elif fields[0] == "dtypes":
                dtypes = fields[1:]
            elif fields[0] == "case":
                cases.append(Case(fields[1:]))
    return rule, threads, dtypes, cases


def load(np, folder, case, dtype, part):
    return np.load(os.path.join(folder, f"{case.kind}_{case.name}_{dtype}_{part}.npy"))


def compare(np, what, ours, ref, rtol):
    """Empty string when ours matches ref, else what differs."""
    ref = np.asarray(ref)
    if ours.size != ref.size:
        return f"{what}: shape {ours.shape} vs {ref.shape}"
    ref = ref.reshape(ours.shape)
    err = float(np.max(np.abs(ours.astype(np.float64) - ref))) if ref.size else 0.0
    bound = rtol * (1 + float(np.max(np.abs(ref)))) if ref.size else 0.0
    if err > bound:
        return f"{what}: max abs difference {err:.3e} > {bound:.3e}"
    return ""


def report_check(kind, name, dtype, op, problems):
    problems = [p for p in problems if p]
    print("check", kind, name, dtype, op, "ok" if not problems else "FAILED " + "; ".join(problems), flush=True)


# ---- torch ----

def torch_inputs(torch, np, folder, case, dtype):
    x = torch.from_numpy(load(np, folder, case, dtype, "x")).reshape(case.batch, case.channels, case.height,
                                                                      case.width)
    maps = case.nkern if case.kind == "conv" else case.channels
    g = torch.from_numpy(load(np, folder, case, dtype, "g")).reshape(case.batch, maps, case.oh, case.ow)
    k = None
    if case.kind == "conv":
        k = torch.from_numpy(load(np, folder, case, dtype, "k")).reshape(case.nkern, case.channels, case.kh, case.kw)
    return x, k, g


def layer_forward(torch, case, x, k):
    if case.kind == "conv":
        return torch.nn.functional.conv2d(x, k)
    return torch.nn.functional.max_pool2d(x, (case.kh, case.kw))


def forward_call(torch, case, x, k):
    def run():
        with torch.no_grad():
            return layer_forward(torch, case, x, k)
    return run


def backward_call(torch, case, x, k, g):
    """The backward alone: the graph is built once; each call runs autograd on it again."""
    leaves = [x.clone().requires_grad_(True)]
    if k is not None:
        leaves.append(k.clone().requires_grad_(True))
    y = layer_forward(torch, case, leaves[0], leaves[1] if k is not None else None)
    return lambda: torch.autograd.grad(y, leaves, g, retain_graph=True)


def check_torch(torch, np, folder, case, dtype, x, k, g):
    rtol = RTOL[dtype] if case.kind == "conv" else 0.0
    forward = forward_call(torch, case, x, k)().numpy()
    report_check(case.kind, case.name, dtype, "forward",
                 [compare(np, "forward", load(np, folder, case, dtype, "y"), forward, rtol)])
    grads = backward_call(torch, case, x, k, g)()
    problems = [compare(np, "grad images", load(np, folder, case, dtype, "gx"), grads[0].numpy(), rtol)]
    if k is not None:
        problems.append(compare(np, "grad kerns", load(np, folder, case, dtype, "gk"), grads[1].numpy(), rtol))
    report_check(case.kind, case.name, dtype, "backward", problems)


def bench_torch(torch, np, blas, folder, rule, threads, dtype, case):
    x, k, g = torch_inputs(torch, np, folder, case, dtype)
    uses_blas = case.kind == "conv" and dtype == "float64"
    for n in threads:
        forward, backward = forward_call(torch, case, x, k), backward_call(torch, case, x, k, g)
        for op, fn in ("forward", forward), ("backward", backward):
            report_time(case.kind, case.name, dtype, op, n, measure_torch(torch, blas, n, fn, rule, uses_blas))
    check_torch(torch, np, folder, case, dtype, x, k, g)


# ---- the original's path ----

def original_call(np, scipy, folder, case):
    """Aesara's convolve, numeric part: patches = (M @ images.T).T, reshaped to (batch * out_size) x
    (channels * kernel taps), dot kerns.T, reordered to batch x (nkern * out_size)."""
    indptr, indices = load(np, folder, case, "float32", "indptr"), load(np, folder, case, "float32", "indices")
    out_size, taps = case.oh * case.ow, case.channels * case.kh * case.kw
    m = scipy.sparse.csc_matrix((np.ones(indices.size, np.float32), indices, indptr),
                                shape=(out_size * taps, case.channels * case.height * case.width))
    x, k = load(np, folder, case, "float32", "x"), load(np, folder, case, "float32", "k")
    batch, nkern = case.batch, case.nkern

    def run():
        patches = (m @ x.T).T.reshape(batch * out_size, taps)
        return (patches @ k.T).reshape(batch, out_size, nkern).transpose(0, 2, 1).reshape(batch, nkern * out_size)
    return run


def bench_original(np, scipy, torch, blas, folder, rule, case):
    set_threads(torch, blas, 1, 1)
    run = original_call(np, scipy, folder, case)
    report_time("orig", case.name, "float32", "forward", 1, measure(run, rule, 1) + (1 if blas else -1,))
    ours = load(np, folder, case, "float32", "y")
    report_check("orig", case.name, "float32", "forward", [compare(np, "forward", ours, run(), RTOL["float32"])])


# ---- main ----

def import_torch():
    try:
        import torch
    except ImportError as e:
        print("torch_skip", f"{sys.executable}: {e}", flush=True)
        return None
    print("torch_version", torch.__version__, flush=True)
    return torch


def main(argv):
    try:
        import numpy as np
        import scipy
        import scipy.sparse
    except ImportError as e:
        print("skip", f"{sys.executable}: {e}")
        return 3
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    print("python_version", platform.python_version())
    print("numpy_version", np.__version__)
    print("scipy_version", scipy.__version__)
    print("malloc", keep_freed_memory())
    torch = import_torch()
    blas = openblas_libraries()
    for path, lib in blas:
        print("blas", f"{path}: core {lib.openblas_get_corename().decode()}, {lib.openblas_get_config().decode()}")
    folder = argv[1]
    rule, threads, dtypes, cases = read_manifest(folder)
    for case in cases:
        for dtype in dtypes if torch is not None else []:
            bench_torch(torch, np, blas, folder, rule, threads, dtype, case)
        if case.kind == "conv":
            bench_original(np, scipy, torch, blas, folder, rule, case)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
