"""sparsebox: convolution, local connections and pooling as sparse-matrix operators, and reproducible
sparse random matrices, after Aesara/Theano's sparse.sandbox.

    from sparsebox import sp, sp2        # the original's functions and ops, numpy and scipy in and out
    sparsebox.convmtx(kernel, shape)     # the convolution as a scipy.sparse matrix (1 to 8 dimensions)
    sparsebox.op                         # the Op contract (make_node, perform, infer_shape, grad, ...)
    import sparsebox.torch               # autograd Functions and nn.Modules (needs python3-torch)

Errors carry the library's message: ValueError for a bad argument value, TypeError for a wrong kind or
dtype, MemoryError when an allocation fails.
"""
import math
import numbers

from . import _lib
from . import op, sp, sp2
from ._convmtx import convmtx

__all__ = ["sp", "sp2", "op", "convmtx", "set_num_threads", "get_num_threads"]
__version__ = "0.1.0"


def set_num_threads(n):
    """Threads used by the library's parallel loops; n <= 0 restores the default (SBX_NUM_THREADS or
    OpenMP's). Results never depend on it."""
    if isinstance(n, bool) or not isinstance(n, numbers.Real) or not math.isfinite(n) or int(n) != n:
        raise TypeError("set_num_threads: expected an integer, got %r" % (n,))
    _lib.lib.sbx_set_num_threads(int(n))


def get_num_threads():
    """Threads the library's parallel loops use."""
    return int(_lib.lib.sbx_get_num_threads())
