/* Structured dot products: sparse x dense and dense x sparse, float32 and float64. */
#include <stdio.h>
#include <string.h>

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

/* out_given: 0 when the public functions' out pointer is NULL (reported in its old place, after the operands). */
static sbx_status check_operands(const sbx_sparse *s, const sbx_array *d, int out_given, const char *sname,
                                 const char *dname) {
    SBX_CHECK(sbx_sparse_validate_structure(s));
    if (!d) return sbx__error(SBX_ERR_ARG, "%s is NULL", dname);
    if (!out_given) return sbx__error(SBX_ERR_ARG, "out is NULL");
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

/* The output c of an into-variant: dtype, an m x n shape, data, and no memory shared with the dense operand d. */
static sbx_status check_into(const sbx_array *c, sbx_dtype dtype, int64_t m, int64_t n, const sbx_array *d,
                             const char *dname) {
    if (!c) return sbx__error(SBX_ERR_ARG, "output c is NULL");
    if (c->dtype != dtype)
        return sbx__error(SBX_ERR_ARG, "output c has dtype %s; the product is %s", sbx_dtype_name(c->dtype),
                          sbx_dtype_name(dtype));
    if (c->ndim != 2 || c->shape[0] != m || c->shape[1] != n) {
        char shape[160] = "";
        int w = 0;
        for (int i = 0; i < c->ndim && i < SBX_MAX_NDIM && w < (int)sizeof shape; i++)
            w += snprintf(shape + w, sizeof shape - (size_t)w, "%s%lld", i ? " x " : "", (long long)c->shape[i]);
        return sbx__error(SBX_ERR_ARG, "output c has %d dimensions (%s); the product is %lld x %lld", c->ndim,
                          c->ndim > 0 && c->ndim <= SBX_MAX_NDIM ? shape : "-", (long long)m, (long long)n);
    }
    int64_t cells;
    SBX_CHECK(sbx_mul_i64(m, n, &cells));
    if (cells > 0 && !c->data)
        return sbx__error(SBX_ERR_ARG, "output c has %lld elements but data is NULL", (long long)cells);
    if (cells > 0 && c->data == d->data) return sbx__error(SBX_ERR_ARG, "output c shares its data with %s", dname);
    return SBX_OK;
}

/* Zeroes rows r0 .. r1-1, columns t0 .. t1-1 of the row-major n-column array c of element size es. */
static void zero_block(void *c, size_t es, int64_t n, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
    if (r1 <= r0 || t1 <= t0) return;
    char *base = c;
    if (t0 == 0 && t1 == n) { /* whole rows: one run */
        memset(base + (size_t)(r0 * n) * es, 0, (size_t)((r1 - r0) * n) * es);
        return;
    }
    for (int64_t i = r0; i < r1; i++) memset(base + (size_t)(i * n + t0) * es, 0, (size_t)(t1 - t0) * es);
}

/* C = A B into c, operands checked. zeroed: c is already zero; otherwise each thread zeroes the part of C it
 * writes just before writing it (the result is the same; the memory is touched by the thread that uses it). */
static void sparse_dense(const sbx_sparse *a, const sbx_array *b, sbx_array *c, int zeroed) {
    const int64_t m = a->nrows, n = b->shape[1];
    const size_t es = sbx_dtype_size(a->dtype);
    int64_t work = 0;
    if (m == 0 || n == 0 || a->nnz == 0) { /* nothing to add: C is zero (and b->data may be NULL) */
        if (!zeroed) zero_block(c->data, es, n, 0, m, 0, n);
        return;
    }
    int f32 = a->dtype == SBX_FLOAT32, csr = a->format == SBX_CSR;
    /* A row of C or a column block of C per thread; threads_for() keeps small products serial. */
    int nt = threads_for(sbx_mul_i64(a->nnz, n, &work) == SBX_OK ? work : INT64_MAX);
    if (!csr && nt > n) nt = n > 0 ? (int)n : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        int64_t lo, hi;
        split(csr ? m : n, nt, t, &lo, &hi);
        if (!zeroed) {
            if (csr)
                zero_block(c->data, es, n, lo, hi, 0, n);
            else
                zero_block(c->data, es, n, 0, m, lo, hi);
        }
        if (csr && f32) csr_dense_f32(a, b->data, c->data, n, lo, hi);
        if (csr && !f32) csr_dense_f64(a, b->data, c->data, n, lo, hi);
        if (!csr && f32) csc_dense_f32(a, b->data, c->data, n, lo, hi);
        if (!csr && !f32) csc_dense_f64(a, b->data, c->data, n, lo, hi);
    }
}

static sbx_status check_sparse_dense(const sbx_sparse *a, const sbx_array *b, int out_given) {
    SBX_CHECK(check_operands(a, b, out_given, "sparse a", "dense b"));
    if (b->shape[0] != a->ncols)
        return sbx__error(SBX_ERR_ARG, "dense b has %lld rows but sparse a (%lld x %lld) has %lld columns",
                          (long long)b->shape[0], (long long)a->nrows, (long long)a->ncols, (long long)a->ncols);
    return SBX_OK;
}

sbx_status sbx_sparse_dot_dense(const sbx_sparse *a, const sbx_array *b, sbx_array **out) {
    sbx_array *c;
    SBX_CHECK(check_sparse_dense(a, b, out != NULL));
    int64_t shape[2] = {a->nrows, b->shape[1]};
    SBX_CHECK(sbx_array_create(a->dtype, 2, shape, &c));
    sparse_dense(a, b, c, 1);
    *out = c;
    return SBX_OK;
}

sbx_status sbx__sparse_dot_dense_into(const sbx_sparse *a, const sbx_array *b, sbx_array *c) {
    SBX_CHECK(check_sparse_dense(a, b, 1));
    SBX_CHECK(check_into(c, a->dtype, a->nrows, b->shape[1], b, "dense b"));
    sparse_dense(a, b, c, 0);
    return SBX_OK;
}

/* C = A B into c, operands checked; zeroed as for sparse_dense. The CSC kernel writes every element of its
 * rows (a sum, not an update), so only the CSR kernel's rows need zeroing. */
static void dense_sparse(const sbx_array *a, const sbx_sparse *b, sbx_array *c, int zeroed) {
    const int64_t m = a->shape[0], k = a->shape[1], n = b->ncols;
    const size_t es = sbx_dtype_size(b->dtype);
    int64_t work = 0;
    if (m == 0 || k == 0 || b->nnz == 0) { /* nothing to add: C is zero (and a->data may be NULL) */
        if (!zeroed) zero_block(c->data, es, n, 0, m, 0, n);
        return;
    }
    int f32 = b->dtype == SBX_FLOAT32, csr = b->format == SBX_CSR;
    int nt = threads_for(sbx_mul_i64(b->nnz, m, &work) == SBX_OK ? work : INT64_MAX);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        int64_t lo, hi;
        split(m, nt, t, &lo, &hi);
        if (!zeroed && csr) zero_block(c->data, es, n, lo, hi, 0, n);
        if (csr && f32) dense_csr_f32(a->data, b, c->data, k, lo, hi);
        if (csr && !f32) dense_csr_f64(a->data, b, c->data, k, lo, hi);
        if (!csr && f32) dense_csc_f32(a->data, b, c->data, k, lo, hi);
        if (!csr && !f32) dense_csc_f64(a->data, b, c->data, k, lo, hi);
    }
}

static sbx_status check_dense_sparse(const sbx_array *a, const sbx_sparse *b, int out_given) {
    SBX_CHECK(check_operands(b, a, out_given, "sparse b", "dense a"));
    if (a->shape[1] != b->nrows)
        return sbx__error(SBX_ERR_ARG, "dense a has %lld columns but sparse b (%lld x %lld) has %lld rows",
                          (long long)a->shape[1], (long long)b->nrows, (long long)b->ncols, (long long)b->nrows);
    return SBX_OK;
}

sbx_status sbx_dense_dot_sparse(const sbx_array *a, const sbx_sparse *b, sbx_array **out) {
    sbx_array *c;
    SBX_CHECK(check_dense_sparse(a, b, out != NULL));
    int64_t shape[2] = {a->shape[0], b->ncols};
    SBX_CHECK(sbx_array_create(b->dtype, 2, shape, &c));
    dense_sparse(a, b, c, 1);
    *out = c;
    return SBX_OK;
}

sbx_status sbx__dense_dot_sparse_into(const sbx_array *a, const sbx_sparse *b, sbx_array *c) {
    SBX_CHECK(check_dense_sparse(a, b, 1));
    SBX_CHECK(check_into(c, b->dtype, a->shape[0], b->ncols, a, "dense a"));
    dense_sparse(a, b, c, 0);
    return SBX_OK;
}
