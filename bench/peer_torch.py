"""The torch peer of bench_layers.c.

Usage:
    peer_torch.py DIR

DIR holds manifest.txt and the .npy files bench_layers wrote. manifest.txt has the lines
    timing BUDGET MIN MAX SHARE ATTEMPTS   the repeat rule and the busy-core rule (below)
    threads N1 N2                the thread counts
    dtypes D1 D2                 the dtypes
    case KIND NAME ORIGINAL NDIM MODE B C N IN... KERNEL... STRIDE...
with IN, KERNEL and STRIDE NDIM values each (shape order, 1 to 3 dimensions) and MODE valid or full.
KIND is "conv" (N kernels, weights shared over positions), "local" (N kernels with weights of their
own at each output position) or "pool" (N = 0: a max pool of shape KERNEL). Output extent per
dimension: ceil((IN - KERNEL + 1) / STRIDE) valid, ceil((IN + KERNEL - 1) / STRIDE) full (torch: padding
KERNEL - 1). For each case and dtype, KIND_NAME_DTYPE_PART.npy holds the images x (B x C*prod(IN)), the
weights k (conv: N x C*prod(KERNEL); local: the vector of C*N*O*K weights, index ((c*N + n)*O + o)*K + l
for channel c, kernel n, output position o, tap l in the kernel's raster order), the output gradient g,
and sparsebox's results: y (forward), gx and gk (the gradients). For each case with ORIGINAL 1,
KIND_NAME_float32_indptr.npy and _indices.npy hold the CSC patch matrix of the original's path
(sbx_conv_indices).

torch's side: conv{1,2,3}d (padding KERNEL - 1 in full mode), max_pool{1,2,3}d, and for local
connections what PyTorch users write (pytorch#499): einsum('blp,pnl->bnp', unfold(x), w), with w of
shape (positions, N, C*K) and unfold(x) of shape (B, C*K, positions): F.unfold in 2-d, Tensor.unfold
along each spatial axis, permuted and reshaped, in 1-d and 3-d. The unfold of x is part of the timed
call; putting our weights into w's layout is not.

The peer stays up for the whole table: after its setting lines (below) it prints "done", then reads
commands on its standard input, one a line, and answers each with its lines and a "done":
    time KIND NAME DTYPE OP THREADS CPU   one torch figure: a "time" line
    check KIND NAME DTYPE                 torch's results against ours: two "check" lines
    orig NAME CPU                         the original's path for conv NAME: a "time orig" and a "check
                                          orig" line
CPU >= 0: the figure is taken with this process's main thread pinned to that CPU (bench_layers pins
its 1-thread figures to the CPU it runs on, so that a slower virtual CPU slows both sides); -1: on all
of its CPUs. bench_layers asks for each figure right after taking its own, so that a slower phase of
the machine falls on both sides. The inputs of a case are loaded when a command first names it. The
peer ends at the end of its input; a command it does not know ends it with status 2.

Timing: one warm-up call, whose time t sets the repeat count ceil-ish(BUDGET / t) within [MIN, MAX];
the median of the timed calls. Only the call is timed: its result is dropped after the clock stops.
A figure whose process CPU time over wall time falls below SHARE x threads did not get its cores
(another process had them): it is taken again, ATTEMPTS times at most, keeping the attempt with the
most cores busy.
Thread counts: torch.set_num_threads(n), and openblas_set_num_threads on every OpenBLAS library
loaded in this process (torch's float64 convolution, its einsum and numpy's dot call it): n, and for
n > 1 in the float64 convolution and in local connections also 1, keeping the faster (see
measure_torch). Before its "done" the peer runs a convolution with the most threads of the manifest,
so that torch's thread pool is made on every CPU (threads made while the main thread is pinned would
inherit its one CPU).

bench_python.py imports this file for its timing rule, its thread settings and the local
connections' torch expression.

Lines, read by bench_layers:
    python_version, numpy_version, scipy_version, torch_version
    torch_skip REASON                        torch cannot be imported (the original's path still runs)
    blas PATH: core CORENAME, CONFIG         each OpenBLAS library loaded here
    malloc WHAT                              the glibc malloc setting (see keep_freed_memory)
    time KIND NAME DTYPE OP THREADS MS CORES REPEATS BLAS_THREADS
    check KIND NAME DTYPE OP ok | FAILED what
    done                                     the end of the setting lines or of an answer
OP is forward or backward; KIND "orig" is the original's path (float32 forward, 1 thread). CORES is
process CPU time over wall time during the timed calls; BLAS_THREADS the OpenBLAS thread count of
the figure (-1: no OpenBLAS found, not pinned). When numpy or scipy cannot be imported it
prints "skip <reason>" and exits with status 3.
"""
import ctypes
import math
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
    threads, and for n > 1 in a call that uses it (the float64 convolution: im2col + gemm; the local
    connections' einsum: batched products) also with 1: torch's own threads already split the batch
    and n OpenBLAS threads inside each oversubscribe the cores (config b, 2 threads: 1.8 against
    0.7 ms), while a batch of 1 needs the BLAS threads. The faster setting is kept."""
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
    """A layer: kind conv / local / pool, images (batch, channels, *shape), nkern kernels of shape
    kernel, stride and mode; out its output extents, pad torch's padding, taps prod(kernel)."""

    def __init__(self, kind, name, ndim, mode, batch, channels, nkern, shape, kernel, stride, original=False):
        self.kind, self.name, self.ndim, self.mode, self.original = kind, name, ndim, mode, original
        self.batch, self.channels, self.nkern = batch, channels, nkern
        self.shape, self.kernel, self.stride = tuple(shape), tuple(kernel), tuple(stride)
        full = mode == "full"
        reach = [i + k - 1 if full else i - k + 1 for i, k in zip(self.shape, self.kernel)]
        self.out = tuple(-(-r // s) for r, s in zip(reach, self.stride))
        self.pad = tuple(k - 1 if full else 0 for k in self.kernel)
        self.taps, self.out_size = math.prod(self.kernel), math.prod(self.out)

    @classmethod
    def parse(cls, fields):
        """From the fields after "case" of a manifest line."""
        ndim = int(fields[3])
        values = [int(v) for v in fields[5:8 + 3 * ndim]]
        lists = [values[3 + d * ndim:3 + (d + 1) * ndim] for d in range(3)]
        return cls(fields[0], fields[1], ndim, fields[4], *values[:3], *lists, original=fields[2] == "1")


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
                cases.append(Case.parse(fields[1:]))
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

def local_weights_to_torch(case, k):
    """Our local weights (a vector, index ((c*N + n)*O + o)*K + l) as w of shape (O, N, C*K) for
    einsum('blp,pnl->bnp', unfold(x), w): unfold's rows are c*K + l (channel, then tap)."""
    c, n, o, taps = case.channels, case.nkern, case.out_size, case.taps
    return k.reshape(c, n, o, taps).permute(2, 1, 0, 3).reshape(o, n, c * taps).contiguous()


def local_weights_from_torch(case, w):
    """The inverse of local_weights_to_torch (for a gradient with respect to w)."""
    c, n, o, taps = case.channels, case.nkern, case.out_size, case.taps
    return w.reshape(o, n, c, taps).permute(2, 1, 0, 3).reshape(-1)


def unfold(torch, case, x):
    """x (B, C, *shape) as the (B, C*K, O) patches: F.unfold in 2-d (what its users call); in 1-d and 3-d
    Tensor.unfold along each spatial axis, (B, C, *out, *kernel), permuted to (B, C, *kernel, *out)."""
    if case.ndim == 2:
        return torch.nn.functional.unfold(x, case.kernel, stride=case.stride)
    u, n = x, case.ndim
    for d in range(n):
        u = u.unfold(2 + d, case.kernel[d], case.stride[d])
    u = u.permute((0, 1) + tuple(range(2 + n, 2 + 2 * n)) + tuple(range(2, 2 + n)))
    return u.reshape(case.batch, case.channels * case.taps, case.out_size)


def local_forward(torch, case, x, w):
    return torch.einsum("blp,pnl->bnp", unfold(torch, case, x), w)


def torch_inputs(torch, np, folder, case, dtype):
    """x, the weights in torch's layout (None for pooling) and g, shaped as torch's call takes them."""
    x = torch.from_numpy(load(np, folder, case, dtype, "x")).reshape((case.batch, case.channels) + case.shape)
    maps = case.channels if case.kind == "pool" else case.nkern
    out = (case.out_size,) if case.kind == "local" else case.out
    g = torch.from_numpy(load(np, folder, case, dtype, "g")).reshape((case.batch, maps) + out)
    k = None
    if case.kind != "pool":
        k = torch.from_numpy(load(np, folder, case, dtype, "k"))
    if case.kind == "conv":
        k = k.reshape((case.nkern, case.channels) + case.kernel)
    elif case.kind == "local":
        k = local_weights_to_torch(case, k)
    return x, k, g


def layer_forward(torch, case, x, k):
    functional = torch.nn.functional
    if case.kind == "conv":
        conv = (functional.conv1d, functional.conv2d, functional.conv3d)[case.ndim - 1]
        return conv(x, k, stride=case.stride, padding=case.pad)
    if case.kind == "local":
        return local_forward(torch, case, x, k)
    pool = (functional.max_pool1d, functional.max_pool2d, functional.max_pool3d)[case.ndim - 1]
    return pool(x, case.kernel, case.stride)


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
    rtol = RTOL[dtype] if case.kind != "pool" else 0.0
    forward = forward_call(torch, case, x, k)().numpy()
    report_check(case.kind, case.name, dtype, "forward",
                 [compare(np, "forward", load(np, folder, case, dtype, "y"), forward, rtol)])
    grads = backward_call(torch, case, x, k, g)()
    problems = [compare(np, "grad images", load(np, folder, case, dtype, "gx"), grads[0].numpy(), rtol)]
    if k is not None:
        gk = grads[1] if case.kind == "conv" else local_weights_from_torch(case, grads[1])
        problems.append(compare(np, "grad kerns", load(np, folder, case, dtype, "gk"), gk.numpy(), rtol))
    report_check(case.kind, case.name, dtype, "backward", problems)


class Layer:
    """A case in one dtype, loaded: torch's inputs and its two timed calls."""

    def __init__(self, torch, np, folder, case, dtype):
        self.case, self.dtype, self.key = case, dtype, (case.kind, case.name, dtype)
        self.x, self.k, self.g = torch_inputs(torch, np, folder, case, dtype)
        self.calls = {"forward": forward_call(torch, case, self.x, self.k),
                      "backward": backward_call(torch, case, self.x, self.k, self.g)}
        self.uses_blas = case.kind == "local" or (case.kind == "conv" and dtype == "float64")


# ---- the original's path ----

def original_call(np, scipy, folder, case):
    """Aesara's convolve, numeric part: patches = (M @ images.T).T, reshaped to (batch * out_size) x
    (channels * kernel taps), dot kerns.T, reordered to batch x (nkern * out_size)."""
    indptr, indices = load(np, folder, case, "float32", "indptr"), load(np, folder, case, "float32", "indices")
    out_size, taps = case.out_size, case.channels * case.taps
    m = scipy.sparse.csc_matrix((np.ones(indices.size, np.float32), indices, indptr),
                                shape=(out_size * taps, case.channels * math.prod(case.shape)))
    x, k = load(np, folder, case, "float32", "x"), load(np, folder, case, "float32", "k")
    batch, nkern = case.batch, case.nkern

    def run():
        patches = (m @ x.T).T.reshape(batch * out_size, taps)
        return (patches @ k.T).reshape(batch, out_size, nkern).transpose(0, 2, 1).reshape(batch, nkern * out_size)
    return run


def time_original(np, scipy, torch, blas, folder, rule, case):
    set_threads(torch, blas, 1, 1)
    run = original_call(np, scipy, folder, case)
    report_time("orig", case.name, "float32", "forward", 1, measure(run, rule, 1) + (1 if blas else -1,))
    ours = load(np, folder, case, "float32", "y")
    report_check("orig", case.name, "float32", "forward", [compare(np, "forward", ours, run(), RTOL["float32"])])


class Pinned:
    """`with Pinned(cpu):` runs its body with the calling thread on that CPU (cpu >= 0) or on every CPU
    this process was started with (-1; the set seen by the first Pinned made)."""
    every = None

    def __init__(self, cpu):
        if Pinned.every is None:
            Pinned.every = os.sched_getaffinity(0)
        self.cpus = {cpu} if cpu >= 0 else Pinned.every

    def __enter__(self):
        try:
            os.sched_setaffinity(0, self.cpus)
        except OSError as e:  # run unpinned, as bench_layers does when it cannot pin
            print("pinning", sorted(self.cpus), "failed:", e, flush=True)

    def __exit__(self, *exc):
        try:
            os.sched_setaffinity(0, Pinned.every)
        except OSError as e:
            print("unpinning failed:", e, flush=True)


# ---- main ----

def import_torch():
    try:
        import torch
    except ImportError as e:
        print("torch_skip", f"{sys.executable}: {e}", flush=True)
        return None
    print("torch_version", torch.__version__, flush=True)
    return torch


def start_thread_pool(torch, blas, threads):
    """One parallel convolution with the most threads, before any pinning (see the module's text)."""
    set_threads(torch, blas, max(threads), max(threads))
    torch.nn.functional.conv2d(torch.ones(8, 16, 64, 64), torch.ones(32, 16, 5, 5))


class Server:
    """The commands of the module's text, on the manifest of folder."""

    def __init__(self, np, scipy, torch, blas, folder):
        self.np, self.scipy, self.torch, self.blas, self.folder = np, scipy, torch, blas, folder
        self.rule, self.threads, self.dtypes, cases = read_manifest(folder)
        self.cases = {(c.kind, c.name): c for c in cases}
        self.layer = None

    def load(self, kind, name, dtype):
        """The Layer of that case and dtype, kept until another is named."""
        if self.layer is None or self.layer.key != (kind, name, dtype):
            self.layer = None  # drop the last one's tensors first
            self.layer = Layer(self.torch, self.np, self.folder, self.cases[(kind, name)], dtype)
        return self.layer

    def time(self, kind, name, dtype, op, threads, cpu):
        layer, n = self.load(kind, name, dtype), int(threads)
        with Pinned(int(cpu)):
            figures = measure_torch(self.torch, self.blas, n, layer.calls[op], self.rule, layer.uses_blas)
        report_time(kind, name, dtype, op, n, figures)

    def check(self, kind, name, dtype):
        layer = self.load(kind, name, dtype)
        check_torch(self.torch, self.np, self.folder, layer.case, dtype, layer.x, layer.k, layer.g)

    def orig(self, name, cpu):
        with Pinned(int(cpu)):
            time_original(self.np, self.scipy, self.torch, self.blas, self.folder, self.rule,
                          self.cases[("conv", name)])

    def serve(self, lines):
        """Answers each command line; 0 at the end of the input, 2 for a command it does not know."""
        known = {"time": (self.time, 6), "check": (self.check, 3), "orig": (self.orig, 2)}
        for line in lines:
            fields = line.split()
            if not fields:
                continue
            action, count = known.get(fields[0], (None, -1))
            needs_torch = fields[0] in ("time", "check")
            if action is None or len(fields) != count + 1 or (needs_torch and self.torch is None):
                print("unknown command:", line.strip(), flush=True)
                return 2
            action(*fields[1:])
            print("done", flush=True)
        return 0


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
    server = Server(np, scipy, torch, blas, argv[1])
    if torch is not None:
        start_thread_pool(torch, blas, server.threads)
    print("done", flush=True)
    return server.serve(sys.stdin)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
