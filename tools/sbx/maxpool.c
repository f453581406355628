/* sbx maxpool: max pooling, with the original's placement of windows or an explicit stride. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define SUB "maxpool"

static const char usage[] =
    "usage: sbx maxpool --images X.npy --imgshp C,H,W --poolshp PH,PW [--stride SY,SX] -o Y.npy\n"
    "                   [--grad-out G.npy --grad-images GX.npy]\n"
    "\n"
    "The maximum over each window, per feature map; output batch x (C*outsize), maps contiguous.\n"
    "Without --stride, windows are placed as the original's max_pool places them: its step is the\n"
    "pool shape taken as (dx, dy), so a PH x PW window moves PW rows down and PH columns across\n"
    "(ordinary non-overlapping pooling when PH = PW). With --stride SY,SX (shape order) they move by\n"
    "that, in any number of dimensions. --grad-out gives the gradient: every input equal to its\n"
    "window's maximum receives the window's output gradient, summed over overlapping windows.\n"
    "Prints 'outshp: OUT_H OUT_W'.\n";

static int run(int argc, char **argv) {
    cli_geometry g = {"--imgshp", "--poolshp", NULL, NULL, NULL, NULL, NULL};
    const char *images_p = NULL, *out = NULL, *gout_p = NULL, *gi_p = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_geometry_opt(argc, argv, &i, &g)) || (r = cli_opt(argc, argv, &i, "--images", &images_p)) ||
            (r = cli_opt(argc, argv, &i, "-o", &out)) || (r = cli_opt(argc, argv, &i, "--grad-out", &gout_p)) ||
            (r = cli_opt(argc, argv, &i, "--grad-images", &gi_p))) {
            if (r < 0) return cli_usage_error(SUB, "option %s needs a value", argv[i]);
        } else {
            return cli_usage_error(SUB, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!images_p || !out) return cli_usage_error(SUB, "needs --images and -o");
    if (g.step || g.mode) return cli_usage_error(SUB, "takes --stride (shape order), not --step or --mode");
    if (!gout_p != !gi_p) return cli_usage_error(SUB, "--grad-out and --grad-images go together");
    if (cli_kind(out) != FILE_NPY) return cli_usage_error(SUB, "-o '%s' must be a .npy file", out);
    sbx_conv_shape s;
    int rc;
    if (g.stride) {
        rc = cli_geometry_shape(SUB, &g, &s);
        if (rc != CLI_OK) return rc;
    } else { /* the original's placement: 2-d, step = pool shape as (dx, dy) */
        int64_t img[3], pool[2];
        int ni = g.image ? cli_ints(g.image, img, 3) : 0;
        if (!g.image || !g.kernel) return cli_usage_error(SUB, "needs --imgshp and --poolshp");
        if (ni < 2 || cli_ints(g.kernel, pool, 2) != 2)
            return cli_usage_error(SUB, "without --stride, --imgshp is H,W or C,H,W and --poolshp PH,PW (use --stride "
                                        "for other dimensions)");
        if (sbx_pool_shape_aesara(ni, img, pool, &s) != SBX_OK) return cli_usage_error(SUB, "%s", sbx_last_error());
    }
    sbx_array *x = NULL, *y = NULL, *go = NULL, *gx = NULL;
    sbx_conv_plan *plan = NULL;
    rc = cli_load(SUB, "--images", images_p, 0, SBX_FLOAT64, &x);
    if (rc == CLI_OK && gout_p) rc = cli_load(SUB, "--grad-out", gout_p, 1, x->dtype, &go);
    if (rc == CLI_OK) {
        sbx_status st = sbx_pool_plan_create(&s, x->dtype, &plan);
        if (st == SBX_OK) st = sbx_pool_forward(plan, x, &y);
        if (st == SBX_OK && go) st = sbx_pool_backward(plan, x, go, &gx);
        if (st != SBX_OK) rc = cli_fail(SUB, st);
    }
    if (rc == CLI_OK) rc = cli_write_npy(SUB, out, y);
    if (rc == CLI_OK && gx) rc = cli_write_npy(SUB, gi_p, gx);
    if (rc == CLI_OK) {
        printf("outshp:");
        for (int d = 0; d < s.ndim; d++) printf(" %lld", (long long)s.out[d]);
        printf("\noutput: %lld x %lld (%s)\n", (long long)y->shape[0], (long long)y->shape[1], sbx_dtype_name(y->dtype));
    }
    sbx_array_free(x);
    sbx_array_free(y);
    sbx_array_free(go);
    sbx_array_free(gx);
    sbx_conv_plan_free(plan);
    return rc;
}

const cli_command cli_maxpool = {SUB, "max pooling (the original's max_pool, or with --stride), with gradient", usage, run};
