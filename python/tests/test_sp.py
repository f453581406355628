"""sp: the patch matrix, convolve, max_pool and apply_sparse_filter against the golden data of the
original, against scipy.signal.convolve2d (the original's test_convolution and test_multilayer_conv),
against a numpy loop over the windows (test_maxpool), and their gradients against finite differences."""
import numpy as np
import pytest
from conftest import Golden, golden_ids, golden_paths
from scipy.signal import convolve2d

from sparsebox import sp


def close(got, want, rel=1e-10):
    """Summation orders differ from the original's: FORMAT.md's tolerance, 1e-10 (1 + |want|)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    err = np.abs(got - want) - rel * (1 + np.abs(want))
    assert np.all(err <= 0), "largest excess %g" % err.max()


# --- golden data ----------------------------------------------------------------------------------------------
CI = golden_paths("ci_")
CONV = golden_paths("conv_")
POOL = golden_paths("maxpool_")
ASF = golden_paths("asf_")


def test_golden_data_is_there():
    assert (len(CI), len(CONV), len(POOL), len(ASF)) == (622, 89, 25, 107)


@pytest.mark.parametrize("path", CI, ids=golden_ids(CI))
def test_convolution_indices_golden(path):
    g = Golden(path)
    inshp, kshp, strides, mode = g.ints("inshp"), g.ints("kshp"), g.ints("strides"), g.keys["mode"]
    ws, nkern = g.keys["ws"] == "1", int(g.keys["nkern"])
    if not g.ok:
        with pytest.raises(ValueError):
            sp.convolution_indices.evaluate(inshp, kshp, strides, nkern, mode, ws)
        return
    r = sp.convolution_indices.evaluate(inshp, kshp, strides, nkern, mode, ws)
    assert len(r) == (5 if ws else 6)
    indices, indptr, spmat_shape, sptype, outshp = r[:5]
    assert indices.dtype == np.int32 and indptr.dtype == np.int32 and outshp.dtype == np.int64
    assert np.array_equal(indices, g.array("indices"))
    assert np.array_equal(indptr, g.array("indptr"))
    assert spmat_shape == g.ints("spmat_shape") and sptype == "csc"
    assert np.array_equal(outshp, g.ints("outshp"))
    if not ws:
        assert r[5].dtype == np.int64 and np.array_equal(r[5], g.array("kmap"))
        again = sp.convolution_indices.sparse_eval(inshp, kshp, nkern, strides, mode)
    else:
        again = sp.convolution_indices.conv_eval(inshp, kshp, strides, mode)
    assert all(np.array_equal(a, b) for a, b in zip(again, r))
    # the stored values: the original's tap numbers
    m = sp.convolution_indices.matrix(inshp, kshp, strides, nkern, mode, ws)
    assert m.format == "csc" and np.array_equal(m.data, g.array("data"))


@pytest.mark.parametrize("path", CONV, ids=golden_ids(CONV))
def test_convolve_golden(path):
    g = Golden(path)
    imgshp, kshp, step, mode = g.ints("imgshp"), g.ints("kshp"), g.ints("step"), g.keys["mode"]
    nkern, flatten = int(g.keys["nkern"]), g.keys["flatten"] == "1"
    if not g.ok:
        c = imgshp[0] if len(imgshp) == 3 else 1
        with pytest.raises(ValueError):
            sp.convolve(np.zeros((nkern, c * kshp[0] * kshp[1])), kshp, nkern,
                        np.zeros((int(g.keys["bsize"]), int(np.prod(imgshp)))), imgshp, step, None, mode, flatten)
        return
    kerns, images = g.array("kerns", "kerns_shape"), g.array("images", "images_shape")
    bias = g.array("bias") if g.has("bias") else None
    out, outshp = sp.convolve(kerns, kshp, nkern, images, imgshp, step, bias, mode, flatten)
    want = g.array("output", "out_shape")
    if g.keys["value_kind"] == "int":
        assert np.array_equal(out, want)
    else:
        close(out, want)
    assert outshp.dtype == np.int64 and np.array_equal(outshp, g.ints("outshp_ret"))


@pytest.mark.parametrize("path", POOL, ids=golden_ids(POOL))
def test_max_pool_golden(path):
    g = Golden(path)
    imgshp, poolshp = g.ints("imgshp"), g.ints("maxpoolshp")
    if not g.ok:
        with pytest.raises(ValueError):
            sp.max_pool(np.zeros((int(g.keys["bsize"]), int(np.prod(imgshp)))), imgshp, poolshp)
        return
    out, outshp = sp.max_pool(g.array("images", "images_shape"), imgshp, poolshp)
    assert np.array_equal(out, g.array("output", "out_shape"))  # a maximum is exact
    assert np.array_equal(outshp, g.ints("outshp_ret"))


@pytest.mark.parametrize("path", ASF, ids=golden_ids(ASF))
def test_apply_sparse_filter_golden(path):
    g = Golden(path)
    imgshp, kshp, step, mode = g.ints("imgshp"), g.ints("kshp"), g.ints("step"), g.keys["mode"]
    nkern = int(g.keys["nkern"])
    bias = g.array("bias") if g.has("bias") else None
    out, outshp = sp.apply_sparse_filter(g.array("kerns"), kshp, nkern, g.array("images", "images_shape"), imgshp,
                                         step, bias, mode)
    close(out, g.array("output", "out_shape"))
    assert np.array_equal(outshp, g.ints("outshp_ret"))


# --- the original's test_convolution: against convolve2d with the kernel flipped ------------------------------------
@pytest.mark.parametrize("mode", ["valid", "full"])
@pytest.mark.parametrize("step", [(1, 1), (2, 2), (3, 3), (4, 4), (1, 2), (3, 1)])
def test_convolution_against_convolve2d(mode, step):
    rng = np.random.default_rng(3423489)
    bsize, nkern, imshp, kshp = 10, 5, (28, 28), (5, 5)
    filters = rng.standard_normal((nkern, kshp[0] * kshp[1]))
    bias = rng.standard_normal(nkern)
    images = rng.standard_normal((bsize, imshp[0] * imshp[1]))
    out, outshp = sp.convolve(filters, kshp, nkern, images, imshp, step, bias, mode, flatten=False)
    dx, dy = step
    for b in range(bsize):
        img = images[b].reshape(imshp)
        for n in range(nkern):
            flipped = filters[n].reshape(kshp)[::-1, ::-1]  # convolve2d flips: flipping back correlates
            ref = convolve2d(img, flipped, mode)[::dy, ::dx] + bias[n]
            assert ref.shape == tuple(outshp[1:])
            close(out[b, n].reshape(ref.shape), ref, 1e-12)


def test_multilayer_conv():
    """Two layers, the second reading the first's output as nkern feature maps: each against a sum over
    input maps of convolve2d, and the shapes chained as the original's test chains them."""
    rng = np.random.default_rng(5)
    bsize, imshp = 3, (1, 12, 12)
    layers = [((5, 5), 4, (1, 1)), ((3, 3), 3, (2, 2))]
    x, shp = rng.standard_normal((bsize, int(np.prod(imshp)))), imshp
    for kshp, nkern, step in layers:
        c = shp[0]
        kerns = rng.standard_normal((nkern, c * kshp[0] * kshp[1]))
        y, outshp = sp.convolve(kerns, kshp, nkern, x, shp, step, mode="valid")
        assert y.shape == (bsize, int(np.prod(outshp)))
        dx, dy = step
        for b in range(bsize):
            img = x[b].reshape(shp)
            for n in range(nkern):
                k = kerns[n].reshape(c, *kshp)
                ref = sum(convolve2d(img[f], k[f, ::-1, ::-1], "valid") for f in range(c))[::dy, ::dx]
                close(y[b].reshape(outshp)[n], ref, 1e-12)
        x, shp = y, tuple(int(v) for v in outshp)
    assert shp == (3, 3, 3)  # 12 - 5 + 1 = 8, then ceil((8 - 3 + 1) / 2) = 3


def test_multilayer_conv_golden_chain():
    """The golden multilayer files: layer 2's imgshp is layer 1's outshp."""
    g1 = Golden(golden_paths("conv_aesara_test_multilayer_conv_layer1")[0])
    g2 = Golden(golden_paths("conv_aesara_test_multilayer_conv_layer2")[0])
    assert g2.ints("imgshp") == g1.ints("outshp_ret")


# --- the original's test_maxpool: against a loop over the windows, gradient by finite differences -----------------
def pool_loop(images, imgshp, p):
    """max_pool written out: window (ph, pw) at rows y*pw.., columns x*ph.. (the pool shape as (dx, dy))."""
    c, h, w = (1,) + tuple(imgshp) if len(imgshp) == 2 else imgshp
    ph, pw = p
    dx, dy = ph, pw
    oh, ow = -(-(h - ph + 1) // dy), -(-(w - pw + 1) // dx)
    out = np.empty((images.shape[0], c, oh, ow))
    x = images.reshape(-1, c, h, w)
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = x[:, :, i * dy:i * dy + ph, j * dx:j * dx + pw].max(axis=(2, 3))
    return out.reshape(images.shape[0], -1), (oh, ow)


@pytest.mark.parametrize("p", [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (2, 3), (3, 2)])
def test_maxpool(p):
    rng = np.random.default_rng(1)
    imgshp = (2, 11, 13)
    images = rng.standard_normal((4, int(np.prod(imgshp))))
    out, outshp = sp.max_pool(images, imgshp, p)
    ref, refshp = pool_loop(images, imgshp, p)
    assert np.array_equal(out, ref) and tuple(outshp) == refshp


def fd_grad(f, x, eps=1e-6):
    """Central differences of the scalar f at x (float64), element by element."""
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        v = flat[i]
        flat[i] = v + eps
        hi = f()
        flat[i] = v - eps
        lo = f()
        flat[i] = v
        gf[i] = (hi - lo) / (2 * eps)
    return g


@pytest.mark.parametrize("p", [(2, 2), (3, 2)])
def test_maxpool_grad_finite_differences(p):
    rng = np.random.default_rng(2)
    imgshp = (2, 6, 7)
    images = rng.standard_normal((2, int(np.prod(imgshp))))
    out, _ = sp.max_pool(images, imgshp, p)
    w = rng.standard_normal(out.shape)
    g = sp.max_pool_grad(w, images, imgshp, p)
    num = fd_grad(lambda: float(np.sum(sp.max_pool(images, imgshp, p)[0] * w)), images)
    assert g.shape == images.shape and np.allclose(g, num, atol=1e-7)


def test_maxpool_grad_ties_all_receive():
    images = np.zeros((1, 16))  # every pixel ties in every window
    g = sp.max_pool_grad(np.ones((1, 4)), images, (4, 4), (2, 2))
    assert np.array_equal(g, np.ones((1, 16)))


@pytest.mark.parametrize("mode,step,imgshp", [("valid", (1, 1), (2, 6, 5)), ("full", (2, 1), (2, 4, 5)),
                                              ("valid", (1, 2), (5, 6)), ("full", (3, 2), (3, 4))])
def test_convolve_grad_finite_differences(mode, step, imgshp):
    rng = np.random.default_rng(3)
    kshp, nkern, bsize = (2, 3), 3, 2
    c = imgshp[0] if len(imgshp) == 3 else 1
    kerns = rng.standard_normal((nkern, c * 6))
    images = rng.standard_normal((bsize, int(np.prod(imgshp))))
    bias = rng.standard_normal(nkern)
    out, _ = sp.convolve(kerns, kshp, nkern, images, imgshp, step, bias, mode)
    w = rng.standard_normal(out.shape)

    def f():
        return float(np.sum(sp.convolve(kerns, kshp, nkern, images, imgshp, step, bias, mode)[0] * w))
    gk, gx, gb = sp.convolve_grad(w, kerns, kshp, nkern, images, imgshp, step, bias, mode)
    assert np.allclose(gk, fd_grad(f, kerns), atol=1e-6)
    assert np.allclose(gx, fd_grad(f, images), atol=1e-6)
    assert np.allclose(gb, fd_grad(f, bias), atol=1e-6)
    # flatten=False's output shape is accepted as gout too, and no bias gives no bias gradient
    gk2, gx2, gb2 = sp.convolve_grad(w.reshape(bsize, nkern, -1), kerns, kshp, nkern, images, imgshp, step, None, mode)
    assert gb2 is None and np.array_equal(gk2, gk) and np.array_equal(gx2, gx)


@pytest.mark.parametrize("mode,step", [("valid", (1, 1)), ("full", (1, 2)), ("valid", (2, 1))])
def test_apply_sparse_filter_grad_finite_differences(mode, step):
    rng = np.random.default_rng(4)
    imgshp, kshp, nkern, bsize = (2, 4, 5), (2, 2), 2, 2
    _, outshp = sp.convolve(np.zeros((nkern, 8)), kshp, nkern, np.zeros((1, 40)), imgshp, step, None, mode)
    out_size = int(np.prod(outshp[1:]))
    kerns = rng.standard_normal(2 * nkern * out_size * 4)
    bias = rng.standard_normal(nkern * out_size)
    images = rng.standard_normal((bsize, 40))
    out, shp = sp.apply_sparse_filter(kerns, kshp, nkern, images, imgshp, step, bias, mode)
    assert np.array_equal(shp, outshp)
    w = rng.standard_normal(out.shape)

    def f():
        return float(np.sum(sp.apply_sparse_filter(kerns, kshp, nkern, images, imgshp, step, bias, mode)[0] * w))
    gk, gx, gb = sp.apply_sparse_filter_grad(w, kerns, kshp, nkern, images, imgshp, step, bias, mode)
    assert np.allclose(gk, fd_grad(f, kerns), atol=1e-6)
    assert np.allclose(gx, fd_grad(f, images), atol=1e-6)
    assert np.allclose(gb, fd_grad(f, bias), atol=1e-6)


def test_apply_sparse_filter_is_the_ws0_matrix_product():
    """out = (W @ images.T).T with W the ws=False patch matrix holding kerns[kmap], as Theano built it."""
    import scipy.sparse as ss
    rng = np.random.default_rng(6)
    imgshp, kshp, nkern, step = (2, 5, 6), (3, 2), 2, (2, 1)
    indices, indptr, spshape, _, outshp, kmap = sp.convolution_indices.sparse_eval(imgshp, kshp, nkern, step)
    kerns = rng.standard_normal(kmap.max() + 1)
    images = rng.standard_normal((3, 60))
    W = ss.csc_matrix((kerns[kmap], indices, indptr), spshape)
    out, _ = sp.apply_sparse_filter(kerns, kshp, nkern, images, imgshp, step)
    close(out, (W @ images.T).T, 1e-12)


# --- dtypes and argument checks --------------------------------------------------------------------------------------
def test_float32_in_float32_out_and_mixed_promotes():
    rng = np.random.default_rng(7)
    k = rng.standard_normal((2, 9)).astype(np.float32)
    x = rng.standard_normal((3, 36)).astype(np.float32)
    out32, _ = sp.convolve(k, (3, 3), 2, x, (6, 6))
    out64, _ = sp.convolve(k.astype(np.float64), (3, 3), 2, x, (6, 6))
    assert out32.dtype == np.float32 and out64.dtype == np.float64
    assert np.allclose(out32, out64, rtol=1e-5, atol=1e-5)


def test_integer_images_convert_exactly():
    x = np.arange(2 * 25).reshape(2, 25)
    k = np.ones((1, 4), np.int32)
    out, _ = sp.convolve(k, (2, 2), 1, x, (5, 5))
    ref = np.array([convolve2d(x[b].reshape(5, 5), np.ones((2, 2)), "valid").ravel() for b in range(2)])
    assert out.dtype == np.float64 and np.array_equal(out, ref)


def test_non_contiguous_inputs_and_shapes():
    rng = np.random.default_rng(8)
    k = rng.standard_normal((2, 9))
    x = rng.standard_normal((6, 36))[::2]  # strided rows: converted once
    assert not x.flags.c_contiguous
    a, _ = sp.convolve(k, (3, 3), 2, x, (6, 6))
    b, _ = sp.convolve(k, (3, 3), 2, np.ascontiguousarray(x), (6, 6))
    assert np.array_equal(a, b)
    c, _ = sp.convolve(k.reshape(2, 1, 3, 3), (3, 3), 2, x.reshape(3, 1, 6, 6), (6, 6))  # any shape of the sizes
    assert np.array_equal(a, c)


def test_errors_carry_the_library_message():
    with pytest.raises(ValueError, match="empty output|kshp|larger|<= 0|>= 1"):
        sp.convolution_indices.evaluate((4, 4), (5, 5))
    with pytest.raises(ValueError, match="kerns"):
        sp.convolve(np.zeros((2, 8)), (3, 3), 2, np.zeros((1, 36)), (6, 6))
    with pytest.raises(ValueError, match="images"):
        sp.convolve(np.zeros((2, 9)), (3, 3), 2, np.zeros((1, 35)), (6, 6))
    with pytest.raises(ValueError, match="mode"):
        sp.convolve(np.zeros((2, 9)), (3, 3), 2, np.zeros((1, 36)), (6, 6), mode="same")
    with pytest.raises(ValueError, match="nkern"):
        sp.convolve(np.zeros((2, 9)), (3, 3), 2.5, np.zeros((1, 36)), (6, 6))
    with pytest.raises(TypeError):
        sp.convolve(np.zeros((2, 9), complex), (3, 3), 2, np.zeros((1, 36)), (6, 6))
    with pytest.raises(ValueError, match="imgshp"):
        sp.max_pool(np.zeros((1, 36)), (1, 1, 6, 6), (2, 2))
    with pytest.raises(ValueError):
        sp.convolve(np.zeros((1, 9)), (3, 3), 1, np.zeros((1, 36)), (6, 6), step=(0, 1))


def test_outputs_are_the_librarys_arrays_without_copies():
    out, _ = sp.convolve(np.ones((1, 4)), (2, 2), 1, np.ones((2, 16)), (4, 4))
    base = out
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    # the library's block, not a copy: no numpy array at the bottom owns it (the C extension's capsule
    # or ctypes' _View holds it)
    assert not isinstance(base, np.ndarray) and not out.flags.owndata
    out[0, 0] = 7.0  # writeable
    assert out[0, 0] == 7.0
