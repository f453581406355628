/* sparsebox._native: the package's layer calls (sparsebox._lib.call_plan) without ctypes' per-call
 * marshalling. Through ctypes a call of sbx_conv_forward cost about 25 us more than the kernel (the
 * sbx_array structs built field by field, the output wrapped through __array_interface__); here it is
 * a C loop over the arguments.
 *
 * The module calls the library the package already loaded with ctypes, through the function addresses
 * the package hands it, and does not link libsparsebox itself: so there is one copy of the library in
 * the process, with one thread setting and one error message per thread, whichever folder it came
 * from. It sees only the public header's sbx_array and the layer functions' signatures.
 *
 *   bind(array_free)                      the address of sbx_array_free, once
 *   call(fn, plan, inputs, wants)         fn(plan, inputs..., outputs...) for a layer function of 1 to 3
 *                                         inputs and 1 to 3 outputs; inputs a list of numpy arrays
 *                                         (C-contiguous, aligned, native byte order) or None, wants one
 *                                         bool per output (False: that pointer is NULL). The caller
 *                                         makes the counts the function's (call_plan checks them
 *                                         against its ctypes signature): C cannot.
 *                                         Returns the list of outputs (numpy arrays over the library's
 *                                         blocks, freed with the last view; None where not wanted), or
 *                                         the status (an int) when the call failed: the caller reads
 *                                         sbx_last_error on the same thread. The GIL is released during
 *                                         the call, as ctypes does. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <stdint.h>

#include "sparsebox/conv.h"

#define MAX_ARGS 3

typedef void (*array_free_fn)(sbx_array *);
static array_free_fn array_free;

typedef const sbx_array *in_t;
typedef sbx_array **out_t;
typedef const sbx_conv_plan *plan_t;
typedef sbx_status (*fn_1_1)(plan_t, in_t, out_t);
typedef sbx_status (*fn_1_2)(plan_t, in_t, out_t, out_t);
typedef sbx_status (*fn_1_3)(plan_t, in_t, out_t, out_t, out_t);
typedef sbx_status (*fn_2_1)(plan_t, in_t, in_t, out_t);
typedef sbx_status (*fn_2_2)(plan_t, in_t, in_t, out_t, out_t);
typedef sbx_status (*fn_2_3)(plan_t, in_t, in_t, out_t, out_t, out_t);
typedef sbx_status (*fn_3_1)(plan_t, in_t, in_t, in_t, out_t);
typedef sbx_status (*fn_3_2)(plan_t, in_t, in_t, in_t, out_t, out_t);
typedef sbx_status (*fn_3_3)(plan_t, in_t, in_t, in_t, out_t, out_t, out_t);

/* The library's dtype code of a numpy dtype (pinned numbers of sbx_dtype), -1 where it has none. */
static int dtype_code(PyArrayObject *x)
{
    const int size = (int)PyArray_ITEMSIZE(x); /* not descr->elsize: numpy 2 has no such field */
    switch (PyArray_DESCR(x)->kind) {
    case 'f': return size == 4 ? SBX_FLOAT32 : size == 8 ? SBX_FLOAT64 : -1;
    case 'i': return size == 1 ? SBX_INT8 : size == 2 ? SBX_INT16 : size == 4 ? SBX_INT32 : size == 8 ? SBX_INT64 : -1;
    case 'u': return size == 1 ? SBX_UINT8 : size == 2 ? SBX_UINT16 : size == 4 ? SBX_UINT32 : size == 8 ? SBX_UINT64 : -1;
    case 'b': return size == 1 ? SBX_BOOL : -1;
    default: return -1;
    }
}

static int numpy_type(sbx_dtype t)
{
    static const int types[] = {NPY_FLOAT32, NPY_FLOAT64, NPY_INT8, NPY_INT16, NPY_INT32, NPY_INT64,
                                NPY_UINT8, NPY_UINT16, NPY_UINT32, NPY_UINT64, NPY_BOOL};
    return (unsigned)t < sizeof types / sizeof types[0] ? types[t] : -1;
}

static int address(PyObject *o, const char *name, uintptr_t *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (v == 0 || v > UINTPTR_MAX) {
        PyErr_Format(PyExc_ValueError, "%s: expected a nonzero address, got %llu", name, v);
        return -1;
    }
    *out = (uintptr_t)v;
    return 0;
}

/* The sbx_array over a numpy array, or a TypeError naming the input. */
static int describe(PyObject *o, int i, sbx_array *a)
{
    if (!PyArray_Check(o)) {
        PyErr_Format(PyExc_TypeError, "input %d: expected a numpy array or None, got %s", i, Py_TYPE(o)->tp_name);
        return -1;
    }
    PyArrayObject *x = (PyArrayObject *)o;
    const int code = dtype_code(x);
    if (!PyArray_ISNOTSWAPPED(x)) {
        PyErr_Format(PyExc_TypeError, "input %d: dtype %c%d in the other byte order than this machine's", i,
                     PyArray_DESCR(x)->kind, (int)PyArray_ITEMSIZE(x));
        return -1;
    }
    if (code < 0) {
        PyErr_Format(PyExc_TypeError, "input %d: dtype %c%d has no counterpart in the library", i,
                     PyArray_DESCR(x)->kind, (int)PyArray_ITEMSIZE(x));
        return -1;
    }
    if (!PyArray_IS_C_CONTIGUOUS(x) || !PyArray_ISALIGNED(x)) {
        PyErr_Format(PyExc_TypeError, "input %d: expected a C-contiguous, aligned array", i);
        return -1;
    }
    int nd = PyArray_NDIM(x);
    if (nd > SBX_MAX_NDIM) {
        PyErr_Format(PyExc_ValueError, "input %d: an array of %d dimensions (the library holds at most %d)", i, nd,
                     SBX_MAX_NDIM);
        return -1;
    }
    a->dtype = (sbx_dtype)code;
    a->ndim = nd;
    for (int d = 0; d < SBX_MAX_NDIM; d++)
        a->shape[d] = d < nd ? (int64_t)PyArray_DIM(x, d) : 0;
    a->data = PyArray_SIZE(x) ? PyArray_DATA(x) : NULL;
    return 0;
}

static void capsule_free(PyObject *capsule)
{
    sbx_array *a = PyCapsule_GetPointer(capsule, "sparsebox.array");
    if (a)
        array_free(a);
}

/* A numpy array over the library's array a (taken over: on success the array's base frees it, on
 * failure it is freed here). */
static PyObject *take(sbx_array *a)
{
    npy_intp dims[SBX_MAX_NDIM];
    int type = numpy_type(a->dtype);
    if (type < 0 || a->ndim < 0 || a->ndim > SBX_MAX_NDIM) {
        array_free(a);
        PyErr_SetString(PyExc_ValueError, "the library returned an array of an unknown dtype or rank");
        return NULL;
    }
    for (int d = 0; d < a->ndim; d++)
        dims[d] = (npy_intp)a->shape[d];
    if (!a->data) { /* no elements: numpy allocates its own (empty) block */
        PyObject *r = PyArray_ZEROS(a->ndim, dims, type, 0);
        array_free(a);
        return r;
    }
    PyObject *r = PyArray_New(&PyArray_Type, a->ndim, dims, type, NULL, a->data, 0, NPY_ARRAY_CARRAY, NULL);
    if (!r) {
        array_free(a);
        return NULL;
    }
    PyObject *owner = PyCapsule_New(a, "sparsebox.array", capsule_free);
    if (!owner) {
        Py_DECREF(r);
        array_free(a);
        return NULL;
    }
    if (PyArray_SetBaseObject((PyArrayObject *)r, owner) < 0) { /* steals owner, also on failure */
        Py_DECREF(r);
        return NULL;
    }
    return r;
}

static PyObject *bind(PyObject *self, PyObject *arg)
{
    (void)self;
    uintptr_t f;
    if (address(arg, "array_free", &f) < 0)
        return NULL;
    array_free = (array_free_fn)f;
    Py_RETURN_NONE;
}

static PyObject *call(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "call: expected 4 arguments (fn, plan, inputs, wants), got %zd", nargs);
        return NULL;
    }
    if (!array_free) {
        PyErr_SetString(PyExc_RuntimeError, "call: bind(array_free) was not called");
        return NULL;
    }
    uintptr_t fn, plan;
    if (address(args[0], "fn", &fn) < 0 || address(args[1], "plan", &plan) < 0)
        return NULL;
    if (!PyList_Check(args[2]) || !PyList_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "call: inputs and wants must be lists");
        return NULL;
    }
    Py_ssize_t nin = PyList_GET_SIZE(args[2]), nout = PyList_GET_SIZE(args[3]);
    if (nin < 1 || nin > MAX_ARGS || nout < 1 || nout > MAX_ARGS) {
        PyErr_Format(PyExc_ValueError, "call: 1 to %d inputs and outputs, got %zd and %zd", MAX_ARGS, nin, nout);
        return NULL;
    }
    sbx_array in[MAX_ARGS];
    PyObject *held[MAX_ARGS] = {NULL, NULL, NULL}; /* the inputs, kept alive while the GIL is released */
    const sbx_array *ip[MAX_ARGS] = {NULL, NULL, NULL};
    sbx_array *res[MAX_ARGS] = {NULL, NULL, NULL};
    sbx_array **op[MAX_ARGS] = {NULL, NULL, NULL};
    for (Py_ssize_t i = 0; i < nin; i++) {
        PyObject *o = PyList_GET_ITEM(args[2], i);
        if (o == Py_None)
            continue;
        if (describe(o, (int)i, &in[i]) < 0)
            return NULL;
        ip[i] = &in[i];
    }
    for (Py_ssize_t i = 0; i < nout; i++) {
        PyObject *w = PyList_GET_ITEM(args[3], i);
        if (!PyBool_Check(w)) {
            PyErr_Format(PyExc_TypeError, "call: wants[%zd] must be True or False", i);
            return NULL;
        }
        op[i] = w == Py_True ? &res[i] : NULL;
    }
    for (Py_ssize_t i = 0; i < nin; i++) {
        held[i] = PyList_GET_ITEM(args[2], i);
        Py_INCREF(held[i]);
    }
    plan_t p = (plan_t)plan;
    sbx_status st = SBX_ERR_ARG;
    Py_BEGIN_ALLOW_THREADS
    switch (nin * 10 + nout) {
    case 11: st = ((fn_1_1)fn)(p, ip[0], op[0]); break;
    case 12: st = ((fn_1_2)fn)(p, ip[0], op[0], op[1]); break;
    case 13: st = ((fn_1_3)fn)(p, ip[0], op[0], op[1], op[2]); break;
    case 21: st = ((fn_2_1)fn)(p, ip[0], ip[1], op[0]); break;
    case 22: st = ((fn_2_2)fn)(p, ip[0], ip[1], op[0], op[1]); break;
    case 23: st = ((fn_2_3)fn)(p, ip[0], ip[1], op[0], op[1], op[2]); break;
    case 31: st = ((fn_3_1)fn)(p, ip[0], ip[1], ip[2], op[0]); break;
    case 32: st = ((fn_3_2)fn)(p, ip[0], ip[1], ip[2], op[0], op[1]); break;
    case 33: st = ((fn_3_3)fn)(p, ip[0], ip[1], ip[2], op[0], op[1], op[2]); break;
    }
    Py_END_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < nin; i++)
        Py_DECREF(held[i]);
    if (st != SBX_OK) /* the library sets no output on failure */
        return PyLong_FromLong((long)st);
    PyObject *list = PyList_New(nout);
    if (!list) {
        for (Py_ssize_t i = 0; i < nout; i++)
            if (res[i])
                array_free(res[i]);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nout; i++) {
        PyObject *r = Py_None;
        if (res[i]) {
            r = take(res[i]);
            res[i] = NULL;
            if (!r) {
                for (Py_ssize_t j = i + 1; j < nout; j++)
                    if (res[j])
                        array_free(res[j]);
                Py_DECREF(list);
                return NULL;
            }
        } else {
            Py_INCREF(r);
        }
        PyList_SET_ITEM(list, i, r);
    }
    return list;
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_O, "bind(array_free): the address of the loaded library's sbx_array_free."},
    {"call", (PyCFunction)(void (*)(void))call, METH_FASTCALL,
     "call(fn, plan, inputs, wants): a layer function's outputs (a list), or its failed status (an int)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void)
{
    import_array();
    return PyModule_Create(&module);
}
