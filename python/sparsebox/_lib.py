"""The shared library, loaded with ctypes, and the conversions between numpy and its structs.

Why ctypes, and a C extension for one call: ctypes needs no build step against Python's headers (the
package is plain Python next to libsparsebox.so), works with the interpreter Debian ships (python3 3.11
with python3-numpy and python3-scipy, nothing from PyPI), and calls only the library's public API, the
same one C users link against. Its cost per call is argument marshalling: about 25 us for a layer call
(two sbx_array structs filled field by field, the output wrapped through __array_interface__), 10 %
of a small convolution. So the layer calls (call_plan) go through `_native` (python/_native.c), built
beside the library where python3-dev is installed: then sp.convolve costs about 4 us more than a bare
call of sbx_conv_forward (timeit, one 28x28 image). It calls the same loaded library through
function addresses handed to it from here (one copy of the library in the process). Without it, or
with SPARSEBOX_NATIVE=0 in the environment, call_plan uses ctypes too.

Arrays cross without copies where they can: a C-contiguous, aligned numpy array of the dtype the call
needs is passed by pointer; anything else is converted once (np.ascontiguousarray). A conversion to
an integer type checks that every value is integral and in range, so nothing is truncated silently.
Arrays the library returns are wrapped without a copy: the numpy array keeps the library's block
alive and frees it (sbx_array_free / sbx_sparse_free) when the last view of it goes.

Where the library is found: next to this package (an installed copy has libsparsebox.so beside its
files), else in the folder named by the environment variable SPARSEBOX_LIBRARY_DIR (a build tree),
else by the system's loader (libsparsebox.so.0 on the library path).
"""
import ctypes
import glob
import math
import os
import threading
from ctypes import POINTER, Structure, c_char_p, c_double, c_int, c_int64, c_size_t, c_uint32, c_uint64, c_void_p

import numpy as np

MAX_NDIM = 8

# --- status codes (include/sparsebox/core.h; pinned numbers) ----------------------------------------
OK, ERR_ARG, ERR_NOMEM, ERR_OVERFLOW, ERR_IO, ERR_FORMAT, ERR_UNSUPPORTED = range(7)

# --- dtypes (pinned numbers) -------------------------------------------------------------------------
_DTYPES = [np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
           np.uint64, np.bool_]
DTYPE_CODE = {np.dtype(t): i for i, t in enumerate(_DTYPES)}
CODE_DTYPE = {i: np.dtype(t) for i, t in enumerate(_DTYPES)}
FLOAT32, FLOAT64, INT64 = 0, 1, 5

CSR, CSC = 0, 1
FORMAT_CODE = {"csr": CSR, "csc": CSC}
FORMAT_NAME = {CSR: "csr", CSC: "csc"}
VALID, FULL = 0, 1
MODE_CODE = {"valid": VALID, "full": FULL}

GRAD_DEFINED, GRAD_UNDEFINED, GRAD_DISCONNECTED = 0, 1, 2


# --- structs -------------------------------------------------------------------------------------------
class Array(Structure):
    _fields_ = [("dtype", c_int), ("ndim", c_int), ("shape", c_int64 * MAX_NDIM), ("data", c_void_p)]


class Sparse(Structure):
    _fields_ = [("format", c_int), ("dtype", c_int), ("nrows", c_int64), ("ncols", c_int64), ("nnz", c_int64),
                ("indptr", c_void_p), ("indices", c_void_p), ("data", c_void_p)]


class ConvShape(Structure):
    _fields_ = [("ndim", c_int), ("channels", c_int64), ("in_", c_int64 * MAX_NDIM),
                ("kernel", c_int64 * MAX_NDIM), ("stride", c_int64 * MAX_NDIM), ("mode", c_int),
                ("out", c_int64 * MAX_NDIM), ("in_size", c_int64), ("out_size", c_int64),
                ("kernel_size", c_int64)]

    @property
    def spatial_in(self):
        return tuple(self.in_[:self.ndim])

    @property
    def spatial_out(self):
        return tuple(self.out[:self.ndim])

    @property
    def spatial_kernel(self):
        return tuple(self.kernel[:self.ndim])

    def key(self):
        """A hashable description (for plan caches)."""
        n = self.ndim
        return (n, self.channels, tuple(self.in_[:n]), tuple(self.kernel[:n]), tuple(self.stride[:n]), self.mode)


class Rng(Structure):
    _fields_ = [("seed", c_uint64), ("stream", c_uint32)]


# The Op layer's structs (include/sparsebox/op.h).
class Type(Structure):
    _fields_ = [("kind", c_int), ("dtype", c_int), ("format", c_int), ("ndim", c_int),
                ("shape", c_int64 * MAX_NDIM)]


class Value(Structure):
    _fields_ = [("dense", POINTER(Array)), ("sparse", POINTER(Sparse))]


class OpStruct(Structure):
    _fields_ = [("cls", c_void_p), ("props", c_void_p)]


class LayerProps(Structure):
    _fields_ = [("shape", ConvShape), ("nkern", c_int64)]


class PoolProps(Structure):
    _fields_ = [("shape", ConvShape)]


class IndicesProps(Structure):
    _fields_ = [("shape", ConvShape), ("weight_sharing", c_int), ("nkern", c_int64), ("format", c_int)]


class BinomialProps(Structure):
    _fields_ = [("format", c_int), ("dtype", c_int)]


class _OpClassHead(Structure):
    _fields_ = [("name", c_char_p)]


def op_class(symbol):
    """The address of one of the library's op classes (sbx_op_convolve, ...)."""
    return ctypes.addressof(_OpClassHead.in_dll(lib, symbol))


# --- loading -----------------------------------------------------------------------------------------------
_NAMES = ("libsparsebox.so", "libsparsebox.so.0", "libsparsebox.dylib")


def _find_in(folder):
    for name in _NAMES:
        p = os.path.join(folder, name)
        if os.path.exists(p):
            return p
    more = sorted(glob.glob(os.path.join(folder, "libsparsebox.so.*")))
    return more[0] if more else None


def _load():
    here = os.path.dirname(os.path.abspath(__file__))
    tried = []
    path = _find_in(here)
    tried.append(here)
    env = os.environ.get("SPARSEBOX_LIBRARY_DIR")
    if path is None and env:
        path = _find_in(env)
        tried.append(env)
    if path is not None:
        return ctypes.CDLL(path)
    try:
        return ctypes.CDLL("libsparsebox.so.0")
    except OSError:
        pass
    raise ImportError("sparsebox: libsparsebox.so not found in " + ", ".join(tried) +
                      (" (set SPARSEBOX_LIBRARY_DIR to the folder holding it, e.g. a CMake build folder)"
                       if not env else "") + ", nor on the system's library path")


lib = _load()


def _load_native():
    """The C extension sparsebox._native (python/_native.c): beside this package (installed), else beside
    the library loaded (a build folder); None where there is none, or where SPARSEBOX_NATIVE=0 asks for
    ctypes alone."""
    if os.environ.get("SPARSEBOX_NATIVE") == "0":
        return None
    import importlib.machinery
    import importlib.util
    folders = [os.path.dirname(os.path.abspath(__file__))]
    if os.sep in lib._name:  # not when the system's loader found it by name
        folders.append(os.path.dirname(os.path.abspath(lib._name)))
    for folder in folders:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "_native" + suffix)
            if os.path.exists(path):
                try:
                    spec = importlib.util.spec_from_file_location(__package__ + "._native", path)
                    module = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(module)
                except (ImportError, OSError) as e:  # e.g. built against another numpy
                    import warnings
                    warnings.warn("sparsebox: %s did not load (%s); the layers go through ctypes" % (path, e))
                    return None
                module.bind(ctypes.cast(lib.sbx_array_free, c_void_p).value)
                return module
    return None


native = _load_native()
# (function, address, argument count) of the layer functions call_plan has handed to the extension, by
# id(function) (ctypes functions are not hashable; the entry keeps its function alive, so the id stays
# its own).
_addresses = {}

_P = c_void_p
_PP = POINTER(c_void_p)
_I64P = POINTER(c_int64)
_SIGNATURES = {
    # core
    "sbx_status_str": (c_char_p, [c_int]),
    "sbx_last_error": (c_char_p, []),
    "sbx_set_num_threads": (None, [c_int]),
    "sbx_get_num_threads": (c_int, []),
    "sbx_array_free": (None, [_P]),
    "sbx_sparse_free": (None, [_P]),
    "sbx_sparse_validate": (c_int, [_P]),
    # conv
    "sbx_conv_shape_make": (c_int, [c_int, c_int64, _I64P, _I64P, _I64P, c_int, POINTER(ConvShape)]),
    "sbx_conv_shape_aesara": (c_int, [c_int, _I64P, _I64P, _I64P, c_int, POINTER(ConvShape)]),
    "sbx_pool_shape_aesara": (c_int, [c_int, _I64P, _I64P, POINTER(ConvShape)]),
    "sbx_conv_indices": (c_int, [POINTER(ConvShape), c_int, c_int64, c_int, _PP, _PP]),
    "sbx_conv_gather": (c_int, [POINTER(ConvShape), _PP]),
    "sbx_conv_plan_create": (c_int, [POINTER(ConvShape), c_int64, c_int, _PP]),
    "sbx_local_plan_create": (c_int, [POINTER(ConvShape), c_int64, c_int, _PP]),
    "sbx_pool_plan_create": (c_int, [POINTER(ConvShape), c_int, _PP]),
    "sbx_conv_plan_free": (None, [_P]),
    "sbx_conv_forward": (c_int, [_P, _P, _P, _P, _PP]),
    "sbx_conv_backward": (c_int, [_P, _P, _P, _P, _PP, _PP, _PP]),
    "sbx_local_forward": (c_int, [_P, _P, _P, _P, _PP]),
    "sbx_local_backward": (c_int, [_P, _P, _P, _P, _PP, _PP, _PP]),
    "sbx_pool_forward": (c_int, [_P, _P, _PP]),
    "sbx_pool_backward": (c_int, [_P, _P, _P, _PP]),
    "sbx_pool_forward_mask": (c_int, [_P, _P, _PP, _PP]),
    "sbx_pool_backward_mask": (c_int, [_P, _P, _P, _PP]),
    # random
    "sbx_random_binomial": (c_int, [POINTER(Rng), c_int64, c_double, c_int64, c_int64, c_int, c_int, _PP]),
    "sbx_random_poisson": (c_int, [POINTER(Rng), _P, _PP]),
    "sbx_random_multinomial": (c_int, [POINTER(Rng), _P, _P, c_int, _PP]),
    "sbx_random_op_inputs": (c_int, [c_int]),
    "sbx_random_op_grad": (c_int, [c_int, c_int, POINTER(c_int)]),
    "sbx_random_op_infer_shape": (c_int, [c_int, _P, _P, _I64P]),
    # op
    "sbx_type_str": (c_int, [POINTER(Type), ctypes.c_char_p, c_size_t]),
    "sbx_type_check": (c_int, [POINTER(Type), c_char_p]),
    "sbx_value_clear": (None, [POINTER(Value)]),
    "sbx_op_equal": (c_int, [POINTER(OpStruct), POINTER(OpStruct)]),
    "sbx_op_hash": (c_uint64, [POINTER(OpStruct)]),
    "sbx_op_call_seed": (c_uint64, [c_uint64, c_int64]),
    "sbx_graph_create": (c_int, [_PP]),
    "sbx_graph_free": (None, [_P]),
    "sbx_graph_input": (c_int, [_P, c_char_p, POINTER(Type), _PP]),
    "sbx_apply": (c_int, [_P, _P, _P, c_int, _PP, _PP]),
    "sbx_var_type": (POINTER(Type), [_P]),
    "sbx_var_owner": (_P, [_P]),
    "sbx_node_noutputs": (c_int, [_P]),
    "sbx_node_ninputs": (c_int, [_P]),
    "sbx_node_output": (_P, [_P, c_int]),
    "sbx_node_infer_shape": (c_int, [_P, POINTER(Value), POINTER(Type)]),
    "sbx_node_perform": (c_int, [_P, POINTER(Value), POINTER(Value), c_uint64]),
    "sbx_node_grad": (c_int, [_P, _P, _PP, _PP, POINTER(c_int), POINTER(c_char_p)]),
    "sbx_node_connection_pattern": (None, [_P, POINTER(c_int)]),
    "sbx_node_op": (OpStruct, [_P]),
    "sbx_function_compile": (c_int, [_P, c_int, _PP, c_int, _PP, c_int, _P, c_uint64, _PP]),
    "sbx_function_call": (c_int, [_P, POINTER(Value), POINTER(Value)]),
    "sbx_function_free": (None, [_P]),
}
for _name, (_res, _args) in _SIGNATURES.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args
del _name, _res, _args, _f


# --- errors -----------------------------------------------------------------------------------------------
def last_error():
    m = lib.sbx_last_error()
    return m.decode("utf-8", "replace") if m else ""


def error(status, message=None):
    """The exception for a failed call: MemoryError for SBX_ERR_NOMEM, OSError for SBX_ERR_IO, ValueError
    for the rest (a bad argument value, a size that overflows, a malformed matrix, something not
    handled). The library's message is the exception's text; its status is the `status` attribute."""
    msg = message if message is not None else last_error()
    if not msg:
        s = lib.sbx_status_str(status)
        msg = s.decode() if s else "status %d" % status
    cls = {ERR_NOMEM: MemoryError, ERR_IO: OSError}.get(status, ValueError)
    e = cls(msg)
    e.status = status
    return e


def check(status):
    if status != OK:
        raise error(status)


# --- numpy -> library -------------------------------------------------------------------------------------
def _is_tensorlike(x):
    return type(x).__module__.split(".")[0] == "torch"


def as_array(x, dtype, name):
    """x as a C-contiguous aligned numpy array of `dtype`: x itself when it already is one, else one
    conversion. Into an integer dtype only integral, in-range values go (a float 1.5 raises ValueError);
    complex, object and string data raise TypeError."""
    dtype = np.dtype(dtype)
    if _is_tensorlike(x):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype == dtype and a.flags.c_contiguous and a.flags.aligned:
        return a
    k = a.dtype.kind
    if k not in "biuf":
        raise TypeError("%s: expected numbers, got an array of dtype %s" % (name, a.dtype))
    if dtype.kind in "iu" and k == "f":
        if a.size and not np.all(np.isfinite(a)):
            raise ValueError("%s: a non-finite value cannot become %s" % (name, dtype))
        if a.size and not np.array_equal(a, np.floor(a)):
            bad = a.ravel()[np.flatnonzero(a.ravel() != np.floor(a.ravel()))[0]]
            raise ValueError("%s: the value %r is not an integer (no silent truncation to %s)" % (name, bad, dtype))
    if dtype.kind in "iu" and a.size and k in "iuf":
        info = np.iinfo(dtype)
        lo, hi = a.min(), a.max()
        if lo < info.min or hi > info.max:
            raise ValueError("%s: the value %r does not fit %s" % (name, lo if lo < info.min else hi, dtype))
    if dtype.kind == "f" and k in "iu" and a.size:
        # integers convert exactly to float64 below 2^53 (float32: 2^24); larger ones would round
        limit = 2 ** (53 if dtype == np.float64 else 24)
        if max(abs(int(a.min())), abs(int(a.max()))) > limit:
            raise ValueError("%s: integers beyond 2^%d do not convert exactly to %s" % (
                name, 53 if dtype == np.float64 else 24, dtype))
    return np.ascontiguousarray(a, dtype=dtype)


def float_dtype(*arrays):
    """The float dtype an operation on these arrays runs in: float32 when every one of them is float32 (or
    float16), else float64 (integers and bools included). Complex and other kinds raise TypeError."""
    kinds = []
    for a in arrays:
        if a is None:
            continue
        dt = a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype
        dt = np.dtype(str(dt).replace("torch.", "")) if not isinstance(dt, np.dtype) else dt
        if dt.kind not in "biuf":
            raise TypeError("expected real numbers, got dtype %s" % dt)
        if dt.kind == "f" and dt.itemsize > 8:
            raise TypeError("dtype %s has no counterpart in the library (float32 or float64)" % dt)
        kinds.append(dt)
    if kinds and all(d == np.float32 or d == np.float16 for d in kinds):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def array_struct(a):
    """An sbx_array describing the numpy array a (which must stay alive while the struct is used)."""
    s = Array()
    s.dtype = DTYPE_CODE[a.dtype]
    if a.ndim > MAX_NDIM:
        raise ValueError("an array of %d dimensions (the library holds at most %d)" % (a.ndim, MAX_NDIM))
    s.ndim = a.ndim
    for d, n in enumerate(a.shape):
        s.shape[d] = n
    s.data = a.ctypes.data if a.size else None
    return s


def ptr(struct):
    """The address of a struct, for a pointer argument (the struct must stay alive during the call)."""
    return ctypes.addressof(struct)


def sparse_struct(m, dtype=None, name="matrix"):
    """An sbx_sparse over a scipy csr/csc matrix and the arrays it points to (keep them alive). Index arrays
    become int64 (one copy when scipy holds int32); data becomes `dtype` when given."""
    import scipy.sparse as ss
    if not ss.issparse(m):
        raise TypeError("%s: expected a scipy.sparse matrix, got %s" % (name, type(m).__name__))
    if m.format not in FORMAT_CODE:
        raise TypeError("%s: expected the csr or csc format, got %s" % (name, m.format))
    if not m.has_canonical_format:
        # scipy's sum_duplicates walks the arrays as they are: a broken structure (indptr decreasing,
        # indices out of range) must be refused first, not summed into a plausible matrix
        try:
            m.check_format(full_check=True)
        except ValueError as e:
            raise ValueError("%s: a malformed %s matrix: %s" % (name, m.format, e)) from None
        m = m.copy()
        m.sum_duplicates()  # sorted, unique indices: the library's rule for its inputs
    indptr = as_array(m.indptr, np.int64, name + ".indptr")
    indices = as_array(m.indices, np.int64, name + ".indices")
    if dtype is None:
        if m.dtype not in DTYPE_CODE:
            raise TypeError("%s: dtype %s has no counterpart in the library" % (name, m.dtype))
        data = np.ascontiguousarray(m.data)
    else:
        data = as_array(m.data, dtype, name + ".data")
    s = Sparse()
    s.format = FORMAT_CODE[m.format]
    s.dtype = DTYPE_CODE[data.dtype]
    s.nrows, s.ncols = m.shape
    s.nnz = indices.shape[0]
    s.indptr = indptr.ctypes.data
    s.indices = indices.ctypes.data if indices.size else None
    s.data = data.ctypes.data if data.size else None
    return s, (indptr, indices, data)


def i64_vector(values, name, length=None):
    vals = [int(v) for v in values]
    if any(float(v) != float(w) for v, w in zip(vals, values) if isinstance(w, (float, np.floating))):
        raise ValueError("%s: %r holds a value that is not an integer" % (name, tuple(values)))
    if length is not None and len(vals) != length:
        raise ValueError("%s: expected %d entries, got %d (%r)" % (name, length, len(vals), tuple(values)))
    return (c_int64 * max(len(vals), 1))(*vals)


# --- library -> numpy -------------------------------------------------------------------------------------
class _Owner:
    """Holds a block the library allocated (an sbx_array* or sbx_sparse*) and frees it when no numpy array
    made from it is left."""
    __slots__ = ("handle", "free", "__weakref__")

    def __init__(self, handle, free):
        self.handle = handle
        self.free = free

    def __del__(self):
        if self.handle:
            self.free(self.handle)
            self.handle = None


class _View:
    """The numpy array interface of memory an _Owner keeps alive (so the array's base holds the owner)."""
    __slots__ = ("__array_interface__", "owner")

    def __init__(self, owner, address, shape, dtype):
        self.owner = owner
        self.__array_interface__ = {"data": (address, False), "shape": tuple(shape), "typestr": dtype.str,
                                    "version": 3}


def _wrap(owner, address, shape, dtype):
    if not address or math.prod(shape) == 0:  # math.prod: np.prod cost 6 us a call here
        return np.zeros(shape, dtype)
    return np.asarray(_View(owner, address, shape, dtype))


def take_array(handle):
    """A numpy array over the sbx_array* handle (taken over: freed with the array)."""
    if not handle:
        raise ValueError("the library returned no array")
    a = ctypes.cast(handle, POINTER(Array)).contents
    shape = tuple(a.shape[:a.ndim])
    dtype = CODE_DTYPE[a.dtype]
    owner = _Owner(handle, lib.sbx_array_free)
    return _wrap(owner, a.data, shape, dtype)


def take_sparse_arrays(handle):
    """(format name, shape, data, indices, indptr) of the sbx_sparse* handle (taken over), no copies."""
    m = ctypes.cast(handle, POINTER(Sparse)).contents
    owner = _Owner(handle, lib.sbx_sparse_free)
    major = m.nrows if m.format == CSR else m.ncols
    indptr = _wrap(owner, m.indptr, (major + 1,), np.dtype(np.int64))
    indices = _wrap(owner, m.indices, (m.nnz,), np.dtype(np.int64))
    data = _wrap(owner, m.data, (m.nnz,), CODE_DTYPE[m.dtype])
    return FORMAT_NAME[m.format], (m.nrows, m.ncols), data, indices, indptr


def scipy_matrix(fmt, shape, data, indices, indptr):
    """A scipy csr_matrix / csc_matrix over these arrays, without copying them (int64 indices kept)."""
    import scipy.sparse as ss
    cls = ss.csr_matrix if fmt == "csr" else ss.csc_matrix
    m = cls(shape, dtype=data.dtype)
    m.data, m.indices, m.indptr = data, indices, indptr
    m.has_sorted_indices = True
    return m


def take_sparse(handle):
    return scipy_matrix(*take_sparse_arrays(handle))


# --- plans, cached (a plan is made once per geometry and reused; executing one is thread-safe) ----------------
class Plan:
    __slots__ = ("handle", "shape")

    def __init__(self, handle, shape):
        self.handle = handle
        self.shape = shape

    def __del__(self):
        if self.handle:
            lib.sbx_conv_plan_free(self.handle)
            self.handle = None


_plans = {}
_plans_lock = threading.Lock()
_PLANS_KEPT = 64


def plan(kind, shape, nkern, dtype):
    """The plan of `kind` ('conv', 'local', 'pool') for the ConvShape, kernel count and numpy dtype."""
    key = (kind, shape.key(), int(nkern), np.dtype(dtype).str)
    with _plans_lock:
        p = _plans.get(key)
        if p is not None:
            _plans[key] = _plans.pop(key)  # most recently used last
            return p
    code = DTYPE_CODE[np.dtype(dtype)]
    h = c_void_p()
    if kind == "conv":
        st = lib.sbx_conv_plan_create(ctypes.byref(shape), nkern, code, ctypes.byref(h))
    elif kind == "local":
        st = lib.sbx_local_plan_create(ctypes.byref(shape), nkern, code, ctypes.byref(h))
    else:
        st = lib.sbx_pool_plan_create(ctypes.byref(shape), code, ctypes.byref(h))
    check(st)
    p = Plan(h.value, shape)
    with _plans_lock:
        _plans[key] = p
        while len(_plans) > _PLANS_KEPT:
            _plans.pop(next(iter(_plans)))
    return p


def conv_shape(ndim, channels, in_shape, kernel, stride, mode):
    s = ConvShape()
    check(lib.sbx_conv_shape_make(ndim, channels, i64_vector(in_shape, "in_shape", ndim),
                                  i64_vector(kernel, "kernel_size", ndim), i64_vector(stride, "stride", ndim),
                                  mode_code(mode), ctypes.byref(s)))
    return s


def mode_code(mode):
    if isinstance(mode, int) and mode in (VALID, FULL):
        return mode
    if mode not in MODE_CODE:
        raise ValueError("mode: expected 'valid' or 'full', got %r" % (mode,))
    return MODE_CODE[mode]


def call_plan(fn, plan, inputs, wants):
    """fn(plan, *inputs, *outputs) for a layer function: inputs numpy arrays (None for a NULL input), wants
    one boolean per output pointer (False: NULL, that output not computed). Returns the outputs as numpy
    arrays (None where not asked for). Through the C extension where there is one (`native`)."""
    if native is not None:
        known = _addresses.get(id(fn))
        if known is None or known[0] is not fn:
            known = _addresses[id(fn)] = (fn, ctypes.cast(fn, c_void_p).value, len(fn.argtypes))
        if known[2] != 1 + len(inputs) + len(wants):  # C would call fn with the wrong arguments
            raise TypeError("%s takes %d arguments, not a plan, %d inputs and %d outputs"
                            % (fn.__name__, known[2], len(inputs), len(wants)))
        result = native.call(known[1], plan.handle, inputs, wants)
        if type(result) is int:
            raise error(result)
        return result
    structs = [array_struct(a) if a is not None else None for a in inputs]
    args = [plan.handle] + [ptr(s) if s is not None else None for s in structs]
    outs = [c_void_p() if w else None for w in wants]
    args += [ctypes.byref(p) if p is not None else None for p in outs]
    check(fn(*args))
    return [take_array(p.value) if p is not None else None for p in outs]
