/* sparsebox sparse matrices: CSR and CSC, as scipy.sparse's csr_matrix and csc_matrix. */
#ifndef SPARSEBOX_SPARSE_H
#define SPARSEBOX_SPARSE_H

#include "sparsebox/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sbx_format {
    SBX_CSR = 0, /* compressed rows: indptr has nrows + 1 entries, indices are column numbers */
    SBX_CSC = 1  /* compressed columns: indptr has ncols + 1 entries, indices are row numbers */
} sbx_format;

/* "csr" or "csc"; "invalid" otherwise. */
SBX_API const char *sbx_format_name(sbx_format format);
SBX_API sbx_status sbx_format_parse(const char *name, sbx_format *out);

/* The entries of major line k (row k of a CSR matrix, column k of a CSC matrix) are at positions
 * indptr[k] .. indptr[k+1]-1 of indices and data. Functions keep indices sorted and unique within each
 * line unless they say otherwise; sbx_sparse_validate checks every rule. */
typedef struct sbx_sparse {
    sbx_format format;
    sbx_dtype dtype;
    int64_t nrows, ncols, nnz;
    int64_t *indptr;   /* major + 1 entries, major = nrows (CSR) or ncols (CSC) */
    int64_t *indices;  /* nnz entries; NULL allowed when nnz == 0 */
    void *data;        /* nnz elements of dtype; NULL allowed when nnz == 0 */
} sbx_sparse;

/* Number of major lines (nrows for CSR, ncols for CSC) and of minor positions. */
SBX_API int64_t sbx_sparse_major(const sbx_sparse *m);
SBX_API int64_t sbx_sparse_minor(const sbx_sparse *m);

/* A new matrix with room for nnz entries: indptr all zero (fill it), indices and data zeroed.
 * Rules: nrows, ncols, nnz >= 0 and nnz <= nrows * ncols. */
SBX_API sbx_status sbx_sparse_create(sbx_format format, sbx_dtype dtype, int64_t nrows, int64_t ncols,
                                     int64_t nnz, sbx_sparse **out);
/* Frees a matrix made by the library; a struct the caller filled with its own arrays is the caller's
 * to free. Functions never free or replace the arrays of a matrix they are given. */
SBX_API void sbx_sparse_free(sbx_sparse *m);
SBX_API sbx_status sbx_sparse_copy(const sbx_sparse *m, sbx_sparse **out);

/* Checks indptr[0] == 0, indptr non-decreasing, indptr[major] == nnz, every index in [0, minor),
 * indices strictly increasing within each line (sorted and unique). The message names the first
 * violation and its position. SBX_ERR_FORMAT for a broken structure, SBX_ERR_ARG for a NULL pointer
 * or negative size. Also used on entry by the functions below that need a well-formed matrix. */
SBX_API sbx_status sbx_sparse_validate(const sbx_sparse *m);
/* The same checks but allowing unsorted and duplicate indices within a line. */
SBX_API sbx_status sbx_sparse_validate_structure(const sbx_sparse *m);

/* From a 2-d dense array: every element that is not zero (NaN counts as not zero) is stored. */
SBX_API sbx_status sbx_sparse_from_dense(const sbx_array *a, sbx_format format, sbx_sparse **out);
/* To a dense nrows x ncols array of the same dtype; duplicate entries are summed (bool: or-ed).
 * Accepts unsorted and duplicate indices. */
SBX_API sbx_status sbx_sparse_to_dense(const sbx_sparse *m, sbx_array **out);

/* The same matrix in another format (a sorted copy when format is already m's). Accepts unsorted and
 * duplicate indices; the result's indices are sorted, and duplicates are kept. O(nnz + nrows + ncols). */
SBX_API sbx_status sbx_sparse_convert(const sbx_sparse *m, sbx_format format, sbx_sparse **out);
/* The transpose, in the other format (CSR becomes CSC and back): the arrays are copied unchanged. */
SBX_API sbx_status sbx_sparse_transpose(const sbx_sparse *m, sbx_sparse **out);
/* A copy with another dtype, with the rules of sbx_array_cast. */
SBX_API sbx_status sbx_sparse_cast(const sbx_sparse *m, sbx_dtype dtype, sbx_sparse **out);

/* In place: sort indices within each line (stable: equal indices keep their order). */
SBX_API sbx_status sbx_sparse_sort_indices(sbx_sparse *m);
/* In place: sort, then add up entries with equal indices (bool: or); nnz may shrink. */
SBX_API sbx_status sbx_sparse_sum_duplicates(sbx_sparse *m);
/* In place: drop stored entries equal to zero; nnz may shrink. */
SBX_API sbx_status sbx_sparse_eliminate_zeros(sbx_sparse *m);

/* Structured dot products with dense row-major matrices, float32 or float64 (both operands the same
 * dtype), the result a new dense array of that dtype:
 *   sbx_sparse_dot_dense: (m x k sparse, CSR or CSC) times (k x n dense)  -> m x n
 *   sbx_dense_dot_sparse: (m x k dense) times (k x n sparse, CSR or CSC) -> m x n
 * The sparse operand may have unsorted and duplicate indices. Results equal the dense product up to
 * summation order; they do not depend on the thread count. */
SBX_API sbx_status sbx_sparse_dot_dense(const sbx_sparse *a, const sbx_array *b, sbx_array **out);
SBX_API sbx_status sbx_dense_dot_sparse(const sbx_array *a, const sbx_sparse *b, sbx_array **out);

#ifdef __cplusplus
}
#endif

#endif
