/* Structured dot products: sparse x dense and dense x sparse, float32 and float64. */
#include "sparse/internal.h"

#define AHEAD 16 /* entries between a prefetch and its use */

/* Asks for the first (up to) 8 cache lines of a row. */
static inline void prefetch_row(const void *row, int64_t bytes) {
    for (int64_t off = 0; off < bytes && off < 512; off += 64) __builtin_prefetch((const char *)row + off);
}

#define T float
#define NAME(x) x##_f32
#include "sparse/dot_kernels.h"
#undef T
#undef NAME
#define T double
#define NAME(x) x##_f64
#include "sparse/dot_kernels.h"
#undef T
#undef NAME

/* The range [lo, hi) of part `part` out of `parts` equal parts of [0, n). */
static void split(int64_t n, int parts, int part, int64_t *lo, int64_t *hi) {
    *lo = n / parts * part + (part < n % parts ? part : n % parts);
    *hi = *lo + n / parts + (part < n % parts);
}

/* Threads worth using for about `work` multiply-adds. */
static int threads_for(int64_t work) {
    int t = sbx__threads();
    return work < 100000 ? 1 : t;
}

static sbx_status check_operands(const sbx_sparse *s, const sbx_array *d, sbx_array **out, const char *sname,
                                 const char *dname) {
    SBX_CHECK(sbx_sparse_validate_structure(s));
    if (!d) return sbx__error(SBX_ERR_ARG, "%s is NULL", dname);
    if (!out) return sbx__error(SBX_ERR_ARG, "out is NULL");
    if (s->dtype != SBX_FLOAT32 && s->dtype != SBX_FLOAT64)
        return sbx__error(SBX_ERR_ARG, "%s has dtype %s; structured dot takes float32 or float64", sname,
                          sbx_dtype_name(s->dtype));
    if (d->dtype != s->dtype)
        return sbx__error(SBX_ERR_ARG, "%s has dtype %s but %s has %s; both must be the same", dname,
                          sbx_dtype_name(d->dtype), sname, sbx_dtype_name(s->dtype));
    if (d->ndim != 2) return sbx__error(SBX_ERR_ARG, "%s has %d dimensions, must have 2", dname, d->ndim);
    int64_t n;
    SBX_CHECK(sbx_shape_numel(2, d->shape, &n));
    if (n > 0 && !d->data) return sbx__error(SBX_ERR_ARG, "%s has %lld elements but data is NULL", dname, (long long)n);
    return SBX_OK;
}

sbx_status sbx_sparse_dot_dense(const sbx_sparse *a, const sbx_array *b, sbx_array **out) {
    sbx_array *c;
    SBX_CHECK(check_operands(a, b, out, "sparse a", "dense b"));
    if (b->shape[0] != a->ncols)
        return sbx__error(SBX_ERR_ARG, "dense b has %lld rows but sparse a (%lld x %lld) has %lld columns",
                          (long long)b->shape[0], (long long)a->nrows, (long long)a->ncols, (long long)a->ncols);
    int64_t m = a->nrows, n = b->shape[1], shape[2] = {m, n}, work = 0;
    SBX_CHECK(sbx_array_create(a->dtype, 2, shape, &c));
    if (m == 0 || n == 0 || a->nnz == 0) { /* nothing to add: C stays zero (and b->data may be NULL) */
        *out = c;
        return SBX_OK;
    }
    int f32 = a->dtype == SBX_FLOAT32, csr = a->format == SBX_CSR;
    /* A row of C or a column block of C per thread; threads_for() keeps small products serial. */
    int nt = threads_for(sbx_mul_i64(a->nnz, n, &work) == SBX_OK ? work : INT64_MAX);
    if (!csr && nt > n) nt = n > 0 ? (int)n : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        int64_t lo, hi;
        split(csr ? m : n, nt, t, &lo, &hi);
        if (csr && f32) csr_dense_f32(a, b->data, c->data, n, lo, hi);
        if (csr && !f32) csr_dense_f64(a, b->data, c->data, n, lo, hi);
        if (!csr && f32) csc_dense_f32(a, b->data, c->data, n, lo, hi);
        if (!csr && !f32) csc_dense_f64(a, b->data, c->data, n, lo, hi);
    }
    *out = c;
    return SBX_OK;
}

sbx_status sbx_dense_dot_sparse(const sbx_array *a, const sbx_sparse *b, sbx_array **out) {
    sbx_array *c;
    SBX_CHECK(check_operands(b, a, out, "sparse b", "dense a"));
    if (a->shape[1] != b->nrows)
        return sbx__error(SBX_ERR_ARG, "dense a has %lld columns but sparse b (%lld x %lld) has %lld rows",
                          (long long)a->shape[1], (long long)b->nrows, (long long)b->ncols, (long long)b->nrows);
    int64_t m = a->shape[0], k = a->shape[1], shape[2] = {m, b->ncols}, work = 0;
    SBX_CHECK(sbx_array_create(b->dtype, 2, shape, &c));
    if (m == 0 || k == 0 || b->nnz == 0) { /* nothing to add: C stays zero (and a->data may be NULL) */
        *out = c;
        return SBX_OK;
    }
    int f32 = b->dtype == SBX_FLOAT32, csr = b->format == SBX_CSR;
    int nt = threads_for(sbx_mul_i64(b->nnz, m, &work) == SBX_OK ? work : INT64_MAX);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        int64_t lo, hi;
        split(m, nt, t, &lo, &hi);
        if (csr && f32) dense_csr_f32(a->data, b, c->data, k, lo, hi);
        if (csr && !f32) dense_csr_f64(a->data, b, c->data, k, lo, hi);
        if (!csr && f32) dense_csc_f32(a->data, b, c->data, k, lo, hi);
        if (!csr && !f32) dense_csc_f64(a->data, b, c->data, k, lo, hi);
    }
    *out = c;
    return SBX_OK;
}
