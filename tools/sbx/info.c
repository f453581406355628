/* sbx info FILE: what a .npy or .mtx file holds. */
#include <stdio.h>

#include "cli.h"

#define SUB "info"

static const char usage[] =
    "usage: sbx info FILE\n"
    "\n"
    "Prints what a .npy or .mtx file holds: kind, shape, dtype, storage format and nnz (the number\n"
    "of stored non-zero elements of a dense array; the number of stored entries of a sparse\n"
    "matrix, after expanding a symmetric file and summing duplicate entries).\n";

static const char *const fields[] = {"real", "integer", "pattern"};
static const char *const symmetries[] = {"general", "symmetric", "skew-symmetric"};

static int run(int argc, char **argv) {
    if (argc != 2) return cli_usage_error(SUB, "needs exactly one file");
    const char *path = argv[1];
    if (cli_kind(path) == FILE_OTHER) return cli_usage_error(SUB, "'%s' is neither .npy nor .mtx", path);
    sbx_mtx_header h;
    sbx_status st = cli_kind(path) == FILE_MTX ? sbx_mtx_read_header(path, &h) : SBX_OK;
    cli_matrix m = {NULL, NULL};
    if (st == SBX_OK) st = cli_read(path, SBX_CSR, &m);
    if (st != SBX_OK) return cli_fail(SUB, st);
    printf("file: %s\n", path);
    if (m.dense) {
        int64_t n = sbx_array_numel(m.dense), nnz = 0;
        sbx_array *nonzero = NULL; /* as bool: 1 where the element is not zero */
        st = sbx_array_cast(m.dense, SBX_BOOL, &nonzero);
        if (st != SBX_OK) {
            cli_matrix_free(&m);
            return cli_fail(SUB, st);
        }
        for (int64_t i = 0; i < n; i++) nnz += ((const unsigned char *)nonzero->data)[i];
        sbx_array_free(nonzero);
        printf("kind: dense\nformat: %s\nshape:", cli_kind(path) == FILE_NPY ? "npy (C order)" : "mtx array");
        for (int d = 0; d < m.dense->ndim; d++) printf(" %lld", (long long)m.dense->shape[d]);
        printf("\ndtype: %s\nsize: %lld\nnnz: %lld\n", sbx_dtype_name(m.dense->dtype), (long long)n, (long long)nnz);
    } else {
        printf("kind: sparse\nformat: mtx coordinate %s %s\nshape: %lld %lld\ndtype: %s\nentries: %lld\nnnz: %lld\n",
               fields[h.field], symmetries[h.symmetry], (long long)m.sparse->nrows, (long long)m.sparse->ncols,
               sbx_dtype_name(m.sparse->dtype), (long long)h.entries, (long long)m.sparse->nnz);
    }
    cli_matrix_free(&m);
    return CLI_OK;
}

const cli_command cli_info = {SUB, "print the shape, dtype, format and nnz of a .npy or .mtx file", usage, run};
