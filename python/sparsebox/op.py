"""The original's Op contract in Python, over the library's Op layer (include/sparsebox/op.h).

An op is an object with properties (Binomial('csr', 'float32'), Convolve(...)); ops with equal
properties compare and hash equal (the library's sbx_op_equal / sbx_op_hash). Its contract:

    node = op.make_node(*inputs, seed=None)   # an Apply: op, inputs, outputs (Variables with Types)
    op.perform(node, inputs, output_storage)  # output_storage: one-element lists; a value already there
                                              # of the right type and shape is reused in place
    op.infer_shape(node, inputs)              # the output shapes, without computing the outputs
    op.grad(inputs, output_gradients)         # per input: a gradient, undefined(reason) or disconnected
    op.connection_pattern(node=None)          # [[input i reaches output j]]
    op(*inputs, seed=None)                    # make_node + perform: the output value(s)

Inputs are numpy arrays, Python numbers and scipy.sparse csr/csc matrices, or Variables (a Type called
like the original's types: `sparsebox.op.sparse('csr', 'float64')()`). make_node types each value with
unknown extents, as the original's symbolic variables, so a node serves inputs of any shape; it checks
the inputs as the original's make_node did and raises TypeError with the library's message.

Random ops draw from the node's seed (make_node(..., seed=S); a fresh one when not given): perform on a
node gives the same bytes every time and at any thread count, and op(..., seed=S) equals perform on
make_node(..., seed=S).
"""
import ctypes
import secrets
from ctypes import POINTER, byref, c_char_p, c_int, c_void_p

import numpy as np

from . import _lib as L

__all__ = ["Type", "Variable", "Apply", "Op", "tensor", "sparse", "undefined", "disconnected", "type_of"]


# --- types and variables ---------------------------------------------------------------------------------
class Type:
    """A variable's type: kind ('dense' or 'sparse'), dtype, shape (None for an unknown extent) and, for
    sparse types (always 2-d), a format ('csr' or 'csc'). Calling a type makes a Variable of it."""
    __slots__ = ("kind", "dtype", "shape", "format")

    def __init__(self, kind, dtype, shape, format=None):
        if kind not in ("dense", "sparse"):
            raise ValueError("Type: kind must be 'dense' or 'sparse', got %r" % (kind,))
        dtype = np.dtype(dtype)
        if dtype not in L.DTYPE_CODE:
            raise TypeError("Type: dtype %s has no counterpart in the library" % dtype)
        shape = tuple(None if s is None or s < 0 else int(s) for s in shape)
        if len(shape) > L.MAX_NDIM:
            raise ValueError("Type: %d dimensions (at most %d)" % (len(shape), L.MAX_NDIM))
        if kind == "sparse":
            if len(shape) != 2:
                raise ValueError("Type: a sparse type is 2-d, got shape %r" % (shape,))
            if format not in L.FORMAT_CODE:
                raise ValueError("Type: a sparse format must be 'csr' or 'csc', got %r" % (format,))
        else:
            format = None
        self.kind, self.dtype, self.shape, self.format = kind, dtype, shape, format

    @property
    def ndim(self):
        return len(self.shape)

    def _struct(self):
        t = L.Type()
        t.kind = 1 if self.kind == "sparse" else 0
        t.dtype = L.DTYPE_CODE[self.dtype]
        t.format = L.FORMAT_CODE.get(self.format, L.CSR)
        t.ndim = len(self.shape)
        for d, s in enumerate(self.shape):
            t.shape[d] = -1 if s is None else s
        return t

    @staticmethod
    def _from_struct(t):
        shape = tuple(None if t.shape[d] < 0 else t.shape[d] for d in range(t.ndim))
        if t.kind == 1:
            return Type("sparse", L.CODE_DTYPE[t.dtype], shape, L.FORMAT_NAME[t.format])
        return Type("dense", L.CODE_DTYPE[t.dtype], shape)

    def _key(self):
        return (self.kind, self.dtype, self.shape, self.format)

    def __eq__(self, other):
        return isinstance(other, Type) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        buf = ctypes.create_string_buffer(160)
        L.lib.sbx_type_str(byref(self._struct()), buf, len(buf))
        return buf.value.decode()

    def accepts(self, value):
        """Whether value is of this type: kind, dtype, format and rank equal, every known extent equal."""
        import scipy.sparse as ss
        if self.kind == "sparse":
            if not ss.issparse(value) or value.format != self.format or value.dtype != self.dtype:
                return False
        elif not isinstance(value, np.ndarray) or value.dtype != self.dtype:
            return False
        return len(value.shape) == self.ndim and all(s is None or s == v for s, v in zip(self.shape, value.shape))

    def __call__(self, name=None):
        return Variable(self, name=name)


def tensor(dtype, shape):
    """A dense Type (shape entries None where unknown)."""
    return Type("dense", dtype, shape)


def sparse(format, dtype, shape=(None, None)):
    """A sparse Type."""
    return Type("sparse", dtype, shape, format)


def type_of(value):
    """The Type a value gets in make_node: its kind, dtype, rank and format, every extent unknown."""
    import scipy.sparse as ss
    if isinstance(value, Variable):
        return value.type
    if ss.issparse(value):
        if value.format not in L.FORMAT_CODE:
            raise TypeError("a sparse input must be csr or csc, got %s" % value.format)
        return Type("sparse", value.dtype, (None, None), value.format)
    a = np.asarray(value)
    if a.dtype not in L.DTYPE_CODE:
        raise TypeError("an input of dtype %s has no counterpart in the library" % a.dtype)
    return Type("dense", a.dtype, (None,) * a.ndim)


class Variable:
    """A typed variable: an input of a node, or output `index` of the Apply `owner`."""
    __slots__ = ("type", "owner", "index", "name")

    def __init__(self, type, owner=None, index=0, name=None):
        self.type, self.owner, self.index, self.name = type, owner, index, name

    def __repr__(self):
        who = self.name or ("%s.out%d" % (self.owner.op, self.index) if self.owner else "Variable")
        return "<%s: %r>" % (who, self.type)


# --- gradient answers ---------------------------------------------------------------------------------------
class undefined:
    """A gradient that does not exist although the output depends on the input (the original's
    grad_undefined): `reason` says why."""
    __slots__ = ("reason",)

    def __init__(self, reason):
        self.reason = str(reason)

    def __eq__(self, other):
        return isinstance(other, undefined) and other.reason == self.reason

    def __hash__(self):
        return hash(("undefined", self.reason))

    def __repr__(self):
        return "undefined(%r)" % self.reason


class _Disconnected:
    """The output does not depend on the input (the original's disconnected_type())."""
    _one = None

    def __new__(cls):
        if cls._one is None:
            cls._one = object.__new__(cls)
        return cls._one

    def __repr__(self):
        return "disconnected"

    def __reduce__(self):
        return (_Disconnected, ())


disconnected = _Disconnected()


# --- nodes ------------------------------------------------------------------------------------------------------
class _Graph:
    """A library graph holding one node (freed with the last Apply that uses it)."""
    __slots__ = ("handle",)

    def __init__(self):
        h = c_void_p()
        L.check(L.lib.sbx_graph_create(byref(h)))
        self.handle = h.value

    def __del__(self):
        if self.handle:
            L.lib.sbx_graph_free(self.handle)
            self.handle = None

    def input(self, t):
        v = c_void_p()
        L.check(L.lib.sbx_graph_input(self.handle, None, byref(t._struct()), byref(v)))
        return v.value


class Apply:
    """An application of op to inputs: inputs and outputs are Variables; seed is what random ops draw from."""
    __slots__ = ("op", "inputs", "outputs", "seed", "_graph", "_node", "_invars")

    def __init__(self, op, inputs, graph, node, invars, seed):
        self.op, self.inputs, self._graph, self._node, self._invars, self.seed = op, inputs, graph, node, invars, seed
        nout = L.lib.sbx_node_noutputs(node)
        self.outputs = [Variable(Type._from_struct(L.lib.sbx_var_type(L.lib.sbx_node_output(node, j)).contents),
                                 owner=self, index=j) for j in range(nout)]

    @property
    def out(self):
        return self.outputs[0]

    def __repr__(self):
        return "Apply(%r, inputs=%r, outputs=%r)" % (self.op, [v.type for v in self.inputs],
                                                      [v.type for v in self.outputs])


class _Values:
    """Input values converted for the library (kept alive while the sbx_value array is used)."""

    def __init__(self, types, values, names):
        if len(values) != len(types):
            raise TypeError("expected %d inputs, got %d" % (len(types), len(values)))
        self.keep = []
        self.array = (L.Value * max(len(types), 1))()
        for i, (t, x) in enumerate(zip(types, values)):
            name = names[i] if i < len(names) else "input %d" % i
            if t.kind == "sparse":
                s, arrays = L.sparse_struct(x, t.dtype, name)
                if L.FORMAT_NAME[s.format] != t.format:
                    raise TypeError("%s: expected a %s matrix, got %s" % (name, t.format, x.format))
                self.keep += [s, arrays]
                self.array[i].sparse = ctypes.pointer(s)
            else:
                import scipy.sparse as ss
                if ss.issparse(x):
                    raise TypeError("%s: expected a dense array, got a sparse matrix" % name)
                a = L.as_array(x, t.dtype, name)
                s = L.array_struct(a)
                self.keep += [s, a]
                self.array[i].dense = ctypes.pointer(s)


def _addr(p):
    return ctypes.cast(p, c_void_p).value


class Op:
    """Base of the ops: subclasses name their library class (_symbol), their input names, and the property
    struct (_props)."""
    _symbol = None
    input_names = ()

    def _props(self):
        return None

    def _c(self):
        props = self._props()
        o = L.OpStruct()
        o.cls = L.op_class(self._symbol)
        o.props = _addr(ctypes.pointer(props)) if props is not None else None
        return o, props

    # equality and hash: the library's
    def __eq__(self, other):
        if not isinstance(other, Op):
            return NotImplemented
        a, pa = self._c()
        b, pb = other._c()
        return bool(L.lib.sbx_op_equal(byref(a), byref(b)))

    def __hash__(self):
        a, pa = self._c()
        return int(L.lib.sbx_op_hash(byref(a))) & ((1 << 63) - 1)

    def __repr__(self):
        return type(self).__name__ + "{%s}" % ", ".join("%s=%r" % kv for kv in self._describe())

    def _describe(self):
        return []

    # inputs as the op wants them: subclasses may coerce Python numbers to the dtypes the class takes
    def _coerce(self, inputs):
        return list(inputs)

    def _default_inputs(self):
        """Typed Variables standing for the inputs (for connection_pattern without a node)."""
        raise NotImplementedError

    # the contract
    def make_node(self, *inputs, seed=None):
        inputs = self._coerce(inputs)
        variables = [x if isinstance(x, Variable) else Variable(type_of(x), name=self._name(i))
                     for i, x in enumerate(inputs)]
        g = _Graph()
        invars = (c_void_p * max(len(variables), 1))()
        for i, v in enumerate(variables):
            invars[i] = g.input(v.type)
        o, props = self._c()
        out = c_void_p()
        st = L.lib.sbx_apply(g.handle, o.cls, o.props, len(variables), invars, byref(out))
        if st != L.OK:
            e = L.error(st)
            raise e if isinstance(e, MemoryError) else TypeError(str(e))
        node = L.lib.sbx_var_owner(out.value)
        if seed is None:
            seed = secrets.randbits(64)
        seed = int(seed)
        if not 0 <= seed < 2 ** 64:
            raise ValueError("seed: expected an integer in [0, 2^64), got %d" % seed)
        return Apply(self, variables, g, node, invars, seed)

    def _name(self, i):
        return self.input_names[i] if i < len(self.input_names) else "input %d" % i

    def _values(self, node, inputs):
        return _Values([v.type for v in node.inputs], self._coerce(inputs), list(self.input_names))

    def _check_node(self, node):
        if not isinstance(node, Apply):
            raise TypeError("expected an Apply made by make_node, got %s" % type(node).__name__)
        if node.op != self:
            raise ValueError("the node belongs to another op (%r)" % (node.op,))

    def infer_shape(self, node, inputs):
        """The shape of each output (a list of tuples) for these input values, without computing them."""
        self._check_node(node)
        vals = self._values(node, inputs)
        nout = len(node.outputs)
        types = (L.Type * nout)()
        L.check(L.lib.sbx_node_infer_shape(node._node, vals.array, types))
        return [tuple(types[j].shape[:types[j].ndim]) for j in range(nout)]

    def perform(self, node, inputs, output_storage):
        """Computes the outputs into output_storage (a list of one-element lists). A numpy array already
        there with the output's dtype and shape (C-contiguous, writeable) is written in place; a scipy
        matrix of the output's format and dtype is kept and given the new arrays."""
        self._check_node(node)
        import scipy.sparse as ss
        nout = len(node.outputs)
        if len(output_storage) != nout or any(len(c) != 1 for c in output_storage):
            raise ValueError("output_storage: expected %d one-element lists" % nout)
        vals = self._values(node, inputs)
        out = (L.Value * nout)()
        before = [c[0] for c in output_storage]
        mine = [None] * nout
        if any(isinstance(b, np.ndarray) for b in before):
            types = (L.Type * nout)()
            L.check(L.lib.sbx_node_infer_shape(node._node, vals.array, types))
            for j, b in enumerate(before):
                t = node.outputs[j].type
                shape = tuple(types[j].shape[:types[j].ndim])
                if (isinstance(b, np.ndarray) and t.kind == "dense" and b.dtype == t.dtype and b.shape == shape
                        and b.flags.c_contiguous and b.flags.writeable and b.flags.aligned and b.size > 0):
                    mine[j] = L.array_struct(b)  # the library keeps an array of the right dtype and shape
                    out[j].dense = ctypes.pointer(mine[j])
        st = L.lib.sbx_node_perform(node._node, vals.array, out, node.seed)
        results = []
        for j in range(nout):
            if mine[j] is not None and _addr(out[j].dense) == ctypes.addressof(mine[j]):
                results.append(before[j])
                continue
            if mine[j] is not None:  # not expected: the library replaced an array it had to keep
                raise RuntimeError("perform replaced an output array of the right shape")
            if out[j].dense:
                results.append(L.take_array(_addr(out[j].dense)))
            elif out[j].sparse:
                fmt, shape, data, indices, indptr = L.take_sparse_arrays(_addr(out[j].sparse))
                b = before[j]
                if (ss.issparse(b) and b.format == fmt and b.dtype == data.dtype and b.shape == shape
                        and isinstance(b, (ss.csr_matrix, ss.csc_matrix))):
                    b.data, b.indices, b.indptr = data, indices, indptr
                    b.has_sorted_indices = True
                    results.append(b)
                else:
                    results.append(L.scipy_matrix(fmt, shape, data, indices, indptr))
            else:
                results.append(None)
        if st != L.OK:
            raise L.error(st)
        for j in range(nout):
            output_storage[j][0] = results[j]

    def __call__(self, *inputs, seed=None):
        node = self.make_node(*inputs, seed=seed)
        storage = [[None] for _ in node.outputs]
        self.perform(node, inputs, storage)
        return storage[0][0] if len(storage) == 1 else tuple(c[0] for c in storage)

    def connection_pattern(self, node=None):
        """[[output j depends on input i] for each input i] (the original's connection_pattern)."""
        if node is None:
            node = self.make_node(*self._default_inputs())
        self._check_node(node)
        nin, nout = len(node.inputs), len(node.outputs)
        pattern = (c_int * max(nin * nout, 1))()
        L.lib.sbx_node_connection_pattern(node._node, pattern)
        return [[bool(pattern[i * nout + j]) for j in range(nout)] for i in range(nin)]

    def grad(self, inputs, output_gradients):
        """For each input: its gradient (a value, computed by the library's gradient ops when inputs and
        output_gradients are values), undefined(reason) when the output depends on the input without a
        derivative, or disconnected. output_gradients has one entry per output (None: no gradient)."""
        values = not any(isinstance(x, Variable) for x in list(inputs) + list(output_gradients))
        node = self.make_node(*inputs, seed=0)
        nin, nout = len(node.inputs), len(node.outputs)
        if len(output_gradients) != nout:
            raise ValueError("output_gradients: expected %d entries (one per output), got %d"
                             % (nout, len(output_gradients)))
        g = node._graph
        gvars = (c_void_p * max(nout, 1))()
        gtypes = []
        for j, gj in enumerate(output_gradients):
            if gj is None:
                gvars[j] = None
                continue
            t = node.outputs[j].type
            if isinstance(gj, Variable):
                t = gj.type
            gtypes.append((j, t))
            gvars[j] = g.input(t)
        gin = (c_void_p * max(nin, 1))()
        answers = (c_int * max(nin, 1))()
        reasons = (c_char_p * max(nin, 1))()
        L.check(L.lib.sbx_node_grad(g.handle, node._node, gvars, gin, answers, reasons))
        result = [None] * nin
        defined = []
        for i in range(nin):
            if answers[i] == L.GRAD_UNDEFINED:
                result[i] = undefined((reasons[i] or b"").decode())
            elif answers[i] == L.GRAD_DISCONNECTED:
                result[i] = disconnected
            else:
                defined.append(i)
                result[i] = Variable(Type._from_struct(L.lib.sbx_var_type(gin[i]).contents),
                                     name="grad of input %d" % i)
        if defined and values:
            ins = [node._invars[i] for i in range(nin)] + [gvars[j] for j, _ in gtypes]
            types = [v.type for v in node.inputs] + [t for _, t in gtypes]
            vals = list(self._coerce(inputs)) + [output_gradients[j] for j, _ in gtypes]
            computed = _evaluate(g, ins, types, vals, [gin[i] for i in defined],
                                 list(self.input_names) + ["output gradient %d" % j for j, _ in gtypes])
            for i, v in zip(defined, computed):
                result[i] = v
        return result


def _copy_value(v):
    """A numpy/scipy copy of an sbx_value the library owns (a function's output)."""
    if v.dense:
        a = v.dense.contents
        shape = tuple(a.shape[:a.ndim])
        dt = L.CODE_DTYPE[a.dtype]
        n = int(np.prod(shape))
        if n == 0:
            return np.zeros(shape, dt)
        return np.ctypeslib.as_array(ctypes.cast(a.data, POINTER(ctypes.c_char * (n * dt.itemsize))).contents) \
            .view(dt).reshape(shape).copy()
    if v.sparse:
        m = v.sparse.contents
        major = m.nrows if m.format == L.CSR else m.ncols

        def vec(p, n, dt):
            if n == 0 or not p:
                return np.zeros(n, dt)
            return np.ctypeslib.as_array(ctypes.cast(p, POINTER(ctypes.c_char * (n * dt.itemsize))).contents) \
                .view(dt).copy()
        return L.scipy_matrix(L.FORMAT_NAME[m.format], (m.nrows, m.ncols), vec(m.data, m.nnz, L.CODE_DTYPE[m.dtype]),
                              vec(m.indices, m.nnz, np.dtype(np.int64)),
                              vec(m.indptr, major + 1, np.dtype(np.int64)))
    return None


def _evaluate(g, invars, types, values, outvars, names):
    """Compiles graph g from invars to outvars, calls it once on values, and returns copies of the outputs."""
    nin, nout = len(invars), len(outvars)
    ins = (c_void_p * max(nin, 1))(*invars)
    outs = (c_void_p * max(nout, 1))(*outvars)
    f = c_void_p()
    L.check(L.lib.sbx_function_compile(g.handle, nin, ins, nout, outs, 0, None, 0, byref(f)))
    try:
        vals = _Values(types, values, names)
        res = (L.Value * max(nout, 1))()
        L.check(L.lib.sbx_function_call(f.value, vals.array, res))
        return [_copy_value(res[j]) for j in range(nout)]
    finally:
        L.lib.sbx_function_free(f.value)
