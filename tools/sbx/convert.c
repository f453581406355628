/* sbx convert IN OUT: between .npy (dense) and .mtx (sparse), with a storage format and a dtype. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define SUB "convert"

static const char usage[] =
    "usage: sbx convert IN OUT [--format csr|csc] [--dtype NAME]\n"
    "\n"
    "Converts between NumPy .npy files (dense arrays) and Matrix Market .mtx files (sparse\n"
    "matrices), chosen by each file's extension; .npy -> .npy and .mtx -> .mtx work too.\n"
    "A dense array written as .mtx must be 2-d; its non-zero elements are stored.\n"
    "  --format csr|csc  storage order of the entries written to a .mtx file (default csr)\n"
    "  --dtype NAME      convert the values: float32, float64, int8..int64, uint8..uint64, bool;\n"
    "                    a value the new dtype cannot hold exactly is an error, not a truncation\n"
    "OUT is written to a temporary file and renamed only when complete.\n";

static int run(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *fmt = "csr", *dtype_name = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "--format", &fmt)) || (r = cli_opt(argc, argv, &i, "--dtype", &dtype_name))) {
            if (r < 0) return cli_usage_error(SUB, "option %s needs a value", argv[i]);
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return cli_usage_error(SUB, "unknown option '%s'", argv[i]);
        } else if (!in) {
            in = argv[i];
        } else if (!out) {
            out = argv[i];
        } else {
            return cli_usage_error(SUB, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!in || !out) return cli_usage_error(SUB, "needs an input and an output file");
    sbx_format format;
    sbx_dtype dtype = SBX_FLOAT64;
    if (sbx_format_parse(fmt, &format) != SBX_OK) return cli_usage_error(SUB, "--format: %s", sbx_last_error());
    if (dtype_name && sbx_dtype_parse(dtype_name, &dtype) != SBX_OK)
        return cli_usage_error(SUB, "--dtype: %s", sbx_last_error());
    if (cli_kind(in) == FILE_OTHER) return cli_usage_error(SUB, "input '%s' is neither .npy nor .mtx", in);
    if (cli_kind(out) == FILE_OTHER) return cli_usage_error(SUB, "output '%s' is neither .npy nor .mtx", out);

    cli_matrix m;
    sbx_status st = cli_read(in, format, &m);
    if (st == SBX_OK && dtype_name) { /* cast first: the dense and sparse forms cast alike */
        sbx_array *d = NULL;
        sbx_sparse *s = NULL;
        st = m.dense ? sbx_array_cast(m.dense, dtype, &d) : sbx_sparse_cast(m.sparse, dtype, &s);
        if (st == SBX_OK) {
            cli_matrix_free(&m);
            m.dense = d;
            m.sparse = s;
        }
    }
    int rc;
    if (st != SBX_OK) {
        rc = cli_fail(SUB, st);
    } else if (cli_kind(out) == FILE_NPY) {
        sbx_array *d = m.dense;
        st = d ? SBX_OK : sbx_sparse_to_dense(m.sparse, &d);
        rc = st == SBX_OK ? cli_write_npy(SUB, out, d) : cli_fail(SUB, st);
        if (d != m.dense) sbx_array_free(d);
    } else if (m.dense && m.dense->ndim != 2) {
        fprintf(stderr, "sbx: %s: '%s' holds a %d-d array; a .mtx file holds a 2-d matrix\n", SUB, in, m.dense->ndim);
        rc = CLI_FAIL;
    } else {
        sbx_sparse *s = m.sparse;
        st = s ? SBX_OK : sbx_sparse_from_dense(m.dense, format, &s);
        rc = st == SBX_OK ? cli_write_mtx(SUB, out, s) : cli_fail(SUB, st);
        if (s != m.sparse) sbx_sparse_free(s);
    }
    cli_matrix_free(&m);
    if (rc == CLI_OK) printf("%s -> %s\n", in, out);
    return rc;
}

const cli_command cli_convert = {SUB, "convert between .npy (dense) and .mtx (sparse)", usage, run};
