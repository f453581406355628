"""The original's convolution through sparse matrices (sparse.sandbox.sp), on numpy arrays.

Shapes and step order are the original's: an image shape `imgshp` / `inshp` is (h, w) or
(nfeatures, h, w); a kernel shape is (kh, kw); `step` / `strides` is (dx, dy), dx along the WIDTH, so
step (1, 2) puts output rows 2 apart. Images are batch x (nfeatures * h * w) in raster order, feature
maps one after another; kernels are nkern x (nfeatures * kh * kw), taps applied as correlation (no
flip); outputs are batch x (nkern * out_h * out_w), each feature map contiguous.

    out_h = ceil((h - kh + 1) / dy), out_w = ceil((w - kw + 1) / dx)   (valid)
    out_h = ceil((h + kh - 1) / dy), out_w = ceil((w + kw - 1) / dx)   (full: sampled from position 0)

Where the original built a graph, these functions compute: the patch matrix, the convolution, max
pooling and the unshared-weight filter (Theano's applySparseFilter), and their gradients, each a call
into the library's layer plans (made once per geometry and kept).
"""
import functools
from ctypes import byref, c_void_p

import numpy as np

from . import _lib as L
from .op import Op, tensor

__all__ = ["ConvolutionIndices", "convolution_indices", "convolve", "convolve_grad", "max_pool", "max_pool_grad",
           "apply_sparse_filter", "apply_sparse_filter_grad", "Convolve", "LocalConnections", "MaxPool"]


def _aesara_shape(inshp, kshp, step, mode):
    try:
        return _aesara_shape_cached(tuple(inshp), tuple(kshp), tuple(step), mode)
    except TypeError:  # an unhashable entry: let the checks below name it
        return _aesara_shape_cached.__wrapped__(tuple(inshp), tuple(kshp), tuple(step), mode)


@functools.lru_cache(maxsize=256)
def _aesara_shape_cached(inshp, kshp, step, mode):
    """The ConvShape of the original's arguments (cached: shared, never written)."""
    if len(inshp) not in (2, 3):
        raise ValueError("imgshp: expected (h, w) or (nfeatures, h, w), got %r" % (inshp,))
    s = L.ConvShape()
    L.check(L.lib.sbx_conv_shape_aesara(len(inshp), L.i64_vector(inshp, "imgshp"), L.i64_vector(kshp, "kshp", 2),
                                        L.i64_vector(step, "step", 2), L.mode_code(mode), byref(s)))
    return s


def _pool_shape(imgshp, maxpoolshp):
    imgshp = tuple(imgshp)
    if len(imgshp) not in (2, 3):
        raise ValueError("imgshp: expected (h, w) or (nfeatures, h, w), got %r" % (imgshp,))
    s = L.ConvShape()
    L.check(L.lib.sbx_pool_shape_aesara(len(imgshp), L.i64_vector(imgshp, "imgshp"),
                                        L.i64_vector(maxpoolshp, "maxpoolshp", 2), byref(s)))
    return s


def patch_matrix(shape, weight_sharing, nkern, fmt):
    """(scipy matrix of tap numbers, kmap or None) of sbx_conv_indices for a ConvShape."""
    m = c_void_p()
    km = c_void_p()
    L.check(L.lib.sbx_conv_indices(byref(shape), 1 if weight_sharing else 0, int(nkern), L.FORMAT_CODE[fmt],
                                   byref(m), None if weight_sharing else byref(km)))
    mat = L.take_sparse(m.value)
    return mat, (None if weight_sharing else L.take_array(km.value))


def _int32_if_fits(a):
    return a.astype(np.int32) if a.size == 0 or a.max() <= np.iinfo(np.int32).max else a


class ConvolutionIndices(Op):
    """The original's ConvolutionIndices: the sparse matrix that gathers every image patch (or, without
    weight sharing, every local connection) as a product with the image.

    Its static methods (evaluate, conv_eval, sparse_eval) compute it, as the original's did. Made with a
    geometry, ConvolutionIndices(inshp, kshp, strides, nkern, mode, ws) is also an op of the contract
    (sparsebox.op): the geometry is its properties (the original passed inshp and kshp as constant
    inputs), make_node() takes no inputs, and perform gives the matrix (int64 tap numbers, csc) and,
    without weight sharing, kmap."""
    _symbol = "sbx_op_convolution_indices"

    def __init__(self, inshp=None, kshp=None, strides=(1, 1), nkern=1, mode="valid", ws=True, format="csc"):
        self.geometry = None
        if inshp is not None or kshp is not None:
            if format not in L.FORMAT_CODE:
                raise ValueError("format: expected 'csr' or 'csc', got %r" % (format,))
            shape = _aesara_shape(inshp, kshp, strides, mode)
            self.geometry = (tuple(inshp), tuple(kshp), tuple(strides), int(nkern), mode, bool(ws), format, shape)

    def _props(self):
        if self.geometry is None:
            raise TypeError("ConvolutionIndices() has no geometry: make it as ConvolutionIndices(inshp, kshp, ...) "
                            "to use it as an op")
        p = L.IndicesProps()
        p.shape = self.geometry[7]
        p.weight_sharing = 1 if self.geometry[5] else 0
        p.nkern = self.geometry[3]
        p.format = L.FORMAT_CODE[self.geometry[6]]
        return p

    def _describe(self):
        if self.geometry is None:
            return []
        return list(zip(("inshp", "kshp", "strides", "nkern", "mode", "ws", "format"), self.geometry[:7]))

    def _default_inputs(self):
        return []

    def __eq__(self, other):
        if self.geometry is None or getattr(other, "geometry", 0) is None:
            return self is other
        return Op.__eq__(self, other)

    def __hash__(self):
        return id(self) if self.geometry is None else Op.__hash__(self)

    @staticmethod
    def evaluate(inshp, kshp, strides=(1, 1), nkern=1, mode="valid", ws=True):
        """(indices, indptr, spmat_shape, 'csc', outshp), plus kmap when ws is False, as the original:
        indices and indptr of the CSC matrix (int32, rows sorted within each column), spmat_shape its
        (rows, cols), outshp the output's (out_h, out_w) (int64). With ws, row (o * nfeatures + c) * kh * kw
        + l holds the pixel that tap l of output position o reads in map c; without, nkern * out_size rows,
        and kmap (int64) gives the weight of each stored entry, in storage order."""
        shape = _aesara_shape(inshp, kshp, strides, mode)
        mat, kmap = patch_matrix(shape, ws, nkern, "csc")
        outshp = np.array(shape.spatial_out, dtype=np.int64)
        rval = (_int32_if_fits(mat.indices), _int32_if_fits(mat.indptr), tuple(int(v) for v in mat.shape), "csc",
                outshp)
        return rval if ws else rval + (kmap,)

    @staticmethod
    def conv_eval(inshp, kshp, strides=(1, 1), mode="valid"):
        """evaluate with weight sharing (convolution)."""
        return ConvolutionIndices.evaluate(inshp, kshp, strides, 1, mode, True)

    @staticmethod
    def sparse_eval(inshp, kshp, nkern, strides=(1, 1), mode="valid"):
        """evaluate without weight sharing (sparse local connections, nkern output maps)."""
        return ConvolutionIndices.evaluate(inshp, kshp, strides, nkern, mode, False)

    @staticmethod
    def matrix(inshp, kshp, strides=(1, 1), nkern=1, mode="valid", ws=True, format="csc"):
        """The patch matrix itself, a scipy matrix whose stored values are the original's tap numbers
        (int64; kmap is values - 1), in `format` ('csc' as the original, or 'csr')."""
        if format not in L.FORMAT_CODE:
            raise ValueError("format: expected 'csr' or 'csc', got %r" % (format,))
        return patch_matrix(_aesara_shape(inshp, kshp, strides, mode), ws, nkern, format)[0]


convolution_indices = ConvolutionIndices()


# --- argument handling ---------------------------------------------------------------------------------------
def _count(v, name):
    if isinstance(v, (bool, np.bool_)) or int(v) != v or int(v) < 1:
        raise ValueError("%s: expected a positive integer, got %r" % (name, v))
    return int(v)


def _images(images, in_size, dtype, name="images"):
    """images as a (bsize, in_size) C-contiguous array of dtype, and the shape it came in."""
    a = L.as_array(images, dtype, name)
    if a.ndim < 2 or (a.shape[0] * in_size != a.size):
        raise ValueError("%s: expected an array of shape (bsize, %d) (a row per image, raster order), got %r"
                         % (name, in_size, a.shape))
    return a.reshape(a.shape[0], in_size), a.shape


def _sized(x, n, dtype, name, shape_words):
    a = L.as_array(x, dtype, name)
    if a.size != n:
        raise ValueError("%s: expected %d values (%s), got an array of shape %r" % (name, n, shape_words, a.shape))
    return a.reshape(n), a.shape


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _ready(kerns, images, bias):
    """Whether the arrays are numpy arrays of one float dtype, C-contiguous and aligned (bias may be None)."""
    arrays = (kerns, images) if bias is None else (kerns, images, bias)
    dt = getattr(images, "dtype", None)
    return dt in _FLOATS and all(type(a) is np.ndarray and a.dtype == dt and a.flags.c_contiguous and a.flags.aligned
                                 for a in arrays)


def _call(fn, plan, inputs, wants):
    return L.call_plan(fn, plan, inputs, wants)


# --- convolution ------------------------------------------------------------------------------------------------
def _conv_args(kerns, kshp, nkern, images, imgshp, step, bias, mode):
    shape = _aesara_shape(imgshp, kshp, step, mode)
    nkern = _count(nkern, "nkern")
    dt = L.float_dtype(kerns, images, bias)
    taps = shape.channels * shape.kernel_size
    k, kshape = _sized(kerns, nkern * taps, dt, "kerns", "nkern x nfeatures*kh*kw = %d x %d" % (nkern, taps))
    x, xshape = _images(images, shape.in_size, dt)
    b = None
    if bias is not None:
        b, _ = _sized(bias, nkern, dt, "bias", "one per kernel")
    return shape, nkern, dt, k.reshape(nkern, taps), kshape, x, xshape, b


def convolve(kerns, kshp, nkern, images, imgshp, step=(1, 1), bias=None, mode="valid", flatten=True):
    """(output, outshp): the images convolved with nkern kernels (correlation, as the original), plus bias.
    output is (bsize, nkern * out_h * out_w), or (bsize, nkern, out_h * out_w) when flatten is False;
    outshp is (nkern, out_h, out_w). float32 when every input is float32, else float64."""
    shape = _aesara_shape(imgshp, kshp, step, mode) if _ready(kerns, images, bias) else None
    taps = shape.channels * shape.kernel_size if shape is not None else 0
    if (shape is not None and type(nkern) is int and nkern >= 1 and kerns.size == nkern * taps and images.ndim == 2
            and images.shape[1] == shape.in_size and (bias is None or bias.shape == (nkern,))):
        # Arrays of the sizes and dtype the library takes, as they are: nothing to convert or check here.
        # The general path below cost about 20 us a call more (config a: 1.2x the C call's time).
        x, k, b, dt = images, kerns.reshape(nkern, taps), bias, images.dtype
    else:
        shape, nkern, dt, k, _, x, _, b = _conv_args(kerns, kshp, nkern, images, imgshp, step, bias, mode)
    plan = L.plan("conv", shape, nkern, dt)
    # Made before the call: after it, with the caches full of its output, Python code runs cold.
    outshp = np.array((nkern,) + shape.spatial_out, dtype=np.int64)
    (out,) = _call(L.lib.sbx_conv_forward, plan, [x, k, b], [True])
    if not flatten:
        out = out.reshape(x.shape[0], nkern, shape.out_size)
    return out, outshp


def convolve_grad(gout, kerns, kshp, nkern, images, imgshp, step=(1, 1), bias=None, mode="valid"):
    """(g_kerns, g_images, g_bias): the gradients of sum(output * gout) for convolve's arguments, each
    shaped like the argument (g_bias None without bias). gout has the forward output's shape (flattened
    or not)."""
    shape, nkern, dt, k, kshape, x, xshape, b = _conv_args(kerns, kshp, nkern, images, imgshp, step, bias, mode)
    g, _ = _sized(gout, x.shape[0] * nkern * shape.out_size, dt, "gout", "the output's shape")
    g = g.reshape(x.shape[0], nkern * shape.out_size)
    plan = L.plan("conv", shape, nkern, dt)
    gx, gk, gb = _call(L.lib.sbx_conv_backward, plan, [x, k, g], [True, True, b is not None])
    return gk.reshape(kshape), gx.reshape(xshape), (gb.reshape(np.shape(bias)) if gb is not None else None)


# --- unshared weights (Theano's applySparseFilter) -----------------------------------------------------------------
def _local_args(kerns, kshp, nkern, images, imgshp, step, bias, mode):
    shape = _aesara_shape(imgshp, kshp, step, mode)
    nkern = _count(nkern, "nkern")
    dt = L.float_dtype(kerns, images, bias)
    nw = shape.channels * nkern * shape.out_size * shape.kernel_size
    k, kshape = _sized(kerns, nw, dt, "kerns", "nfeatures*nkern*out_size*kh*kw, one per tap of the ws=False "
                                               "patch matrix")
    x, xshape = _images(images, shape.in_size, dt)
    b = None
    if bias is not None:
        b, _ = _sized(bias, nkern * shape.out_size, dt, "bias", "nkern*out_size, one per output unit")
    return shape, nkern, dt, k, kshape, x, xshape, b


def apply_sparse_filter(kerns, kshp, nkern, images, imgshp, step=(1, 1), bias=None, mode="valid"):
    """(output, outshp): Theano's applySparseFilter, local connections with a weight per tap: kerns holds
    nfeatures * nkern * out_size * kh * kw weights in the kmap order of the ws=False patch matrix (weight
    ((c * nkern + n) * out_size + o) * kh * kw + l joins tap l of position o in map c to output unit
    n * out_size + o); bias has nkern * out_size values. output (bsize, nkern * out_size), outshp
    (nkern, out_h, out_w)."""
    shape, nkern, dt, k, _, x, _, b = _local_args(kerns, kshp, nkern, images, imgshp, step, bias, mode)
    plan = L.plan("local", shape, nkern, dt)
    (out,) = _call(L.lib.sbx_local_forward, plan, [x, k, b], [True])
    return out, np.array((nkern,) + shape.spatial_out, dtype=np.int64)


def apply_sparse_filter_grad(gout, kerns, kshp, nkern, images, imgshp, step=(1, 1), bias=None, mode="valid"):
    """(g_kerns, g_images, g_bias) of apply_sparse_filter, shaped like its arguments (g_bias None without
    bias); gout has the output's shape."""
    shape, nkern, dt, k, kshape, x, xshape, b = _local_args(kerns, kshp, nkern, images, imgshp, step, bias, mode)
    g, _ = _sized(gout, x.shape[0] * nkern * shape.out_size, dt, "gout", "the output's shape")
    g = g.reshape(x.shape[0], nkern * shape.out_size)
    plan = L.plan("local", shape, nkern, dt)
    gx, gk, gb = _call(L.lib.sbx_local_backward, plan, [x, k, g], [True, True, b is not None])
    return gk.reshape(kshape), gx.reshape(xshape), (gb.reshape(np.shape(bias)) if gb is not None else None)


# --- max pooling -----------------------------------------------------------------------------------------------------
def max_pool(images, imgshp, maxpoolshp):
    """(output, outshp): the maximum over each (ph, pw) window of each feature map, the window placed with
    the pool shape as its step (dx, dy) = (ph, pw), as the original (for a non-square pool the window
    moves pw rows down and ph columns across). output (bsize, nfeatures * out_h * out_w), outshp
    (out_h, out_w)."""
    shape = _pool_shape(imgshp, maxpoolshp)
    dt = L.float_dtype(images)
    x, _ = _images(images, shape.in_size, dt)
    plan = L.plan("pool", shape, 0, dt)
    (out,) = _call(L.lib.sbx_pool_forward, plan, [x], [True])
    return out, np.array(shape.spatial_out, dtype=np.int64)


def max_pool_grad(gout, images, imgshp, maxpoolshp):
    """g_images: the gradient of sum(output * gout) for max_pool's images: every pixel equal to its
    window's maximum receives the window's gradient (ties all do, as the original's gradient of max),
    summed over overlapping windows."""
    shape = _pool_shape(imgshp, maxpoolshp)
    dt = L.float_dtype(images, gout)
    x, xshape = _images(images, shape.in_size, dt)
    g, _ = _sized(gout, x.shape[0] * shape.channels * shape.out_size, dt, "gout", "the output's shape")
    plan = L.plan("pool", shape, 0, dt)
    (gx,) = _call(L.lib.sbx_pool_backward, plan, [x, g.reshape(x.shape[0], -1)], [True])
    return gx.reshape(xshape)


# --- the layers as ops of the contract (sparsebox.op) --------------------------------------------------------------
class _LayerOp(Op):
    input_names = ("images", "kerns", "bias")

    def _props(self):
        p = L.LayerProps()
        p.shape, p.nkern = self._shape, self.nkern
        return p

    def _describe(self):
        return [("kshp", self.kshp), ("nkern", self.nkern), ("imgshp", self.imgshp), ("step", self.step),
                ("mode", self.mode)]

    def __init__(self, kshp, nkern, imgshp, step=(1, 1), mode="valid"):
        self._shape = _aesara_shape(imgshp, kshp, step, mode)
        self.kshp, self.nkern, self.imgshp = tuple(kshp), _count(nkern, "nkern"), tuple(imgshp)
        self.step, self.mode = tuple(step), mode

    def _weights(self):
        raise NotImplementedError

    def _default_inputs(self):
        return [tensor(np.float64, (None, self._shape.in_size))(), tensor(np.float64, self._weights())()]


class Convolve(_LayerOp):
    """convolve as an op: (images (bsize, in_size), kerns (nkern, nfeatures*kh*kw)[, bias (nkern,)]) ->
    output (bsize, nkern*out_size), the library's Convolve class; its grad is ConvBackward's outputs."""
    _symbol = "sbx_op_convolve"

    def _weights(self):
        return (self.nkern, self._shape.channels * self._shape.kernel_size)


class LocalConnections(_LayerOp):
    """apply_sparse_filter as an op: (images, kerns (a vector, kmap order)[, bias (nkern*out_size,)]) ->
    output (bsize, nkern*out_size), the library's LocalConnections class."""
    _symbol = "sbx_op_local_connections"

    def _weights(self):
        s = self._shape
        return (s.channels * self.nkern * s.out_size * s.kernel_size,)


class MaxPool(Op):
    """max_pool as an op: (images,) -> (output (bsize, nfeatures*out_size), mask), the mask saying which
    taps reach each window's maximum (what the gradient reads), the library's MaxPool class."""
    _symbol = "sbx_op_max_pool"
    input_names = ("images",)

    def __init__(self, imgshp, maxpoolshp):
        self._shape = _pool_shape(imgshp, maxpoolshp)
        self.imgshp, self.maxpoolshp = tuple(imgshp), tuple(maxpoolshp)

    def _props(self):
        p = L.PoolProps()
        p.shape = self._shape
        return p

    def _describe(self):
        return [("imgshp", self.imgshp), ("maxpoolshp", self.maxpoolshp)]

    def _default_inputs(self):
        return [tensor(np.float64, (None, self._shape.in_size))()]
