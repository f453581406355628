"""The package itself: finding the library, errors, the crossing of arrays, threads, and what
`import sparsebox` imports."""
import os
import subprocess
import sys

import numpy as np
import pytest

import sparsebox
from sparsebox import _lib as L
from sparsebox import sp2

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(code, env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_import_does_not_import_torch():
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    r = run("import sys, sparsebox; from sparsebox import sp, sp2, op; print('torch' in sys.modules)", env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_library_not_found_says_where_it_looked():
    env = {k: v for k, v in os.environ.items() if k not in ("SPARSEBOX_LIBRARY_DIR", "LD_LIBRARY_PATH")}
    env.update(PYTHONPATH=PYTHON_DIR, SPARSEBOX_LIBRARY_DIR="/nonexistent")
    r = run("import sparsebox", env)
    if r.returncode == 0:
        pytest.skip("libsparsebox.so is installed on the system library path")
    assert "ImportError" in r.stderr and "SPARSEBOX_LIBRARY_DIR" not in r.stderr.split("ImportError")[0]
    assert "/nonexistent" in r.stderr


def test_errors_map_to_python_exceptions():
    with pytest.raises(MemoryError, match="cannot allocate") as e:
        sp2.csr_dbinomial(1, 0.0, (2 ** 40, 1), seed=1)  # an 8 TB index array
    assert e.value.status == L.ERR_NOMEM
    with pytest.raises(ValueError, match="overflow") as e:
        sp2.csr_dbinomial(1, 0.0, (2 ** 62, 2), seed=1)
    assert e.value.status == L.ERR_OVERFLOW
    with pytest.raises(ValueError) as e:
        sparsebox.sp.convolution_indices.evaluate((3, 3), (4, 4))
    assert e.value.status == L.ERR_ARG and str(e.value) == L.last_error()


def test_arrays_cross_without_copies_when_they_can():
    a = np.arange(12.0).reshape(3, 4)
    assert L.as_array(a, np.float64, "a") is a
    b = L.as_array(a.T, np.float64, "a")  # not C-contiguous: one conversion
    assert b is not a and b.flags.c_contiguous and np.array_equal(b, a.T)
    i = np.arange(5, dtype=np.int64)
    assert L.as_array(i, np.int64, "i") is i
    assert L.as_array(i.astype(np.int32), np.int64, "i").dtype == np.int64


def test_no_silent_truncation():
    with pytest.raises(ValueError, match="not an integer"):
        L.as_array(np.array([1.0, 2.5]), np.int64, "n")
    with pytest.raises(ValueError, match="non-finite"):
        L.as_array(np.array([np.nan]), np.int64, "n")
    with pytest.raises(ValueError, match="fit"):
        L.as_array(np.array([300]), np.uint8, "n")
    with pytest.raises(ValueError, match="2\\^53"):
        L.as_array(np.array([2 ** 60 + 1]), np.float64, "x")
    with pytest.raises(TypeError):
        L.as_array(np.array(["a"]), np.float64, "x")
    assert np.array_equal(L.as_array(np.array([1.0, 2.0]), np.int64, "n"), [1, 2])


def test_threads():
    before = sparsebox.get_num_threads()
    try:
        sparsebox.set_num_threads(1)
        assert sparsebox.get_num_threads() == 1
    finally:
        sparsebox.set_num_threads(0)
    assert sparsebox.get_num_threads() == before


@pytest.fixture(params=["extension", "ctypes"])
def crossing(request, monkeypatch):
    """Each way call_plan reaches the library: the C extension (skipped where the build has none) and
    ctypes alone."""
    if request.param == "extension" and L.native is None:
        pytest.skip("this build has no C extension (python3-dev missing when it was configured)")
    if request.param == "ctypes":
        monkeypatch.setattr(L, "native", None)
    return request.param


def test_library_memory_is_freed_with_the_array(crossing, monkeypatch):
    """An output keeps the library's block alive through its views and frees it with the last one."""
    import ctypes
    import gc
    freed = []
    gc.collect()  # earlier tests' garbage freed before the count starts
    if crossing == "extension":
        # the extension frees through the address bind() gave it: a recording sbx_array_free
        @ctypes.CFUNCTYPE(None, ctypes.c_void_p)
        def record(handle):
            freed.append(handle)
            L.lib.sbx_array_free(handle)
        L.native.bind(ctypes.cast(record, ctypes.c_void_p).value)
    else:
        real = L.lib.sbx_array_free  # the ctypes path frees through the name, looked up at each output
        monkeypatch.setattr(L.lib, "sbx_array_free", lambda handle: (freed.append(handle), real(handle)))
    try:
        out, _ = sparsebox.sp.convolve(np.ones((1, 4)), (2, 2), 1, np.ones((2, 16)), (4, 4))
        view = out[1:]
        del out
        gc.collect()
        assert freed == [] and view.sum() == 9 * 4  # the second image: 9 outputs of 4
        del view
        gc.collect()
        assert len(freed) == 1
    finally:
        if crossing == "extension":
            L.native.bind(ctypes.cast(L.lib.sbx_array_free, ctypes.c_void_p).value)


def _layer_calls(rng):
    """(name, thunk) of each layer call the package makes, on small float64 problems with ties in the
    pooled images."""
    sp = sparsebox.sp
    x = rng.integers(-3, 4, (3, 2 * 7 * 6)).astype(np.float64)
    k = rng.uniform(-1, 1, (4, 2 * 3 * 2))
    b = rng.uniform(-1, 1, 4)
    kl = rng.uniform(-1, 1, 2 * 4 * 5 * 5 * 3 * 2)
    bl = rng.uniform(-1, 1, 4 * 5 * 5)
    g = rng.uniform(-1, 1, (3, 4 * 5 * 5))
    gp = rng.uniform(-1, 1, (3, 2 * 3 * 3))
    shape = sp._pool_shape((2, 7, 6), (2, 2))
    plan = L.plan("pool", shape, 0, np.float64)
    return [
        ("convolve", lambda: sp.convolve(k, (3, 2), 4, x, (2, 7, 6), bias=b)[0]),
        ("convolve_grad", lambda: sp.convolve_grad(g, k, (3, 2), 4, x, (2, 7, 6), bias=b)),
        ("apply_sparse_filter", lambda: sp.apply_sparse_filter(kl, (3, 2), 4, x, (2, 7, 6), bias=bl)[0]),
        ("apply_sparse_filter_grad", lambda: sp.apply_sparse_filter_grad(g, kl, (3, 2), 4, x, (2, 7, 6), bias=bl)),
        ("max_pool", lambda: sp.max_pool(x, (2, 7, 6), (2, 2))[0]),
        ("max_pool_grad", lambda: sp.max_pool_grad(gp, x, (2, 7, 6), (2, 2))),
        ("pool_forward_mask", lambda: L.call_plan(L.lib.sbx_pool_forward_mask, plan, [x], [True, True])),
        ("pool_backward_mask", lambda: L.call_plan(
            L.lib.sbx_pool_backward_mask, plan,
            [L.call_plan(L.lib.sbx_pool_forward_mask, plan, [x], [True, True])[1], gp], [True])),
        ("no bias gradient", lambda: L.call_plan(L.lib.sbx_conv_backward, L.plan("conv", sp._aesara_shape(
            (2, 7, 6), (3, 2), (1, 1), "valid"), 4, np.float64), [x, k, g], [False, True, False])),
    ]


def _flat(result):
    if isinstance(result, (tuple, list)):
        return [a for r in result for a in _flat(r)]
    return [result]


def test_extension_and_ctypes_give_the_same_arrays(monkeypatch):
    if L.native is None:
        pytest.skip("this build has no C extension")
    calls = _layer_calls(np.random.default_rng(5))
    native = [_flat(f()) for _, f in calls]
    monkeypatch.setattr(L, "native", None)
    plain = [_flat(f()) for _, f in calls]
    for (name, _), a, b in zip(calls, native, plain):
        assert len(a) == len(b), name
        for u, v in zip(a, b):
            if u is None or v is None:
                assert u is None and v is None, name
                continue
            assert u.dtype == v.dtype and u.shape == v.shape and u.flags.writeable, name
            assert np.array_equal(u, v), name
    assert native[-1][0] is None and native[-1][2] is None


def test_call_plan_checks_the_counts_against_the_signature(crossing):
    """Too few inputs or outputs for the function: a TypeError, not a call with the wrong arguments."""
    plan = L.plan("conv", sparsebox.sp._aesara_shape((1, 4, 4), (2, 2), (1, 1), "valid"), 1, np.float64)
    with pytest.raises(TypeError):
        L.call_plan(L.lib.sbx_conv_forward, plan, [np.ones((2, 16)), np.ones((1, 4))], [True])
    with pytest.raises(TypeError):
        L.call_plan(L.lib.sbx_conv_backward, plan, [np.ones((2, 16)), np.ones((1, 4)), np.ones((2, 9))], [True])


def test_library_errors_raise_through_either_crossing(crossing):
    plan = L.plan("conv", sparsebox.sp._aesara_shape((1, 4, 4), (2, 2), (1, 1), "valid"), 1, np.float64)
    with pytest.raises(ValueError) as e:
        L.call_plan(L.lib.sbx_conv_forward, plan, [np.ones((2, 15)), np.ones((1, 4)), None], [True])
    assert e.value.status == L.ERR_ARG and str(e.value) == L.last_error() and "images" in str(e.value)


def test_extension_rejects_what_it_cannot_pass():
    if L.native is None:
        pytest.skip("this build has no C extension")
    import ctypes
    plan = L.plan("conv", sparsebox.sp._aesara_shape((1, 4, 4), (2, 2), (1, 1), "valid"), 1, np.float64)
    fn = ctypes.cast(L.lib.sbx_conv_forward, ctypes.c_void_p).value
    x, k = np.ones((2, 16)), np.ones((1, 4))
    call = L.native.call
    assert np.all(call(fn, plan.handle, [x, k, None], [True])[0] == 4)
    with pytest.raises(TypeError, match="input 0: expected a numpy array"):
        call(fn, plan.handle, [[1.0] * 16, k, None], [True])
    with pytest.raises(TypeError, match="input 1: expected a C-contiguous"):
        call(fn, plan.handle, [x, np.ones((1, 8))[:, ::2], None], [True])
    with pytest.raises(TypeError, match="input 0: dtype f2"):
        call(fn, plan.handle, [x.astype(np.float16), k, None], [True])
    with pytest.raises(TypeError, match="input 0: dtype f8 in the other byte order"):
        call(fn, plan.handle, [x.astype(">f8"), k, None], [True])
    with pytest.raises(TypeError, match="wants\\[0\\] must be True or False"):
        call(fn, plan.handle, [x, k, None], [1])
    with pytest.raises(ValueError, match="9 dimensions"):
        call(fn, plan.handle, [np.ones((1,) * 9), k, None], [True])
    with pytest.raises(ValueError, match="1 to 3 inputs"):
        call(fn, plan.handle, [x, k, None, None], [True])
    with pytest.raises(ValueError, match="plan: expected a nonzero address"):
        call(fn, 0, [x, k, None], [True])
    with pytest.raises(TypeError, match="4 arguments"):
        call(fn, plan.handle, [x, k, None])
    with pytest.raises(TypeError, match="lists"):
        call(fn, plan.handle, (x, k, None), [True])
    # a library error comes back as its status, the message on this thread
    assert call(fn, plan.handle, [np.ones((2, 15)), k, None], [True]) == L.ERR_ARG
    assert "images" in L.last_error()

