/* sbx sample: the sparse random matrices (Binomial, Poisson, Multinomial), reproducible from a seed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define SUB "sample"

static const char usage[] =
    "usage: sbx sample binomial --n N --p P --shape R,C [--format csr|csc] [--dtype NAME] [--seed S] -o B.mtx\n"
    "       sbx sample poisson --x X.mtx [--format csr|csc] [--seed S] -o P.mtx\n"
    "       sbx sample multinomial (--n N | --n-file N.npy) --p P.mtx [--renormalize] [--format csr|csc]\n"
    "                              [--seed S] -o M.mtx\n"
    "\n"
    "Draws a sparse random matrix and writes it as Matrix Market. The same seed and arguments give the\n"
    "same file, whatever the thread count (SBX_NUM_THREADS).\n"
    "  binomial     an R x C matrix of Binomial(n, p) draws, only the non-zero ones stored\n"
    "               (--dtype: the values' type, default float64)\n"
    "  poisson      X's structure with each stored mean replaced by a Poisson draw, zeros dropped\n"
    "  multinomial  each row of P (a probability vector over its stored entries) replaced by the\n"
    "               counts of one Multinomial(n) draw; --n-file gives one n per row;\n"
    "               --renormalize accepts rows whose positive sum is not 1\n"
    "  --format     the storage order the matrix is drawn and written in (default csr)\n"
    "  --seed       a 64-bit seed (default 0); --stream S selects one of 2^32 independent streams\n"
    "Prints 'shape: R C' and 'nnz: N'.\n";

static int run(int argc, char **argv) {
    const char *kind = NULL, *n_s = NULL, *p_s = NULL, *shape_s = NULL, *fmt = "csr", *dtype_s = "float64";
    const char *seed_s = "0", *stream_s = "0", *x_p = NULL, *nfile = NULL, *out = NULL;
    int renormalize = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "--n", &n_s)) || (r = cli_opt(argc, argv, &i, "--p", &p_s)) ||
            (r = cli_opt(argc, argv, &i, "--shape", &shape_s)) || (r = cli_opt(argc, argv, &i, "--format", &fmt)) ||
            (r = cli_opt(argc, argv, &i, "--dtype", &dtype_s)) || (r = cli_opt(argc, argv, &i, "--seed", &seed_s)) ||
            (r = cli_opt(argc, argv, &i, "--stream", &stream_s)) || (r = cli_opt(argc, argv, &i, "--x", &x_p)) ||
            (r = cli_opt(argc, argv, &i, "--n-file", &nfile)) || (r = cli_opt(argc, argv, &i, "-o", &out))) {
            if (r < 0) return cli_usage_error(SUB, "option %s needs a value", argv[i]);
        } else if (strcmp(argv[i], "--renormalize") == 0) {
            renormalize = 1;
        } else if (!kind && argv[i][0] != '-') {
            kind = argv[i];
        } else {
            return cli_usage_error(SUB, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!kind) return cli_usage_error(SUB, "needs binomial, poisson or multinomial");
    if (!out) return cli_usage_error(SUB, "needs -o OUT.mtx");
    if (cli_kind(out) != FILE_MTX) return cli_usage_error(SUB, "-o '%s' must be a .mtx file", out);
    sbx_format format;
    sbx_dtype dtype;
    int64_t seed, stream;
    if (sbx_format_parse(fmt, &format) != SBX_OK) return cli_usage_error(SUB, "--format: %s", sbx_last_error());
    if (sbx_dtype_parse(dtype_s, &dtype) != SBX_OK) return cli_usage_error(SUB, "--dtype: %s", sbx_last_error());
    if (cli_ints(seed_s, &seed, 1) != 1 || seed < 0) return cli_usage_error(SUB, "--seed '%s' must be a non-negative integer", seed_s);
    if (cli_ints(stream_s, &stream, 1) != 1 || stream < 0 || stream > 4294967295LL)
        return cli_usage_error(SUB, "--stream '%s' must be an integer in [0, 2^32)", stream_s);
    sbx_rng rng;
    sbx_rng_init(&rng, (uint64_t)seed, (uint32_t)stream);
    sbx_sparse *m = NULL, *in = NULL;
    sbx_array *narr = NULL;
    sbx_status st;
    if (strcmp(kind, "binomial") == 0) {
        int64_t n, shape[2];
        double p;
        char *end;
        if (!n_s || !p_s || !shape_s) return cli_usage_error(SUB, "binomial needs --n, --p and --shape");
        if (cli_ints(n_s, &n, 1) != 1) return cli_usage_error(SUB, "--n '%s' is not an integer", n_s);
        p = strtod(p_s, &end);
        if (end == p_s || *end) return cli_usage_error(SUB, "--p '%s' is not a number", p_s);
        if (cli_ints(shape_s, shape, 2) != 2) return cli_usage_error(SUB, "--shape '%s' must be R,C", shape_s);
        st = sbx_random_binomial(&rng, n, p, shape[0], shape[1], format, dtype, &m);
        if (st == SBX_ERR_ARG) return cli_usage_error(SUB, "%s", sbx_last_error());
    } else if (strcmp(kind, "poisson") == 0) {
        if (!x_p) return cli_usage_error(SUB, "poisson needs --x X.mtx");
        st = sbx_mtx_read(x_p, format, &in);
        if (st == SBX_OK) st = sbx_random_poisson(&rng, in, &m);
    } else if (strcmp(kind, "multinomial") == 0) {
        if (!p_s || (!n_s == !nfile)) return cli_usage_error(SUB, "multinomial needs --p P.mtx and one of --n, --n-file");
        int64_t n = 0;
        if (n_s && cli_ints(n_s, &n, 1) != 1) return cli_usage_error(SUB, "--n '%s' is not an integer", n_s);
        st = sbx_mtx_read(p_s, format, &in);
        if (st == SBX_OK) st = nfile ? sbx_npy_read(nfile, &narr) : sbx_array_create(SBX_INT64, 0, NULL, &narr);
        if (st == SBX_OK && !nfile) ((int64_t *)narr->data)[0] = n;
        if (st == SBX_OK) st = sbx_random_multinomial(&rng, narr, in, renormalize, &m);
    } else {
        return cli_usage_error(SUB, "unknown distribution '%s' (binomial, poisson or multinomial)", kind);
    }
    int rc = st == SBX_OK ? cli_write_mtx(SUB, out, m) : cli_fail(SUB, st);
    if (rc == CLI_OK) printf("shape: %lld %lld\nnnz: %lld\n", (long long)m->nrows, (long long)m->ncols, (long long)m->nnz);
    sbx_sparse_free(m);
    sbx_sparse_free(in);
    sbx_array_free(narr);
    return rc;
}

const cli_command cli_sample = {SUB, "draw a sparse Binomial, Poisson or Multinomial matrix", usage, run};
