/* Checks shared by the sparse functions. */
#ifndef SBX_SPARSE_INTERNAL_H
#define SBX_SPARSE_INTERNAL_H

#include "core/internal.h"
#include "sparsebox/sparse.h"

/* sbx_sparse_create, with indices and data left unfilled when zero is 0 (indptr is always zeroed). */
sbx_status sbx__sparse_new(sbx_format format, sbx_dtype dtype, int64_t nrows, int64_t ncols, int64_t nnz, int zero,
                           sbx_sparse **out);
/* NULL pointers, format, dtype, signs of the sizes, nnz <= nrows * ncols. O(1). */
sbx_status sbx__sparse_check_header(const sbx_sparse *m, const char *name);
/* The header, then indptr: starts at 0, non-decreasing, ends at nnz. O(major). Functions that read
 * every index anyway check each index's range as they go instead of a separate pass. */
sbx_status sbx__sparse_check_indptr(const sbx_sparse *m, const char *name);
/* Error for index `indices[p]` out of range, naming its line and position. */
sbx_status sbx__sparse_bad_index(const sbx_sparse *m, const char *name, int64_t p);
/* The line (row of CSR, column of CSC) holding position p, by binary search on indptr. */
int64_t sbx__sparse_line_of(const sbx_sparse *m, int64_t p);

/* sbx_sparse_dot_dense and sbx_dense_dot_sparse into an m x n array c the caller made (the op layer's output
 * storage): c must have the operands' dtype and the product's shape and must not share the dense operand's
 * data (SBX_ERR_ARG naming c otherwise); what it holds on entry does not matter (it is overwritten). The
 * results are the public functions' to the bit. */
sbx_status sbx__sparse_dot_dense_into(const sbx_sparse *a, const sbx_array *b, sbx_array *c);
sbx_status sbx__dense_dot_sparse_into(const sbx_array *a, const sbx_sparse *b, sbx_array *c);

#endif
