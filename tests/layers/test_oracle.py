"""The layers through `sbx`, against scipy and numpy oracles:
- convolve as Aesara's test_convolution checks it: 28x28 images, 5 kernels 5x5, bias, steps 1..4,
  valid and full, against scipy.signal.convolve2d with the kernel flipped, sampled [::dy, ::dx];
- max_pool against a numpy loop over the original's windows (step = pool shape as (dx, dy));
- the gradients of convolve against numpy's adjoint formulas.
Usage: test_oracle.py PATH/TO/sbx SCRATCH_DIR. Exits 77 (skipped) without numpy or scipy."""
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    from scipy.signal import convolve2d
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


def path(name):
    return os.path.join(TMP, name)


def sbx(*args):
    r = subprocess.run([SBX, *args], capture_output=True, text=True)
    if r.returncode != 0:
        print("sbx", *args, "->", r.returncode, r.stderr.strip())
    return r.returncode


rng = np.random.default_rng(3423489)
bsize, nkern, h, w, kh, kw = 10, 5, 28, 28, 5, 5
images = rng.standard_normal((bsize, h * w))
kerns = rng.standard_normal((nkern, kh * kw))
bias = rng.standard_normal(nkern)
np.save(path("x.npy"), images)
np.save(path("k.npy"), kerns)
np.save(path("b.npy"), bias)

for mode in ["valid", "full"]:
    for s in range(1, 5):
        args = ["convolve", "--images", path("x.npy"), "--imgshp", f"{h},{w}", "--kerns", path("k.npy"),
                "--kshp", f"{kh},{kw}", "--nkern", str(nkern), "--step", f"{s},{s}", "--mode", mode,
                "--bias", path("b.npy"), "--no-flatten", "-o", path("y.npy")]
        if sbx(*args) != 0:
            check(False, f"{mode} step {s}: sbx convolve failed")
            continue
        y = np.load(path("y.npy"))
        for b in range(bsize):
            for n in range(nkern):
                img = images[b].reshape(h, w)
                flipped = kerns[n].reshape(kh, kw)[::-1, ::-1]
                ref = convolve2d(img, flipped, mode=mode)[::s, ::s] + bias[n]
                got = y[b, n].reshape(ref.shape)
                check(np.allclose(got, ref, rtol=1e-10, atol=1e-10), f"{mode} step {s} image {b} kernel {n}")

# Gradients of sum(y * g) for a 3-feature-map input, by the adjoint formulas in numpy.
c, h2, w2, kh2, kw2, dy, dx = 3, 9, 8, 3, 2, 2, 1
x = rng.standard_normal((4, c * h2 * w2))
k = rng.standard_normal((2, c * kh2 * kw2))
oh, ow = -(-(h2 - kh2 + 1) // dy), -(-(w2 - kw2 + 1) // dx)
g = rng.standard_normal((4, 2 * oh * ow))
np.save(path("x2.npy"), x)
np.save(path("k2.npy"), k)
np.save(path("g2.npy"), g)
rc = sbx("convolve", "--images", path("x2.npy"), "--imgshp", f"{c},{h2},{w2}", "--kerns", path("k2.npy"),
         "--kshp", f"{kh2},{kw2}", "--nkern", "2", "--step", f"{dx},{dy}", "-o", path("y2.npy"),
         "--grad-out", path("g2.npy"), "--grad-images", path("gx.npy"), "--grad-kerns", path("gk.npy"),
         "--grad-bias", path("gb.npy"))
check(rc == 0, "convolve with gradients")
if rc == 0:
    xs = x.reshape(4, c, h2, w2)
    ks = k.reshape(2, c, kh2, kw2)
    gs = g.reshape(4, 2, oh, ow)
    y = np.zeros((4, 2, oh, ow))
    gx = np.zeros_like(xs)
    gk = np.zeros_like(ks)
    for i in range(oh):
        for j in range(ow):
            patch = xs[:, :, i * dy:i * dy + kh2, j * dx:j * dx + kw2]
            y[:, :, i, j] = np.einsum("bcuv,ncuv->bn", patch, ks)
            gk += np.einsum("bn,bcuv->ncuv", gs[:, :, i, j], patch)
            gx[:, :, i * dy:i * dy + kh2, j * dx:j * dx + kw2] += np.einsum("bn,ncuv->bcuv", gs[:, :, i, j], ks)
    check(np.allclose(np.load(path("y2.npy")), y.reshape(4, -1), rtol=1e-12, atol=1e-12), "3-map forward")
    check(np.allclose(np.load(path("gx.npy")), gx.reshape(4, -1), rtol=1e-12, atol=1e-12), "grad images")
    check(np.allclose(np.load(path("gk.npy")), gk.reshape(2, -1), rtol=1e-12, atol=1e-12), "grad kerns")
    check(np.allclose(np.load(path("gb.npy")), gs.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12), "grad bias")

# max_pool with the original's placement, square and not.
for (c, hh, ww), (ph, pw) in [((2, 10, 10), (2, 2)), ((1, 7, 11), (2, 3)), ((3, 9, 6), (3, 1))]:
    x = rng.random((3, c * hh * ww)).astype(np.float32)
    np.save(path("p.npy"), x)
    rc = sbx("maxpool", "--images", path("p.npy"), "--imgshp", f"{c},{hh},{ww}", "--poolshp", f"{ph},{pw}",
             "-o", path("q.npy"))
    check(rc == 0, f"maxpool {ph}x{pw}")
    if rc:
        continue
    sy, sx = pw, ph  # the original's step (dx, dy) = (ph, pw)
    oh, ow = -(-(hh - ph + 1) // sy), -(-(ww - pw + 1) // sx)
    xs = x.reshape(3, c, hh, ww)
    ref = np.empty((3, c, oh, ow), dtype=np.float32)
    for i in range(oh):
        for j in range(ow):
            ref[:, :, i, j] = xs[:, :, i * sy:i * sy + ph, j * sx:j * sx + pw].max(axis=(2, 3))
    got = np.load(path("q.npy"))
    check(got.dtype == np.float32 and np.array_equal(got, ref.reshape(3, -1)), f"maxpool {ph}x{pw} values")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
