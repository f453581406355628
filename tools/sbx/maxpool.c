/* sbx maxpool: max pooling, with the original's placement of windows or an explicit stride. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define SUB "maxpool"

static const char usage[] =
    "usage: sbx maxpool --images X.npy|X.png [--imgshp C,H,W] --poolshp PH,PW [--stride SY,SX]\n"
    "                   -o Y.npy|Y.png [--grad-out G.npy --grad-images GX.npy]\n"
    "\n"
    "The maximum over each window, per feature map; output batch x (C*outsize), maps contiguous.\n"
    "Without --stride, windows are placed as the original's max_pool places them: its step is the\n"
    "pool shape taken as (dx, dy), so a PH x PW window moves PW rows down and PH columns across\n"
    "(ordinary non-overlapping pooling when PH = PW). With --stride SY,SX (shape order) they move by\n"
    "that, in any number of dimensions. --grad-out gives the gradient: every input equal to its\n"
    "window's maximum receives the window's output gradient, summed over overlapping windows.\n"
    "  --images  batch x (C*H*W), float32 or float64 (the gradient is converted to its dtype)\n"
    "            X.png: a batch of one float32 image, each sample scaled to [0, 1] (v/255, 16-bit\n"
    "            v/65535; no gamma correction); grayscale is one feature map, RGB three (R, G, B),\n"
    "            a palette image is expanded to RGB; alpha and transparency are dropped\n"
    "  --imgshp  C,H,W or H,W; with a PNG it may be left out (the PNG's C,H,W) and, given, must\n"
    "            agree with it\n"
    "  -o        Y.npy: the output array. Y.png: the C pooled feature maps of the first image as\n"
    "            one 8-bit grayscale picture, maps side by side in rows of up to 8 with a 1-pixel\n"
    "            black gap, each map scaled to its own min..max (min black, max white; a constant\n"
    "            map mid-gray, 128; NaN and -inf black, +inf white)\n"
    "  --grad-images  the gradient with respect to the images (.npy)\n"
    "Prints 'outshp: OUT_H OUT_W'; with a PNG input, first 'imgshp: C H W'.\n";

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
    const int png_in = cli_is_png(images_p), png_out = cli_is_png(out);
    if (!png_in && cli_kind(images_p) != FILE_NPY)
        return cli_usage_error(SUB, "--images '%s' must be a .npy or .png file", images_p);
    if (!png_out && cli_kind(out) != FILE_NPY) return cli_usage_error(SUB, "-o '%s' must be a .npy or .png file", out);
    if (gi_p && cli_kind(gi_p) != FILE_NPY) return cli_usage_error(SUB, "--grad-images '%s' must be a .npy file", gi_p);
    sbx_array *x = NULL, *y = NULL, *go = NULL, *gx = NULL;
    sbx_conv_plan *plan = NULL;
    sbx_conv_shape s;
    char imgshp[64];
    int64_t chw[3], picture[2];
    int rc = png_in ? cli_png_images(SUB, images_p, &g, imgshp, sizeof imgshp, chw, &x) : CLI_OK;
    if (rc == CLI_OK && g.stride) {
        rc = cli_geometry_shape(SUB, &g, &s);
    } else if (rc == CLI_OK) { /* the original's placement: 2-d, step = pool shape as (dx, dy) */
        int64_t img[3], pool[2];
        int ni = g.image ? cli_ints(g.image, img, 3) : 0;
        if (!g.image || !g.kernel)
            rc = cli_usage_error(SUB, "needs --imgshp and --poolshp");
        else if (ni < 2 || cli_ints(g.kernel, pool, 2) != 2)
            rc = cli_usage_error(SUB, "without --stride, --imgshp is H,W or C,H,W and --poolshp PH,PW (use --stride "
                                      "for other dimensions)");
        else if (sbx_pool_shape_aesara(ni, img, pool, &s) != SBX_OK)
            rc = cli_usage_error(SUB, "%s", sbx_last_error());
    }
    if (rc == CLI_OK && png_out && s.ndim > 2)
        rc = cli_usage_error(SUB, "-o '%s': a picture shows 1-d or 2-d feature maps; these are %d-d (write .npy)", out,
                             s.ndim);
    if (rc == CLI_OK && !png_in) rc = cli_load(SUB, "--images", images_p, 0, SBX_FLOAT64, &x);
    if (rc == CLI_OK && gout_p) rc = cli_load(SUB, "--grad-out", gout_p, 1, x->dtype, &go);
    if (rc == CLI_OK) {
        sbx_status st = sbx_pool_plan_create(&s, x->dtype, &plan);
        if (st == SBX_OK) st = sbx_pool_forward(plan, x, &y);
        if (st == SBX_OK && go) st = sbx_pool_backward(plan, x, go, &gx);
        if (st != SBX_OK) rc = cli_fail(SUB, st);
    }
    cli_outputs_begin(); /* the output and the gradient: all or nothing */
    if (rc == CLI_OK)
        rc = png_out ? cli_png_write_maps(SUB, out, y, s.channels, s.ndim == 2 ? s.out[0] : 1, s.out[s.ndim - 1], picture)
                     : cli_write_npy(SUB, out, y);
    if (rc == CLI_OK && gx) rc = cli_write_npy(SUB, gi_p, gx);
    rc = cli_outputs_end(SUB, rc);
    if (rc == CLI_OK) {
        if (png_in) printf("imgshp: %lld %lld %lld\n", (long long)chw[0], (long long)chw[1], (long long)chw[2]);
        printf("outshp:");
        for (int d = 0; d < s.ndim; d++) printf(" %lld", (long long)s.out[d]);
        if (png_out)
            printf("\noutput: %s: a %lld x %lld picture of the %lld feature map%s of image 1 of %lld\n", out,
                   (long long)picture[0], (long long)picture[1], (long long)s.channels, s.channels == 1 ? "" : "s",
                   (long long)y->shape[0]);
        else
            printf("\noutput: %lld x %lld (%s)\n", (long long)y->shape[0], (long long)y->shape[1],
                   sbx_dtype_name(y->dtype));
    }
    sbx_array_free(x);
    sbx_array_free(y);
    sbx_array_free(go);
    sbx_array_free(gx);
    sbx_conv_plan_free(plan);
    return rc;
}

const cli_command cli_maxpool = {SUB, "max pooling (the original's max_pool, or with --stride), with gradient", usage, run};
