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


def test_library_memory_is_freed_with_the_array():
    """An output keeps the library's block alive through its views and frees it with the last one."""
    import gc
    import weakref
    out, _ = sparsebox.sp.convolve(np.ones((1, 4)), (2, 2), 1, np.ones((2, 16)), (4, 4))
    view = out[1:]
    owner = out.base
    while not isinstance(owner, L._View):
        owner = owner.base
    ref = weakref.ref(owner.owner)
    del out, owner
    gc.collect()
    assert ref() is not None and view.sum() == 9 * 4  # the second image: 9 outputs of 4
    del view
    gc.collect()
    assert ref() is None
