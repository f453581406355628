/* Format conversion (a counting-sort transpose of the index structure), dense <-> sparse, and the
 * in-place clean-ups: sort indices, sum duplicates, eliminate zeros. */
#include <string.h>

#include "sparse/internal.h"

/* Copies element s of src to element d of dst, for an element size known at the call site so that
 * the compiler turns the memcpy into one move. */
static inline void move_elem(void *dst, int64_t d, const void *src, int64_t s, size_t es) {
    memcpy((char *)dst + (size_t)d * es, (const char *)src + (size_t)s * es, es);
}

/* The scatter pass of the transpose: entry p of line k goes to the next free slot of line
 * indices[p] of the result; next[] holds those slots. One copy per element width (the values are
 * moved as raw bits), with every pointer in a local so the loop keeps them in registers. The slots
 * are scattered across the result, so the loop prefetches the slots of the entry AHEAD places on. */
#define AHEAD 64
#define SCATTER(name, T)                                                                               \
    static void name(int64_t major, const int64_t *restrict ip, const int64_t *restrict ix,            \
                     const T *restrict v, int64_t *restrict next, int64_t *restrict tx, T *restrict tv) { \
        int64_t nnz = ip[major];                                                                       \
        for (int64_t k = 0; k < major; k++)                                                            \
            for (int64_t p = ip[k]; p < ip[k + 1]; p++) {                                              \
                if (p + AHEAD < nnz) {                                                                 \
                    int64_t s = next[ix[p + AHEAD]];                                                   \
                    __builtin_prefetch(tx + s, 1);                                                     \
                    __builtin_prefetch(tv + s, 1);                                                     \
                }                                                                                      \
                int64_t d = next[ix[p]]++;                                                             \
                tx[d] = k;                                                                             \
                tv[d] = v[p];                                                                          \
            }                                                                                          \
    }
SCATTER(scatter8, uint8_t)
SCATTER(scatter16, uint16_t)
SCATTER(scatter32, uint32_t)
SCATTER(scatter64, uint64_t)

sbx_status sbx_sparse_convert(const sbx_sparse *m, sbx_format format, sbx_sparse **out) {
    sbx_sparse *t;
    SBX_CHECK(sbx__sparse_check_indptr(m, "matrix"));
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_sparse_convert: out is NULL");
    if (format != SBX_CSR && format != SBX_CSC)
        return sbx__error(SBX_ERR_ARG, "format %d is neither SBX_CSR nor SBX_CSC", (int)format);
    if (format == m->format) { /* a sorted copy */
        SBX_CHECK(sbx_sparse_validate_structure(m));
        SBX_CHECK(sbx_sparse_copy(m, &t));
        sbx_status st = sbx_sparse_sort_indices(t);
        if (st != SBX_OK) {
            sbx_sparse_free(t);
            return st;
        }
        *out = t;
        return SBX_OK;
    }
    SBX_CHECK(sbx__sparse_new(format, m->dtype, m->nrows, m->ncols, m->nnz, 0, &t)); /* every entry is written */
    int64_t minor = sbx_sparse_minor(m);
    int64_t *next = t->indptr; /* minor + 1 entries: counts, then start slots, then end slots */
    for (int64_t p = 0; p < m->nnz; p++) {
        int64_t j = m->indices[p];
        if ((uint64_t)j >= (uint64_t)minor) {
            sbx_sparse_free(t);
            return sbx__sparse_bad_index(m, "matrix", p);
        }
        next[j]++;
    }
    for (int64_t j = 0, sum = 0; j <= minor; j++) {
        int64_t c = next[j];
        next[j] = sum;
        sum += c;
    }
    int64_t major = sbx_sparse_major(m);
    switch (sbx_dtype_size(m->dtype)) {
    case 1: scatter8(major, m->indptr, m->indices, m->data, next, t->indices, t->data); break;
    case 2: scatter16(major, m->indptr, m->indices, m->data, next, t->indices, t->data); break;
    case 4: scatter32(major, m->indptr, m->indices, m->data, next, t->indices, t->data); break;
    default: scatter64(major, m->indptr, m->indices, m->data, next, t->indices, t->data); break;
    }
    /* next[j] is now the end of line j, which is where line j + 1 starts. */
    memmove(next + 1, next, (size_t)minor * sizeof(int64_t));
    next[0] = 0;
    *out = t;
    return SBX_OK;
}

/* 1 when every line's indices are non-decreasing. */
static int lines_sorted(const sbx_sparse *m) {
    int64_t major = sbx_sparse_major(m);
    for (int64_t k = 0; k < major; k++)
        for (int64_t p = m->indptr[k] + 1; p < m->indptr[k + 1]; p++)
            if (m->indices[p] < m->indices[p - 1]) return 0;
    return 1;
}

sbx_status sbx_sparse_sort_indices(sbx_sparse *m) {
    sbx_sparse *t, *back;
    SBX_CHECK(sbx_sparse_validate_structure(m));
    if (lines_sorted(m)) return SBX_OK;
    /* Two counting-sort transposes: each is stable, so the second yields every line sorted with
     * equal indices in their original order. */
    SBX_CHECK(sbx_sparse_convert(m, m->format == SBX_CSR ? SBX_CSC : SBX_CSR, &t));
    sbx_status st = sbx_sparse_convert(t, m->format, &back);
    sbx_sparse_free(t);
    if (st != SBX_OK) return st;
    /* Copy, not swap: m's arrays may belong to the caller. nnz > 0 here (else lines_sorted). */
    memcpy(m->indices, back->indices, (size_t)m->nnz * sizeof(int64_t));
    memcpy(m->data, back->data, (size_t)m->nnz * sbx_dtype_size(m->dtype));
    sbx_sparse_free(back);
    return SBX_OK;
}

/* In place, line by line: with merge_equal, adds each entry into the previous one when both have the
 * same index (lines must be sorted); without it, drops the entries equal to zero. */
static void compact(sbx_sparse *m, int merge_equal) {
    int64_t major = sbx_sparse_major(m);
    size_t es = sbx_dtype_size(m->dtype);
    int64_t w = 0, start = 0;
    for (int64_t k = 0; k < major; k++) {
        int64_t end = m->indptr[k + 1];
        int64_t line_start = w;
        for (int64_t p = start; p < end; p++) {
            if (merge_equal) {
                if (w > line_start && m->indices[w - 1] == m->indices[p]) {
                    sbx__accumulate(m->data, w - 1, m->data, p, m->dtype);
                    continue;
                }
            } else if (!sbx__nonzero(m->data, m->dtype, p)) {
                continue;
            }
            m->indices[w] = m->indices[p];
            move_elem(m->data, w, m->data, p, es);
            w++;
        }
        start = end;
        m->indptr[k + 1] = w;
    }
    m->nnz = w;
}

sbx_status sbx_sparse_sum_duplicates(sbx_sparse *m) {
    SBX_CHECK(sbx_sparse_sort_indices(m));
    compact(m, 1);
    return SBX_OK;
}

sbx_status sbx_sparse_eliminate_zeros(sbx_sparse *m) {
    SBX_CHECK(sbx_sparse_validate_structure(m));
    compact(m, 0);
    return SBX_OK;
}

sbx_status sbx_sparse_from_dense(const sbx_array *a, sbx_format format, sbx_sparse **out) {
    sbx_sparse *m;
    int64_t nnz = 0;
    if (!a) return sbx__error(SBX_ERR_ARG, "array is NULL");
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_sparse_from_dense: out is NULL");
    if (a->ndim != 2) return sbx__error(SBX_ERR_ARG, "array has %d dimensions, a sparse matrix needs 2", a->ndim);
    if (!sbx__dtype_valid(a->dtype)) return sbx__error(SBX_ERR_ARG, "array has invalid dtype %d", (int)a->dtype);
    int64_t nrows = a->shape[0], ncols = a->shape[1], n;
    SBX_CHECK(sbx_shape_numel(2, a->shape, &n));
    if (n > 0 && !a->data) return sbx__error(SBX_ERR_ARG, "array has %lld elements but data is NULL", (long long)n);
    for (int64_t i = 0; i < n; i++) nnz += sbx__nonzero(a->data, a->dtype, i);
    SBX_CHECK(sbx_sparse_create(format, a->dtype, nrows, ncols, nnz, &m));
    size_t es = sbx_dtype_size(a->dtype);
    int64_t *ip = m->indptr;
    /* Count each line's entries at ip[line + 1], turn counts into starts, then fill in row-major order,
     * which visits every line's entries in increasing index order. */
    for (int64_t i = 0; i < n; i++)
        if (sbx__nonzero(a->data, a->dtype, i)) ip[(format == SBX_CSR ? i / ncols : i % ncols) + 1]++;
    int64_t major = sbx_sparse_major(m);
    for (int64_t k = 0; k < major; k++) ip[k + 1] += ip[k];
    for (int64_t i = 0; i < n; i++) {
        if (!sbx__nonzero(a->data, a->dtype, i)) continue;
        int64_t r = i / ncols, c = i % ncols;
        int64_t d = format == SBX_CSR ? ip[r]++ : ip[c]++;
        m->indices[d] = format == SBX_CSR ? c : r;
        move_elem(m->data, d, a->data, i, es);
    }
    memmove(ip + 1, ip, (size_t)major * sizeof(int64_t)); /* ip[k] was advanced to the end of line k */
    ip[0] = 0;
    *out = m;
    return SBX_OK;
}

sbx_status sbx_sparse_to_dense(const sbx_sparse *m, sbx_array **out) {
    sbx_array *a;
    SBX_CHECK(sbx__sparse_check_indptr(m, "matrix"));
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_sparse_to_dense: out is NULL");
    int64_t shape[2] = {m->nrows, m->ncols};
    SBX_CHECK(sbx_array_create(m->dtype, 2, shape, &a));
    int64_t major = sbx_sparse_major(m), minor = sbx_sparse_minor(m);
    for (int64_t k = 0; k < major; k++)
        for (int64_t p = m->indptr[k]; p < m->indptr[k + 1]; p++) {
            int64_t j = m->indices[p];
            if ((uint64_t)j >= (uint64_t)minor) {
                sbx_array_free(a);
                return sbx__sparse_bad_index(m, "matrix", p);
            }
            sbx__accumulate(a->data, m->format == SBX_CSR ? k * m->ncols + j : j * m->ncols + k, m->data, p, m->dtype);
        }
    *out = a;
    return SBX_OK;
}
