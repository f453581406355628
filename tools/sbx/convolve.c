/* sbx convolve: the original's convolve (shared weights), forward and, on request, its gradients.
 * Also the runner of sbx local, which takes the same options. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define SUB "convolve"

static const char usage[] =
    "usage: sbx convolve --images X.npy|X.png [--imgshp C,H,W] --kerns K.npy --kshp KH,KW --nkern N\n"
    "                    [--step DX,DY | --stride SY,SX] [--mode valid|full] [--bias B.npy] [--no-flatten]\n"
    "                    -o Y.npy|Y.png [--grad-out G.npy [--grad-images GX.npy] [--grad-kerns GK.npy]\n"
    "                    [--grad-bias GB.npy]]\n"
    "\n"
    "Convolves a batch of images with nkern kernels, as the original's convolve: the correlation of\n"
    "each image with each kernel (taps in raster order, no flip), plus bias.\n"
    "  --images   batch x (C*H*W), raster order, feature maps one after another; float32 or float64\n"
    "             (the other arrays are converted to its dtype)\n"
    "             X.png: a batch of one float32 image, each sample scaled to [0, 1] (v/255, 16-bit\n"
    "             v/65535; no gamma correction); grayscale is one feature map, RGB three (R, G, B),\n"
    "             a palette image is expanded to RGB; alpha and transparency are dropped\n"
    "  --imgshp   C,H,W or H,W; N-d images work too, with a kernel of as many dimensions; with a PNG\n"
    "             it may be left out (the PNG's C,H,W) and, given, must agree with it\n"
    "  --kerns    nkern x (C*KH*KW)\n"
    "  --bias     nkern values\n"
    "  --step     the original's step (dx, dy): dx along the width; --stride SY,SX is shape order\n"
    "  -o         Y.npy: batch x (nkern*outsize), each feature map contiguous; --no-flatten writes\n"
    "             batch x nkern x outsize (the same values)\n"
    "             Y.png: the nkern feature maps of the first image as one 8-bit grayscale picture,\n"
    "             maps side by side in rows of up to 8 with a 1-pixel black gap, each map scaled to\n"
    "             its own min..max (min black, max white; a constant map mid-gray, 128; NaN and -inf\n"
    "             black, +inf white)\n"
    "  --grad-out the gradient of a loss with respect to the output; then --grad-images,\n"
    "             --grad-kerns and --grad-bias name the gradients to write (at least one; .npy)\n"
    "Prints 'outshp: NKERN OUT_H OUT_W' (what a next layer takes as its imgshp); with a PNG input,\n"
    "first 'imgshp: C H W'.\n";

int cli_run_weighted(const char *sub, int local, int argc, char **argv) {
    cli_geometry g = {"--imgshp", "--kshp", NULL, NULL, NULL, NULL, NULL};
    const char *images_p = NULL, *kerns_p = NULL, *bias_p = NULL, *nkern_s = NULL, *out = NULL, *gout_p = NULL;
    const char *gi_p = NULL, *gk_p = NULL, *gb_p = NULL;
    int flatten = 1;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_geometry_opt(argc, argv, &i, &g)) || (r = cli_opt(argc, argv, &i, "--images", &images_p)) ||
            (r = cli_opt(argc, argv, &i, "--kerns", &kerns_p)) || (r = cli_opt(argc, argv, &i, "--bias", &bias_p)) ||
            (r = cli_opt(argc, argv, &i, "--nkern", &nkern_s)) || (r = cli_opt(argc, argv, &i, "-o", &out)) ||
            (r = cli_opt(argc, argv, &i, "--grad-out", &gout_p)) || (r = cli_opt(argc, argv, &i, "--grad-images", &gi_p)) ||
            (r = cli_opt(argc, argv, &i, "--grad-kerns", &gk_p)) || (r = cli_opt(argc, argv, &i, "--grad-bias", &gb_p))) {
            if (r < 0) return cli_usage_error(sub, "option %s needs a value", argv[i]);
        } else if (strcmp(argv[i], "--no-flatten") == 0) {
            flatten = 0;
        } else {
            return cli_usage_error(sub, "unexpected argument '%s'", argv[i]);
        }
    }
    int64_t nkern;
    sbx_conv_shape s;
    if (!images_p || !kerns_p || !nkern_s || !out) return cli_usage_error(sub, "needs --images, --kerns, --nkern and -o");
    if (cli_ints(nkern_s, &nkern, 1) != 1 || nkern < 1)
        return cli_usage_error(sub, "--nkern '%s' must be a positive integer", nkern_s);
    const int png_in = cli_is_png(images_p), png_out = cli_is_png(out);
    if (!png_in && cli_kind(images_p) != FILE_NPY)
        return cli_usage_error(sub, "--images '%s' must be a .npy or .png file", images_p);
    if (!png_out && cli_kind(out) != FILE_NPY) return cli_usage_error(sub, "-o '%s' must be a .npy or .png file", out);
    if (png_out && !flatten) return cli_usage_error(sub, "--no-flatten shapes a .npy output, not the picture -o '%s'", out);
    if (!gout_p && (gi_p || gk_p || gb_p)) return cli_usage_error(sub, "--grad-images/--grad-kerns/--grad-bias need --grad-out");
    if (gout_p && !gi_p && !gk_p && !gb_p)
        return cli_usage_error(sub, "--grad-out needs at least one of --grad-images, --grad-kerns, --grad-bias");
    const char *grad_paths[3] = {gi_p, gk_p, gb_p}, *grad_flags[3] = {"--grad-images", "--grad-kerns", "--grad-bias"};
    for (int i = 0; i < 3; i++)
        if (grad_paths[i] && cli_kind(grad_paths[i]) != FILE_NPY)
            return cli_usage_error(sub, "%s '%s' must be a .npy file", grad_flags[i], grad_paths[i]);

    sbx_array *x = NULL, *k = NULL, *b = NULL, *y = NULL, *go = NULL, *grads[3] = {NULL, NULL, NULL};
    sbx_conv_plan *plan = NULL;
    sbx_status st = SBX_OK;
    char imgshp[64];
    int64_t chw[3], picture[2];
    int rc = png_in ? cli_png_images(sub, images_p, &g, imgshp, sizeof imgshp, chw, &x) : CLI_OK;
    if (rc == CLI_OK) rc = cli_geometry_shape(sub, &g, &s);
    if (rc == CLI_OK && png_out && s.ndim > 2)
        rc = cli_usage_error(sub, "-o '%s': a picture shows 1-d or 2-d feature maps; these are %d-d (write .npy)", out,
                             s.ndim);
    if (rc == CLI_OK && !png_in) rc = cli_load(sub, "--images", images_p, 0, SBX_FLOAT64, &x);
    if (rc == CLI_OK) rc = cli_load(sub, "--kerns", kerns_p, 1, x->dtype, &k);
    if (rc == CLI_OK && bias_p) rc = cli_load(sub, "--bias", bias_p, 1, x->dtype, &b);
    if (rc == CLI_OK && gout_p) rc = cli_load(sub, "--grad-out", gout_p, 1, x->dtype, &go);
    if (rc == CLI_OK) {
        st = local ? sbx_local_plan_create(&s, nkern, x->dtype, &plan) : sbx_conv_plan_create(&s, nkern, x->dtype, &plan);
        if (st == SBX_OK) st = local ? sbx_local_forward(plan, x, k, b, &y) : sbx_conv_forward(plan, x, k, b, &y);
        if (st == SBX_OK && go && go->ndim == 3) { /* the --no-flatten layout, read as batch x (nkern*outsize) */
            go->shape[1] *= go->shape[2];
            go->shape[2] = 0;
            go->ndim = 2;
        }
        if (st == SBX_OK && go)
            st = (local ? sbx_local_backward : sbx_conv_backward)(plan, x, k, go, gi_p ? &grads[0] : NULL,
                                                                  gk_p ? &grads[1] : NULL, gb_p ? &grads[2] : NULL);
        if (st != SBX_OK) rc = cli_fail(sub, st);
    }
    if (rc == CLI_OK && !flatten) { /* batch x nkern x outsize: the same memory */
        y->ndim = 3;
        y->shape[2] = s.out_size;
        y->shape[1] = nkern;
    }
    cli_outputs_begin(); /* the output and the gradients: all or nothing */
    if (rc == CLI_OK)
        rc = png_out ? cli_png_write_maps(sub, out, y, nkern, s.ndim == 2 ? s.out[0] : 1, s.out[s.ndim - 1], picture)
                     : cli_write_npy(sub, out, y);
    for (int i = 0; i < 3 && rc == CLI_OK; i++)
        if (grads[i]) rc = cli_write_npy(sub, grad_paths[i], grads[i]);
    rc = cli_outputs_end(sub, rc);
    if (rc == CLI_OK) {
        if (png_in) printf("imgshp: %lld %lld %lld\n", (long long)chw[0], (long long)chw[1], (long long)chw[2]);
        printf("outshp: %lld", (long long)nkern);
        for (int d = 0; d < s.ndim; d++) printf(" %lld", (long long)s.out[d]);
        if (png_out)
            printf("\noutput: %s: a %lld x %lld picture of the %lld feature map%s of image 1 of %lld\n", out,
                   (long long)picture[0], (long long)picture[1], (long long)nkern, nkern == 1 ? "" : "s",
                   (long long)y->shape[0]);
        else
            printf("\noutput: %lld x %lld (%s)\n", (long long)y->shape[0], (long long)(nkern * s.out_size),
                   sbx_dtype_name(y->dtype));
    }
    sbx_array *all[] = {x, k, b, y, go, grads[0], grads[1], grads[2]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sbx_array_free(all[i]);
    sbx_conv_plan_free(plan);
    return rc;
}

static int run(int argc, char **argv) { return cli_run_weighted(SUB, 0, argc, argv); }

const cli_command cli_convolve = {SUB, "convolve images with kernels (the original's convolve), with gradients", usage, run};
