"""convmtx: a convolution (correlation) as a scipy.sparse matrix, in 1 to 8 dimensions."""
import math

import numpy as np

from . import _lib as L
from .sp import patch_matrix


def _per_axis(v, ndim, name):
    vals = [v] * ndim if np.ndim(v) == 0 else list(v)
    if len(vals) != ndim:
        raise ValueError("%s: expected an integer or %d of them, got %r" % (name, ndim, v))
    out = []
    for s in vals:
        if isinstance(s, (bool, np.bool_)) or int(s) != s or int(s) < 1:
            raise ValueError("%s: expected positive integers, got %r" % (name, v))
        out.append(int(s))
    return out


def convmtx(kernel, image_shape, mode="valid", stride=1, format="csr"):
    """The sparse matrix A with `A @ image.ravel()` equal to
    `scipy.signal.correlate(image, kernel, mode)[::s0, ::s1, ...].ravel()` for every image of shape
    image_shape (1 to 8 dimensions): row r is output position r (raster order), its entries the kernel's
    values at the columns of the pixels that position reads. (For convolution rather than correlation,
    pass the kernel flipped along every axis: `kernel[::-1, ::-1]`.)

    mode: 'valid' (the kernel no larger than the image along every axis), 'full' or 'same' (centred as
    scipy.signal's). stride: an integer or one per axis. format: 'csr' or 'csc'. The dtype is the
    kernel's (a complex kernel enters conjugated, as scipy.signal.correlate has it). Entries where the
    kernel is zero are stored too (A.eliminate_zeros() drops them).

    Built from the library's patch matrix without weight sharing (one row per output position, the tap
    of each entry given by kmap), so the cost is that of writing A's arrays."""
    k = np.asarray(kernel)
    if k.dtype.kind not in "biufc":
        raise TypeError("kernel: expected numbers, got dtype %s" % k.dtype)
    ndim = k.ndim
    shape = tuple(image_shape) if np.ndim(image_shape) else (image_shape,)
    if not 1 <= ndim <= L.MAX_NDIM:
        raise ValueError("kernel: expected 1 to %d dimensions, got %d" % (L.MAX_NDIM, ndim))
    if len(shape) != ndim:
        raise ValueError("image_shape %r has %d dimensions, the kernel %d" % (shape, len(shape), ndim))
    if format not in L.FORMAT_CODE:
        raise ValueError("format: expected 'csr' or 'csc', got %r" % (format,))
    if mode not in ("valid", "full", "same"):
        raise ValueError("mode: expected 'valid', 'full' or 'same', got %r" % (mode,))
    stride = _per_axis(stride, ndim, "stride")
    shape = _per_axis(shape, ndim, "image_shape")
    if k.size == 0:
        raise ValueError("kernel: empty")
    taps = k.reshape(-1)
    if taps.dtype.kind == "c":
        taps = np.conj(taps)  # correlation of complex data conjugates the kernel, as scipy.signal.correlate
    ksize = taps.size
    if mode == "same":
        # scipy's 'same' is the full output's centre: position o of axis d is full position
        # o + (k_d - 1) // 2. Build the full matrix with stride 1 and keep those rows.
        geo = L.conv_shape(ndim, 1, shape, k.shape, [1] * ndim, "full")
        m, kmap = patch_matrix(geo, False, 1, "csr")
        full_out = geo.spatial_out
        axes = [np.arange((kd - 1) // 2, (kd - 1) // 2 + n, s) for kd, n, s in zip(k.shape, shape, stride)]
        rows = np.ravel_multi_index(np.meshgrid(*axes, indexing="ij"), full_out).reshape(-1)
        m.data = taps[kmap % ksize]
        a = m[rows]
        a.sort_indices()
        return a.tocsc() if format == "csc" else a
    geo = L.conv_shape(ndim, 1, shape, k.shape, stride, mode)
    m, kmap = patch_matrix(geo, False, 1, format)
    # one kernel and one feature map: entry (o, l) has kmap o * ksize + l, its value the kernel's tap l
    m.data = taps[kmap % ksize] if ksize > 1 else np.full(kmap.shape, taps[0])
    assert m.shape == (math.prod(geo.spatial_out), math.prod(shape))
    return m
