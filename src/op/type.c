/* Types, values, output storage, and the helpers the op classes share. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "op/internal.h"
#include "sparse/internal.h"

sbx_type sbx_type_dense(sbx_dtype dtype, int ndim, const int64_t *shape) {
    sbx_type t;
    memset(&t, 0, sizeof t);
    t.kind = SBX_KIND_DENSE;
    t.dtype = dtype;
    t.format = SBX_CSR;
    t.ndim = ndim;
    for (int d = 0; d < ndim && d < SBX_MAX_NDIM; d++) t.shape[d] = shape ? shape[d] : -1;
    return t;
}

sbx_type sbx_type_sparse(sbx_format format, sbx_dtype dtype, int64_t nrows, int64_t ncols) {
    sbx_type t;
    memset(&t, 0, sizeof t);
    t.kind = SBX_KIND_SPARSE;
    t.dtype = dtype;
    t.format = format;
    t.ndim = 2;
    t.shape[0] = nrows;
    t.shape[1] = ncols;
    return t;
}

sbx_status sbx_type_check(const sbx_type *t, const char *what) {
    if (!t) return sbx__error(SBX_ERR_ARG, "%s: type is NULL", what);
    if (t->kind != SBX_KIND_DENSE && t->kind != SBX_KIND_SPARSE)
        return sbx__error(SBX_ERR_ARG, "%s: kind %d is neither dense (0) nor sparse (1)", what, (int)t->kind);
    if (!sbx__dtype_valid(t->dtype)) return sbx__error(SBX_ERR_ARG, "%s: dtype %d is not an sbx_dtype", what, (int)t->dtype);
    if (t->kind == SBX_KIND_SPARSE && t->format != SBX_CSR && t->format != SBX_CSC)
        return sbx__error(SBX_ERR_ARG, "%s: format %d is neither csr nor csc", what, (int)t->format);
    if (t->ndim < 0 || t->ndim > SBX_MAX_NDIM)
        return sbx__error(SBX_ERR_ARG, "%s: ndim %d is outside [0, %d]", what, t->ndim, SBX_MAX_NDIM);
    if (t->kind == SBX_KIND_SPARSE && t->ndim != 2)
        return sbx__error(SBX_ERR_ARG, "%s: a sparse type has 2 dimensions, not %d", what, t->ndim);
    for (int d = 0; d < SBX_MAX_NDIM; d++) {
        if (d < t->ndim && t->shape[d] < -1)
            return sbx__error(SBX_ERR_ARG, "%s: extent %d is %lld (an extent is >= 0, or -1 for unknown)", what, d,
                              (long long)t->shape[d]);
        if (d >= t->ndim && t->shape[d] != 0)
            return sbx__error(SBX_ERR_ARG, "%s: shape[%d] = %lld past ndim %d must be 0", what, d,
                              (long long)t->shape[d], t->ndim);
    }
    return SBX_OK;
}

int sbx_type_equal(const sbx_type *a, const sbx_type *b) {
    if (!a || !b || a->kind != b->kind || a->dtype != b->dtype || a->ndim != b->ndim) return 0;
    if (a->kind == SBX_KIND_SPARSE && a->format != b->format) return 0;
    return sbx__same_shape(a, b);
}

int sbx_type_accepts(const sbx_type *t, const sbx_value *v) {
    sbx_type vt = sbx_type_dense(SBX_FLOAT64, 0, NULL);
    if (!t || !v || sbx_type_of(v, &vt) != SBX_OK) return 0;
    if (t->kind != vt.kind || t->dtype != vt.dtype || t->ndim != vt.ndim) return 0;
    if (t->kind == SBX_KIND_SPARSE && t->format != vt.format) return 0;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] >= 0 && t->shape[d] != vt.shape[d]) return 0;
    return 1;
}

sbx_type sbx__type_of_dense(const sbx_array *a) { return sbx_type_dense(a->dtype, a->ndim, a->shape); }

sbx_status sbx_type_of(const sbx_value *v, sbx_type *out) {
    if (!v || !out) return sbx__error(SBX_ERR_ARG, "sbx_type_of: value or out is NULL");
    if (v->dense && v->sparse) return sbx__error(SBX_ERR_ARG, "a value holds both a dense and a sparse matrix");
    if (v->dense) {
        const sbx_array *a = v->dense;
        if (!sbx__dtype_valid(a->dtype) || a->ndim < 0 || a->ndim > SBX_MAX_NDIM)
            return sbx__error(SBX_ERR_ARG, "a dense value has dtype %d and ndim %d", (int)a->dtype, a->ndim);
        int64_t n;
        SBX_CHECK(sbx_shape_numel(a->ndim, a->shape, &n));
        if (n > 0 && !a->data) return sbx__error(SBX_ERR_ARG, "a dense value of %lld elements has no data", (long long)n);
        *out = sbx__type_of_dense(a);
        return SBX_OK;
    }
    if (v->sparse) {
        SBX_CHECK(sbx__sparse_check_header(v->sparse, "sparse value"));
        *out = sbx_type_sparse(v->sparse->format, v->sparse->dtype, v->sparse->nrows, v->sparse->ncols);
        return SBX_OK;
    }
    return sbx__error(SBX_ERR_ARG, "the value is empty");
}

int sbx_type_str(const sbx_type *t, char *buf, size_t size) {
    char tmp[256];
    int n = 0;
    if (!t) return snprintf(buf, size, "(null)");
    if (t->kind == SBX_KIND_SPARSE) n += snprintf(tmp + n, sizeof tmp - (size_t)n, "%s ", sbx_format_name(t->format));
    n += snprintf(tmp + n, sizeof tmp - (size_t)n, "%s[", sbx_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim && d < SBX_MAX_NDIM; d++) {
        if (t->shape[d] < 0)
            n += snprintf(tmp + n, sizeof tmp - (size_t)n, "%s?", d ? "," : "");
        else
            n += snprintf(tmp + n, sizeof tmp - (size_t)n, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    }
    snprintf(tmp + n, sizeof tmp - (size_t)n, "]");
    return snprintf(buf, size, "%s", tmp);
}

void sbx_value_clear(sbx_value *v) {
    if (!v) return;
    sbx_array_free(v->dense);
    sbx_sparse_free(v->sparse);
    v->dense = NULL;
    v->sparse = NULL;
}

sbx_status sbx_output_dense(sbx_value *out, sbx_dtype dtype, int ndim, const int64_t *shape, int zero,
                            sbx_array **array) {
    if (!out || !array || (ndim > 0 && !shape)) return sbx__error(SBX_ERR_ARG, "sbx_output_dense: NULL argument");
    sbx_array *a = out->dense;
    int fits = a && !out->sparse && a->dtype == dtype && a->ndim == ndim;
    for (int d = 0; fits && d < ndim; d++) fits = a->shape[d] == shape[d];
    if (fits) {
        if (zero) {
            int64_t n = sbx_array_numel(a);
            if (n > 0) memset(a->data, 0, (size_t)n * sbx_dtype_size(dtype));
        }
        *array = a;
        return SBX_OK;
    }
    SBX_CHECK(sbx__array_new(dtype, ndim, shape, zero, &a));
    sbx_value_clear(out);
    out->dense = a;
    *array = a;
    return SBX_OK;
}

void sbx_output_sparse(sbx_value *out, sbx_sparse *m) {
    if (!out || !m) return;
    sbx_sparse *s = out->sparse;
    if (s && !out->dense) {
        sbx__free(s->indptr);
        sbx__free(s->indices);
        sbx__free(s->data);
        *s = *m;
        m->indptr = m->indices = NULL;
        m->data = NULL;
        sbx_sparse_free(m);
        return;
    }
    sbx_value_clear(out);
    out->sparse = m;
}

/* --- Helpers for op classes ------------------------------------------------------------------ */
static sbx_status op_message(const sbx_op *op, sbx_status st, const char *prefix, const char *fmt, va_list ap) {
    char msg[400];
    vsnprintf(msg, sizeof msg, fmt, ap);
    return sbx__error(st, "%s: %s%s", op && op->cls ? op->cls->name : "op", prefix, msg);
}

sbx_status sbx__op_error(const sbx_op *op, int i, const char *name, const char *fmt, ...) {
    char prefix[96];
    va_list ap;
    snprintf(prefix, sizeof prefix, "input %d (%s): ", i, name);
    va_start(ap, fmt);
    sbx_status st = op_message(op, SBX_ERR_ARG, prefix, fmt, ap);
    va_end(ap);
    return st;
}

sbx_status sbx__op_fail(const sbx_op *op, sbx_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sbx_status st = op_message(op, status, "", fmt, ap);
    va_end(ap);
    return st;
}

sbx_status sbx__infer_from_types(const sbx_op *op, int nin, const sbx_value *in, int nout, sbx_type *out) {
    sbx_type types[SBX_OP_MAX_INPUTS];
    int n = 0;
    if (nin < 0 || nin > SBX_OP_MAX_INPUTS) return sbx__op_fail(op, SBX_ERR_ARG, "%d inputs", nin);
    for (int i = 0; i < nin; i++)
        if (sbx_type_of(&in[i], &types[i]) != SBX_OK) {
            char why[512]; /* the message is rewritten in the buffer it lies in: copy it first */
            snprintf(why, sizeof why, "%s", sbx_last_error());
            return sbx__op_error(op, i, "value", "%s", why);
        }
    SBX_CHECK(op->cls->make_node(op, nin, types, &n, out));
    if (n != nout) return sbx__op_fail(op, SBX_ERR_ARG, "%d outputs asked for, the op has %d", nout, n);
    return SBX_OK;
}

void sbx__all_connected(const sbx_op *op, int nin, int nout, int *pattern) {
    (void)op;
    for (int i = 0; i < nin * nout; i++) pattern[i] = 1;
}

int sbx__noprops_equal(const void *a, const void *b) {
    (void)a, (void)b;
    return 1;
}

uint64_t sbx__noprops_hash(const void *props) {
    (void)props;
    return 0;
}

int sbx__noprops_str(const void *props, char *buf, size_t size) {
    (void)props;
    return snprintf(buf, size, "%s", "");
}

sbx_status sbx__op_again(const sbx_op *op, sbx_status st) { return sbx__op_fail(op, st, "%s", sbx_last_error()); }

int sbx__props_equal_bytes(const void *a, const void *b, size_t size) {
    return size == 0 || (a && b && memcmp(a, b, size) == 0);
}

uint64_t sbx__hash_bytes(const void *p, size_t size, uint64_t h) {
    const unsigned char *c = p;
    for (size_t i = 0; i < size; i++) h = (h ^ c[i]) * 0x100000001b3ull; /* FNV-1a */
    return h;
}

int sbx__conv_shape_equal(const sbx_conv_shape *a, const sbx_conv_shape *b) {
    if (a->ndim != b->ndim || a->channels != b->channels || a->mode != b->mode) return 0;
    for (int d = 0; d < a->ndim && d < SBX_MAX_NDIM; d++)
        if (a->in[d] != b->in[d] || a->kernel[d] != b->kernel[d] || a->stride[d] != b->stride[d]) return 0;
    return 1;
}

uint64_t sbx__conv_shape_hash(const sbx_conv_shape *s, uint64_t h) {
    int64_t v[3 + 3 * SBX_MAX_NDIM];
    int n = 0;
    v[n++] = s->ndim;
    v[n++] = s->channels;
    v[n++] = s->mode;
    for (int d = 0; d < s->ndim && d < SBX_MAX_NDIM; d++) {
        v[n++] = s->in[d];
        v[n++] = s->kernel[d];
        v[n++] = s->stride[d];
    }
    return sbx__hash_bytes(v, (size_t)n * sizeof v[0], h);
}

static int list_str(char *buf, size_t size, const int64_t *v, int n) {
    int w = 0;
    for (int d = 0; d < n; d++) w += snprintf(buf + w, size > (size_t)w ? size - (size_t)w : 0, "%s%lld", d ? "," : "", (long long)v[d]);
    return w;
}

int sbx__conv_shape_str(const sbx_conv_shape *s, char *buf, size_t size) {
    char in[128], k[128], st[128];
    int n = s->ndim < 0 ? 0 : s->ndim > SBX_MAX_NDIM ? SBX_MAX_NDIM : s->ndim;
    list_str(in, sizeof in, s->in, n);
    list_str(k, sizeof k, s->kernel, n);
    list_str(st, sizeof st, s->stride, n);
    return snprintf(buf, size, "channels=%lld in=(%s) kernel=(%s) stride=(%s) mode=%s", (long long)s->channels, in, k,
                    st, sbx_conv_mode_name(s->mode));
}

int sbx__is_float(sbx_dtype dtype) { return dtype == SBX_FLOAT32 || dtype == SBX_FLOAT64; }

int sbx__is_integer(sbx_dtype dtype) { return sbx__dtype_valid(dtype) && !sbx__is_float(dtype) && dtype != SBX_BOOL; }

int sbx__same_shape(const sbx_type *a, const sbx_type *b) {
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}
