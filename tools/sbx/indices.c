/* sbx indices: the patch matrix of a convolution (the original's ConvolutionIndices), as Matrix Market. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define SUB "indices"

static const char usage[] =
    "usage: sbx indices --inshp C,H,W --kshp KH,KW [--step DX,DY | --stride SY,SX] [--mode valid|full]\n"
    "                   [--nkern N] [--no-ws] -o M.mtx [--kmap KMAP.npy]\n"
    "\n"
    "Builds the sparse matrix M whose product with a raster-order image gives the stack of its\n"
    "patches (convolution form), or with --no-ws the original's sparse local connections form with\n"
    "nkern * outsize rows. M is written as Matrix Market, column by column (CSC), with the original's\n"
    "tap numbers as values; --kmap writes them minus one as an int64 .npy (the weight of each entry).\n"
    "  --inshp   image shape: H,W or C,H,W (feature maps first); any number of spatial dimensions\n"
    "            (1 to 8) with a kernel of as many, e.g. --inshp 2,16,16,16 --kshp 3,3,3\n"
    "  --kshp    kernel shape, one extent per spatial dimension\n"
    "  --step    the original's step (dx, dy): dx along the width, dy along the height (2-d only)\n"
    "  --stride  the step in shape order (height first); default all ones\n"
    "  --mode    valid (default) or full\n"
    "  --nkern   number of kernels, with --no-ws (default 1)\n"
    "Prints 'spmat_shape: R C', 'outshp: ...' and 'nnz: N'.\n";

static int run(int argc, char **argv) {
    cli_geometry g = {"--inshp", "--kshp", NULL, NULL, NULL, NULL, NULL};
    const char *nkern_s = "1", *out = NULL, *kmap_out = NULL;
    int ws = 1;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_geometry_opt(argc, argv, &i, &g)) || (r = cli_opt(argc, argv, &i, "--nkern", &nkern_s)) ||
            (r = cli_opt(argc, argv, &i, "-o", &out)) || (r = cli_opt(argc, argv, &i, "--kmap", &kmap_out))) {
            if (r < 0) return cli_usage_error(SUB, "option %s needs a value", argv[i]);
        } else if (strcmp(argv[i], "--no-ws") == 0) {
            ws = 0;
        } else {
            return cli_usage_error(SUB, "unexpected argument '%s'", argv[i]);
        }
    }
    int64_t nkern;
    sbx_conv_shape s;
    if (!out) return cli_usage_error(SUB, "needs -o M.mtx");
    if (cli_ints(nkern_s, &nkern, 1) != 1) return cli_usage_error(SUB, "--nkern '%s' is not an integer", nkern_s);
    if (cli_kind(out) != FILE_MTX) return cli_usage_error(SUB, "-o '%s' must be a .mtx file", out);
    if (kmap_out && cli_kind(kmap_out) != FILE_NPY) return cli_usage_error(SUB, "--kmap '%s' must be a .npy file", kmap_out);
    int rc = cli_geometry_shape(SUB, &g, &s);
    if (rc != CLI_OK) return rc;
    if (ws && nkern != 1) return cli_usage_error(SUB, "--nkern %lld needs --no-ws (the convolution form serves every kernel)",
                                                 (long long)nkern);
    sbx_sparse *m = NULL;
    sbx_array *kmap = NULL;
    sbx_status st = sbx_conv_indices(&s, ws, nkern, SBX_CSC, &m, kmap_out ? &kmap : NULL);
    if (st == SBX_ERR_ARG) return cli_usage_error(SUB, "%s", sbx_last_error());
    if (st != SBX_OK) return cli_fail(SUB, st);
    cli_outputs_begin(); /* the matrix and kmap: all or nothing */
    rc = kmap_out ? cli_write_npy(SUB, kmap_out, kmap) : CLI_OK;
    if (rc == CLI_OK) rc = cli_write_mtx(SUB, out, m);
    rc = cli_outputs_end(SUB, rc);
    if (rc == CLI_OK) {
        printf("spmat_shape: %lld %lld\noutshp:", (long long)m->nrows, (long long)m->ncols);
        for (int d = 0; d < s.ndim; d++) printf(" %lld", (long long)s.out[d]);
        printf("\nnnz: %lld\n", (long long)m->nnz);
    }
    sbx_sparse_free(m);
    sbx_array_free(kmap);
    return rc;
}

const cli_command cli_indices = {SUB, "write the patch matrix of a convolution (ConvolutionIndices) as .mtx", usage, run};
