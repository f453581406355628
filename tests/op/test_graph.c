#define _POSIX_C_SOURCE 200809L /* fmemopen */
/* The graph on top of the Op contract: ownership, compiled functions (order, dropped nodes, output
 * storage kept, no allocation after the first call, updates), reverse-mode gradients (sums, undefined
 * and disconnected answers), random nodes' determinism, printing, and training a small network. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/internal.h"
#include "sparsebox.h"

#define OK(expr) assert_int_equal((expr), SBX_OK)

static sbx_value dense(sbx_dtype dtype, int ndim, const int64_t *shape, const double *v) {
    sbx_array *a;
    OK(sbx_array_create(dtype, ndim, shape, &a));
    int64_t n = sbx_array_numel(a);
    for (int64_t i = 0; v && i < n; i++) {
        if (dtype == SBX_FLOAT32) ((float *)a->data)[i] = (float)v[i];
        if (dtype == SBX_FLOAT64) ((double *)a->data)[i] = v[i];
        if (dtype == SBX_INT64) ((int64_t *)a->data)[i] = (int64_t)v[i];
    }
    sbx_value r = {a, NULL};
    return r;
}

static double at(const sbx_value *v, int64_t i) {
    return v->dense->dtype == SBX_FLOAT32 ? ((float *)v->dense->data)[i] : ((double *)v->dense->data)[i];
}

static sbx_var *ap(sbx_graph *g, const sbx_op_class *cls, const void *props, int nin, ...) {
    sbx_var *in[SBX_OP_MAX_INPUTS], *out = NULL;
    va_list a;
    va_start(a, nin);
    for (int i = 0; i < nin; i++) in[i] = va_arg(a, sbx_var *);
    va_end(a);
    sbx_status st = sbx_apply(g, cls, props, nin, in, &out);
    if (st != SBX_OK) fail_msg("%s: %s", cls->name, sbx_last_error());
    return out;
}

/* --- A user's op class, as docs/op.md's example: Negate, which counts its performs -------------- */
static int negate_performs;
static int negate_props_equal(const void *a, const void *b) { (void)a, (void)b; return 1; }
static uint64_t negate_props_hash(const void *p) { (void)p; return 0; }
static int negate_props_str(const void *p, char *buf, size_t size) { (void)p; return snprintf(buf, size, "-"); }
static sbx_status negate_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    (void)op;
    if (nin != 1) return sbx__error(SBX_ERR_ARG, "Negate: 1 input, not %d", nin);
    if (in[0].kind != SBX_KIND_DENSE || in[0].dtype != SBX_FLOAT64)
        return sbx__error(SBX_ERR_ARG, "Negate: input 0 (x): expected dense float64");
    *nout = 1;
    out[0] = in[0];
    return SBX_OK;
}
static sbx_status negate_infer_shape(const sbx_op *op, int nin, const sbx_value *in, int nout, sbx_type *out) {
    (void)op, (void)nin, (void)nout;
    return sbx_type_of(&in[0], &out[0]);
}
static sbx_status negate_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                 sbx_value *out) {
    (void)op, (void)ctx, (void)nin, (void)nout;
    const sbx_array *x = in[0].dense;
    sbx_array *y;
    SBX_CHECK(sbx_output_dense(&out[0], SBX_FLOAT64, x->ndim, x->shape, 0, &y));
    for (int64_t i = 0; i < sbx_array_numel(x); i++) ((double *)y->data)[i] = -((const double *)x->data)[i];
    negate_performs++;
    return SBX_OK;
}
static const sbx_op_class negate_class;
static sbx_status negate_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                              sbx_grad *answer, const char **reason) {
    (void)node, (void)reason;
    if (!gout[0]) return SBX_OK; /* answer stays disconnected */
    answer[0] = SBX_GRAD_DEFINED;
    return sbx_apply(g, &negate_class, NULL, 1, gout, &gin[0]);
}
static const sbx_op_class negate_class = {
    "Negate", 0, negate_props_equal, negate_props_hash, negate_props_str, negate_make_node, negate_infer_shape,
    negate_perform, NULL, negate_grad, NULL};

static void test_user_class_and_dropped_nodes(void **state) {
    (void)state;
    sbx_graph *g;
    sbx_var *x, *y, *z, *unused, *f_out;
    OK(sbx_graph_create(&g));
    const int64_t shape[1] = {3};
    sbx_type t = sbx_type_dense(SBX_FLOAT64, 1, shape);
    OK(sbx_graph_input(g, "x", &t, &x));
    y = ap(g, &negate_class, NULL, 1, x);
    z = ap(g, &negate_class, NULL, 1, y);
    unused = ap(g, &negate_class, NULL, 1, z); /* nothing asks for it: compiling drops it */
    (void)unused;
    sbx_function *f;
    OK(sbx_function_compile(g, 1, &x, 1, &z, 0, NULL, 0, &f));
    double v[3] = {1, -2, 3.5};
    sbx_value in = dense(SBX_FLOAT64, 1, shape, v), out;
    negate_performs = 0;
    OK(sbx_function_call(f, &in, &out));
    assert_int_equal(negate_performs, 2);
    for (int i = 0; i < 3; i++) assert_true(at(&out, i) == v[i]);
    /* The output's storage is kept from call to call. */
    sbx_array *first = out.dense;
    OK(sbx_function_call(f, &in, &out));
    assert_ptr_equal(out.dense, first);
    f_out = z;
    (void)f_out;
    /* A wrong input is refused, naming it. */
    const int64_t other[1] = {4};
    sbx_value bad = dense(SBX_FLOAT64, 1, other, NULL);
    assert_int_equal(sbx_function_call(f, &bad, &out), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "input 0 (x)"));
    sbx_value_clear(&bad);
    /* An input not listed is an error at compile. */
    sbx_function *f2;
    assert_int_equal(sbx_function_compile(g, 0, NULL, 1, &z, 0, NULL, 0, &f2), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "not among the inputs"));
    sbx_value_clear(&in);
    sbx_function_free(f);
    sbx_graph_free(g);
}

/* d/dx sum((x W + b) * tanh(x W + b) + x W) through a function, against central differences. */
static void test_gradient_against_differences(void **state) {
    (void)state;
    sbx_graph *g;
    OK(sbx_graph_create(&g));
    const int64_t xs[2] = {3, 4}, ws[2] = {4, 2}, bs[1] = {2};
    double xv[12], wv[8], bv[2] = {0.1, -0.2};
    for (int i = 0; i < 12; i++) xv[i] = sin(1.0 + i);
    for (int i = 0; i < 8; i++) wv[i] = cos(0.5 * i);
    sbx_type xt = sbx_type_dense(SBX_FLOAT64, 2, xs);
    sbx_var *x, *w, *b;
    OK(sbx_graph_input(g, "x", &xt, &x));
    sbx_value wval = dense(SBX_FLOAT64, 2, ws, wv), bval = dense(SBX_FLOAT64, 1, bs, bv);
    OK(sbx_graph_shared(g, "W", &wval, &w));
    OK(sbx_graph_shared(g, "b", &bval, &b));
    const sbx_dot_props nn = {0, 0};
    const sbx_add_props plus = {1, 1};
    const sbx_reduce_props all = {-1};
    sbx_var *xw = ap(g, &sbx_op_dot, &nn, 2, x, w);
    sbx_var *h = ap(g, &sbx_op_add, &plus, 2, xw, b);
    sbx_var *e = ap(g, &sbx_op_add, &plus, 2, ap(g, &sbx_op_mul, NULL, 2, h, ap(g, &sbx_op_tanh, NULL, 1, h)), xw);
    sbx_var *cost = ap(g, &sbx_op_sum, &all, 1, e);
    sbx_var *wrt[3] = {x, w, b}, *grads[3];
    OK(sbx_gradient(g, cost, 3, wrt, 0, grads));
    sbx_var *outs[4] = {cost, grads[0], grads[1], grads[2]};
    sbx_function *f, *fc;
    OK(sbx_function_compile(g, 1, &x, 4, outs, 0, NULL, 0, &f));
    OK(sbx_function_compile(g, 1, &x, 1, &cost, 0, NULL, 0, &fc));
    sbx_value in = dense(SBX_FLOAT64, 2, xs, xv), out[4], c;
    OK(sbx_function_call(f, &in, out));
    double *params[3] = {(double *)in.dense->data, (double *)sbx_var_value(w)->dense->data,
                         (double *)sbx_var_value(b)->dense->data};
    const int sizes[3] = {12, 8, 2};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < sizes[k]; i++) {
            const double h0 = 1e-6, keep = params[k][i];
            params[k][i] = keep + h0;
            OK(sbx_function_call(fc, &in, &c));
            double up = at(&c, 0);
            params[k][i] = keep - h0;
            OK(sbx_function_call(fc, &in, &c));
            double down = at(&c, 0);
            params[k][i] = keep;
            double numeric = (up - down) / (2 * h0), analytic = at(&out[1 + k], i);
            assert_true(fabs(numeric - analytic) <= 1e-6 * fmax(1.0, fabs(numeric)));
        }
    sbx_value_clear(&in);
    sbx_function_free(f);
    sbx_function_free(fc);
    sbx_graph_free(g);
}

/* A variable feeding several nodes gets the sum; a second derivative through gradient ops. */
static void test_sum_and_second_derivative(void **state) {
    (void)state;
    sbx_graph *g;
    OK(sbx_graph_create(&g));
    const int64_t s[1] = {5};
    sbx_type t = sbx_type_dense(SBX_FLOAT64, 1, s);
    sbx_var *x;
    OK(sbx_graph_input(g, "x", &t, &x));
    const sbx_add_props plus = {1, 1};
    const sbx_reduce_props all = {-1};
    /* cost = sum(x*x + tanh(x)): grad 2x + 1 - tanh^2; its own gradient's sum has the derivative
     * 2 - 2 tanh (1 - tanh^2). */
    sbx_var *cost = ap(g, &sbx_op_sum, &all, 1,
                       ap(g, &sbx_op_add, &plus, 2, ap(g, &sbx_op_mul, NULL, 2, x, x), ap(g, &sbx_op_tanh, NULL, 1, x)));
    sbx_var *gx, *ggx;
    OK(sbx_gradient(g, cost, 1, &x, 0, &gx));
    OK(sbx_gradient(g, ap(g, &sbx_op_sum, &all, 1, gx), 1, &x, 0, &ggx));
    sbx_var *outs[2] = {gx, ggx};
    sbx_function *f;
    OK(sbx_function_compile(g, 1, &x, 2, outs, 0, NULL, 0, &f));
    double v[5] = {-1.5, -0.2, 0, 0.7, 2};
    sbx_value in = dense(SBX_FLOAT64, 1, s, v), out[2];
    OK(sbx_function_call(f, &in, out));
    for (int i = 0; i < 5; i++) {
        double th = tanh(v[i]);
        assert_true(fabs(at(&out[0], i) - (2 * v[i] + 1 - th * th)) < 1e-12);
        assert_true(fabs(at(&out[1], i) - (2 - 2 * th * (1 - th * th))) < 1e-12);
    }
    sbx_value_clear(&in);
    sbx_function_free(f);
    sbx_graph_free(g);
}

/* Gradients through a random draw are undefined (an error naming the op and its reason); a wrt the
 * cost does not depend on is an error unless allowed, then zero; a non-scalar cost is refused. */
static void test_undefined_and_disconnected(void **state) {
    (void)state;
    sbx_graph *g;
    OK(sbx_graph_create(&g));
    sbx_type pt = sbx_type_dense(SBX_FLOAT32, 0, NULL), xt = sbx_type_dense(SBX_FLOAT64, 1, (int64_t[]){3});
    sbx_var *n, *p, *shape, *x, *other;
    OK(sbx_graph_scalar(g, SBX_INT64, 3, &n));
    OK(sbx_graph_input(g, "p", &pt, &p));
    sbx_value sv = dense(SBX_INT64, 1, (int64_t[]){2}, (double[]){4, 5});
    OK(sbx_graph_constant(g, "shape", &sv, &shape));
    OK(sbx_graph_input(g, "x", &xt, &x));
    OK(sbx_graph_input(g, "other", &xt, &other));
    const sbx_binomial_props bp = {SBX_CSR, SBX_FLOAT32};
    const sbx_reduce_props all = {-1};
    sbx_var *draw = ap(g, &sbx_op_binomial, &bp, 3, n, p, shape);
    sbx_var *cost = ap(g, &sbx_op_sum, &all, 1, ap(g, &sbx_op_dense_from_sparse, NULL, 1, draw));
    sbx_var *gp;
    assert_int_equal(sbx_gradient(g, cost, 1, &p, 0, &gp), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "Binomial"));
    assert_non_null(strstr(sbx_last_error(), "input 1"));

    sbx_var *c2 = ap(g, &sbx_op_sum, &all, 1, ap(g, &sbx_op_tanh, NULL, 1, x)), *gother;
    assert_int_equal(sbx_gradient(g, c2, 1, &other, 0, &gother), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "does not depend on wrt[0] (other)"));
    OK(sbx_gradient(g, c2, 1, &other, SBX_GRAD_ALLOW_DISCONNECTED, &gother));
    sbx_function *f;
    OK(sbx_function_compile(g, 1, &other, 1, &gother, 0, NULL, 0, &f));
    sbx_value in = dense(SBX_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 3}), out;
    OK(sbx_function_call(f, &in, &out));
    for (int i = 0; i < 3; i++) assert_true(at(&out, i) == 0);
    sbx_var *gx;
    assert_int_equal(sbx_gradient(g, ap(g, &sbx_op_tanh, NULL, 1, x), 1, &x, 0, &gx), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "0-d"));
    sbx_value_clear(&in);
    sbx_function_free(f);
    sbx_graph_free(g);
}

/* Random nodes: the same bytes from two compiles with the same seed, call for call, at 1 and 2
 * threads; another call differs; setting the seed again rewinds. */
static sbx_sparse *draw_copy(sbx_function *f, const sbx_value *in) {
    sbx_value out;
    sbx_sparse *m;
    OK(sbx_function_call(f, in, &out));
    OK(sbx_sparse_copy(out.sparse, &m));
    return m;
}

static int same_sparse(const sbx_sparse *a, const sbx_sparse *b) {
    return a->nnz == b->nnz && a->nrows == b->nrows &&
           memcmp(a->indptr, b->indptr, (size_t)(a->nrows + 1) * 8) == 0 &&
           memcmp(a->indices, b->indices, (size_t)a->nnz * 8) == 0 &&
           memcmp(a->data, b->data, (size_t)a->nnz * sbx_dtype_size(a->dtype)) == 0;
}

static void test_random_determinism(void **state) {
    (void)state;
    sbx_graph *g;
    OK(sbx_graph_create(&g));
    sbx_type pt = sbx_type_dense(SBX_FLOAT64, 0, NULL);
    sbx_var *n, *p, *shape, *first, *second;
    OK(sbx_graph_scalar(g, SBX_INT64, 5, &n));
    OK(sbx_graph_input(g, "p", &pt, &p));
    sbx_value sv = dense(SBX_INT64, 1, (int64_t[]){2}, (double[]){3000, 700});
    OK(sbx_graph_constant(g, "shape", &sv, &shape));
    const sbx_binomial_props bp = {SBX_CSR, SBX_FLOAT64};
    first = ap(g, &sbx_op_binomial, &bp, 3, n, p, shape);
    second = ap(g, &sbx_op_binomial, &bp, 3, n, p, shape); /* the same op: its own stream */
    sbx_function *f1, *f2, *f3;
    OK(sbx_function_compile(g, 1, &p, 1, &first, 0, NULL, 42, &f1));
    OK(sbx_function_compile(g, 1, &p, 1, &first, 0, NULL, 42, &f2));
    OK(sbx_function_compile(g, 1, &p, 1, &second, 0, NULL, 42, &f3));
    sbx_value in = dense(SBX_FLOAT64, 0, NULL, (double[]){0.1});
    sbx_set_num_threads(1);
    sbx_sparse *a0 = draw_copy(f1, &in), *a1 = draw_copy(f1, &in);
    sbx_set_num_threads(2);
    sbx_sparse *b0 = draw_copy(f2, &in), *b1 = draw_copy(f2, &in), *c0 = draw_copy(f3, &in);
    sbx_set_num_threads(0);
    assert_true(same_sparse(a0, b0));
    assert_true(same_sparse(a1, b1));
    assert_false(same_sparse(a0, a1)); /* call 1 draws other counters than call 0 */
    assert_false(same_sparse(a0, c0)); /* another node, another stream */
    sbx_function_seed(f1, 42);
    sbx_sparse *r0 = draw_copy(f1, &in);
    assert_true(same_sparse(a0, r0));
    sbx_function_seed(f1, 43);
    sbx_sparse *d0 = draw_copy(f1, &in);
    assert_false(same_sparse(a0, d0));
    sbx_sparse *all[7] = {a0, a1, b0, b1, c0, r0, d0};
    for (int i = 0; i < 7; i++) sbx_sparse_free(all[i]);
    sbx_value_clear(&in);
    sbx_function_free(f1);
    sbx_function_free(f2);
    sbx_function_free(f3);
    sbx_graph_free(g);
}

/* Updates happen at once, from the old values: a <- b, b <- a swaps them. */
static void test_updates_at_once(void **state) {
    (void)state;
    sbx_graph *g;
    OK(sbx_graph_create(&g));
    sbx_value av = dense(SBX_FLOAT64, 1, (int64_t[]){2}, (double[]){1, 2});
    sbx_value bv = dense(SBX_FLOAT64, 1, (int64_t[]){2}, (double[]){3, 4});
    sbx_var *a, *b;
    OK(sbx_graph_shared(g, "a", &av, &a));
    OK(sbx_graph_shared(g, "b", &bv, &b));
    const sbx_scale_props twice = {2};
    sbx_update up[2] = {{a, b}, {b, ap(g, &sbx_op_scale, &twice, 1, a)}};
    sbx_function *f;
    OK(sbx_function_compile(g, 0, NULL, 0, NULL, 2, up, 0, &f));
    sbx_array *keep = sbx_var_value(a)->dense;
    OK(sbx_function_call(f, NULL, NULL));
    assert_ptr_equal(sbx_var_value(a)->dense, keep); /* in place */
    assert_true(at(sbx_var_value(a), 0) == 3 && at(sbx_var_value(a), 1) == 4);
    assert_true(at(sbx_var_value(b), 0) == 2 && at(sbx_var_value(b), 1) == 4);
    sbx_function *bad;
    sbx_update wrong = {a, ap(g, &sbx_op_sum, &(sbx_reduce_props){-1}, 1, b)};
    assert_int_equal(sbx_function_compile(g, 0, NULL, 0, NULL, 1, &wrong, 0, &bad), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "updates[0]"));
    sbx_function_free(f);
    sbx_graph_free(g);
}

/* --- Training ------------------------------------------------------------------------------------ */
/* 8x8 images holding a horizontal (class 0) or vertical (class 1) bar of 4 pixels at a position of
 * the image, with noise. */
#define SIDE 8
#define BATCH 32
static void make_task(uint64_t seed, float *images, int64_t *labels) {
    sbx_rng rng;
    sbx_rng_cursor c;
    sbx_rng_init(&rng, seed, 7);
    OK(sbx_rng_cursor_init(&rng, 0, &c));
    for (int b = 0; b < BATCH; b++) {
        float *im = images + b * SIDE * SIDE;
        for (int i = 0; i < SIDE * SIDE; i++) im[i] = (float)(0.2 * sbx_rng_double(&c));
        int cls = b % 2, r = 1 + (int)(sbx_rng_double(&c) * 4), q = 1 + (int)(sbx_rng_double(&c) * 4);
        for (int k = 0; k < 4; k++) im[cls ? (r + k) * SIDE + q : r * SIDE + q + k] += 1.0f;
        labels[b] = cls;
    }
}

static sbx_value init_param(sbx_rng_cursor *c, int ndim, const int64_t *shape, double scale) {
    sbx_value v = dense(SBX_FLOAT32, ndim, shape, NULL);
    for (int64_t i = 0; i < sbx_array_numel(v.dense); i++)
        ((float *)v.dense->data)[i] = (float)(scale * (2 * sbx_rng_double(c) - 1));
    return v;
}

/* conv(1->4, 3x3) -> ReLU -> max_pool 2x2 -> dense(36->2) -> softmax cross-entropy, trained by
 * Adam (or SGD with momentum) on one batch: returns the first and last loss and copies the
 * parameters' bytes into params (4 arrays). */
static void train(int threads, int adam, int steps, double *first, double *last, float *params) {
    sbx_set_num_threads(threads);
    sbx_graph *g;
    OK(sbx_graph_create(&g));
    sbx_conv_shape cs, ps;
    OK(sbx_conv_shape_make(2, 1, (int64_t[]){SIDE, SIDE}, (int64_t[]){3, 3}, NULL, SBX_CONV_VALID, &cs));
    OK(sbx_conv_shape_make(2, 4, cs.out, (int64_t[]){2, 2}, (int64_t[]){2, 2}, SBX_CONV_VALID, &ps));
    const int64_t feat = 4 * ps.out_size;
    sbx_type xt = sbx_type_dense(SBX_FLOAT32, 2, (int64_t[]){-1, SIDE * SIDE}), yt = sbx_type_dense(SBX_INT64, 1, NULL);
    sbx_var *x, *y, *k, *kb, *w, *wb, *lr;
    OK(sbx_graph_input(g, "images", &xt, &x));
    OK(sbx_graph_input(g, "labels", &yt, &y));
    sbx_rng rng;
    sbx_rng_cursor c;
    sbx_rng_init(&rng, 1234, 0);
    OK(sbx_rng_cursor_init(&rng, 0, &c));
    sbx_value kv = init_param(&c, 2, (int64_t[]){4, 9}, 0.5), kbv = init_param(&c, 1, (int64_t[]){4}, 0.0);
    sbx_value wv = init_param(&c, 2, (int64_t[]){feat, 2}, 0.3), wbv = init_param(&c, 1, (int64_t[]){2}, 0.0);
    sbx_value lrv = dense(SBX_FLOAT32, 0, NULL, (double[]){adam ? 0.02 : 0.1});
    OK(sbx_graph_shared(g, "k", &kv, &k));
    OK(sbx_graph_shared(g, "kb", &kbv, &kb));
    OK(sbx_graph_shared(g, "w", &wv, &w));
    OK(sbx_graph_shared(g, "wb", &wbv, &wb));
    OK(sbx_graph_shared(g, "lr", &lrv, &lr));
    const sbx_layer_props conv = {cs, 4};
    const sbx_pool_props pool = {ps};
    const sbx_dot_props nn = {0, 0};
    const sbx_add_props plus = {1, 1};
    sbx_var *h = ap(g, &sbx_op_relu, NULL, 1, ap(g, &sbx_op_convolve, &conv, 3, x, k, kb));
    sbx_var *pooled = ap(g, &sbx_op_max_pool, &pool, 1, h);
    sbx_var *logits = ap(g, &sbx_op_add, &plus, 2, ap(g, &sbx_op_dot, &nn, 2, pooled, w), wb);
    sbx_var *loss = ap(g, &sbx_op_softmax_cross_entropy, NULL, 2, logits, y);
    sbx_var *params_v[4] = {k, kb, w, wb};
    sbx_update up[13];
    int nupd = 0;
    if (adam)
        OK(sbx_adam(g, loss, 4, params_v, lr, 0.9, 0.999, 1e-8, up, &nupd));
    else
        OK(sbx_sgd(g, loss, 4, params_v, lr, 0.9, up, &nupd));
    assert_int_equal(nupd, adam ? 13 : 8);
    sbx_var *ins[2] = {x, y};
    sbx_function *f;
    OK(sbx_function_compile(g, 2, ins, 1, &loss, nupd, up, 5, &f));
    float images[BATCH * SIDE * SIDE];
    int64_t labels[BATCH];
    make_task(99, images, labels);
    sbx_value in[2] = {dense(SBX_FLOAT32, 2, (int64_t[]){BATCH, SIDE * SIDE}, NULL),
                       dense(SBX_INT64, 1, (int64_t[]){BATCH}, NULL)};
    memcpy(in[0].dense->data, images, sizeof images);
    memcpy(in[1].dense->data, labels, sizeof labels);
    sbx_value out;
    for (int s = 0; s < steps; s++) {
        OK(sbx_function_call(f, in, &out));
        if (s == 0) {
            *first = at(&out, 0);
            sbx__alloc_fail_at(0); /* counts from here */
        }
        if (s == 1) assert_int_equal(sbx__alloc_fail_at(0), 0); /* the second call allocated nothing */
    }
    *last = at(&out, 0);
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        const sbx_array *a = sbx_var_value(params_v[i])->dense;
        memcpy(params + off, a->data, (size_t)sbx_array_numel(a) * sizeof(float));
        off += (size_t)sbx_array_numel(a);
    }
    sbx_value_clear(&in[0]);
    sbx_value_clear(&in[1]);
    sbx_function_free(f);
    sbx_graph_free(g);
    sbx_set_num_threads(0);
}

static void test_training(void **state) {
    (void)state;
    enum { NPARAM = 4 * 9 + 4 + 36 * 2 + 2 };
    float p1[NPARAM], p2[NPARAM];
    for (int adam = 1; adam >= 0; adam--) {
        double first1, last1, first2, last2;
        train(1, adam, 150, &first1, &last1, p1);
        train(2, adam, 150, &first2, &last2, p2);
        print_message("%s: loss %.4f -> %.6f\n", adam ? "adam" : "sgd", first1, last1);
        assert_true(last1 * 10 <= first1);
        assert_true(first1 == first2 && last1 == last2);
        assert_memory_equal(p1, p2, sizeof p1); /* the same parameter bytes at 1 and 2 threads */
    }
}

/* Every allocation of building, differentiating, compiling and calling a small training graph made
 * to fail in turn: the out-of-memory status each time (nothing leaks: AddressSanitizer), then success. */
static sbx_status build_and_run(double *loss) {
    sbx_graph *g = NULL;
    sbx_function *f = NULL;
    sbx_value kv = {NULL, NULL}, lrv = {NULL, NULL}, in[2] = {{NULL, NULL}, {NULL, NULL}}, out;
    sbx_var *x, *y, *k, *lr, *h, *logits, *loss_v;
    sbx_conv_shape cs, ps;
    sbx_update up[13];
    int nupd;
    sbx_status st = sbx_graph_create(&g);
#define TRY(e) \
    if (st == SBX_OK) st = (e)
    TRY(sbx_conv_shape_make(1, 1, (int64_t[]){8}, (int64_t[]){3}, NULL, SBX_CONV_VALID, &cs));
    TRY(sbx_conv_shape_make(1, 2, cs.out, (int64_t[]){2}, (int64_t[]){2}, SBX_CONV_VALID, &ps));
    sbx_type xt = sbx_type_dense(SBX_FLOAT64, 2, (int64_t[]){-1, 8}), yt = sbx_type_dense(SBX_INT64, 1, NULL);
    TRY(sbx_graph_input(g, "x", &xt, &x));
    TRY(sbx_graph_input(g, "y", &yt, &y));
    TRY(sbx_array_create(SBX_FLOAT64, 2, (int64_t[]){2, 3}, &kv.dense));
    TRY(sbx_array_create(SBX_FLOAT64, 0, NULL, &lrv.dense));
    if (st == SBX_OK) {
        for (int i = 0; i < 6; i++) ((double *)kv.dense->data)[i] = 0.1 * (i - 2);
        ((double *)lrv.dense->data)[0] = 0.1;
    }
    TRY(sbx_graph_shared(g, "k", &kv, &k));
    TRY(sbx_graph_shared(g, "lr", &lrv, &lr));
    const sbx_layer_props conv = {cs, 2};
    const sbx_pool_props pool = {ps};
    TRY(sbx_apply(g, &sbx_op_convolve, &conv, 2, (sbx_var *[]){x, k}, &h));
    TRY(sbx_apply(g, &sbx_op_relu, NULL, 1, &h, &h));
    TRY(sbx_apply(g, &sbx_op_max_pool, &pool, 1, &h, &logits));
    TRY(sbx_apply(g, &sbx_op_softmax_cross_entropy, NULL, 2, (sbx_var *[]){logits, y}, &loss_v));
    TRY(sbx_adam(g, loss_v, 1, &k, lr, 0.9, 0.999, 1e-8, up, &nupd));
    TRY(sbx_function_compile(g, 2, (sbx_var *[]){x, y}, 1, &loss_v, nupd, up, 3, &f));
    TRY(sbx_array_create(SBX_FLOAT64, 2, (int64_t[]){2, 8}, &in[0].dense));
    TRY(sbx_array_create(SBX_INT64, 1, (int64_t[]){2}, &in[1].dense));
    if (st == SBX_OK) {
        for (int i = 0; i < 16; i++) ((double *)in[0].dense->data)[i] = sin(i);
        ((int64_t *)in[1].dense->data)[0] = 1;
        ((int64_t *)in[1].dense->data)[1] = 5;
    }
    TRY(sbx_function_call(f, in, &out));
    TRY(sbx_function_call(f, in, &out));
    if (st == SBX_OK) *loss = at(&out, 0);
#undef TRY
    sbx_value_clear(&kv);
    sbx_value_clear(&lrv);
    sbx_value_clear(&in[0]);
    sbx_value_clear(&in[1]);
    sbx_function_free(f);
    sbx_graph_free(g);
    return st;
}

static void test_allocation_failures(void **state) {
    (void)state;
    double want = 0, got = 0;
    sbx__alloc_fail_at(0);
    OK(build_and_run(&want));
    int64_t k = 1;
    for (;; k++) {
        sbx__alloc_fail_at(k);
        sbx_status st = build_and_run(&got);
        sbx__alloc_fail_at(0);
        if (st == SBX_OK) break;
        if (st != SBX_ERR_NOMEM) fail_msg("allocation %lld: status %d: %s", (long long)k, (int)st, sbx_last_error());
    }
    assert_true(got == want);
    assert_true(k > 50);
    print_message("building, differentiating, compiling and calling: %lld allocation failure points\n",
                  (long long)k - 1);
}

/* Every public entry point of the graph refuses what it cannot use, with a status and a message
 * naming the argument. */
#define BAD(expr, status, fragment)                                                                 \
    do {                                                                                            \
        assert_int_equal((expr), (status));                                                         \
        if (!strstr(sbx_last_error(), (fragment)))                                                  \
            fail_msg("%s: message '%s' lacks '%s'", #expr, sbx_last_error(), (fragment));           \
    } while (0)

static void test_bad_inputs(void **state) {
    (void)state;
    sbx_graph *g, *other;
    sbx_var *x, *y, *w, *ox, *v;
    OK(sbx_graph_create(&g));
    OK(sbx_graph_create(&other));
    BAD(sbx_graph_create(NULL), SBX_ERR_ARG, "out is NULL");
    sbx_type t = sbx_type_dense(SBX_FLOAT64, 1, (int64_t[]){3});
    OK(sbx_graph_input(g, "x", &t, &x));
    OK(sbx_graph_input(other, "ox", &t, &ox));
    /* types */
    sbx_type bad = t;
    bad.ndim = 9;
    BAD(sbx_graph_input(g, "b", &bad, &v), SBX_ERR_ARG, "ndim 9");
    bad = t;
    bad.shape[0] = -2;
    BAD(sbx_graph_input(g, "b", &bad, &v), SBX_ERR_ARG, "extent 0 is -2");
    bad = sbx_type_sparse(SBX_CSR, SBX_FLOAT32, 2, 2);
    bad.ndim = 3;
    BAD(sbx_graph_input(g, "b", &bad, &v), SBX_ERR_ARG, "2 dimensions");
    bad = t;
    bad.dtype = (sbx_dtype)42;
    BAD(sbx_graph_input(g, "b", &bad, &v), SBX_ERR_ARG, "dtype 42");
    BAD(sbx_graph_input(g, "b", NULL, &v), SBX_ERR_ARG, "type is NULL");
    BAD(sbx_graph_input(NULL, "b", &t, &v), SBX_ERR_ARG, "graph or out is NULL");
    /* values */
    sbx_value empty = {NULL, NULL};
    BAD(sbx_graph_shared(g, "w", &empty, &w), SBX_ERR_ARG, "empty");
    BAD(sbx_graph_shared(g, "w", NULL, &w), SBX_ERR_ARG, "NULL");
    BAD(sbx_graph_scalar(g, SBX_BOOL, 1, &v), SBX_ERR_ARG, "not a number type");
    BAD(sbx_graph_scalar(g, SBX_INT32, 0.5, &v), SBX_ERR_ARG, "scalar");
    sbx_type got;
    BAD(sbx_type_of(&empty, &got), SBX_ERR_ARG, "empty");
    sbx_array *arr;
    BAD(sbx_output_dense(NULL, SBX_FLOAT32, 0, NULL, 0, &arr), SBX_ERR_ARG, "NULL");
    char longname[5000];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    BAD(sbx_var_set_name(x, longname), SBX_ERR_ARG, "4999 characters");
    BAD(sbx_var_set_name(NULL, "n"), SBX_ERR_ARG, "NULL");
    /* apply */
    BAD(sbx_apply(g, NULL, NULL, 1, &x, &y), SBX_ERR_ARG, "op class is NULL");
    BAD(sbx_apply(g, &sbx_op_tanh, NULL, 1, &ox, &y), SBX_ERR_ARG, "another graph");
    sbx_var *none = NULL;
    BAD(sbx_apply(g, &sbx_op_tanh, NULL, 1, &none, &y), SBX_ERR_ARG, "input 0 is NULL");
    BAD(sbx_apply(g, &sbx_op_tanh, NULL, 9, (sbx_var *[9]){x}, &y), SBX_ERR_ARG, "at most 8");
    BAD(sbx_apply(g, &sbx_op_scale, NULL, 1, &x, &y), SBX_ERR_ARG, "properties are NULL");
    const sbx_op_class no_perform = {.name = "Broken", .make_node = negate_make_node};
    BAD(sbx_apply(g, &no_perform, NULL, 1, &x, &y), SBX_ERR_ARG, "needs a name, make_node and perform");
    /* the contract on a node */
    OK(sbx_apply(g, &sbx_op_tanh, NULL, 1, &x, &y));
    sbx_value wrong = dense(SBX_FLOAT32, 1, (int64_t[]){3}, NULL), out = {NULL, NULL};
    BAD(sbx_node_perform(sbx_var_owner(y), &wrong, &out, 0), SBX_ERR_ARG, "expected float64[3], got float32[3]");
    BAD(sbx_node_infer_shape(sbx_var_owner(y), &wrong, &got), SBX_ERR_ARG, "expected float64[3]");
    BAD(sbx_node_infer_shape(NULL, &wrong, &got), SBX_ERR_ARG, "NULL");
    sbx_var *gin;
    sbx_grad answer;
    const char *reason;
    BAD(sbx_node_grad(other, sbx_var_owner(y), &y, &gin, &answer, &reason), SBX_ERR_ARG, "another graph");
    BAD(sbx_node_grad(g, sbx_var_owner(y), NULL, &gin, &answer, &reason), SBX_ERR_ARG, "NULL");
    /* gradients */
    sbx_var *gr;
    BAD(sbx_gradient(g, NULL, 1, &x, 0, &gr), SBX_ERR_ARG, "NULL");
    BAD(sbx_gradient(g, ox, 1, &x, 0, &gr), SBX_ERR_ARG, "another graph");
    sbx_var *cost = ap(g, &sbx_op_sum, &(sbx_reduce_props){-1}, 1, y);
    BAD(sbx_gradient(g, cost, 1, &ox, 0, &gr), SBX_ERR_ARG, "wrt[0]");
    BAD(sbx_gradient(g, cost, -1, &x, 0, &gr), SBX_ERR_ARG, "nwrt -1");
    /* functions */
    sbx_function *f;
    BAD(sbx_function_compile(g, -1, &x, 1, &y, 0, NULL, 0, &f), SBX_ERR_ARG, "negative count");
    BAD(sbx_function_compile(g, 1, &y, 1, &y, 0, NULL, 0, &f), SBX_ERR_ARG, "is not a graph input");
    BAD(sbx_function_compile(g, 2, (sbx_var *[]){x, x}, 1, &y, 0, NULL, 0, &f), SBX_ERR_ARG, "the same variable");
    BAD(sbx_function_compile(g, 1, &ox, 1, &y, 0, NULL, 0, &f), SBX_ERR_ARG, "another graph");
    sbx_update to_input = {x, y};
    BAD(sbx_function_compile(g, 1, &x, 0, NULL, 1, &to_input, 0, &f), SBX_ERR_ARG, "not a shared variable");
    sbx_value wv = dense(SBX_FLOAT64, 1, (int64_t[]){3}, NULL);
    OK(sbx_graph_shared(g, "w", &wv, &w));
    sbx_update twice[2] = {{w, y}, {w, y}};
    BAD(sbx_function_compile(g, 1, &x, 0, NULL, 2, twice, 0, &f), SBX_ERR_ARG, "both assign to w");
    BAD(sbx_function_compile(g, 1, &x, 1, &y, 0, NULL, 0, NULL), SBX_ERR_ARG, "NULL");
    OK(sbx_function_compile(g, 1, &x, 1, &y, 0, NULL, 0, &f));
    BAD(sbx_function_call(f, NULL, &out), SBX_ERR_ARG, "NULL");
    BAD(sbx_function_call(NULL, &wrong, &out), SBX_ERR_ARG, "NULL");
    /* a shared value the caller broke between calls */
    sbx_function *fw;
    sbx_var *xw = ap(g, &sbx_op_mul, NULL, 2, x, w);
    OK(sbx_function_compile(g, 1, &x, 1, &xw, 0, NULL, 0, &fw));
    sbx_value in = dense(SBX_FLOAT64, 1, (int64_t[]){3}, NULL);
    OK(sbx_function_call(fw, &in, &out));
    sbx_value_clear(sbx_var_value(w));
    BAD(sbx_function_call(fw, &in, &out), SBX_ERR_ARG, "no longer holds a value of its type");
    sbx_value_clear(&in);
    sbx_function_free(fw);
    /* optimisers */
    sbx_update up[4];
    int nupd;
    sbx_var *lr;
    OK(sbx_graph_scalar(g, SBX_FLOAT64, 0.1, &lr));
    sbx_var *cw = ap(g, &sbx_op_sum, &(sbx_reduce_props){-1}, 1, xw);
    BAD(sbx_sgd(g, cw, 1, &w, lr, -1, up, &nupd), SBX_ERR_ARG, "momentum -1");
    BAD(sbx_adam(g, cw, 1, &w, lr, 1.5, 0.999, 1e-8, up, &nupd), SBX_ERR_ARG, "beta");
    BAD(sbx_sgd(g, cw, 1, &w, NULL, 0.9, up, &nupd), SBX_ERR_ARG, "NULL");
    /* seeing */
    BAD(sbx_graph_print(g, 1, &y, NULL), SBX_ERR_ARG, "NULL");
    BAD(sbx_graph_dot(g, 1, &ox, stderr), SBX_ERR_ARG, "another graph");
    sbx_value_clear(&wrong);
    sbx_function_free(f);
    sbx_graph_free(g);
    sbx_graph_free(other);
}

static void test_print(void **state) {
    (void)state;
    sbx_graph *g;
    OK(sbx_graph_create(&g));
    sbx_type t = sbx_type_dense(SBX_FLOAT64, 2, (int64_t[]){-1, 3});
    sbx_var *x, *y;
    OK(sbx_graph_input(g, "x", &t, &x));
    const sbx_scale_props half = {0.5};
    y = ap(g, &sbx_op_tanh, NULL, 1, ap(g, &sbx_op_scale, &half, 1, x));
    char buf[4096];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    OK(sbx_graph_print(g, 1, &y, f));
    fclose(f);
    assert_non_null(strstr(buf, "%0 x: input float64[?,3]"));
    assert_non_null(strstr(buf, "Scale{"));
    assert_non_null(strstr(buf, "Tanh{}(%1) -> float64[?,3]"));
    f = fmemopen(buf, sizeof buf, "w");
    OK(sbx_graph_dot(g, 1, &y, f));
    fclose(f);
    assert_non_null(strstr(buf, "digraph"));
    assert_non_null(strstr(buf, "v0 -> n0"));
    sbx_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_class_and_dropped_nodes), cmocka_unit_test(test_gradient_against_differences),
        cmocka_unit_test(test_sum_and_second_derivative),    cmocka_unit_test(test_undefined_and_disconnected),
        cmocka_unit_test(test_random_determinism),           cmocka_unit_test(test_updates_at_once),
        cmocka_unit_test(test_training),                     cmocka_unit_test(test_print),
        cmocka_unit_test(test_allocation_failures),          cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
