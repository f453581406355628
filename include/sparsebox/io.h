/* sparsebox file formats: NumPy .npy for dense arrays, Matrix Market .mtx for sparse matrices. */
#ifndef SPARSEBOX_IO_H
#define SPARSEBOX_IO_H

#include "sparsebox/core.h"
#include "sparsebox/sparse.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads a .npy file (format versions 1.0, 2.0 and 3.0) holding one of the sbx_dtype types.
 * Big-endian data is byte-swapped and Fortran-order data is reordered, so the result is always a
 * native row-major array. More than SBX_MAX_NDIM dimensions, other dtypes (complex, object,
 * structured, strings) and truncated or malformed files are errors. */
SBX_API sbx_status sbx_npy_read(const char *path, sbx_array **out);
/* Writes a little-endian, C-order .npy file, format version 1.0 (an 8-d shape's header fits it). */
SBX_API sbx_status sbx_npy_write(const char *path, const sbx_array *a);

/* What a Matrix Market header says. */
typedef enum sbx_mtx_field { SBX_MTX_REAL = 0, SBX_MTX_INTEGER = 1, SBX_MTX_PATTERN = 2 } sbx_mtx_field;
typedef enum sbx_mtx_symmetry {
    SBX_MTX_GENERAL = 0,
    SBX_MTX_SYMMETRIC = 1,
    SBX_MTX_SKEW_SYMMETRIC = 2
} sbx_mtx_symmetry;
typedef struct sbx_mtx_header {
    int coordinate;            /* 1: "coordinate" (sparse), 0: "array" (dense, column-major) */
    sbx_mtx_field field;
    sbx_mtx_symmetry symmetry;
    int64_t nrows, ncols;
    int64_t entries;           /* entries listed in the file (coordinate), nrows * ncols (array) */
} sbx_mtx_header;

/* Reads only the banner and size line. */
SBX_API sbx_status sbx_mtx_read_header(const char *path, sbx_mtx_header *out);
/* Reads a coordinate or array file into a sparse matrix of the given format. Values: real -> float64,
 * integer -> int64, pattern -> float64 ones. Symmetric and skew-symmetric files are expanded (the
 * file must list only the lower triangle, as the format requires). Duplicate entries are summed, as
 * scipy does; the result has sorted, unique indices. Array files keep their zeros out. */
SBX_API sbx_status sbx_mtx_read(const char *path, sbx_format format, sbx_sparse **out);
/* Reads a coordinate or array file into a dense nrows x ncols array (dtype as above). */
SBX_API sbx_status sbx_mtx_read_dense(const char *path, sbx_array **out);
/* Writes "coordinate general": field integer for integer and bool dtypes, real for float dtypes.
 * Entries are written in storage order (CSC: column by column; CSR: row by row), 1-based, and float
 * values with enough digits to read back exactly. */
SBX_API sbx_status sbx_mtx_write(const char *path, const sbx_sparse *m);

#ifdef __cplusplus
}
#endif

#endif
