"""The torch peer of bench_train.c: the demo's network trained for one epoch with PyTorch.

Usage:
    peer_torch_train.py DIR

DIR holds manifest.txt and the initial parameters bench_train drew, as .npy files: k1 (16 x 25) and k2
(32 x 400) are conv2d's weights [out, in, 5, 5] flattened, b1 and b2 their biases, w (512 x 10) the
transpose of linear's weight, wb its bias. manifest.txt has the lines
    data DIR              the folder of the gzipped IDX files (Debian's dataset-fashion-mnist)
    train N / test N      the first N images of each split
    batch B / test_batch B / keep K / lr LR / betas B1 B2 / eps E / warmup S / loss_tail L
The images are read here with numpy from the same files, in the same order, as float32 pixels / 255.

The network, with torch.nn.functional, float32:
    conv2d(1->16, 5x5, bias) -> relu -> max_pool2d 2 -> conv2d(16->32, 5x5, bias) -> relu -> max_pool2d 2
    -> dropout(1 - keep) -> linear(512->10) -> cross_entropy
trained by torch.optim.Adam(lr, betas, eps) on batches of B in order, the last partial batch dropped; the
test pass under torch.no_grad() with dropout off (eval mode), in batches of test_batch.

Commands, one a line on the standard input (after the peer has printed "ready"):
    warmup     S untimed steps and a test pass at 1 and at 2 threads; answers "done"
    epoch N    N threads (torch.set_num_threads(N), and openblas_set_num_threads(N) on every OpenBLAS
               loaded here); a fresh start from the initial parameters, a new Adam and the same torch
               seed; one timed epoch and the timed test pass; answers
                   train N SECONDS CORES LOSS STEPS     LOSS: the mean over the last loss_tail steps
                   test N SECONDS CORES ACCURACY
                   done
    quit       exits 0 (so does the end of the input)
CORES is process CPU time over wall time during the timed part. The first lines are
    python_version, numpy_version, torch_version
    torch_config WHAT                    torch's CPU capability and oneDNN lines (torch.__config__.show())
    blas PATH: core CORENAME, CONFIG     each OpenBLAS library loaded in this process
    malloc WHAT                          the glibc malloc setting (peer_torch.keep_freed_memory)
When numpy or torch cannot be imported it prints "skip <reason>" and exits with status 3.
"""
import gzip
import os
import platform
import sys
import time

import peer_torch  # bench_layers' peer: its OpenBLAS and malloc helpers (it imports only the standard library)

THREADS = (1, 2)
TORCH_SEED = 20261204


def read_manifest(folder):
    m = {}
    with open(os.path.join(folder, "manifest.txt")) as f:
        for line in f:
            fields = line.split()
            if fields:
                m[fields[0]] = fields[1:]
    return m


def read_idx(np, path, ndim):
    """One gzipped IDX file of unsigned bytes with ndim dimensions, as a uint8 array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    head = 4 + 4 * ndim
    magic = int.from_bytes(data[0:4], "big")
    if magic != 0x800 | ndim:
        raise ValueError(f"{path}: magic number {magic:#010x}, expected {0x800 | ndim:#010x}")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    values = np.frombuffer(data, np.uint8, offset=head)
    if values.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {values.size} bytes after the header, its extents {dims} say {int(np.prod(dims))}")
    return values.reshape(dims)


def load_split(np, torch, folder, prefix, count):
    """(images N x 1 x 28 x 28 float32 pixels / 255, labels N int64) of the first count images."""
    images = read_idx(np, os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"), 3)[:count]
    labels = read_idx(np, os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), 1)[:count]
    x = images.astype(np.float32) / np.float32(255)
    return torch.from_numpy(np.ascontiguousarray(x).reshape(-1, 1, 28, 28)), torch.from_numpy(labels.astype(np.int64))


def load_init(np, torch, folder):
    """The initial parameters in torch's layouts."""
    def get(name):
        return torch.from_numpy(np.load(os.path.join(folder, name + ".npy")))
    k1, k2, w = get("k1"), get("k2"), get("w")
    return [k1.reshape(k1.shape[0], 1, 5, 5), get("b1"), k2.reshape(k2.shape[0], k2.shape[1] // 25, 5, 5), get("b2"),
            w.t().contiguous(), get("wb")]


def forward(F, params, x, keep, training):
    k1, b1, k2, b2, w, wb = params
    h = F.max_pool2d(F.relu(F.conv2d(x, k1, b1)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, k2, b2)), 2)
    h = F.dropout(h.reshape(h.shape[0], -1), p=1 - keep, training=training)
    return F.linear(h, w, wb)


class Trainer:
    def __init__(self, np, torch, folder):
        m = read_manifest(folder)
        self.torch, self.F = torch, torch.nn.functional
        self.batch, self.test_batch = int(m["batch"][0]), int(m["test_batch"][0])
        self.keep, self.lr = float(m["keep"][0]), float(m["lr"][0])
        self.betas, self.eps = (float(m["betas"][0]), float(m["betas"][1])), float(m["eps"][0])
        self.warmup_steps, self.loss_tail = int(m["warmup"][0]), int(m["loss_tail"][0])
        data = " ".join(m["data"])
        self.x, self.y = load_split(np, torch, data, "train", int(m["train"][0]))
        self.xt, self.yt = load_split(np, torch, data, "t10k", int(m["test"][0]))
        self.init = load_init(np, torch, folder)

    def fresh(self):
        """The initial parameters and a new Adam; the dropout draws from the start again."""
        self.torch.manual_seed(TORCH_SEED)
        params = [p.clone().requires_grad_(True) for p in self.init]
        return params, self.torch.optim.Adam(params, lr=self.lr, betas=self.betas, eps=self.eps)

    def train(self, params, opt, steps):
        """steps steps from the start of the data; the mean loss of the last loss_tail."""
        F, b, tail = self.F, self.batch, []
        for s in range(steps):
            logits = forward(F, params, self.x[s * b:(s + 1) * b], self.keep, True)
            loss = F.cross_entropy(logits, self.y[s * b:(s + 1) * b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if s >= steps - self.loss_tail:
                tail.append(loss.item())
        return sum(tail) / max(len(tail), 1)

    def test(self, params):
        """The fraction of test images whose largest logit is at their label."""
        right, n = 0, self.xt.shape[0]
        with self.torch.no_grad():
            for first in range(0, n, self.test_batch):
                logits = forward(self.F, params, self.xt[first:first + self.test_batch], self.keep, False)
                right += int((logits.argmax(1) == self.yt[first:first + self.test_batch]).sum())
        return right / n if n else 0.0


def timed(fn):
    cpu0, wall0 = time.process_time(), time.perf_counter()
    value = fn()
    wall = time.perf_counter() - wall0
    return value, wall, (time.process_time() - cpu0) / wall if wall > 0 else 0.0


def epoch(trainer, torch, blas, n):
    peer_torch.set_threads(torch, blas, n, n)
    params, opt = trainer.fresh()
    steps = trainer.x.shape[0] // trainer.batch
    loss, seconds, cores = timed(lambda: trainer.train(params, opt, steps))
    print("train", n, repr(seconds), repr(cores), repr(loss), steps)
    accuracy, seconds, cores = timed(lambda: trainer.test(params))
    print("test", n, repr(seconds), repr(cores), repr(accuracy))


def warmup(trainer, torch, blas):
    for n in THREADS:
        peer_torch.set_threads(torch, blas, n, n)
        params, opt = trainer.fresh()
        trainer.train(params, opt, trainer.warmup_steps)
        trainer.test(params)


def torch_config_lines(torch):
    lines = []
    for line in torch.__config__.show().splitlines():
        line = line.strip().lstrip("- ")
        if "CPU capability" in line or "MKL-DNN" in line or "oneDNN" in line:
            lines.append(line)
    return lines


def main(argv):
    sys.stdout.reconfigure(line_buffering=True)
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import numpy as np
        import torch
    except ImportError as e:
        print("skip", f"{sys.executable}: {e}")
        return 3
    print("python_version", platform.python_version())
    print("numpy_version", np.__version__)
    print("torch_version", torch.__version__)
    for line in torch_config_lines(torch):
        print("torch_config", line)
    print("malloc", peer_torch.keep_freed_memory())
    trainer = Trainer(np, torch, argv[1])
    blas = peer_torch.openblas_libraries()  # after numpy and torch have loaded theirs
    for path, lib in blas:
        print("blas", f"{path}: core {lib.openblas_get_corename().decode()}, {lib.openblas_get_config().decode()}")
    if not blas:
        print("blas none: no OpenBLAS loaded in the peer (its BLAS threads not pinned)")
    print("ready")
    for line in sys.stdin:
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "quit":
            break
        if fields[0] == "warmup":
            warmup(trainer, torch, blas)
        elif fields[0] == "epoch" and len(fields) == 2:
            epoch(trainer, torch, blas, int(fields[1]))
        else:
            print("error", "unknown command:", line.strip())
        print("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
