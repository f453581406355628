/* Creating, freeing and copying sparse matrices. */
#include <string.h>

#include "sparse/internal.h"

const char *sbx_format_name(sbx_format format) {
    return format == SBX_CSR ? "csr" : format == SBX_CSC ? "csc" : "invalid";
}

sbx_status sbx_format_parse(const char *name, sbx_format *out) {
    if (!name) return sbx__error(SBX_ERR_ARG, "format name is NULL");
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_format_parse: out is NULL");
    if (strcmp(name, "csr") == 0) {
        *out = SBX_CSR;
    } else if (strcmp(name, "csc") == 0) {
        *out = SBX_CSC;
    } else {
        return sbx__error(SBX_ERR_ARG, "format name '%.64s' is unknown (expected csr or csc)", name);
    }
    return SBX_OK;
}

sbx_status sbx_sparse_create(sbx_format format, sbx_dtype dtype, int64_t nrows, int64_t ncols, int64_t nnz,
                             sbx_sparse **out) {
    return sbx__sparse_new(format, dtype, nrows, ncols, nnz, 1, out);
}

sbx_status sbx__sparse_new(sbx_format format, sbx_dtype dtype, int64_t nrows, int64_t ncols, int64_t nnz, int zero,
                           sbx_sparse **out) {
    sbx_sparse *m;
    int64_t cells;
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_sparse_create: out is NULL");
    if (format != SBX_CSR && format != SBX_CSC)
        return sbx__error(SBX_ERR_ARG, "format %d is neither SBX_CSR nor SBX_CSC", (int)format);
    if (!sbx__dtype_valid(dtype)) return sbx__error(SBX_ERR_ARG, "dtype %d is not an sbx_dtype", (int)dtype);
    if (nrows < 0 || ncols < 0 || nnz < 0)
        return sbx__error(SBX_ERR_ARG, "negative size: nrows %lld, ncols %lld, nnz %lld", (long long)nrows,
                          (long long)ncols, (long long)nnz);
    if (sbx_mul_i64(nrows, ncols, &cells) == SBX_OK && nnz > cells)
        return sbx__error(SBX_ERR_ARG, "nnz %lld is more than nrows * ncols = %lld x %lld", (long long)nnz,
                          (long long)nrows, (long long)ncols);
    int64_t major = format == SBX_CSR ? nrows : ncols;
    if (major == INT64_MAX) return sbx__error(SBX_ERR_OVERFLOW, "indptr of %lld + 1 entries overflows", (long long)major);
    SBX_CHECK(sbx__alloc(1, sizeof *m, &m, "sparse matrix"));
    sbx_status st = sbx__alloc(major + 1, sizeof(int64_t), &m->indptr, "sparse indptr");
    sbx_status (*alloc)(int64_t, size_t, void *, const char *) = zero ? sbx__alloc : sbx__alloc_raw;
    if (st == SBX_OK) st = alloc(nnz, sizeof(int64_t), &m->indices, "sparse indices");
    if (st == SBX_OK) st = alloc(nnz, sbx_dtype_size(dtype), &m->data, "sparse data");
    m->format = format;
    m->dtype = dtype;
    m->nrows = nrows;
    m->ncols = ncols;
    m->nnz = nnz;
    if (st != SBX_OK) {
        sbx_sparse_free(m);
        return st;
    }
    *out = m;
    return SBX_OK;
}

void sbx_sparse_free(sbx_sparse *m) {
    if (!m) return;
    sbx__free(m->indptr);
    sbx__free(m->indices);
    sbx__free(m->data);
    sbx__free(m);
}

/* A copy of m's arrays into a new matrix of the given format, shape and dtype (data cast). */
static sbx_status copy_as(const sbx_sparse *m, sbx_format format, int64_t nrows, int64_t ncols, sbx_dtype dtype,
                          sbx_sparse **out) {
    sbx_sparse *c = NULL;
    SBX_CHECK(sbx__sparse_check_indptr(m, "matrix"));
    if (!out) return sbx__error(SBX_ERR_ARG, "out is NULL");
    SBX_CHECK(sbx_sparse_create(format, dtype, nrows, ncols, m->nnz, &c));
    memcpy(c->indptr, m->indptr, (size_t)(sbx_sparse_major(m) + 1) * sizeof(int64_t));
    if (m->nnz > 0) memcpy(c->indices, m->indices, (size_t)m->nnz * sizeof(int64_t));
    sbx_status st = sbx__cast(c->data, dtype, m->data, m->dtype, m->nnz, "sparse cast");
    if (st != SBX_OK) {
        sbx_sparse_free(c);
        return st;
    }
    *out = c;
    return SBX_OK;
}

sbx_status sbx_sparse_copy(const sbx_sparse *m, sbx_sparse **out) {
    SBX_CHECK(sbx__sparse_check_header(m, "matrix"));
    return copy_as(m, m->format, m->nrows, m->ncols, m->dtype, out);
}

sbx_status sbx_sparse_cast(const sbx_sparse *m, sbx_dtype dtype, sbx_sparse **out) {
    SBX_CHECK(sbx__sparse_check_header(m, "matrix"));
    if (!sbx__dtype_valid(dtype)) return sbx__error(SBX_ERR_ARG, "dtype %d is not an sbx_dtype", (int)dtype);
    return copy_as(m, m->format, m->nrows, m->ncols, dtype, out);
}

sbx_status sbx_sparse_transpose(const sbx_sparse *m, sbx_sparse **out) {
    SBX_CHECK(sbx__sparse_check_header(m, "matrix"));
    return copy_as(m, m->format == SBX_CSR ? SBX_CSC : SBX_CSR, m->ncols, m->nrows, m->dtype, out);
}
