/* Tests of the layers: convolution, local connections and max pooling, forward and backward, against
 * every golden case of the original, a plain reference written with coordinates (1-d to 3-d), central
 * finite differences, thread counts, and bad input. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "common/golden.h"
#include "conv/internal.h"
#include "conv/layers.h"
#include "core/internal.h"
#include "sparsebox.h"

static void expect_error(sbx_status got, sbx_status want, const char *needle) {
    if (got != want) fail_msg("status %d, wanted %d; message: %s", got, want, sbx_last_error());
    if (!strstr(sbx_last_error(), needle)) fail_msg("message '%s' lacks '%s'", sbx_last_error(), needle);
}

static sbx_array *matrix(sbx_dtype dtype, int64_t rows, int64_t cols) {
    sbx_array *a;
    int64_t shape[2] = {rows, cols};
    assert_int_equal(sbx_array_create(dtype, cols < 0 ? 1 : 2, cols < 0 ? &rows : shape, &a), SBX_OK);
    return a;
}

/* A float64 array from a golden array, rows x cols (cols < 0: a vector). */
static sbx_array *from_golden(const golden_case *g, const char *name, int64_t rows, int64_t cols) {
    const golden_array *ga = golden_get(g, name);
    if (!ga) fail_msg("%s: no array %s", g->path, name);
    sbx_array *a = matrix(SBX_FLOAT64, rows, cols);
    if (sbx_array_numel(a) != ga->n) fail_msg("%s: %s has %lld values, expected %lld", g->path, name, (long long)ga->n,
                                              (long long)sbx_array_numel(a));
    memcpy(a->data, ga->v, (size_t)ga->n * sizeof(double));
    return a;
}

static sbx_array *as(const sbx_array *a, sbx_dtype dtype) {
    sbx_array *c;
    if (!a) return NULL;
    assert_int_equal(sbx_array_cast(a, dtype, &c), SBX_OK);
    return c;
}

/* got (of any float dtype) against want: |got - want| <= rel * (1 + scale_or_|want|). */
static void close_to(const golden_case *g, const char *what, const sbx_array *got, const double *want, int64_t n,
                     double rel, double scale) {
    assert_int_equal(sbx_array_numel(got), n);
    for (int64_t i = 0; i < n; i++) {
        double v = sbx__get_f64(got->data, got->dtype, i), bound = rel * (1 + (scale > 0 ? scale : fabs(want[i])));
        if (!(fabs(v - want[i]) <= bound))
            fail_msg("%s: %s[%lld] = %.17g, expected %.17g (bound %.3g)", g->path, what, (long long)i, v, want[i], bound);
    }
}

static double max_abs(const double *v, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(v[i]));
    return m;
}

/* The sequential sum of FORMAT.md, written plainly (this file is compiled without FMA contraction):
 * reproduces the golden output_seq bit for bit, which shows the gathered patches are right. */
static void sequential_conv(const sbx_conv_shape *s, const sbx_array *gather, const double *x, const double *k,
                            const double *bias, int64_t batch, int64_t nkern, double *y) {
    const int64_t O = s->out_size, W = s->channels * s->kernel_size;
    const int64_t *g = gather->data;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t n = 0; n < nkern; n++)
            for (int64_t o = 0; o < O; o++) {
                double acc = 0.0;
                for (int64_t j = 0; j < W; j++) {
                    double patch = g[o * W + j] >= 0 ? x[b * s->in_size + g[o * W + j]] : 0.0;
                    acc = acc + patch * k[n * W + j];
                }
                y[(b * nkern + n) * O + o] = bias ? acc + bias[n] : acc;
            }
}

/* The geometry and sizes of a convolve_ or apply_sparse_filter case (imgshp, kshp, step, mode,
 * nkern, bsize, has_bias). Returns 0 for a case the original rejects, after checking that sparsebox
 * rejects it too. */
static int golden_layer(const golden_case *g, sbx_conv_shape *s, int64_t *nkern, int64_t *batch, int64_t *has_bias) {
    int64_t imgshp[3], kshp[2], step[2];
    int inlen = golden_ints(g, "imgshp", imgshp, 3);
    golden_ints(g, "kshp", kshp, 2);
    golden_ints(g, "step", step, 2);
    golden_ints(g, "nkern", nkern, 1);
    golden_ints(g, "bsize", batch, 1);
    *has_bias = 0;
    golden_ints(g, "has_bias", has_bias, 1);
    sbx_conv_mode mode;
    assert_int_equal(sbx_conv_mode_parse(golden_value(g, "mode"), &mode), SBX_OK);
    sbx_status st = sbx_conv_shape_aesara(inlen, imgshp, kshp, step, mode, s);
    if (strcmp(golden_value(g, "expect"), "error") == 0) {
        assert_int_not_equal(st, SBX_OK);
        return 0;
    }
    if (st != SBX_OK) fail_msg("%s: %s", g->path, sbx_last_error());
    return 1;
}

static void check_conv_case(const golden_case *g) {
    int64_t nkern, batch, has_bias, outshp_ret[3];
    sbx_conv_shape s;
    if (!golden_layer(g, &s, &nkern, &batch, &has_bias)) return;
    golden_ints(g, "outshp_ret", outshp_ret, 3);
    assert_true(outshp_ret[0] == nkern && outshp_ret[1] == s.out[0] && outshp_ret[2] == s.out[1]);
    const int64_t W = s.channels * s.kernel_size, n_out = batch * nkern * s.out_size;
    sbx_array *x = from_golden(g, "images", batch, s.in_size), *k = from_golden(g, "kerns", nkern, W);
    sbx_array *bias = has_bias ? from_golden(g, "bias", nkern, -1) : NULL;
    const golden_array *want = golden_get(g, "output"), *seq = golden_get(g, "output_seq");
    assert_int_equal(want->n, n_out);
    /* The test's own reference reproduces output_seq exactly. */
    sbx_array *gather;
    assert_int_equal(sbx_conv_gather(&s, &gather), SBX_OK);
    double *ref = malloc(sizeof(double) * (size_t)(n_out + 1));
    sequential_conv(&s, gather, x->data, k->data, bias ? bias->data : NULL, batch, nkern, ref);
    for (int64_t i = 0; i < n_out; i++)
        if (ref[i] != seq->v[i]) fail_msg("%s: the reference loop gives %.17g at %lld, output_seq %.17g", g->path,
                                          ref[i], (long long)i, seq->v[i]);
    free(ref);
    sbx_array_free(gather);
    for (int t = 0; t < 2; t++) {
        sbx_dtype dt = t == 0 ? SBX_FLOAT64 : SBX_FLOAT32;
        sbx_conv_plan *plan;
        sbx_array *xt = as(x, dt), *kt = as(k, dt), *bt = as(bias, dt), *y;
        assert_int_equal(sbx_conv_plan_create(&s, nkern, dt, &plan), SBX_OK);
        if (sbx_conv_forward(plan, xt, kt, bt, &y) != SBX_OK) fail_msg("%s: %s", g->path, sbx_last_error());
        assert_int_equal(y->shape[0], batch);
        assert_int_equal(y->shape[1], nkern * s.out_size);
        if (dt == SBX_FLOAT64)
            close_to(g, "output", y, want->v, n_out, 1e-10, 0);
        else
            close_to(g, "output (float32)", y, want->v, n_out, 1e-4, max_abs(want->v, n_out));
        sbx_array_free(y);
        sbx_array_free(xt);
        sbx_array_free(kt);
        sbx_array_free(bt);
        sbx_conv_plan_free(plan);
    }
    sbx_array_free(x);
    sbx_array_free(k);
    sbx_array_free(bias);
}

static void check_local_case(const golden_case *g) {
    int64_t nkern, batch, has_bias;
    sbx_conv_shape s;
    if (!golden_layer(g, &s, &nkern, &batch, &has_bias)) return;
    const int64_t U = nkern * s.out_size, nw = s.channels * nkern * s.out_size * s.kernel_size;
    sbx_array *x = from_golden(g, "images", batch, s.in_size), *k = from_golden(g, "kerns", nw, -1);
    sbx_array *bias = has_bias ? from_golden(g, "bias", U, -1) : NULL;
    const golden_array *want = golden_get(g, "output");
    for (int t = 0; t < 2; t++) {
        sbx_dtype dt = t == 0 ? SBX_FLOAT64 : SBX_FLOAT32;
        sbx_conv_plan *plan;
        sbx_array *xt = as(x, dt), *kt = as(k, dt), *bt = as(bias, dt), *y;
        assert_int_equal(sbx_local_plan_create(&s, nkern, dt, &plan), SBX_OK);
        if (sbx_local_forward(plan, xt, kt, bt, &y) != SBX_OK) fail_msg("%s: %s", g->path, sbx_last_error());
        if (dt == SBX_FLOAT64)
            close_to(g, "output", y, want->v, batch * U, 1e-10, 0);
        else
            close_to(g, "output (float32)", y, want->v, batch * U, 1e-4, max_abs(want->v, batch * U));
        sbx_array_free(y);
        sbx_array_free(xt);
        sbx_array_free(kt);
        sbx_array_free(bt);
        sbx_conv_plan_free(plan);
    }
    sbx_array_free(x);
    sbx_array_free(k);
    sbx_array_free(bias);
}

static void check_pool_case(const golden_case *g) {
    int64_t imgshp[3], pool[2], batch, outshp_ret[2];
    int inlen = golden_ints(g, "imgshp", imgshp, 3);
    golden_ints(g, "maxpoolshp", pool, 2);
    golden_ints(g, "bsize", &batch, 1);
    sbx_conv_shape s;
    sbx_status st = sbx_pool_shape_aesara(inlen, imgshp, pool, &s);
    if (strcmp(golden_value(g, "expect"), "error") == 0) {
        assert_int_not_equal(st, SBX_OK);
        return;
    }
    if (st != SBX_OK) fail_msg("%s: %s", g->path, sbx_last_error());
    golden_ints(g, "outshp_ret", outshp_ret, 2);
    assert_true(outshp_ret[0] == s.out[0] && outshp_ret[1] == s.out[1]);
    sbx_array *x = from_golden(g, "images", batch, s.in_size);
    const golden_array *want = golden_get(g, "output");
    for (int t = 0; t < 2; t++) {
        sbx_dtype dt = t == 0 ? SBX_FLOAT64 : SBX_FLOAT32;
        sbx_conv_plan *plan;
        sbx_array *xt = as(x, dt), *y;
        assert_int_equal(sbx_pool_plan_create(&s, dt, &plan), SBX_OK);
        assert_int_equal(sbx_pool_forward(plan, xt, &y), SBX_OK);
        assert_int_equal(sbx_array_numel(y), want->n);
        for (int64_t i = 0; i < want->n; i++) { /* exact: a max is one of the inputs */
            double w = dt == SBX_FLOAT64 ? want->v[i] : (double)(float)want->v[i];
            if (sbx__get_f64(y->data, dt, i) != w) fail_msg("%s: output[%lld] = %.17g, expected %.17g", g->path,
                                                            (long long)i, sbx__get_f64(y->data, dt, i), w);
        }
        sbx_array_free(y);
        sbx_array_free(xt);
        sbx_conv_plan_free(plan);
    }
    sbx_array_free(x);
}

static void run_golden(const char *prefix, void (*check)(const golden_case *)) {
    int n;
    char **paths = golden_list(prefix, &n);
    if (n == 0) fail_msg("no %s*.txt files in %s: the golden data is missing", prefix, SBX_GOLDEN_DIR);
    for (int i = 0; i < n; i++) {
        golden_case g;
        if (golden_read(paths[i], &g) != 0) fail_msg("cannot read %s", paths[i]);
        check(&g);
        golden_free(&g);
    }
    printf("checked %d golden %s cases\n", n, prefix);
    golden_list_free(paths, n);
}

static void test_golden_convolve(void **state) {
    (void)state;
    run_golden("conv_", check_conv_case);
}
static void test_golden_local(void **state) {
    (void)state;
    run_golden("asf_", check_local_case);
}
static void test_golden_maxpool(void **state) {
    (void)state;
    run_golden("maxpool_", check_pool_case);
}

/* --- a reference written with coordinates --------------------------------------------------- */

/* The input index tap l of output position o reads in map c, or -1 outside the image. */
static int64_t tap_input(const sbx_conv_shape *s, int64_t c, int64_t o, int64_t l) {
    int64_t idx = 0, scale = 1;
    for (int d = s->ndim - 1; d >= 0; d--) {
        int64_t od = o % s->out[d], td = l % s->kernel[d];
        o /= s->out[d];
        l /= s->kernel[d];
        int64_t i = od * s->stride[d] - (s->mode == SBX_CONV_FULL ? s->kernel[d] - 1 : 0) + td;
        if (i < 0 || i >= s->in[d]) return -1;
        idx += i * scale;
        scale *= s->in[d];
    }
    return c * (s->in_size / s->channels) + idx;
}

static double ref_conv(const sbx_conv_shape *s, const double *x, const double *k, const double *bias, int64_t nkern,
                       int64_t b, int64_t n, int64_t o) {
    double acc = bias ? bias[n] : 0;
    for (int64_t c = 0; c < s->channels; c++)
        for (int64_t l = 0; l < s->kernel_size; l++) {
            int64_t i = tap_input(s, c, o, l);
            if (i >= 0) acc += x[b * s->in_size + i] * k[(n * s->channels + c) * s->kernel_size + l];
        }
    (void)nkern;
    return acc;
}

static double ref_local(const sbx_conv_shape *s, const double *x, const double *w, const double *bias, int64_t nkern,
                        int64_t b, int64_t n, int64_t o) {
    double acc = bias ? bias[n * s->out_size + o] : 0;
    for (int64_t c = 0; c < s->channels; c++)
        for (int64_t l = 0; l < s->kernel_size; l++) {
            int64_t i = tap_input(s, c, o, l);
            if (i >= 0) acc += x[b * s->in_size + i] * w[((c * nkern + n) * s->out_size + o) * s->kernel_size + l];
        }
    return acc;
}

static double ref_pool(const sbx_conv_shape *s, const double *x, int64_t b, int64_t c, int64_t o) {
    double m = -INFINITY;
    for (int64_t l = 0; l < s->kernel_size; l++) {
        int64_t i = tap_input(s, c, o, l);
        if (i >= 0) m = fmax(m, x[b * s->in_size + i]);
    }
    return m;
}

static uint64_t seed = 0x9E3779B97F4A7C15ULL;
static double uniform01(void) {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return (double)(seed >> 11) / 9007199254740992.0;
}
static int64_t pick(int64_t lo, int64_t hi) { return lo + (int64_t)(uniform01() * (double)(hi - lo + 1)); }

static sbx_array *random_matrix(int64_t rows, int64_t cols) {
    sbx_array *a = matrix(SBX_FLOAT64, rows, cols);
    double *v = a->data;
    for (int64_t i = 0; i < sbx_array_numel(a); i++) v[i] = 2 * uniform01() - 1;
    return a;
}

/* A random geometry of ndim dimensions (1x1 images and kernels as large as the image included). */
static sbx_conv_shape random_shape(int ndim) {
    sbx_conv_shape s;
    for (;;) {
        int64_t in[SBX_MAX_NDIM], k[SBX_MAX_NDIM], st[SBX_MAX_NDIM];
        for (int d = 0; d < ndim; d++) {
            in[d] = pick(1, ndim == 1 ? 12 : ndim == 2 ? 7 : ndim == 3 ? 4 : ndim <= 6 ? 3 : 2);
            k[d] = pick(1, in[d]);
            st[d] = pick(1, 3);
        }
        if (sbx_conv_shape_make(ndim, pick(1, 3), in, k, st, (sbx_conv_mode)pick(0, 1), &s) == SBX_OK) return s;
    }
}

static void test_against_reference(void **state) {
    (void)state;
    for (int trial = 0; trial < 160; trial++) { /* 1 to 8 spatial dimensions */
        sbx_conv_shape s = random_shape(1 + trial % 8);
        int64_t batch = pick(1, 3), nkern = pick(1, 3), O = s.out_size, W = s.channels * s.kernel_size;
        sbx_array *x = random_matrix(batch, s.in_size), *k = random_matrix(nkern, W), *bias = random_matrix(nkern, -1);
        sbx_array *w = random_matrix(s.channels * nkern * O * s.kernel_size, -1), *lb = random_matrix(nkern * O, -1);
        sbx_conv_plan *pc, *pl, *pp;
        sbx_array *yc, *yl, *yp;
        assert_int_equal(sbx_conv_plan_create(&s, nkern, SBX_FLOAT64, &pc), SBX_OK);
        assert_int_equal(sbx_local_plan_create(&s, nkern, SBX_FLOAT64, &pl), SBX_OK);
        assert_int_equal(sbx_pool_plan_create(&s, SBX_FLOAT64, &pp), SBX_OK);
        assert_int_equal(sbx_conv_forward(pc, x, k, bias, &yc), SBX_OK);
        assert_int_equal(sbx_local_forward(pl, x, w, lb, &yl), SBX_OK);
        assert_int_equal(sbx_pool_forward(pp, x, &yp), SBX_OK);
        for (int64_t b = 0; b < batch; b++)
            for (int64_t n = 0; n < nkern; n++)
                for (int64_t o = 0; o < O; o++) {
                    double want = ref_conv(&s, x->data, k->data, bias->data, nkern, b, n, o);
                    double got = ((double *)yc->data)[(b * nkern + n) * O + o];
                    if (fabs(got - want) > 1e-12 * (1 + (double)W)) fail_msg("conv ndim %d: %.17g vs %.17g", s.ndim, got, want);
                    want = ref_local(&s, x->data, w->data, lb->data, nkern, b, n, o);
                    got = ((double *)yl->data)[(b * nkern + n) * O + o];
                    if (fabs(got - want) > 1e-12 * (1 + (double)W)) fail_msg("local ndim %d: %.17g vs %.17g", s.ndim, got, want);
                }
        for (int64_t b = 0; b < batch; b++)
            for (int64_t c = 0; c < s.channels; c++)
                for (int64_t o = 0; o < O; o++)
                    assert_true(((double *)yp->data)[(b * s.channels + c) * O + o] == ref_pool(&s, x->data, b, c, o));
        sbx_array *arrays[] = {x, k, bias, w, lb, yc, yl, yp};
        for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) sbx_array_free(arrays[i]);
        sbx_conv_plan_free(pc);
        sbx_conv_plan_free(pl);
        sbx_conv_plan_free(pp);
    }
}

/* The direct convolution's (and its kernel gradient's) row lengths: shorter than a vector, one vector
 * or more (rows in pairs, then an overlapping last vector), whole vectors and at most half a vector
 * more (rows in fours, the tails packed two to a vector); 5, 6 and 7 rows (groups left over); float32
 * and float64 (16 and 8 lanes). Valid mode with stride 1, then the same output rows from rearranged
 * images (phased.c): strides 2 and 3 along the rows (and 2 across them), and full mode. */
static void test_direct_rows(void **state) {
    (void)state;
    const int64_t widths[] = {5, 8, 12, 15, 16, 17, 20, 24, 31, 33, 40, 47};
    const struct { int64_t st[2]; sbx_conv_mode mode; } variants[] = {
        {{1, 1}, SBX_CONV_VALID}, {{1, 2}, SBX_CONV_VALID}, {{2, 3}, SBX_CONV_VALID},
        {{1, 1}, SBX_CONV_FULL},  {{1, 2}, SBX_CONV_FULL},
    };
    for (size_t vi = 0; vi < sizeof variants / sizeof variants[0]; vi++)
    for (size_t wi = 0; wi < 3 * sizeof widths / sizeof widths[0]; wi++)
        for (int t = 0; t < 2; t++) {
            sbx_dtype dt = t ? SBX_FLOAT32 : SBX_FLOAT64;
            const size_t nw = sizeof widths / sizeof widths[0];
            const int64_t *st = variants[vi].st, pad = variants[vi].mode == SBX_CONV_FULL ? 2 : 0;
            /* rows of widths[] outputs: out = (in + 2 pad - 3) / stride + 1 */
            int64_t in[2] = {(4 + (int64_t)(wi / nw)) * st[0] + 3 - 2 * pad, (widths[wi % nw] - 1) * st[1] + 3 - 2 * pad};
            int64_t k[2] = {3, 3};
            sbx_conv_shape s;
            assert_int_equal(sbx_conv_shape_make(2, 2, in, k, st, variants[vi].mode, &s), SBX_OK);
            assert_int_equal(s.out[1], widths[wi % nw]);
            /* 11 kernels (blocks of NB, padded), or few (3, 1: four vectors per step) */
            const int64_t nkern = wi / nw == 0 ? 11 : wi / nw == 1 ? 3 : 1, O = s.out_size, W = 2 * s.kernel_size;
            sbx_array *x = random_matrix(2, s.in_size), *kk = random_matrix(nkern, W), *bias = random_matrix(nkern, -1);
            sbx_array *xt = as(x, dt), *kt = as(kk, dt), *bt = as(bias, dt), *y;
            sbx_conv_plan *p;
            assert_int_equal(sbx_conv_plan_create(&s, nkern, dt, &p), SBX_OK);
            assert_int_equal(sbx_conv_forward(p, xt, kt, bt, &y), SBX_OK);
            /* The reference on the values the plan saw (rounded to its dtype). */
            sbx_array *xr = as(xt, SBX_FLOAT64), *kr = as(kt, SBX_FLOAT64), *br = as(bt, SBX_FLOAT64);
            for (int64_t b = 0; b < 2; b++)
                for (int64_t n = 0; n < nkern; n++)
                    for (int64_t o = 0; o < O; o++) {
                        double want = ref_conv(&s, xr->data, kr->data, br->data, nkern, b, n, o);
                        double got = sbx__get_f64(y->data, dt, (b * nkern + n) * O + o);
                        if (fabs(got - want) > (t ? 1e-5 : 1e-13) * (1 + (double)W))
                            fail_msg("variant %zu row %lld %s: output (%lld, %lld, %lld) = %.9g, expected %.9g", vi,
                                     (long long)s.out[1], sbx_dtype_name(dt), (long long)b, (long long)n, (long long)o, got, want);
                    }
            /* The kernel gradient's direct kernel over the same rows (vectors, a masked last
             * vector, rows shorter than a vector). */
            sbx_array *g = random_matrix(2, nkern * O), *gt = as(g, dt), *gr = as(gt, SBX_FLOAT64), *gk;
            assert_int_equal(sbx_conv_backward(p, xt, kt, gt, NULL, &gk, NULL), SBX_OK);
            for (int64_t n = 0; n < nkern; n++)
                for (int64_t j = 0; j < W; j++) {
                    double want = 0, scale = 0;
                    for (int64_t b = 0; b < 2; b++)
                        for (int64_t o = 0; o < O; o++) {
                            const int64_t i = tap_input(&s, j / s.kernel_size, o, j % s.kernel_size);
                            if (i < 0) continue; /* full mode: outside the image */
                            double term = ((double *)gr->data)[(b * nkern + n) * O + o] * ((double *)xr->data)[b * s.in_size + i];
                            want += term;
                            scale += fabs(term);
                        }
                    double got = sbx__get_f64(gk->data, dt, n * W + j);
                    if (fabs(got - want) > (t ? 1e-5 : 1e-13) * (1 + scale))
                        fail_msg("variant %zu row %lld %s: grad kern (%lld, %lld) = %.9g, expected %.9g", vi,
                                 (long long)s.out[1], sbx_dtype_name(dt), (long long)n, (long long)j, got, want);
                }
            sbx_array *all[] = {x, kk, bias, xt, kt, bt, y, xr, kr, br, g, gt, gr, gk};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sbx_array_free(all[i]);
            sbx_conv_plan_free(p);
        }
}

/* --- gradients by central differences --------------------------------------------------------- */

typedef enum { CONV, LOCAL, POOL } layer;

/* sum(forward(x, k, b) * r) */
static double loss(layer kind, const sbx_conv_plan *p, sbx_array *x, sbx_array *k, sbx_array *b, const sbx_array *r) {
    sbx_array *y;
    sbx_status st = kind == CONV ? sbx_conv_forward(p, x, k, b, &y) : kind == LOCAL ? sbx_local_forward(p, x, k, b, &y)
                                                                                   : sbx_pool_forward(p, x, &y);
    assert_int_equal(st, SBX_OK);
    double sum = 0;
    for (int64_t i = 0; i < sbx_array_numel(y); i++) sum += ((double *)y->data)[i] * ((double *)r->data)[i];
    sbx_array_free(y);
    return sum;
}

/* The largest relative error between the analytic gradient `an` of parameter array v and central
 * differences with step h. */
static double fd_error(layer kind, const sbx_conv_plan *p, sbx_array *x, sbx_array *k, sbx_array *b,
                       const sbx_array *r, sbx_array *v, const sbx_array *an, double h) {
    double worst = 0, *pv = v->data;
    /* SBX_TEST_FD_POINTS=N (tests/valgrind/run.sh sets it): N coordinates spread over v, the first
     * and the last among them, instead of every one. The paths are the same; memcheck needs no more. */
    const int64_t n = sbx_array_numel(v);
    const char *env = getenv("SBX_TEST_FD_POINTS");
    const int64_t points = env ? atoll(env) : 0, gap = points > 1 && n > points ? (n - 1) / (points - 1) : 1;
    for (int64_t i = 0; i < n; i = i + gap < n || i == n - 1 ? i + gap : n - 1) {
        double keep = pv[i];
        pv[i] = keep + h;
        double up = loss(kind, p, x, k, b, r);
        pv[i] = keep - h;
        double down = loss(kind, p, x, k, b, r);
        pv[i] = keep;
        double fd = (up - down) / (2 * h), a = ((double *)an->data)[i];
        worst = fmax(worst, fabs(fd - a) / fmax(fmax(fabs(fd), fabs(a)), 1e-4));
    }
    return worst;
}

static void test_gradients(void **state) {
    (void)state;
    int configs = 0;
    for (int mode = 0; mode < 2; mode++)
        for (int64_t step = 1; step <= 3; step++)
            for (int64_t channels = 1; channels <= 3; channels += 2)
                for (int ndim = 1; ndim <= 3; ndim++) {
                    int64_t in[3] = {6, 5, 4}, k[3] = {3, 2, 2}, st[3] = {step, step, 1};
                    if (ndim == 2) in[0] = 5;
                    sbx_conv_shape s;
                    assert_int_equal(sbx_conv_shape_make(ndim, channels, in, k, st, (sbx_conv_mode)mode, &s), SBX_OK);
                    const int64_t batch = 2, O = s.out_size, W = s.channels * s.kernel_size;
                    /* Convolution and local connections are linear in each argument: a large step is
                     * exact up to rounding. 9 kernels take the paths for a vector of kernels or more
                     * (the kernel gradient in the lanes, a full block of 8 in the direct kernel), for
                     * the convolution only (local connections have no such path). */
                    for (int64_t nkern = 2; nkern <= 9; nkern += 7)
                    for (int kind = CONV; kind <= (nkern == 2 ? LOCAL : CONV); kind++) {
                        sbx_conv_plan *p;
                        sbx_array *x = random_matrix(batch, s.in_size), *r = random_matrix(batch, nkern * O);
                        sbx_array *kk = kind == CONV ? random_matrix(nkern, W) : random_matrix(W * nkern * O, -1);
                        sbx_array *b = random_matrix(kind == CONV ? nkern : nkern * O, -1), *gx, *gk, *gb;
                        if (kind == CONV) {
                            assert_int_equal(sbx_conv_plan_create(&s, nkern, SBX_FLOAT64, &p), SBX_OK);
                            assert_int_equal(sbx_conv_backward(p, x, kk, r, &gx, &gk, &gb), SBX_OK);
                        } else {
                            assert_int_equal(sbx_local_plan_create(&s, nkern, SBX_FLOAT64, &p), SBX_OK);
                            assert_int_equal(sbx_local_backward(p, x, kk, r, &gx, &gk, &gb), SBX_OK);
                        }
                        double e = fmax(fd_error(kind, p, x, kk, b, r, x, gx, 0.5),
                                        fmax(fd_error(kind, p, x, kk, b, r, kk, gk, 0.5), fd_error(kind, p, x, kk, b, r, b, gb, 0.5)));
                        if (e > 1e-6)
                            fail_msg("%s ndim %d mode %d step %lld channels %lld nkern %lld: relative error %.3g",
                                     kind == CONV ? "conv" : "local", ndim, mode, (long long)step, (long long)channels,
                                     (long long)nkern, e);
                        sbx_array *all[] = {x, r, kk, b, gx, gk, gb};
                        for (size_t i = 0; i < 7; i++) sbx_array_free(all[i]);
                        sbx_conv_plan_free(p);
                    }
                    /* Max pooling is piecewise linear: inputs at least 0.01 apart, a step of 1e-3. */
                    sbx_conv_plan *pp;
                    sbx_array *x = matrix(SBX_FLOAT64, batch, s.in_size), *r = random_matrix(batch, s.channels * O), *gx;
                    int64_t n = batch * s.in_size;
                    for (int64_t i = 0; i < n; i++) ((double *)x->data)[i] = (double)((i * 7919) % n) * 0.01;
                    assert_int_equal(sbx_pool_plan_create(&s, SBX_FLOAT64, &pp), SBX_OK);
                    assert_int_equal(sbx_pool_backward(pp, x, r, &gx), SBX_OK);
                    double e = fd_error(POOL, pp, x, NULL, NULL, r, x, gx, 1e-3);
                    if (e > 1e-6) fail_msg("pool ndim %d: relative error %.3g", ndim, e);
                    sbx_array_free(x);
                    sbx_array_free(r);
                    sbx_array_free(gx);
                    sbx_conv_plan_free(pp);
                    configs++;
                }
    assert_int_equal(configs, 36);
}

static void test_pool_gradient_ties(void **state) {
    (void)state;
    /* 1 x 3 x 3 image, 2 x 2 windows with stride 1: four overlapping windows. */
    int64_t in[2] = {3, 3}, k[2] = {2, 2};
    sbx_conv_shape s;
    assert_int_equal(sbx_conv_shape_make(2, 1, in, k, NULL, SBX_CONV_VALID, &s), SBX_OK);
    sbx_conv_plan *p;
    assert_int_equal(sbx_pool_plan_create(&s, SBX_FLOAT64, &p), SBX_OK);
    sbx_array *x = matrix(SBX_FLOAT64, 1, 9), *g = matrix(SBX_FLOAT64, 1, 4), *gx;
    const double img[9] = {5, 5, 1, 5, 2, 1, 0, 0, 3}, go[4] = {1, 10, 100, 1000};
    memcpy(x->data, img, sizeof img);
    memcpy(g->data, go, sizeof go);
    assert_int_equal(sbx_pool_backward(p, x, g, &gx), SBX_OK);
    /* Window maxima 5, 5, 5, 3. Window 0 (pixels 0,1,3,4): ties at 0, 1, 3 get 1 each; window 1
     * (1,2,4,5): pixel 1 gets 10; window 2 (3,4,6,7): pixel 3 gets 100; window 3 (4,5,7,8): pixel 8. */
    const double want[9] = {1, 11, 0, 101, 0, 0, 0, 0, 1000};
    assert_memory_equal(gx->data, want, sizeof want);
    sbx_array_free(x);
    sbx_array_free(g);
    sbx_array_free(gx);
    sbx_conv_plan_free(p);
}

/* The mask type the documentation gives for windows of `taps` taps. */
static sbx_dtype mask_dtype(int64_t taps) {
    return taps <= 8 ? SBX_UINT8 : taps <= 16 ? SBX_UINT16 : taps <= 32 ? SBX_UINT32 : SBX_UINT64;
}

/* Images of more than SBX__STREAM_BYTES a call take the forward pass that prefetches its input
 * (pool_map): the same bytes as the same images pooled one at a time (below that size), and the first
 * image against ref_pool. 2-d rows of windows side by side and overlapping, a 3-d case, and the end of
 * the images falling inside an output row's prefetch. Prefetches change no value and no sanitizer
 * checks their addresses: this shows that the path computes what the other does, not where it asks
 * for lines (pool_map keeps them inside the images by its bounds). */
static void test_pool_streamed(void **state) {
    (void)state;
    const int64_t cases[][7] = {/* ndim, channels, in (3), kernel = stride (2-d: k, s) */
                                {2, 3, 64, 64, 0, 3, 3}, {2, 1, 130, 128, 0, 3, 2}, {3, 2, 16, 16, 16, 2, 2}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++)
        for (int dt = 0; dt < 2; dt++) {
            const sbx_dtype dtype = dt ? SBX_FLOAT32 : SBX_FLOAT64;
            const int nd = (int)cases[t][0];
            const int64_t in[3] = {cases[t][2], cases[t][3], cases[t][4]};
            const int64_t k[3] = {cases[t][5], cases[t][5], cases[t][5]}, st[3] = {cases[t][6], cases[t][6], cases[t][6]};
            sbx_conv_shape s;
            sbx_conv_plan *p;
            assert_int_equal(sbx_conv_shape_make(nd, cases[t][1], in, k, st, SBX_CONV_VALID, &s), SBX_OK);
            assert_int_equal(sbx_pool_plan_create(&s, dtype, &p), SBX_OK);
            const size_t size = sbx_dtype_size(dtype);
            const int64_t batch = SBX__STREAM_BYTES / (s.in_size * (int64_t)size) + 2, width = s.channels * s.out_size;
            sbx_array *x64 = random_matrix(batch, s.in_size), *x, *y;
            assert_int_equal(sbx_array_cast(x64, dtype, &x), SBX_OK);
            assert_int_equal(sbx_pool_forward(p, x, &y), SBX_OK);
            for (int64_t b = 0; b < batch; b++) {
                sbx_array *xb = matrix(dtype, 1, s.in_size), *yb;
                memcpy(xb->data, (const char *)x->data + (size_t)(b * s.in_size) * size, (size_t)s.in_size * size);
                assert_int_equal(sbx_pool_forward(p, xb, &yb), SBX_OK);
                assert_memory_equal(yb->data, (const char *)y->data + (size_t)(b * width) * size, (size_t)width * size);
                sbx_array_free(xb);
                sbx_array_free(yb);
            }
            sbx_array *xd, *yd;
            assert_int_equal(sbx_array_cast(x, SBX_FLOAT64, &xd), SBX_OK);
            assert_int_equal(sbx_array_cast(y, SBX_FLOAT64, &yd), SBX_OK);
            for (int64_t c = 0; c < s.channels; c++)
                for (int64_t o = 0; o < s.out_size; o++)
                    assert_true(((double *)yd->data)[c * s.out_size + o] == ref_pool(&s, xd->data, 0, c, o));
            sbx_array *all[] = {x64, x, y, xd, yd};
            for (size_t i = 0; i < 5; i++) sbx_array_free(all[i]);
            sbx_conv_plan_free(p);
        }
}

/* The training pair: forward with masks gives the same maxima (and masks of the documented type), and
 * the backward pass from the masks the same gradient as sbx_pool_backward, ties and full mode included. */
static void test_pool_masks(void **state) {
    (void)state;
    for (int trial = 0; trial < 60; trial++) {
        sbx_conv_shape s = random_shape(1 + trial % 3);
        const int64_t batch = 2, n = batch * s.in_size;
        sbx_conv_plan *p;
        assert_int_equal(sbx_pool_plan_create(&s, SBX_FLOAT64, &p), SBX_OK);
        sbx_array *x = matrix(SBX_FLOAT64, batch, s.in_size), *g = random_matrix(batch, s.channels * s.out_size);
        for (int64_t i = 0; i < n; i++) ((double *)x->data)[i] = (double)pick(0, 3); /* many ties */
        sbx_array *y, *y2, *mask, *gx, *gx2;
        assert_int_equal(sbx_pool_forward(p, x, &y), SBX_OK);
        assert_int_equal(sbx_pool_forward_mask(p, x, &y2, &mask), SBX_OK);
        assert_int_equal(mask->dtype, mask_dtype(s.kernel_size));
        assert_memory_equal(y->data, y2->data, (size_t)sbx_array_numel(y) * sizeof(double));
        assert_int_equal(sbx_pool_backward(p, x, g, &gx), SBX_OK);
        assert_int_equal(sbx_pool_backward_mask(p, mask, g, &gx2), SBX_OK);
        for (int64_t i = 0; i < n; i++) /* sums of the same terms in the same order */
            assert_true(((double *)gx->data)[i] == ((double *)gx2->data)[i]);
        sbx_array *all[] = {x, g, y, y2, mask, gx, gx2};
        for (size_t i = 0; i < 7; i++) sbx_array_free(all[i]);
        sbx_conv_plan_free(p);
    }
    /* Windows side by side (stride = kernel), with and without pixels left over, short and long rows
     * (more than 64 windows too), masks of 1 to 8 bytes, float32 and float64: the backward pass from
     * masks against sbx_pool_backward. */
    const int64_t tiled[][5] = {{2, 24, 24, 2, 2}, {2, 25, 23, 2, 2}, {1, 128, 128, 3, 3}, {3, 9, 40, 3, 2},
                                {1, 7, 70, 1, 3},  {2, 6, 6, 3, 3},   {1, 8, 8, 2, 4},    {1, 8, 16, 4, 4},
                                {1, 10, 20, 5, 5}, {2, 12, 13, 6, 6}, {1, 6, 204, 3, 3},  {2, 4, 265, 2, 4}};
    for (size_t t = 0; t < sizeof tiled / sizeof tiled[0]; t++)
        for (int dt = 0; dt < 2; dt++) {
            const sbx_dtype dtype = dt ? SBX_FLOAT32 : SBX_FLOAT64;
            const int64_t in[2] = {tiled[t][1], tiled[t][2]}, k[2] = {tiled[t][3], tiled[t][4]};
            sbx_conv_shape s;
            sbx_conv_plan *p;
            assert_int_equal(sbx_conv_shape_make(2, tiled[t][0], in, k, k, SBX_CONV_VALID, &s), SBX_OK);
            assert_int_equal(sbx_pool_plan_create(&s, dtype, &p), SBX_OK);
            sbx_array *x64 = matrix(SBX_FLOAT64, 2, s.in_size), *g64 = random_matrix(2, s.channels * s.out_size);
            for (int64_t i = 0; i < 2 * s.in_size; i++) ((double *)x64->data)[i] = (double)pick(0, 3);
            sbx_array *x, *g, *y, *mask, *gx, *gx2;
            assert_int_equal(sbx_array_cast(x64, dtype, &x), SBX_OK);
            assert_int_equal(sbx_array_cast(g64, dtype, &g), SBX_OK);
            assert_int_equal(sbx_pool_forward_mask(p, x, &y, &mask), SBX_OK);
            assert_int_equal(mask->dtype, mask_dtype(s.kernel_size));
            assert_int_equal(sbx_pool_backward(p, x, g, &gx), SBX_OK);
            assert_int_equal(sbx_pool_backward_mask(p, mask, g, &gx2), SBX_OK);
            assert_memory_equal(gx->data, gx2->data, (size_t)(2 * s.in_size) * sbx_dtype_size(dtype));
            sbx_array *all[] = {x64, g64, x, g, y, mask, gx, gx2};
            for (size_t i = 0; i < 8; i++) sbx_array_free(all[i]);
            sbx_conv_plan_free(p);
        }
    /* Bad masks. */
    int64_t in[2] = {4, 4}, k[2] = {2, 2}, big[2] = {9, 9};
    sbx_conv_shape s;
    sbx_conv_plan *p;
    assert_int_equal(sbx_conv_shape_make(2, 1, in, k, k, SBX_CONV_VALID, &s), SBX_OK);
    assert_int_equal(sbx_pool_plan_create(&s, SBX_FLOAT64, &p), SBX_OK);
    sbx_array *x = random_matrix(1, 16), *g = random_matrix(1, 4), *y, *mask, *gx = NULL;
    assert_int_equal(sbx_pool_forward_mask(p, x, &y, &mask), SBX_OK);
    ((uint8_t *)mask->data)[2] = 1u << 4; /* tap 4 of a 4-tap window */
    expect_error(sbx_pool_backward_mask(p, mask, g, &gx), SBX_ERR_ARG, "mask element 2 = 16 names a tap past");
    expect_error(sbx_pool_backward_mask(p, x, g, &gx), SBX_ERR_ARG, "mask must be a uint8 array of 1 x 4");
    assert_null(gx);
    sbx_array_free(y);
    sbx_array_free(mask);
    sbx_conv_plan_free(p);
    /* The same check on 3 x 3 windows side by side (their own scatter) and on overlapping ones. */
    const int64_t six[2] = {6, 6}, three[2] = {3, 3}, one[2] = {1, 1};
    for (int overlap = 0; overlap < 2; overlap++) {
        assert_int_equal(sbx_conv_shape_make(2, 1, six, three, overlap ? one : three, SBX_CONV_VALID, &s), SBX_OK);
        assert_int_equal(sbx_pool_plan_create(&s, SBX_FLOAT32, &p), SBX_OK);
        sbx_array *x6 = matrix(SBX_FLOAT32, 1, 36), *g6 = matrix(SBX_FLOAT32, 1, s.out_size);
        assert_int_equal(sbx_pool_forward_mask(p, x6, &y, &mask), SBX_OK);
        ((uint16_t *)mask->data)[3] |= 1u << 9; /* tap 9 of a 9-tap window */
        expect_error(sbx_pool_backward_mask(p, mask, g6, &gx), SBX_ERR_ARG, "mask element 3 = ");
        assert_null(gx);
        sbx_array *all[] = {x6, g6, y, mask};
        for (size_t i = 0; i < 4; i++) sbx_array_free(all[i]);
        sbx_conv_plan_free(p);
    }
    /* A bad bit in a window the vector steps of the 3 x 3 scatter take (12 windows a row: steps of 8
     * float32 or 4 float64 windows), either type. */
    const int64_t wide[2] = {3, 36};
    for (int dt = 0; dt < 2; dt++) {
        const sbx_dtype dtype = dt ? SBX_FLOAT64 : SBX_FLOAT32;
        assert_int_equal(sbx_conv_shape_make(2, 1, wide, three, three, SBX_CONV_VALID, &s), SBX_OK);
        assert_int_equal(sbx_pool_plan_create(&s, dtype, &p), SBX_OK);
        sbx_array *xw = matrix(dtype, 1, 108), *gw = matrix(dtype, 1, s.out_size);
        assert_int_equal(sbx_pool_forward_mask(p, xw, &y, &mask), SBX_OK);
        ((uint16_t *)mask->data)[5] |= 1u << 12;
        expect_error(sbx_pool_backward_mask(p, mask, gw, &gx), SBX_ERR_ARG, "mask element 5 = ");
        assert_null(gx);
        sbx_array *all[] = {xw, gw, y, mask};
        for (size_t i = 0; i < 4; i++) sbx_array_free(all[i]);
        sbx_conv_plan_free(p);
    }
    assert_int_equal(sbx_conv_shape_make(2, 1, big, big, NULL, SBX_CONV_VALID, &s), SBX_OK);
    assert_int_equal(sbx_pool_plan_create(&s, SBX_FLOAT64, &p), SBX_OK);
    sbx_array *xb = random_matrix(1, 81);
    expect_error(sbx_pool_forward_mask(p, xb, &y, &mask), SBX_ERR_UNSUPPORTED, "81 taps");
    sbx_array_free(xb);
    sbx_array_free(x);
    sbx_array_free(g);
    sbx_conv_plan_free(p);
}

/* Local connections through their register blocks: batches of 1 to 5 vectors (16 lanes of float32, 8
 * of float64) and kernels that leave 1 to 3 vectors or part of one, in 1 to 3 dimensions, valid and
 * full mode, strides; the forward pass and every gradient against sums written with coordinates
 * (|got - want| within rel times the sum of the terms' magnitudes), and the same bits at 1, 2, 3 and
 * 16 threads. */
static void test_local_blocks(void **state) {
    (void)state;
    struct { int ndim; int64_t channels, in[3], k[3], st[3]; sbx_conv_mode mode; } shapes[] = {
        {2, 2, {7, 8, 0}, {3, 2, 0}, {1, 1, 0}, SBX_CONV_VALID}, {2, 3, {6, 5, 0}, {3, 3, 0}, {2, 2, 0}, SBX_CONV_FULL},
        {1, 4, {30, 0, 0}, {5, 0, 0}, {3, 0, 0}, SBX_CONV_VALID}, {3, 2, {4, 4, 3}, {2, 3, 2}, {1, 1, 1}, SBX_CONV_FULL},
    };
    const int64_t sizes[][2] = {{1, 1}, {5, 7}, {17, 13}, {40, 33}, {70, 5}}; /* batch, nkern */
    const int threads[] = {1, 2, 3, 16};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t zi = 0; zi < sizeof sizes / sizeof sizes[0]; zi++)
            for (int dt = 0; dt < 2; dt++) {
                const sbx_dtype dtype = dt ? SBX_FLOAT32 : SBX_FLOAT64;
                const double rel = dt ? 1e-5 : 1e-13;
                sbx_conv_shape s;
                assert_int_equal(sbx_conv_shape_make(shapes[si].ndim, shapes[si].channels, shapes[si].in, shapes[si].k,
                                                     shapes[si].st, shapes[si].mode, &s), SBX_OK);
                const int64_t batch = sizes[zi][0], N = sizes[zi][1], O = s.out_size, K = s.kernel_size;
                const int64_t C = s.channels, U = N * O, in = s.in_size;
                sbx_conv_plan *p;
                assert_int_equal(sbx_local_plan_create(&s, N, dtype, &p), SBX_OK);
                sbx_array *x64 = random_matrix(batch, in), *w64 = random_matrix(C * N * O * K, -1);
                sbx_array *b64 = random_matrix(U, -1), *g64 = random_matrix(batch, U);
                sbx_array *x = as(x64, dtype), *w = as(w64, dtype), *bias = as(b64, dtype), *g = as(g64, dtype);
                /* cast back, so that the reference sums the values the plan saw */
                sbx_array *xs = as(x, SBX_FLOAT64), *ws = as(w, SBX_FLOAT64), *bs = as(bias, SBX_FLOAT64);
                sbx_array *gs = as(g, SBX_FLOAT64);
                const double *X = xs->data, *Wt = ws->data, *B = bs->data, *G = gs->data;
                sbx_array *first[4] = {NULL, NULL, NULL, NULL};
                for (size_t ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
                    sbx_set_num_threads(threads[ti]);
                    sbx_array *res[4];
                    assert_int_equal(sbx_local_forward(p, x, w, bias, &res[0]), SBX_OK);
                    assert_int_equal(sbx_local_backward(p, x, w, g, &res[1], &res[2], &res[3]), SBX_OK);
                    for (int r = 0; r < 4; r++) {
                        if (!first[r]) {
                            first[r] = res[r];
                            continue;
                        }
                        if (memcmp(first[r]->data, res[r]->data,
                                   (size_t)sbx_array_numel(res[r]) * sbx_dtype_size(dtype)) != 0)
                            fail_msg("shape %zu batch %lld nkern %lld %s: result %d differs at %d threads", si,
                                     (long long)batch, (long long)N, sbx_dtype_name(dtype), r, threads[ti]);
                        sbx_array_free(res[r]);
                    }
                }
                sbx_set_num_threads(0);
                /* references: each value with the sum of its terms' magnitudes */
                const int64_t nx = batch * in, nw = C * N * O * K;
                double *want = calloc((size_t)(2 * (batch * U + nx + nw + U)), sizeof(double));
                double *y = want, *gx = y + batch * U, *gw = gx + nx, *gb = gw + nw, *mag = gb + U;
                double *my = mag, *mgx = my + batch * U, *mgw = mgx + nx, *mgb = mgw + nw;
                for (int64_t b = 0; b < batch; b++)
                    for (int64_t n = 0; n < N; n++)
                        for (int64_t o = 0; o < O; o++) {
                            const int64_t u = n * O + o;
                            y[b * U + u] = B[u];
                            my[b * U + u] = fabs(B[u]);
                            gb[u] += G[b * U + u];
                            mgb[u] += fabs(G[b * U + u]);
                            for (int64_t c = 0; c < C; c++)
                                for (int64_t l = 0; l < K; l++) {
                                    const int64_t i = tap_input(&s, c, o, l), wi = ((c * N + n) * O + o) * K + l;
                                    if (i < 0) continue;
                                    const double xv = X[b * in + i], wv = Wt[wi], gv = G[b * U + u];
                                    y[b * U + u] += xv * wv;
                                    my[b * U + u] += fabs(xv * wv);
                                    gx[b * in + i] += wv * gv;
                                    mgx[b * in + i] += fabs(wv * gv);
                                    gw[wi] += gv * xv;
                                    mgw[wi] += fabs(gv * xv);
                                }
                        }
                const int64_t counts[4] = {batch * U, nx, nw, U};
                const double *refs[4] = {y, gx, gw, gb}, *mags[4] = {my, mgx, mgw, mgb};
                for (int r = 0; r < 4; r++) {
                    assert_int_equal(sbx_array_numel(first[r]), counts[r]);
                    for (int64_t i = 0; i < counts[r]; i++) {
                        const double v = sbx__get_f64(first[r]->data, dtype, i);
                        if (!(fabs(v - refs[r][i]) <= rel * (mags[r][i] + 1e-300)))
                            fail_msg("shape %zu batch %lld nkern %lld %s: result %d [%lld] = %.17g, expected %.17g", si,
                                     (long long)batch, (long long)N, sbx_dtype_name(dtype), r, (long long)i, v,
                                     refs[r][i]);
                    }
                    sbx_array_free(first[r]);
                }
                free(want);
                /* The convolution's forward pass on the same geometry (a vector of images or more takes
                 * the same register block), against its sums with coordinates. */
                sbx_conv_plan *pc;
                sbx_array *kc64 = random_matrix(N, C * K), *kc = as(kc64, dtype), *kcs = as(kc, SBX_FLOAT64), *yc;
                assert_int_equal(sbx_conv_plan_create(&s, N, dtype, &pc), SBX_OK);
                assert_int_equal(sbx_conv_forward(pc, x, kc, NULL, &yc), SBX_OK);
                for (int64_t b = 0; b < batch; b++)
                    for (int64_t n = 0; n < N; n++)
                        for (int64_t o = 0; o < O; o++) {
                            double ref = 0, mag = 0;
                            for (int64_t c = 0; c < C; c++)
                                for (int64_t l = 0; l < K; l++) {
                                    const int64_t i = tap_input(&s, c, o, l);
                                    if (i < 0) continue;
                                    const double term = X[b * in + i] * ((const double *)kcs->data)[(n * C + c) * K + l];
                                    ref += term;
                                    mag += fabs(term);
                                }
                            const double v = sbx__get_f64(yc->data, dtype, b * U + n * O + o);
                            if (!(fabs(v - ref) <= rel * (mag + 1e-300)))
                                fail_msg("shape %zu batch %lld nkern %lld %s: conv [%lld] = %.17g, expected %.17g", si,
                                         (long long)batch, (long long)N, sbx_dtype_name(dtype),
                                         (long long)(b * U + n * O + o), v, ref);
                        }
                sbx_array *conv_arrays[] = {kc64, kc, kcs, yc};
                for (size_t i = 0; i < 4; i++) sbx_array_free(conv_arrays[i]);
                sbx_conv_plan_free(pc);
                sbx_array *all[] = {x64, w64, b64, g64, x, w, bias, g, xs, ws, bs, gs};
                for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sbx_array_free(all[i]);
                sbx_conv_plan_free(p);
            }
}

/* The same bits at 1, 2, 3 and 16 threads (more threads than cores included) from every convolution
 * path (gather + GEMM in full mode with strides; the direct kernel with the kernel gradient in the
 * lanes; the adjoint image gradient; the maps in the lanes) and from pooling, in both dtypes. */
static void test_thread_counts_agree(void **state) {
    (void)state;
    struct { int64_t channels, in[2], k[2], st[2]; sbx_conv_mode mode; int64_t batch, nkern; } cases[] = {
        {3, {20, 24}, {5, 3}, {1, 2}, SBX_CONV_FULL, 37, 4},   {1, {28, 28}, {5, 5}, {1, 1}, SBX_CONV_VALID, 5, 32},
        {3, {18, 34}, {3, 3}, {1, 1}, SBX_CONV_VALID, 6, 9},   {16, {12, 12}, {5, 5}, {1, 1}, SBX_CONV_VALID, 3, 32},
        {2, {24, 40}, {2, 2}, {2, 2}, SBX_CONV_VALID, 9, 0}, /* pooling */
    };
    const int threads[] = {1, 2, 3, 16};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int dt = 0; dt < 2; dt++) {
            const sbx_dtype dtype = dt ? SBX_FLOAT32 : SBX_FLOAT64;
            const int64_t batch = cases[ci].batch, nkern = cases[ci].nkern;
            sbx_conv_shape s;
            assert_int_equal(sbx_conv_shape_make(2, cases[ci].channels, cases[ci].in, cases[ci].k, cases[ci].st,
                                                 cases[ci].mode, &s), SBX_OK);
            const int64_t units = (nkern ? nkern : s.channels) * s.out_size;
            sbx_array *x64 = random_matrix(batch, s.in_size), *g64 = random_matrix(batch, units);
            sbx_array *k64 = random_matrix(nkern ? nkern : 1, s.channels * s.kernel_size);
            sbx_array *x = as(x64, dtype), *g = as(g64, dtype), *k = as(k64, dtype), *first[4] = {NULL};
            sbx_conv_plan *p;
            if (nkern)
                assert_int_equal(sbx_conv_plan_create(&s, nkern, dtype, &p), SBX_OK);
            else
                assert_int_equal(sbx_pool_plan_create(&s, dtype, &p), SBX_OK);
            for (size_t ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
                sbx_set_num_threads(threads[ti]);
                sbx_array *res[4] = {NULL};
                if (nkern) {
                    assert_int_equal(sbx_conv_forward(p, x, k, NULL, &res[0]), SBX_OK);
                    assert_int_equal(sbx_conv_backward(p, x, k, g, &res[1], &res[2], &res[3]), SBX_OK);
                } else {
                    assert_int_equal(sbx_pool_forward_mask(p, x, &res[0], &res[3]), SBX_OK);
                    assert_int_equal(sbx_pool_backward(p, x, g, &res[1]), SBX_OK);
                    assert_int_equal(sbx_pool_backward_mask(p, res[3], g, &res[2]), SBX_OK);
                }
                for (int r = 0; r < 4; r++) {
                    if (!first[r]) {
                        first[r] = res[r];
                        continue;
                    }
                    const size_t bytes = (size_t)sbx_array_numel(res[r]) * sbx_dtype_size(res[r]->dtype);
                    if (memcmp(first[r]->data, res[r]->data, bytes) != 0)
                        fail_msg("case %zu %s: result %d differs at %d threads", ci, sbx_dtype_name(dtype), r,
                                 threads[ti]);
                    sbx_array_free(res[r]);
                }
            }
            sbx_set_num_threads(0);
            sbx_array *all[] = {x64, g64, k64, x, g, k, first[0], first[1], first[2], first[3]};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sbx_array_free(all[i]);
            sbx_conv_plan_free(p);
        }
}

/* A geometry with many tiles of output positions, its gradients against sums written with
 * coordinates (the tiles' even/odd passes and the per-block kernel sums). */
static void test_tiled_backward(void **state) {
    (void)state;
    int64_t in[2] = {150, 90}, k[2] = {4, 3}, st[2] = {1, 2};
    sbx_conv_shape s;
    assert_int_equal(sbx_conv_shape_make(2, 2, in, k, st, SBX_CONV_FULL, &s), SBX_OK);
    const int64_t batch = 3, nkern = 2, O = s.out_size, W = 2 * s.kernel_size;
    sbx_conv_plan *p;
    assert_int_equal(sbx_conv_plan_create(&s, nkern, SBX_FLOAT64, &p), SBX_OK);
    sbx_array *x = random_matrix(batch, s.in_size), *kk = random_matrix(nkern, W), *g = random_matrix(batch, nkern * O);
    sbx_array *gx, *gk, *y;
    assert_int_equal(sbx_conv_forward(p, x, kk, NULL, &y), SBX_OK);
    assert_int_equal(sbx_conv_backward(p, x, kk, g, &gx, &gk, NULL), SBX_OK);
    double *rx = calloc((size_t)(batch * s.in_size), sizeof(double)), *rk = calloc((size_t)(nkern * W), sizeof(double));
    const double *xv = x->data, *kv = kk->data, *gv = g->data;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t n = 0; n < nkern; n++)
            for (int64_t o = 0; o < O; o++) {
                double go = gv[(b * nkern + n) * O + o];
                assert_true(fabs(((double *)y->data)[(b * nkern + n) * O + o] - ref_conv(&s, xv, kv, NULL, nkern, b, n, o)) < 1e-12);
                for (int64_t c = 0; c < 2; c++)
                    for (int64_t l = 0; l < s.kernel_size; l++) {
                        int64_t i = tap_input(&s, c, o, l);
                        if (i < 0) continue;
                        rk[n * W + c * s.kernel_size + l] += go * xv[b * s.in_size + i];
                        rx[b * s.in_size + i] += go * kv[n * W + c * s.kernel_size + l];
                    }
            }
    for (int64_t i = 0; i < batch * s.in_size; i++) assert_true(fabs(((double *)gx->data)[i] - rx[i]) < 1e-10);
    for (int64_t i = 0; i < nkern * W; i++) assert_true(fabs(((double *)gk->data)[i] - rk[i]) < 1e-9 * (1 + fabs(rk[i])));
    /* One thread gives the very same bits. */
    sbx_array *gx1, *gk1, *y1;
    sbx_set_num_threads(1);
    assert_int_equal(sbx_conv_forward(p, x, kk, NULL, &y1), SBX_OK);
    assert_int_equal(sbx_conv_backward(p, x, kk, g, &gx1, &gk1, NULL), SBX_OK);
    sbx_set_num_threads(0);
    assert_memory_equal(y1->data, y->data, (size_t)(batch * nkern * O) * sizeof(double));
    assert_memory_equal(gx1->data, gx->data, (size_t)(batch * s.in_size) * sizeof(double));
    assert_memory_equal(gk1->data, gk->data, (size_t)(nkern * W) * sizeof(double));
    sbx_array_free(y1);
    sbx_array_free(gx1);
    sbx_array_free(gk1);
    free(rx);
    free(rk);
    sbx_array *all[] = {x, kk, g, gx, gk, y};
    for (size_t i = 0; i < 6; i++) sbx_array_free(all[i]);
    sbx_conv_plan_free(p);
}

/* The image gradient of stride-1 convolutions with 4 or more maps runs as a direct convolution of the
 * padded output gradient with flipped kernels: against sums written with coordinates. */
static void test_adjoint_gradient(void **state) {
    (void)state;
    const int64_t maps[] = {4, 9}, kernels[] = {1, 3, 8, 9};
    for (int ndim = 1; ndim <= 3; ndim++)
        for (int mode = 0; mode < 2; mode++)
            for (int mi = 0; mi < 2; mi++)
                for (int ki = 0; ki < 4; ki++) {
                    int64_t in[3] = {ndim == 1 ? 40 : 9, 7, 6}, k[3] = {3, 2, 3};
                    sbx_conv_shape s;
                    assert_int_equal(sbx_conv_shape_make(ndim, maps[mi], in, k, NULL, (sbx_conv_mode)mode, &s), SBX_OK);
                    const int64_t batch = 2, nkern = kernels[ki], O = s.out_size, W = s.channels * s.kernel_size;
                    sbx_conv_plan *p;
                    assert_int_equal(sbx_conv_plan_create(&s, nkern, SBX_FLOAT64, &p), SBX_OK);
                    sbx_array *x = random_matrix(batch, s.in_size), *kk = random_matrix(nkern, W);
                    sbx_array *g = random_matrix(batch, nkern * O), *gx;
                    assert_int_equal(sbx_conv_backward(p, x, kk, g, &gx, NULL, NULL), SBX_OK);
                    double *rx = calloc((size_t)(batch * s.in_size), sizeof(double));
                    const double *kv = kk->data, *gv = g->data;
                    for (int64_t b = 0; b < batch; b++)
                        for (int64_t n = 0; n < nkern; n++)
                            for (int64_t o = 0; o < O; o++)
                                for (int64_t c = 0; c < s.channels; c++)
                                    for (int64_t l = 0; l < s.kernel_size; l++) {
                                        int64_t i = tap_input(&s, c, o, l);
                                        if (i >= 0)
                                            rx[b * s.in_size + i] +=
                                                gv[(b * nkern + n) * O + o] * kv[n * W + c * s.kernel_size + l];
                                    }
                    for (int64_t i = 0; i < batch * s.in_size; i++)
                        if (fabs(((double *)gx->data)[i] - rx[i]) > 1e-12 * (1 + (double)(nkern * s.kernel_size)))
                            fail_msg("ndim %d mode %d maps %lld kernels %lld: grad[%lld] = %.17g, expected %.17g", ndim,
                                     mode, (long long)maps[mi], (long long)nkern, (long long)i,
                                     ((double *)gx->data)[i], rx[i]);
                    free(rx);
                    sbx_array *all[] = {x, kk, g, gx};
                    for (size_t i = 0; i < 4; i++) sbx_array_free(all[i]);
                    sbx_conv_plan_free(p);
                }
}

/* The kernel gradient of plan p on random data (a pixel infinite when with_inf) against sums written
 * with coordinates (inf and NaN where they have them), the same bits at 1, 2 and 3 threads and from
 * inside a parallel region of the caller's. */
static void check_kernel_gradient(const sbx_conv_shape *s, int64_t nkern, sbx_dtype dtype, int with_inf,
                                  const char *label) {
    const int64_t batch = 3, O = s->out_size, W = s->channels * s->kernel_size;
    const int f32 = dtype == SBX_FLOAT32;
    sbx_conv_plan *p;
    assert_int_equal(sbx_conv_plan_create(s, nkern, dtype, &p), SBX_OK);
    sbx_array *x64 = random_matrix(batch, s->in_size), *k64 = random_matrix(nkern, W);
    sbx_array *g64 = random_matrix(batch, nkern * O), *x, *kk, *g, *x2, *g2, *gk[3];
    if (with_inf) ((double *)x64->data)[s->in_size + 5] = INFINITY;
    assert_int_equal(sbx_array_cast(x64, dtype, &x), SBX_OK);
    assert_int_equal(sbx_array_cast(k64, dtype, &kk), SBX_OK);
    assert_int_equal(sbx_array_cast(g64, dtype, &g), SBX_OK);
    for (int t = 0; t < 3; t++) {
        sbx_set_num_threads(t + 1);
        assert_int_equal(sbx_conv_backward(p, x, kk, g, NULL, &gk[t], NULL), SBX_OK);
    }
    /* From a parallel region of the caller's: the library's regions get one thread while it asks for 3. */
    sbx_array *nested = NULL;
    sbx_status st = SBX_OK;
    omp_set_max_active_levels(1);
#pragma omp parallel num_threads(2)
#pragma omp single
    st = sbx_conv_backward(p, x, kk, g, NULL, &nested, NULL);
    assert_int_equal(st, SBX_OK);
    sbx_set_num_threads(0);
    const size_t bytes = (size_t)(nkern * W) * sbx_dtype_size(dtype);
    assert_memory_equal(gk[0]->data, gk[1]->data, bytes);
    assert_memory_equal(gk[0]->data, gk[2]->data, bytes);
    assert_memory_equal(gk[0]->data, nested->data, bytes);
    sbx_array_free(nested);
    sbx_array *got;
    assert_int_equal(sbx_array_cast(gk[0], SBX_FLOAT64, &got), SBX_OK);
    /* The sums on the values the plan saw (rounded to its dtype). */
    assert_int_equal(sbx_array_cast(x, SBX_FLOAT64, &x2), SBX_OK);
    assert_int_equal(sbx_array_cast(g, SBX_FLOAT64, &g2), SBX_OK);
    const double *xv = x2->data, *gv = g2->data, *rv = got->data;
    for (int64_t n = 0; n < nkern; n++)
        for (int64_t j = 0; j < W; j++) {
            double want = 0, size = 0;
            for (int64_t b = 0; b < batch; b++)
                for (int64_t o = 0; o < O; o++) {
                    const int64_t i = tap_input(s, j / s->kernel_size, o, j % s->kernel_size);
                    const double term = gv[(b * nkern + n) * O + o] * xv[b * s->in_size + i];
                    want += term;
                    size += fabs(term);
                }
            const double have = rv[n * W + j], tol = (f32 ? 1e-5 : 1e-13) * (1 + size);
            const int same = isnan(want) ? isnan(have) : isinf(want) ? have == want : fabs(have - want) <= tol;
            if (!same)
                fail_msg("%s, %d kernels, %s, inf %d: gk[%lld][%lld] = %.17g, expected %.17g", label, (int)nkern,
                         f32 ? "float32" : "float64", with_inf, (long long)n, (long long)j, have, want);
        }
    sbx_array *all[] = {x64, k64, g64, x, kk, g, x2, g2, gk[0], gk[1], gk[2], got};
    for (size_t i = 0; i < 12; i++) sbx_array_free(all[i]);
    sbx_conv_plan_free(p);
}

/* The kernel gradient of 6 kernels on images whose rows are whole vectors (the flat stretch of
 * kgrad_block) and with an infinite pixel (the rows path). */
static void test_kernel_gradient_flat(void **state) {
    (void)state;
    const int64_t shapes[][5] = {{2, 6, 16, 3, 3}, {3, 9, 32, 5, 2}, {1, 2, 16, 1, 1}, {2, 5, 8, 2, 3},
                                 {1, 4, 48, 4, 5}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int dt = 0; dt < 2; dt++)
            for (int with_inf = 0; with_inf < 2; with_inf++) {
                const int64_t in[2] = {shapes[si][1], shapes[si][2]}, k[2] = {shapes[si][3], shapes[si][4]};
                sbx_conv_shape s;
                assert_int_equal(sbx_conv_shape_make(2, shapes[si][0], in, k, NULL, SBX_CONV_VALID, &s), SBX_OK);
                check_kernel_gradient(&s, 6, dt ? SBX_FLOAT32 : SBX_FLOAT64, with_inf, "flat");
            }
}

/* The kernel gradient with the kernels in the vector lanes (a vector of kernels or more: 8 float64,
 * 16 float32): one or two vectors per block, blocks not full, tap groups not full, positions not a
 * multiple of the transposed tiles (taps in groups of 8: the last of 2, 4, 7 or 8); 1-d, 2-d with a
 * stride on the outer axis, 3-d. */
static void test_kernel_gradient_lanes(void **state) {
    (void)state;
    const int64_t in1 = 40, k1 = 5, in2[2] = {9, 20}, k2[2] = {3, 4}, st2[2] = {2, 1}, in3[3] = {4, 5, 6};
    const int64_t k3[3] = {2, 2, 3}, in2b[2] = {12, 30}, k2b[2] = {3, 5};
    sbx_conv_shape shapes[5];
    assert_int_equal(sbx_conv_shape_make(1, 2, &in1, &k1, NULL, SBX_CONV_VALID, &shapes[0]), SBX_OK);
    assert_int_equal(sbx_conv_shape_make(2, 3, in2, k2, NULL, SBX_CONV_VALID, &shapes[1]), SBX_OK);
    assert_int_equal(sbx_conv_shape_make(2, 3, in2, k2, st2, SBX_CONV_VALID, &shapes[2]), SBX_OK);
    assert_int_equal(sbx_conv_shape_make(3, 2, in3, k3, NULL, SBX_CONV_VALID, &shapes[3]), SBX_OK);
    assert_int_equal(sbx_conv_shape_make(2, 1, in2b, k2b, NULL, SBX_CONV_VALID, &shapes[4]), SBX_OK);
    const char *labels[5] = {"1-d", "2-d", "2-d, stride 2 x 1", "3-d", "2-d, 15 taps"};
    const int64_t nkerns[] = {8, 16, 20, 40};
    for (int si = 0; si < 5; si++)
        for (size_t ni = 0; ni < sizeof nkerns / sizeof nkerns[0]; ni++)
            for (int dt = 0; dt < 2; dt++)
                for (int with_inf = 0; with_inf < 2; with_inf++) {
                    if (dt && nkerns[ni] < 16) continue; /* below a float32 vector: kgrad_block */
                    const sbx_dtype dtype = dt ? SBX_FLOAT32 : SBX_FLOAT64;
                    check_kernel_gradient(&shapes[si], nkerns[ni], dtype, with_inf, labels[si]);
                }
}

/* The image gradient through the adjoint, padded an image at a time (a batch of at least two images
 * per thread) or the whole batch at once (fewer): the same bits, image for image, in both dtypes. */
static void test_adjoint_by_image(void **state) {
    (void)state;
    const int64_t in[2] = {10, 12}, k[2] = {3, 3}, batch = 6, nkern = 5;
    sbx_conv_shape s;
    assert_int_equal(sbx_conv_shape_make(2, 3, in, k, NULL, SBX_CONV_VALID, &s), SBX_OK);
    for (int dt = 0; dt < 2; dt++) {
        const sbx_dtype dtype = dt ? SBX_FLOAT32 : SBX_FLOAT64;
        const size_t es = sbx_dtype_size(dtype);
        sbx_conv_plan *p;
        assert_int_equal(sbx_conv_plan_create(&s, nkern, dtype, &p), SBX_OK);
        sbx_array *x64 = random_matrix(batch, s.in_size), *k64 = random_matrix(nkern, 3 * s.kernel_size);
        sbx_array *g64 = random_matrix(batch, nkern * s.out_size), *x = as(x64, dtype), *kk = as(k64, dtype);
        sbx_array *g = as(g64, dtype), *whole;
        for (int t = 1; t <= 2; t++) {
            sbx_set_num_threads(t);
            assert_int_equal(sbx_conv_backward(p, x, kk, g, &whole, NULL, NULL), SBX_OK);
            for (int64_t b = 0; b < batch; b++) { /* one image: the whole-batch padding */
                int64_t one_x[2] = {1, s.in_size}, one_g[2] = {1, nkern * s.out_size};
                sbx_array xb = {dtype, 2, {0}, (char *)x->data + (size_t)(b * s.in_size) * es};
                sbx_array gb = {dtype, 2, {0}, (char *)g->data + (size_t)(b * nkern * s.out_size) * es}, *alone;
                memcpy(xb.shape, one_x, sizeof one_x);
                memcpy(gb.shape, one_g, sizeof one_g);
                assert_int_equal(sbx_conv_backward(p, &xb, kk, &gb, &alone, NULL, NULL), SBX_OK);
                assert_memory_equal(alone->data, (char *)whole->data + (size_t)(b * s.in_size) * es,
                                    (size_t)s.in_size * es);
                sbx_array_free(alone);
            }
            sbx_array_free(whole);
        }
        sbx_set_num_threads(0);
        sbx_array *all[] = {x64, k64, g64, x, kk, g};
        for (size_t i = 0; i < 6; i++) sbx_array_free(all[i]);
        sbx_conv_plan_free(p);
    }
}

/* Whether got matches the reference want (whose terms' magnitudes sum to scale): NaN for NaN, the
 * same infinity for an infinity, else within rel * (1 + scale). */
static int matches(double got, double want, double scale, double rel) {
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    return fabs(got - want) <= rel * (1 + scale);
}

/* Forward (with a bias) and every gradient of a convolution of nkern kernels in dtype, at 1, 2 and 3
 * threads (the same bits) and against sums written with coordinates on the values the plan saw. With
 * nonfinite, a pixel is infinite and an output gradient NaN. paths: what the plan must have chosen, a
 * string of 'd' (the direct kernel), 'm' (the image gradient in the maps' lanes), 'a' (the adjoint). */
static void check_layer(const sbx_conv_shape *s, int64_t nkern, sbx_dtype dtype, int64_t batch, int nonfinite,
                        const char *paths, const char *label) {
    const int64_t O = s->out_size, W = s->channels * s->kernel_size, K = s->kernel_size, in = s->in_size;
    const int f32 = dtype == SBX_FLOAT32;
    const double rel = f32 ? 1e-5 : 1e-13;
    const size_t es = sbx_dtype_size(dtype);
    sbx_conv_plan *p;
    assert_int_equal(sbx_conv_plan_create(s, nkern, dtype, &p), SBX_OK);
    const int direct = p->taps && p->algo == SBX_ALGO_DIRECT; /* narrower rows have taps for kgrad_lanes alone */
    if ((p->taps != NULL) != (s->mode == SBX_CONV_VALID && s->stride[s->ndim - 1] == 1))
        fail_msg("%s, %s: taps %d; every valid-mode plan of stride 1 on the last axis has them", label,
                 sbx_dtype_name(dtype), p->taps != NULL);
    if (direct != (strchr(paths, 'd') != NULL) || p->maps_lanes != (strchr(paths, 'm') != NULL) ||
        (p->adjoint != NULL) != (strchr(paths, 'a') != NULL))
        fail_msg("%s, %s: the plan chose direct %d, maps in lanes %d, adjoint %d; expected '%s'", label,
                 sbx_dtype_name(dtype), direct, p->maps_lanes, p->adjoint != NULL, paths);
    sbx_array *x64 = random_matrix(batch, in), *k64 = random_matrix(nkern, W), *b64 = random_matrix(nkern, -1);
    sbx_array *g64 = random_matrix(batch, nkern * O);
    if (nonfinite) {
        ((double *)x64->data)[in / 2] = INFINITY;
        ((double *)g64->data)[(batch - 1) * nkern * O + O + O / 3] = NAN;
    }
    sbx_array *x = as(x64, dtype), *kk = as(k64, dtype), *bias = as(b64, dtype), *g = as(g64, dtype);
    sbx_array *res[3][4];
    for (int t = 0; t < 3; t++) {
        sbx_set_num_threads(t + 1);
        assert_int_equal(sbx_conv_forward(p, x, kk, bias, &res[t][0]), SBX_OK);
        assert_int_equal(sbx_conv_backward(p, x, kk, g, &res[t][1], &res[t][2], &res[t][3]), SBX_OK);
    }
    sbx_set_num_threads(0);
    for (int t = 1; t < 3; t++)
        for (int i = 0; i < 4; i++)
            assert_memory_equal(res[0][i]->data, res[t][i]->data, (size_t)sbx_array_numel(res[0][i]) * es);
    sbx_array *xr = as(x, SBX_FLOAT64), *kr = as(kk, SBX_FLOAT64), *br = as(bias, SBX_FLOAT64);
    sbx_array *gr = as(g, SBX_FLOAT64);
    sbx_array *got[4];
    for (int i = 0; i < 4; i++) got[i] = as(res[0][i], SBX_FLOAT64);
    const double *xv = xr->data, *kv = kr->data, *bv = br->data, *gv = gr->data;
    double *rx = calloc((size_t)(batch * in), sizeof(double)), *sx = calloc((size_t)(batch * in), sizeof(double));
    double *rk = calloc((size_t)(nkern * W), sizeof(double)), *sk = calloc((size_t)(nkern * W), sizeof(double));
    for (int64_t b = 0; b < batch; b++)
        for (int64_t n = 0; n < nkern; n++)
            for (int64_t o = 0; o < O; o++) {
                const double go = gv[(b * nkern + n) * O + o];
                double y = bv[n], scale = fabs(bv[n]);
                for (int64_t c = 0; c < s->channels; c++)
                    for (int64_t l = 0; l < K; l++) {
                        const int64_t i = tap_input(s, c, o, l), j = c * K + l;
                        if (i < 0) continue;
                        y += xv[b * in + i] * kv[n * W + j];
                        scale += fabs(xv[b * in + i] * kv[n * W + j]);
                        rk[n * W + j] += go * xv[b * in + i];
                        sk[n * W + j] += fabs(go * xv[b * in + i]);
                        rx[b * in + i] += go * kv[n * W + j];
                        sx[b * in + i] += fabs(go * kv[n * W + j]);
                    }
                const double have = ((double *)got[0]->data)[(b * nkern + n) * O + o];
                if (!matches(have, y, scale, rel))
                    fail_msg("%s, %s: y[%lld][%lld][%lld] = %.17g, expected %.17g", label, sbx_dtype_name(dtype),
                             (long long)b, (long long)n, (long long)o, have, y);
            }
    for (int64_t i = 0; i < batch * in; i++)
        if (!matches(((double *)got[1]->data)[i], rx[i], sx[i], rel))
            fail_msg("%s, %s: grad_images[%lld] = %.17g, expected %.17g", label, sbx_dtype_name(dtype), (long long)i,
                     ((double *)got[1]->data)[i], rx[i]);
    for (int64_t i = 0; i < nkern * W; i++)
        if (!matches(((double *)got[2]->data)[i], rk[i], sk[i], rel))
            fail_msg("%s, %s: grad_kerns[%lld] = %.17g, expected %.17g", label, sbx_dtype_name(dtype), (long long)i,
                     ((double *)got[2]->data)[i], rk[i]);
    for (int64_t n = 0; n < nkern; n++) {
        double want = 0, scale = 0;
        for (int64_t b = 0; b < batch; b++)
            for (int64_t o = 0; o < O; o++) {
                want += gv[(b * nkern + n) * O + o];
                scale += fabs(gv[(b * nkern + n) * O + o]);
            }
        if (!matches(((double *)got[3]->data)[n], want, scale, rel))
            fail_msg("%s, %s: grad_bias[%lld] = %.17g, expected %.17g", label, sbx_dtype_name(dtype), (long long)n,
                     ((double *)got[3]->data)[n], want);
    }
    free(rx);
    free(sx);
    free(rk);
    free(sk);
    sbx_array *all[] = {x64, k64, b64, g64, x, kk, bias, g, xr, kr, br, gr, got[0], got[1], got[2], got[3]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sbx_array_free(all[i]);
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < 4; i++) sbx_array_free(res[t][i]);
    sbx_conv_plan_free(p);
}

/* The demo network's two convolutions (1 x 28 x 28 maps, 16 kernels 5x5; 16 x 12 x 12 maps, 32
 * kernels 5x5: output rows of 8, half a float32 vector, packed two to a vector, and the image
 * gradient with the maps in the lanes), and the paths around them: rows of half a vector to one
 * (overlapping halves), maps of half a vector and of whole and partial vectors, positions and taps
 * not filling the image gradient's steps, a stride, 3-d, a kernel count past a block of 8; and the
 * shapes where the adjoint stays (fewer than 32 kernels, or fewer than a vector of maps). */
static void test_demo_layers(void **state) {
    (void)state;
    typedef struct {
        int ndim;
        int64_t channels, in[3], k[3], stride, nkern, batch;
        const char *paths[2]; /* float32, float64 */
        const char *label;
    } layer_case;
    static const layer_case cases[] = {
        {2, 1, {28, 28}, {5, 5}, 1, 16, 3, {"d", "d"}, "demo layer 1"},
        {2, 16, {12, 12}, {5, 5}, 1, 32, 5, {"dm", "dm"}, "demo layer 2"},
        {2, 12, {9, 11}, {3, 3}, 1, 3, 3, {"dm", "da"}, "12 maps, rows of 9, 3 kernels"},
        {2, 8, {7, 14}, {2, 3}, 1, 20, 2, {"dm", "da"}, "8 maps, rows of 12"},
        {2, 4, {9, 7}, {3, 3}, 1, 6, 3, {"", "dm"}, "4 maps, rows of 5"},
        {2, 20, {13, 13}, {3, 3}, 2, 5, 3, {"m", "m"}, "20 maps, stride 2"},
        {3, 8, {5, 6, 7}, {2, 3, 3}, 1, 33, 2, {"m", "dm"}, "3-d, 33 kernels"},
        {2, 16, {10, 20}, {3, 5}, 1, 32, 2, {"dm", "dm"}, "16 maps, rows of 16"},
        {2, 16, {10, 20}, {3, 5}, 1, 31, 2, {"da", "da"}, "16 maps, 31 kernels"},
        {2, 4, {10, 20}, {3, 5}, 1, 40, 2, {"da", "da"}, "4 maps"},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const layer_case *c = &cases[ci];
        const int64_t st[3] = {c->stride, c->stride, c->stride};
        sbx_conv_shape s;
        assert_int_equal(sbx_conv_shape_make(c->ndim, c->channels, c->in, c->k, st, SBX_CONV_VALID, &s), SBX_OK);
        for (int dt = 0; dt < 2; dt++)
            for (int nonfinite = 0; nonfinite < 2; nonfinite++)
                check_layer(&s, c->nkern, dt ? SBX_FLOAT64 : SBX_FLOAT32, c->batch, nonfinite, c->paths[dt], c->label);
    }
}

/* A valid-mode geometry whose gather table (> 16 MB) makes the layers copy contiguous runs instead. */
static void test_copy_runs(void **state) {
    (void)state;
    int64_t in[2] = {700, 700}, k[2] = {3, 4};
    sbx_conv_shape s;
    assert_int_equal(sbx_conv_shape_make(2, 1, in, k, NULL, SBX_CONV_VALID, &s), SBX_OK);
    assert_true(s.out_size * s.kernel_size * 8 > (16 << 20));
    const int64_t nkern = 2, O = s.out_size, K = s.kernel_size;
    sbx_conv_plan *p;
    assert_int_equal(sbx_conv_plan_create(&s, nkern, SBX_FLOAT64, &p), SBX_OK);
    sbx_array *x = random_matrix(1, s.in_size), *kk = random_matrix(nkern, K), *g = random_matrix(1, nkern * O), *y, *gx;
    assert_int_equal(sbx_conv_forward(p, x, kk, NULL, &y), SBX_OK);
    assert_int_equal(sbx_conv_backward(p, x, kk, g, &gx, NULL, NULL), SBX_OK);
    double *rx = calloc((size_t)s.in_size, sizeof(double));
    const double *xv = x->data, *kv = kk->data, *gv = g->data, *yv = y->data;
    for (int64_t n = 0; n < nkern; n++)
        for (int64_t o = 0; o < O; o++) {
            if (fabs(yv[n * O + o] - ref_conv(&s, xv, kv, NULL, nkern, 0, n, o)) > 1e-12)
                fail_msg("forward at kernel %lld position %lld", (long long)n, (long long)o);
            for (int64_t l = 0; l < K; l++) rx[tap_input(&s, 0, o, l)] += gv[n * O + o] * kv[n * K + l];
        }
    for (int64_t i = 0; i < s.in_size; i++) assert_true(fabs(((double *)gx->data)[i] - rx[i]) < 1e-12);
    free(rx);
    sbx_array *all[] = {x, kk, g, y, gx};
    for (size_t i = 0; i < 5; i++) sbx_array_free(all[i]);
    sbx_conv_plan_free(p);
}

static void test_bad_input(void **state) {
    (void)state;
    int64_t in[2] = {6, 6}, k[2] = {3, 3};
    sbx_conv_shape s;
    assert_int_equal(sbx_conv_shape_make(2, 2, in, k, NULL, SBX_CONV_VALID, &s), SBX_OK);
    sbx_conv_plan *p = NULL, *pool;
    expect_error(sbx_conv_plan_create(&s, 0, SBX_FLOAT64, &p), SBX_ERR_ARG, "nkern 0");
    expect_error(sbx_conv_plan_create(&s, 2, SBX_INT32, &p), SBX_ERR_ARG, "dtype int32");
    expect_error(sbx_conv_plan_create(NULL, 2, SBX_FLOAT64, &p), SBX_ERR_ARG, "shape is NULL");
    expect_error(sbx_conv_plan_create(&s, 2, SBX_FLOAT64, NULL), SBX_ERR_ARG, "out is NULL");
    assert_int_equal(sbx_conv_plan_create(&s, 2, SBX_FLOAT64, &p), SBX_OK);
    assert_int_equal(sbx_pool_plan_create(&s, SBX_FLOAT64, &pool), SBX_OK);
    sbx_array *x = random_matrix(3, 72), *kk = random_matrix(2, 18), *y = NULL, *g = NULL;
    sbx_array *wide = random_matrix(3, 73), *kbad = random_matrix(2, 17), *b3 = random_matrix(3, -1);
    sbx_array *x32 = as(x, SBX_FLOAT32), *flat = random_matrix(216, -1);
    expect_error(sbx_conv_forward(p, wide, kk, NULL, &y), SBX_ERR_ARG, "images must be batch x 72; it is 3 x 73");
    expect_error(sbx_conv_forward(p, flat, kk, NULL, &y), SBX_ERR_ARG, "images must be batch x 72; it is not 2-d");
    expect_error(sbx_conv_forward(p, x, kbad, NULL, &y), SBX_ERR_ARG, "kerns must be 2 x 18; it is 2 x 17");
    expect_error(sbx_conv_forward(p, x, kk, b3, &y), SBX_ERR_ARG, "bias must be a vector of 2 entries");
    expect_error(sbx_conv_forward(p, x32, kk, NULL, &y), SBX_ERR_ARG, "images has dtype float32 but the plan computes in float64");
    expect_error(sbx_conv_forward(NULL, x, kk, NULL, &y), SBX_ERR_ARG, "plan is NULL");
    expect_error(sbx_conv_forward(pool, x, kk, NULL, &y), SBX_ERR_ARG, "plan is a pooling plan");
    expect_error(sbx_conv_forward(p, x, kk, NULL, NULL), SBX_ERR_ARG, "out is NULL");
    expect_error(sbx_conv_backward(p, x, kk, x, &g, NULL, NULL), SBX_ERR_ARG, "grad_out must be 3 x 32; it is 3 x 72");
    expect_error(sbx_pool_backward(pool, x, x, &g), SBX_ERR_ARG, "grad_out must be 3 x 32");
    expect_error(sbx_local_forward(p, x, kk, NULL, &y), SBX_ERR_ARG, "plan is a convolution plan");
    assert_null(y);
    assert_null(g);
    /* A zero batch gives an empty output; NaN passes through without harm. */
    sbx_array *none = matrix(SBX_FLOAT64, 0, 72);
    assert_int_equal(sbx_conv_forward(p, none, kk, NULL, &y), SBX_OK);
    assert_int_equal(y->shape[0], 0);
    assert_int_equal(y->shape[1], 32);
    sbx_array_free(y);
    ((double *)x->data)[0] = NAN; /* pixel (0, 0) of map 0: in the first window */
    assert_int_equal(sbx_conv_forward(p, x, kk, NULL, &y), SBX_OK);
    assert_true(isnan(((double *)y->data)[0]));
    sbx_array_free(y);
    assert_int_equal(sbx_pool_forward(pool, x, &y), SBX_OK);
    assert_true(isnan(((double *)y->data)[0]));
    sbx_array_free(y);
    /* Sizes beyond what CBLAS can index are refused when the plan is made. */
    int64_t huge[2] = {70000, 70000}, k1[2] = {1, 1};
    assert_int_equal(sbx_conv_shape_make(2, 1, huge, k1, NULL, SBX_CONV_VALID, &s), SBX_OK);
    sbx_conv_plan *big = NULL;
    expect_error(sbx_conv_plan_create(&s, 1, SBX_FLOAT32, &big), SBX_ERR_OVERFLOW, "C int");
    assert_null(big);
    sbx_array *all[] = {x, kk, wide, kbad, b3, x32, flat, none};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sbx_array_free(all[i]);
    sbx_conv_plan_free(p);
    sbx_conv_plan_free(pool);
}

static void test_allocation_failures(void **state) {
    (void)state;
    /* 4 maps: the image gradient's adjoint plan too; 8 maps in valid mode on rows narrower than a
     * vector: the direct kernel, and the image gradient with the maps in the lanes */
    for (int64_t maps = 1; maps <= 8; maps += maps == 1 ? 3 : 4) {
        const int lanes = maps == 8;
        int64_t in[2] = {5, lanes ? 7 : 5}, k[2] = {2, 2};
        sbx_conv_shape s;
        assert_int_equal(sbx_conv_shape_make(2, maps, in, k, NULL, lanes ? SBX_CONV_VALID : SBX_CONV_FULL, &s), SBX_OK);
        sbx_array *x = random_matrix(9, s.in_size), *kk = random_matrix(2, maps * 4);
        sbx_array *r = random_matrix(9, 2 * s.out_size);
        int64_t i;
        for (i = 1;; i++) {
            sbx_conv_plan *p = NULL;
            sbx_array *gx = NULL, *gk = NULL, *gb = NULL, *y = NULL;
            sbx__alloc_fail_at(i);
            sbx_status st = sbx_conv_plan_create(&s, 2, SBX_FLOAT64, &p);
            if (st == SBX_OK && lanes) assert_true(p->maps_lanes && p->taps && !p->adjoint);
            if (st == SBX_OK) st = sbx_conv_forward(p, x, kk, NULL, &y);
            if (st == SBX_OK) st = sbx_conv_backward(p, x, kk, r, &gx, &gk, &gb);
            sbx__alloc_fail_at(0);
            sbx_conv_plan_free(p);
            sbx_array_free(y);
            if (st == SBX_OK) {
                sbx_array_free(gx);
                sbx_array_free(gk);
                sbx_array_free(gb);
                break;
            }
            assert_int_equal(st, SBX_ERR_NOMEM);
            assert_null(gx);
        }
        assert_true(i > (maps == 1 ? 5 : 10));
        sbx_array_free(x);
        sbx_array_free(kk);
        sbx_array_free(r);
    }
}

/* test_layers [PATTERN]: only the tests whose names match PATTERN (cmocka's * and ?); a PATTERN
 * starting with '-' skips the matching ones instead (tests/valgrind/run.sh uses it). */
int main(int argc, char **argv) {
    /* SBX_TEST_OTHER_WIDTH set: the build of the layer kernels for the vector width this CPU does not
     * get (layers.c: 64 or 32 bytes), so that one machine tests both; 77 (skipped) where there is none. */
    if (getenv("SBX_TEST_OTHER_WIDTH")) {
        const int other = sbx__layers_vector_bytes(-1) == 64 ? 32 : 64;
        if (sbx__layers_vector_bytes(other) != other) {
            printf("no %d-byte layer kernels on this machine: skipped\n", other);
            return 77;
        }
        printf("the layer kernels of %d-byte vectors\n", other);
    }
    if (argc > 1 && argv[1][0] == '-') cmocka_set_skip_filter(argv[1] + 1);
    else if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_convolve),    cmocka_unit_test(test_golden_local),
        cmocka_unit_test(test_golden_maxpool),     cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_kernel_gradient_flat), cmocka_unit_test(test_kernel_gradient_lanes),
        cmocka_unit_test(test_adjoint_by_image),
        cmocka_unit_test(test_direct_rows),        cmocka_unit_test(test_demo_layers),
        cmocka_unit_test(test_gradients),          cmocka_unit_test(test_pool_gradient_ties),
        cmocka_unit_test(test_pool_masks),          cmocka_unit_test(test_pool_streamed),
        cmocka_unit_test(test_thread_counts_agree), cmocka_unit_test(test_local_blocks),
        cmocka_unit_test(test_tiled_backward),
        cmocka_unit_test(test_copy_runs),          cmocka_unit_test(test_adjoint_gradient),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
