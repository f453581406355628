/* Checking a sparse matrix's structure, with a message naming the first violation. */
#include "sparse/internal.h"

int64_t sbx_sparse_major(const sbx_sparse *m) { return !m ? 0 : m->format == SBX_CSR ? m->nrows : m->ncols; }
int64_t sbx_sparse_minor(const sbx_sparse *m) { return !m ? 0 : m->format == SBX_CSR ? m->ncols : m->nrows; }

static const char *line_word(const sbx_sparse *m) { return m->format == SBX_CSR ? "row" : "column"; }

sbx_status sbx__sparse_check_header(const sbx_sparse *m, const char *name) {
    int64_t cells;
    if (!m) return sbx__error(SBX_ERR_ARG, "%s is NULL", name);
    if (m->format != SBX_CSR && m->format != SBX_CSC)
        return sbx__error(SBX_ERR_ARG, "%s has format %d, which is neither SBX_CSR nor SBX_CSC", name, (int)m->format);
    if (!sbx__dtype_valid(m->dtype)) return sbx__error(SBX_ERR_ARG, "%s has invalid dtype %d", name, (int)m->dtype);
    if (m->nrows < 0 || m->ncols < 0 || m->nnz < 0)
        return sbx__error(SBX_ERR_ARG, "%s has a negative size: nrows %lld, ncols %lld, nnz %lld", name,
                          (long long)m->nrows, (long long)m->ncols, (long long)m->nnz);
    if (!m->indptr) return sbx__error(SBX_ERR_ARG, "%s has indptr NULL", name);
    if (m->nnz > 0 && (!m->indices || !m->data))
        return sbx__error(SBX_ERR_ARG, "%s has nnz %lld but indices or data NULL", name, (long long)m->nnz);
    if (sbx_mul_i64(m->nrows, m->ncols, &cells) == SBX_OK && m->nnz > cells)
        return sbx__error(SBX_ERR_FORMAT, "%s has nnz %lld, more than nrows * ncols = %lld x %lld", name,
                          (long long)m->nnz, (long long)m->nrows, (long long)m->ncols);
    return SBX_OK;
}

sbx_status sbx__sparse_check_indptr(const sbx_sparse *m, const char *name) {
    SBX_CHECK(sbx__sparse_check_header(m, name));
    int64_t major = sbx_sparse_major(m);
    const int64_t *ip = m->indptr;
    if (ip[0] != 0) return sbx__error(SBX_ERR_FORMAT, "%s: indptr[0] = %lld, must be 0", name, (long long)ip[0]);
    for (int64_t k = 0; k < major; k++)
        if (ip[k + 1] < ip[k])
            return sbx__error(SBX_ERR_FORMAT, "%s: indptr decreases at %s %lld: indptr[%lld] = %lld < indptr[%lld] = %lld",
                              name, line_word(m), (long long)k, (long long)(k + 1), (long long)ip[k + 1],
                              (long long)k, (long long)ip[k]);
    if (ip[major] != m->nnz)
        return sbx__error(SBX_ERR_FORMAT, "%s: indptr[%lld] = %lld, must equal nnz = %lld", name, (long long)major,
                          (long long)ip[major], (long long)m->nnz);
    return SBX_OK;
}

int64_t sbx__sparse_line_of(const sbx_sparse *m, int64_t p) {
    int64_t lo = 0, hi = sbx_sparse_major(m); /* indptr[lo] <= p < indptr[hi] */
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (m->indptr[mid] <= p)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

sbx_status sbx__sparse_bad_index(const sbx_sparse *m, const char *name, int64_t p) {
    return sbx__error(SBX_ERR_FORMAT, "%s: index %lld at position %lld (%s %lld) is outside [0, %lld)", name,
                      (long long)m->indices[p], (long long)p, line_word(m), (long long)sbx__sparse_line_of(m, p),
                      (long long)sbx_sparse_minor(m));
}

static sbx_status check_indices(const sbx_sparse *m, const char *name, int sorted) {
    SBX_CHECK(sbx__sparse_check_indptr(m, name));
    int64_t major = sbx_sparse_major(m), minor = sbx_sparse_minor(m);
    const int64_t *idx = m->indices;
    int bad = 0; /* first a pass without branches (it vectorises); the loop below names the violation */
    for (int64_t p = 0; p < m->nnz; p++) bad |= (uint64_t)idx[p] >= (uint64_t)minor;
    for (int64_t k = 0; k < major && sorted; k++)
        for (int64_t p = m->indptr[k] + 1; p < m->indptr[k + 1]; p++) bad |= idx[p] <= idx[p - 1];
    if (!bad) return SBX_OK;
    for (int64_t k = 0; k < major; k++)
        for (int64_t p = m->indptr[k]; p < m->indptr[k + 1]; p++) {
            int64_t j = m->indices[p];
            if (j < 0 || j >= minor) return sbx__sparse_bad_index(m, name, p);
            if (sorted && p > m->indptr[k] && j <= m->indices[p - 1])
                return sbx__error(SBX_ERR_FORMAT, "%s: indices of %s %lld are %s at position %lld (%lld after %lld)",
                                  name, line_word(m), (long long)k, j == m->indices[p - 1] ? "duplicated" : "unsorted",
                                  (long long)p, (long long)j, (long long)m->indices[p - 1]);
        }
    return SBX_OK;
}

sbx_status sbx_sparse_validate(const sbx_sparse *m) { return check_indices(m, "matrix", 1); }
sbx_status sbx_sparse_validate_structure(const sbx_sparse *m) { return check_indices(m, "matrix", 0); }
