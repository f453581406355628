"""convmtx against scipy.signal.correlate, in 1 to 8 dimensions."""
import numpy as np
import pytest
import scipy.sparse as ss
from scipy.signal import convolve, correlate

import sparsebox

CASES = [
    ((11,), (3,)),
    ((7, 9), (3, 4)),
    ((5, 6, 4), (2, 3, 2)),
    ((4, 3, 5, 3), (2, 1, 3, 2)),
    ((3, 4, 3, 2, 3), (2, 2, 1, 2, 2)),
    ((3, 2, 3, 2, 3, 2), (2, 1, 2, 2, 1, 2)),
    ((2, 3, 2, 2, 3, 2, 2), (1, 2, 2, 1, 2, 1, 2)),
    ((3, 2, 2, 2, 3, 2, 2, 2), (2, 1, 2, 1, 2, 1, 2, 1)),
]


def sampled(ref, stride):
    return ref[tuple(slice(None, None, s) for s in stride)]


@pytest.mark.parametrize("image_shape,kernel_shape", CASES, ids=["%dd" % len(c[0]) for c in CASES])
@pytest.mark.parametrize("mode", ["valid", "full", "same"])
def test_against_correlate(image_shape, kernel_shape, mode):
    rng = np.random.default_rng(len(image_shape))
    kernel = rng.standard_normal(kernel_shape)
    image = rng.standard_normal(image_shape)
    ndim = len(image_shape)
    for stride in [1, 2, tuple((d % 3) + 1 for d in range(ndim))]:
        per_axis = (stride,) * ndim if isinstance(stride, int) else stride
        ref = sampled(correlate(image, kernel, mode), per_axis)
        for fmt in ["csr", "csc"]:
            A = sparsebox.convmtx(kernel, image_shape, mode, stride, fmt)
            assert A.format == fmt and A.shape == (ref.size, image.size) and A.dtype == kernel.dtype
            assert np.allclose(A @ image.ravel(), ref.ravel(), rtol=1e-12, atol=1e-12)


def test_entries_are_the_kernel_values():
    k = np.arange(1.0, 7.0).reshape(2, 3)
    A = sparsebox.convmtx(k, (3, 4))  # valid: 2 x 2 outputs, each a full window
    assert A.shape == (4, 12) and A.nnz == 4 * 6
    assert np.array_equal(A.toarray()[0].reshape(3, 4), [[1, 2, 3, 0], [4, 5, 6, 0], [0, 0, 0, 0]])
    assert A.has_sorted_indices


def test_convolution_with_a_flipped_kernel():
    rng = np.random.default_rng(1)
    k, x = rng.standard_normal((3, 3)), rng.standard_normal((8, 8))
    A = sparsebox.convmtx(k[::-1, ::-1], x.shape, "full")
    assert np.allclose(A @ x.ravel(), convolve(x, k, "full").ravel())


def test_dtypes():
    x = np.arange(20.0).reshape(4, 5)
    k32 = np.ones((2, 2), np.float32)
    assert sparsebox.convmtx(k32, (4, 5)).dtype == np.float32
    ki = np.array([[1, -1]])
    A = sparsebox.convmtx(ki, (4, 5), "full")
    assert A.dtype == ki.dtype and np.array_equal(A @ x.ravel().astype(int), correlate(x, ki, "full").ravel())
    kc = np.array([[1 + 2j, 3]])
    assert np.allclose(sparsebox.convmtx(kc, (4, 5)) @ x.ravel(), correlate(x, kc, "valid").ravel())


def test_is_the_transpose_of_the_adjoint():
    """A.T applies the adjoint: the full-mode correlation's adjoint is a valid correlation with the
    kernel flipped."""
    rng = np.random.default_rng(2)
    k, g = rng.standard_normal((3, 2)), rng.standard_normal((9, 8))
    A = sparsebox.convmtx(k, (7, 7), "full")
    assert isinstance(A, ss.csr_matrix)
    assert np.allclose(A.T @ g.ravel(), correlate(g, k[::-1, ::-1], "valid").ravel())


def test_errors():
    with pytest.raises(ValueError):
        sparsebox.convmtx(np.ones((5, 5)), (4, 4))  # valid with a kernel larger than the image
    with pytest.raises(ValueError, match="dimensions"):
        sparsebox.convmtx(np.ones((2, 2)), (4, 4, 4))
    with pytest.raises(ValueError, match="stride"):
        sparsebox.convmtx(np.ones((2, 2)), (4, 4), stride=(1, 0))
    with pytest.raises(ValueError, match="format"):
        sparsebox.convmtx(np.ones((2, 2)), (4, 4), format="coo")
    with pytest.raises(ValueError, match="mode"):
        sparsebox.convmtx(np.ones((2, 2)), (4, 4), mode="circular")
    with pytest.raises(ValueError, match="dimensions"):
        sparsebox.convmtx(np.ones((1,) * 9), (2,) * 9)
    with pytest.raises(TypeError):
        sparsebox.convmtx(np.array([["a"]]), (2, 2))
