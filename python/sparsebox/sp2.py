"""The original's sparse random ops (sparse.sandbox.sp2): Binomial, Multinomial, Poisson, returning
scipy.sparse matrices, but reproducible: a draw depends only on its seed, never on the thread count.

    sp2.csr_fbinomial(5, 0.1, (3, 5), seed=1)      # a 3 x 5 csr float32 matrix of Binomial(5, 0.1) draws
    sp2.multinomial(5, p, seed=1)                  # p's structure, each row the counts of Multinomial(5, row)
    sp2.poisson(x, seed=1)                         # x's structure, each value a Poisson draw of that mean

Each op follows the Op contract of sparsebox.op (make_node, perform, infer_shape, grad,
connection_pattern), backed by the library's op classes; grad answers as the original's did:
Binomial [undefined, undefined, disconnected], Multinomial [undefined, undefined], Poisson [undefined].
"""
import numpy as np

from . import _lib as L
from .op import Apply, Op, Variable, disconnected, sparse, tensor, undefined

__all__ = ["Binomial", "Multinomial", "Poisson", "csr_fbinomial", "csc_fbinomial", "csr_dbinomial",
           "csc_dbinomial", "multinomial", "poisson", "undefined", "disconnected"]


def _integer(x, name):
    """x as an integer array: integers as they are, floats only when integral (no truncation)."""
    if isinstance(x, Variable):
        return x
    a = np.asarray(x)
    if a.dtype.kind in "iu":
        return a
    if a.dtype.kind in "fb":
        return L.as_array(a, np.int64, name)
    raise TypeError("%s: expected integers, got dtype %s" % (name, a.dtype))


def _float(x, name):
    if isinstance(x, Variable):
        return x
    a = np.asarray(x)
    if a.dtype.kind == "f":
        return a
    if a.dtype.kind in "iub":
        return L.as_array(a, np.float64, name)
    raise TypeError("%s: expected a real number, got dtype %s" % (name, a.dtype))


class _RandomOp(Op):
    _kind = None

    def infer_shape(self, *args):
        """infer_shape(*inputs): the output's shape (rows, cols), computed without drawing.
        infer_shape(node, inputs): the contract's form, a list with that shape."""
        if args and isinstance(args[0], Apply):
            return Op.infer_shape(self, *args)
        node = self.make_node(*args, seed=0)
        return Op.infer_shape(self, node, args)[0]

    def grad(self, inputs, output_gradients=(None,)):
        return Op.grad(self, inputs, output_gradients)


class Binomial(_RandomOp):
    """Binomial(format, dtype): op(n, p, shape, seed=None) is a `format` matrix of `shape` whose entries
    are Binomial(n, p) draws, only the non-zero ones stored, of `dtype`."""
    _symbol = "sbx_op_binomial"
    _kind = 0
    input_names = ("n", "p", "shape")

    def __init__(self, format, dtype):
        if format not in L.FORMAT_CODE:
            raise ValueError("Binomial: format must be 'csr' or 'csc', got %r" % (format,))
        dt = np.dtype(dtype)
        if dt not in L.DTYPE_CODE:
            raise TypeError("Binomial: dtype %s has no counterpart in the library" % dt)
        self.format, self.dtype = format, dt

    def _props(self):
        p = L.BinomialProps()
        p.format, p.dtype = L.FORMAT_CODE[self.format], L.DTYPE_CODE[self.dtype]
        return p

    def _describe(self):
        return [("format", self.format), ("dtype", str(self.dtype))]

    def _coerce(self, inputs):
        if len(inputs) != 3:
            raise TypeError("Binomial takes 3 inputs (n, p, shape), got %d" % len(inputs))
        n, p, shape = inputs
        return [_integer(n, "n"), _float(p, "p"), _integer(shape, "shape")]

    def _default_inputs(self):
        return [tensor(np.int64, ())(), tensor(np.float64, ())(), tensor(np.int64, (2,))()]

    def __call__(self, n, p, shape, seed=None):
        return Op.__call__(self, n, p, shape, seed=seed)


class Multinomial(_RandomOp):
    """Multinomial(): op(n, p, seed=None) has p's structure, format and dtype, row r holding the counts of
    one Multinomial(n[r], p's row r) draw (n one value for every row, or one per row); every row's stored
    probabilities must sum to 1."""
    _symbol = "sbx_op_multinomial"
    _kind = 2
    input_names = ("n", "p")

    def _coerce(self, inputs):
        if len(inputs) != 2:
            raise TypeError("Multinomial takes 2 inputs (n, p), got %d" % len(inputs))
        return [_integer(inputs[0], "n"), inputs[1]]

    def _default_inputs(self):
        return [tensor(np.int64, ())(), sparse("csr", np.float64)()]

    def __call__(self, n, p, seed=None):
        return Op.__call__(self, n, p, seed=seed)


class Poisson(_RandomOp):
    """Poisson(): op(x, seed=None) has x's structure, format and dtype, each stored value replaced by a
    Poisson draw with that mean, then the zeros dropped."""
    _symbol = "sbx_op_poisson"
    _kind = 1
    input_names = ("x",)

    def _coerce(self, inputs):
        if len(inputs) != 1:
            raise TypeError("Poisson takes 1 input (x), got %d" % len(inputs))
        return list(inputs)

    def _default_inputs(self):
        return [sparse("csr", np.float64)()]

    def __call__(self, x, seed=None):
        return Op.__call__(self, x, seed=seed)


csr_fbinomial = Binomial("csr", "float32")
csc_fbinomial = Binomial("csc", "float32")
csr_dbinomial = Binomial("csr", "float64")
csc_dbinomial = Binomial("csc", "float64")
multinomial = Multinomial()
poisson = Poisson()
