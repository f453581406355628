/* Tests of the dense op classes and the optimiser steps (src/op/dense_*.c, src/op/optim.c), through
 * the contract on single nodes: values against plain loops, numpy broadcasting, the loss against its
 * formula, make_node's refusals and their messages, output storage reuse, the same bits at 1 and 2
 * threads above the parallel thresholds, every gradient against float64 central differences, second
 * derivatives, the step ops against a plain Adam and SGD, and the builders sbx_sgd and sbx_adam. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "op/internal.h"
#include "sparsebox/op.h"

#define S(...) ((const int64_t[]){__VA_ARGS__})
#define H 1e-5        /* central difference step */
#define GRAD_TOL 1e-6 /* relative error of a gradient */

/* --- Data ------------------------------------------------------------------------------------------ */
static uint64_t seed_state = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* [-1, 1) */
    seed_state = seed_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(seed_state >> 11) * 0x1.0p-53 * 2 - 1;
}

static sbx_array *make(sbx_dtype dt, int ndim, const int64_t *shape) {
    sbx_array *a;
    assert_int_equal(sbx_array_create(dt, ndim, shape, &a), SBX_OK);
    return a;
}

static double get(const sbx_array *a, int64_t i) { return sbx__get_f64(a->data, a->dtype, i); }

static void set(sbx_array *a, int64_t i, double v) {
    switch (a->dtype) {
    case SBX_FLOAT32: ((float *)a->data)[i] = (float)v; break;
    case SBX_FLOAT64: ((double *)a->data)[i] = v; break;
    case SBX_INT32: ((int32_t *)a->data)[i] = (int32_t)v; break;
    case SBX_INT64: ((int64_t *)a->data)[i] = (int64_t)v; break;
    case SBX_UINT8: ((uint8_t *)a->data)[i] = (uint8_t)v; break;
    case SBX_INT16: ((int16_t *)a->data)[i] = (int16_t)v; break;
    default: fail_msg("set: dtype %d", (int)a->dtype);
    }
}

/* Uniform in [-1, 1), pushed at least `gap` away from 0 (for Relu's kink). */
static sbx_array *rnd(sbx_dtype dt, int ndim, const int64_t *shape, double gap) {
    sbx_array *a = make(dt, ndim, shape);
    for (int64_t i = 0; i < sbx_array_numel(a); i++) {
        const double u = urand();
        set(a, i, (u < 0 ? -1 : 1) * (gap + (1 - gap) * fabs(u)));
    }
    return a;
}

static sbx_value V(sbx_array *a) {
    sbx_value v = {a, NULL};
    return v;
}

/* The status, and a message holding `needle`. */
static void expect_error(sbx_status got, sbx_status want, const char *needle) {
    assert_int_equal(got, want);
    if (!strstr(sbx_last_error(), needle)) fail_msg("message '%s' lacks '%s'", sbx_last_error(), needle);
}

static void expect_close(double got, double want, double tol, const char *what, int64_t i) {
    if (!(fabs(got - want) <= tol * fmax(1, fabs(want))))
        fail_msg("%s[%lld]: %.17g, expected %.17g", what, (long long)i, got, want);
}

/* --- Graphs ---------------------------------------------------------------------------------------- */
static sbx_graph *graph(void) {
    sbx_graph *g;
    assert_int_equal(sbx_graph_create(&g), SBX_OK);
    return g;
}

static sbx_var *input(sbx_graph *g, sbx_dtype dt, int ndim, const int64_t *shape) {
    sbx_type t = sbx_type_dense(dt, ndim, shape);
    sbx_var *v;
    assert_int_equal(sbx_graph_input(g, NULL, &t, &v), SBX_OK);
    return v;
}

static sbx_status try_apply(sbx_graph *g, const sbx_op_class *cls, const void *props, int nin, sbx_var *a, sbx_var *b,
                            sbx_var *c, sbx_var **out) {
    sbx_var *in[3] = {a, b, c};
    return sbx_apply(g, cls, props, nin, in, out);
}

static sbx_var *apply(sbx_graph *g, const sbx_op_class *cls, const void *props, int nin, sbx_var *a, sbx_var *b,
                      sbx_var *c) {
    sbx_var *out;
    sbx_status st = try_apply(g, cls, props, nin, a, b, c, &out);
    if (st != SBX_OK) fail_msg("%s: %s", cls->name, sbx_last_error());
    return out;
}

static sbx_node *node_of(sbx_var *v) { return sbx_var_owner(v); }

/* Output 0 of the node on the given arrays, into out (storage kept by the caller). */
static void perform(const sbx_node *n, sbx_array *const *x, sbx_value *out) {
    sbx_value in[SBX_OP_MAX_INPUTS];
    for (int i = 0; i < n->nin; i++) in[i] = V(x[i]);
    sbx_status st = sbx_node_perform(n, in, out, 1);
    if (st != SBX_OK) fail_msg("%s: %s", n->op.cls->name, sbx_last_error());
}

/* A fresh copy of output 0 of the node on the given arrays. */
static sbx_array *run(const sbx_node *n, sbx_array *const *x) {
    sbx_value out[SBX_OP_MAX_OUTPUTS];
    memset(out, 0, sizeof out);
    perform(n, x, out);
    for (int j = 1; j < SBX_OP_MAX_OUTPUTS; j++) sbx_value_clear(&out[j]);
    return out[0].dense;
}

static sbx_array *run1(const sbx_node *n, sbx_array *a) { return run(n, &a); }
static sbx_array *run2(const sbx_node *n, sbx_array *a, sbx_array *b) {
    sbx_array *x[2] = {a, b};
    return run(n, x);
}

/* The value of `want` with the inputs bound, performing g's nodes in creation order (a node runs once
 * every input has a value); a copy for the caller to free. */
typedef struct binding {
    sbx_var *var;
    sbx_array *value;
} binding;

static sbx_array *evaluate(sbx_graph *g, int nb, const binding *b, sbx_var *want) {
    sbx_value *vals = calloc((size_t)g->nvars, sizeof *vals);
    char *owned = calloc((size_t)g->nvars, 1), *have = calloc((size_t)g->nvars, 1);
    assert_non_null(vals);
    assert_non_null(owned);
    assert_non_null(have);
    for (int i = 0; i < g->nvars; i++) {
        sbx_var *v = g->vars[i];
        if (v->role == VAR_SHARED || v->role == VAR_CONSTANT) {
            vals[i] = v->value;
            have[i] = 1;
        }
    }
    for (int k = 0; k < nb; k++) {
        vals[b[k].var->id] = V(b[k].value);
        have[b[k].var->id] = 1;
    }
    for (int t = 0; t < g->nnodes && !have[want->id]; t++) {
        const sbx_node *n = g->nodes[t];
        sbx_value in[SBX_OP_MAX_INPUTS], out[SBX_OP_MAX_OUTPUTS];
        int ready = 1;
        for (int i = 0; i < n->nin; i++) {
            ready &= have[n->in[i]->id];
            in[i] = vals[n->in[i]->id];
        }
        if (!ready) continue;
        memset(out, 0, sizeof out);
        if (sbx_node_perform(n, in, out, 7) != SBX_OK)
            fail_msg("node %d %s: %s", n->id, n->op.cls->name, sbx_last_error());
        for (int j = 0; j < n->nout; j++) {
            vals[n->out[j]->id] = out[j];
            owned[n->out[j]->id] = have[n->out[j]->id] = 1;
        }
    }
    if (!have[want->id]) fail_msg("evaluate: variable %d has no value", want->id);
    sbx_array *copy;
    assert_int_equal(sbx_array_copy(vals[want->id].dense, &copy), SBX_OK);
    for (int i = 0; i < g->nvars; i++)
        if (owned[i]) sbx_value_clear(&vals[i]);
    free(vals);
    free(owned);
    free(have);
    return copy;
}

/* d cost / d wrt by reverse mode over the nodes g has now, through each node's grad (a second
 * derivative's own small sbx_gradient, so these tests lean on nothing but the classes under test). */
static sbx_var *reverse(sbx_graph *g, sbx_var *cost, sbx_var *wrt) {
    const int nnodes = g->nnodes, nvars = g->nvars;
    sbx_var **total = calloc((size_t)nvars, sizeof *total);
    assert_non_null(total);
    assert_int_equal(sbx_graph_scalar(g, cost->type.dtype, 1, &total[cost->id]), SBX_OK);
    for (int t = nnodes - 1; t >= 0; t--) {
        const sbx_node *n = g->nodes[t];
        sbx_var *gout[SBX_OP_MAX_OUTPUTS], *gin[SBX_OP_MAX_INPUTS];
        sbx_grad ans[SBX_OP_MAX_INPUTS];
        const char *why[SBX_OP_MAX_INPUTS];
        int any = 0;
        for (int j = 0; j < n->nout; j++) any |= (gout[j] = total[n->out[j]->id]) != NULL;
        if (!any) continue;
        if (sbx_node_grad(g, n, gout, gin, ans, why) != SBX_OK) fail_msg("%s: %s", n->op.cls->name, sbx_last_error());
        for (int i = 0; i < n->nin; i++) {
            if (ans[i] != SBX_GRAD_DEFINED) continue;
            sbx_var **to = &total[n->in[i]->id];
            const sbx_add_props plus = {1, 1};
            *to = *to ? apply(g, &sbx_op_add, &plus, 2, *to, gin[i], NULL) : gin[i];
        }
    }
    sbx_var *out = total[wrt->id];
    free(total);
    assert_non_null(out);
    return out;
}

/* sum(G * output 0 of n on x) */
static double weighted(const sbx_node *n, sbx_array *const *x, const sbx_array *G) {
    sbx_array *y = run(n, x);
    double s = 0;
    for (int64_t i = 0; i < sbx_array_numel(y); i++) s += get(G, i) * get(y, i);
    sbx_array_free(y);
    return s;
}

/* Every float input of n (one output, its inputs the graph inputs valued by x) with a defined gradient:
 * the gradient nodes given a random G against central differences of sum(G * n(x)). Returns how many
 * inputs were checked. */
static int check_grad(sbx_graph *g, const sbx_node *n, sbx_array *const *x) {
    sbx_value vin[SBX_OP_MAX_INPUTS];
    sbx_type ot;
    for (int i = 0; i < n->nin; i++) vin[i] = V(x[i]);
    assert_int_equal(sbx_node_infer_shape(n, vin, &ot), SBX_OK);
    sbx_array *G = rnd(ot.dtype, ot.ndim, ot.shape, 0);
    sbx_var *gv = input(g, ot.dtype, ot.ndim, ot.shape), *gin[SBX_OP_MAX_INPUTS];
    sbx_grad ans[SBX_OP_MAX_INPUTS];
    const char *why[SBX_OP_MAX_INPUTS];
    if (sbx_node_grad(g, n, &gv, gin, ans, why) != SBX_OK) fail_msg("%s grad: %s", n->op.cls->name, sbx_last_error());
    binding b[SBX_OP_MAX_INPUTS + 1];
    for (int i = 0; i < n->nin; i++) b[i] = (binding){n->in[i], x[i]};
    b[n->nin] = (binding){gv, G};
    int checked = 0;
    for (int i = 0; i < n->nin; i++) {
        if (ans[i] != SBX_GRAD_DEFINED || !sbx__is_float(x[i]->dtype)) continue;
        sbx_array *an = evaluate(g, n->nin + 1, b, gin[i]);
        assert_int_equal(an->ndim, x[i]->ndim);
        for (int d = 0; d < an->ndim; d++) assert_int_equal(an->shape[d], x[i]->shape[d]);
        for (int64_t e = 0; e < sbx_array_numel(x[i]); e++) {
            const double keep = get(x[i], e);
            set(x[i], e, keep + H);
            const double fp = weighted(n, x, G);
            set(x[i], e, keep - H);
            const double fm = weighted(n, x, G);
            set(x[i], e, keep);
            const double num = (fp - fm) / (2 * H), a = get(an, e);
            const double rel = fabs(a - num) / fmax(1e-2, fmax(fabs(a), fabs(num)));
            if (rel > GRAD_TOL)
                fail_msg("%s: d/d input %d [%lld]: %.12g analytic, %.12g numeric (relative error %.3g)",
                         n->op.cls->name, i, (long long)e, a, num, rel);
        }
        sbx_array_free(an);
        checked++;
    }
    sbx_array_free(G);
    return checked;
}

/* Broadcast index: the flat index into an array of shape (ndim, shape) of output element o (of
 * out shape (nd, os)), numpy's rules. */
static int64_t bindex(int64_t o, int nd, const int64_t *os, int ndim, const int64_t *shape) {
    int64_t idx = 0, stride = 1;
    for (int d = nd - 1; d >= 0; d--) {
        const int64_t i = o % os[d];
        o /= os[d];
        const int da = d - (nd - ndim);
        if (da >= 0) {
            if (shape[da] != 1) idx += i * stride;
            stride *= shape[da];
        }
    }
    return idx;
}

/* --- Values ------------------------------------------------------------------------------------------ */
static void test_unary_values(void **state) {
    (void)state;
    for (int t = 0; t < 2; t++) {
        const sbx_dtype dt = t ? SBX_FLOAT64 : SBX_FLOAT32;
        const double tol = t ? 1e-15 : 1e-6;
        sbx_graph *g = graph();
        sbx_var *x = input(g, dt, 2, S(7, 5));
        const sbx_scale_props sc = {-2.5};
        sbx_node *ns = node_of(apply(g, &sbx_op_scale, &sc, 1, x, NULL, NULL));
        sbx_node *nt = node_of(apply(g, &sbx_op_tanh, NULL, 1, x, NULL, NULL));
        sbx_node *nr = node_of(apply(g, &sbx_op_relu, NULL, 1, x, NULL, NULL));
        sbx_var *gv = input(g, dt, 2, S(7, 5));
        sbx_node *nrg = node_of(apply(g, &sbx_op_relu_grad, NULL, 2, x, gv, NULL));
        sbx_array *a = rnd(dt, 2, S(7, 5), 0), *b = rnd(dt, 2, S(7, 5), 0);
        set(a, 3, 0);
        sbx_array *ys = run1(ns, a), *yt = run1(nt, a), *yr = run1(nr, a), *yg = run2(nrg, a, b);
        for (int64_t i = 0; i < 35; i++) {
            const double v = get(a, i);
            expect_close(get(ys, i), -2.5 * v, tol, "scale", i);
            expect_close(get(yt, i), tanh(v), tol, "tanh", i);
            assert_true(get(yr, i) == (v > 0 ? v : 0));
            assert_true(get(yg, i) == (v > 0 ? get(b, i) : 0));
        }
        sbx_array_free(ys);
        sbx_array_free(yt);
        sbx_array_free(yr);
        sbx_array_free(yg);
        sbx_array_free(a);
        sbx_array_free(b);
        sbx_graph_free(g);
    }
}

/* Add and Mul over shapes that broadcast, against numpy's rule written out. */
static void test_broadcast_values(void **state) {
    (void)state;
    static const struct {
        int na;
        int64_t a[4];
        int nb;
        int64_t b[4];
    } cases[] = {
        {2, {3, 4}, 2, {3, 4}},          {2, {3, 4}, 1, {4}}, {1, {4}, 2, {3, 4}}, {2, {3, 1}, 2, {1, 4}},
        {3, {2, 3, 4}, 2, {3, 1}},       {0, {0}, 2, {2, 3}}, {2, {2, 3}, 0, {0}}, {3, {2, 1, 4}, 3, {1, 3, 1}},
        {4, {2, 1, 3, 1}, 3, {5, 1, 2}}, {2, {1, 1}, 1, {1}}, {2, {0, 3}, 1, {3}}, {3, {4, 1, 5}, 3, {4, 6, 5}},
    };
    for (int t = 0; t < 2; t++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const sbx_dtype dt = t ? SBX_FLOAT64 : SBX_FLOAT32;
            sbx_graph *g = graph();
            sbx_var *va = input(g, dt, cases[c].na, cases[c].a), *vb = input(g, dt, cases[c].nb, cases[c].b);
            const sbx_add_props ap = {0.5, -3}, one = {1, 1};
            sbx_var *sum = apply(g, &sbx_op_add, &ap, 2, va, vb, NULL);
            sbx_node *nadd = node_of(sum), *nplus = node_of(apply(g, &sbx_op_add, &one, 2, va, vb, NULL));
            sbx_node *nmul = node_of(apply(g, &sbx_op_mul, NULL, 2, va, vb, NULL));
            const sbx_type *ot = sbx_var_type(sum);
            sbx_array *a = rnd(dt, cases[c].na, cases[c].a, 0), *b = rnd(dt, cases[c].nb, cases[c].b, 0);
            sbx_array *ya = run2(nadd, a, b), *yp = run2(nplus, a, b), *ym = run2(nmul, a, b);
            assert_int_equal(ya->ndim, ot->ndim);
            for (int d = 0; d < ot->ndim; d++) assert_int_equal(ya->shape[d], ot->shape[d]);
            for (int64_t o = 0; o < sbx_array_numel(ya); o++) {
                const double x = get(a, bindex(o, ya->ndim, ya->shape, a->ndim, a->shape));
                const double y = get(b, bindex(o, ya->ndim, ya->shape, b->ndim, b->shape));
                if (t) {
                    assert_true(get(ya, o) == 0.5 * x + -3 * y);
                    assert_true(get(yp, o) == x + y);
                    assert_true(get(ym, o) == x * y);
                } else {
                    assert_true(get(ya, o) == (double)(0.5f * (float)x + -3.0f * (float)y));
                    assert_true(get(yp, o) == (double)((float)x + (float)y));
                    assert_true(get(ym, o) == (double)((float)x * (float)y));
                }
            }
            sbx_array_free(ya);
            sbx_array_free(yp);
            sbx_array_free(ym);
            sbx_array_free(a);
            sbx_array_free(b);
            sbx_graph_free(g);
        }
}

/* make_node's static broadcasting with unknown extents, and the check left to perform. */
static void test_broadcast_types(void **state) {
    (void)state;
    sbx_graph *g = graph();
    const sbx_add_props one = {1, 1};
    static const struct {
        int na;
        int64_t a[3];
        int nb;
        int64_t b[3];
        int nout;
        int64_t out[3];
    } cases[] = {
        {2, {-1, 4}, 1, {4}, 2, {-1, 4}},
        {1, {-1}, 1, {5}, 1, {5}},
        {1, {-1}, 1, {1}, 1, {-1}},
        {1, {3}, 1, {-1}, 1, {3}},
        {1, {-1}, 1, {-1}, 1, {-1}},
        {2, {1, -1}, 2, {-1, 1}, 2, {-1, -1}},
        {2, {2, -1}, 3, {-1, 1, 6}, 3, {-1, 2, 6}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sbx_var *va = input(g, SBX_FLOAT32, cases[c].na, cases[c].a),
                *vb = input(g, SBX_FLOAT32, cases[c].nb, cases[c].b);
        const sbx_type *t = sbx_var_type(apply(g, &sbx_op_mul, NULL, 2, va, vb, NULL));
        assert_int_equal(t->ndim, cases[c].nout);
        for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], cases[c].out[d]);
    }
    sbx_var *a3 = input(g, SBX_FLOAT32, 1, S(3)), *b4 = input(g, SBX_FLOAT32, 1, S(4)), *out;
    expect_error(try_apply(g, &sbx_op_add, &one, 2, a3, b4, NULL, &out), SBX_ERR_ARG,
                 "Add: input 1 (b): expected a shape that broadcasts with float32[3] (input 0, a), got float32[4]");
    /* unknown at make_node, wrong at perform */
    sbx_var *au = input(g, SBX_FLOAT32, 1, S(-1));
    sbx_node *n = node_of(apply(g, &sbx_op_add, &one, 2, au, b4, NULL));
    sbx_array *x = rnd(SBX_FLOAT32, 1, S(3), 0), *y = rnd(SBX_FLOAT32, 1, S(4), 0);
    sbx_value in[2] = {V(x), V(y)}, o = {NULL, NULL};
    expect_error(sbx_node_perform(n, in, &o, 0), SBX_ERR_ARG, "broadcasts with float32[3]");
    sbx_type it;
    expect_error(sbx_node_infer_shape(n, in, &it), SBX_ERR_ARG, "got float32[4]");
    sbx_array_free(x);
    sbx_array_free(y);
    sbx_value_clear(&o);
    sbx_graph_free(g);
}

static void test_dot_values(void **state) {
    (void)state;
    const int64_t m = 5, k = 7, n = 3;
    for (int t = 0; t < 2; t++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                const sbx_dtype dt = t ? SBX_FLOAT64 : SBX_FLOAT32;
                sbx_graph *g = graph();
                const int64_t sa[2] = {ta ? k : m, ta ? m : k}, sb[2] = {tb ? n : k, tb ? k : n};
                sbx_var *va = input(g, dt, 2, sa), *vb = input(g, dt, 2, sb);
                const sbx_dot_props p = {ta, tb};
                sbx_var *c = apply(g, &sbx_op_dot, &p, 2, va, vb, NULL);
                assert_int_equal(sbx_var_type(c)->shape[0], m);
                assert_int_equal(sbx_var_type(c)->shape[1], n);
                sbx_array *a = rnd(dt, 2, sa, 0), *b = rnd(dt, 2, sb, 0), *y = run2(node_of(c), a, b);
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) {
                        double s = 0;
                        for (int64_t q = 0; q < k; q++)
                            s += get(a, ta ? q * m + i : i * k + q) * get(b, tb ? j * k + q : q * n + j);
                        expect_close(get(y, i * n + j), s, t ? 1e-14 : 1e-5, "dot", i * n + j);
                    }
                sbx_array_free(a);
                sbx_array_free(b);
                sbx_array_free(y);
                sbx_graph_free(g);
            }
    /* k = 0: zeros; m = 0: empty */
    sbx_graph *g = graph();
    const sbx_dot_props p = {0, 0};
    sbx_node *nz = node_of(
        apply(g, &sbx_op_dot, &p, 2, input(g, SBX_FLOAT64, 2, S(2, 0)), input(g, SBX_FLOAT64, 2, S(0, 3)), NULL));
    sbx_array *a = make(SBX_FLOAT64, 2, S(2, 0)), *b = make(SBX_FLOAT64, 2, S(0, 3));
    sbx_value in[2] = {V(a), V(b)}, o = {NULL, NULL};
    sbx_array *junk = make(SBX_FLOAT64, 2, S(2, 3));
    for (int i = 0; i < 6; i++) set(junk, i, 9);
    o.dense = junk;
    assert_int_equal(sbx_node_perform(nz, in, &o, 0), SBX_OK);
    assert_ptr_equal(o.dense, junk);
    for (int i = 0; i < 6; i++) assert_true(get(o.dense, i) == 0);
    sbx_value_clear(&o);
    sbx_array_free(a);
    sbx_array_free(b);
    /* refusals */
    sbx_var *out, *m2 = input(g, SBX_FLOAT32, 2, S(2, 3)), *m3 = input(g, SBX_FLOAT32, 2, S(4, 5));
    expect_error(
        try_apply(g, &sbx_op_dot, &p, 2, m2, m3, NULL, &out), SBX_ERR_ARG,
        "Dot: input 1 (b): expected b with 3 rows (the columns of float32[2,3], input 0, a), got float32[4,5]");
    const sbx_dot_props pt = {1, 1};
    expect_error(try_apply(g, &sbx_op_dot, &pt, 2, m2, m3, NULL, &out), SBX_ERR_ARG, "expected b^T with 2 rows");
    expect_error(try_apply(g, &sbx_op_dot, &p, 2, input(g, SBX_FLOAT32, 1, S(3)), m3, NULL, &out), SBX_ERR_ARG,
                 "Dot: input 0 (a): expected a dense float32 or float64 array of 2 dimensions, got float32[3]");
    /* unknown inner extents pass make_node and are checked at perform */
    sbx_node *nu = node_of(apply(g, &sbx_op_dot, &p, 2, input(g, SBX_FLOAT32, 2, S(2, -1)), m3, NULL));
    sbx_array *x = make(SBX_FLOAT32, 2, S(2, 3)), *y = make(SBX_FLOAT32, 2, S(4, 5));
    sbx_value in2[2] = {V(x), V(y)};
    expect_error(sbx_node_perform(nu, in2, &o, 0), SBX_ERR_ARG, "expected b with 3 rows");
    sbx_value_clear(&o);
    sbx_array_free(x);
    sbx_array_free(y);
    sbx_graph_free(g);
}

static void test_reduce_values(void **state) {
    (void)state;
    const int64_t sh[3] = {3, 4, 5};
    for (int t = 0; t < 2; t++) {
        const sbx_dtype dt = t ? SBX_FLOAT64 : SBX_FLOAT32;
        const double tol = t ? 1e-14 : 1e-5;
        sbx_graph *g = graph();
        sbx_var *x = input(g, dt, 3, sh);
        sbx_array *a = rnd(dt, 3, sh, 0);
        for (int axis = -1; axis < 3; axis++)
            for (int mean = 0; mean < 2; mean++) {
                const sbx_reduce_props p = {axis};
                sbx_var *r = apply(g, mean ? &sbx_op_mean : &sbx_op_sum, &p, 1, x, NULL, NULL);
                const sbx_type *rt = sbx_var_type(r);
                assert_int_equal(rt->ndim, axis < 0 ? 0 : 3);
                if (axis >= 0) assert_int_equal(rt->shape[axis], 1);
                sbx_array *y = run1(node_of(r), a);
                for (int64_t o = 0; o < sbx_array_numel(y); o++) {
                    double s = 0;
                    int64_t cnt = 0;
                    for (int64_t e = 0; e < 60; e++) {
                        const int64_t i0 = e / 20, i1 = e / 5 % 4, i2 = e % 5;
                        const int64_t oi = axis == 0   ? i1 * 5 + i2
                                           : axis == 1 ? i0 * 5 + i2
                                           : axis == 2 ? i0 * 4 + i1
                                                       : 0;
                        if (axis >= 0 && oi != o) continue;
                        s += get(a, e);
                        cnt++;
                    }
                    expect_close(get(y, o), mean ? s / (double)cnt : s, tol, "reduce", o);
                }
                sbx_array_free(y);
            }
        /* SumTo and BroadcastLike, each against the broadcast index */
        static const struct {
            int nx;
            int64_t x[3];
            int nl;
            int64_t l[3];
        } cases[] = {{2, {3, 4}, 1, {4}},          {2, {3, 4}, 2, {3, 1}},    {3, {2, 3, 4}, 2, {3, 1}},
                     {3, {2, 3, 4}, 0, {0}},       {2, {2, 3}, 2, {2, 3}},    {3, {2, 3, 4}, 3, {1, 3, 1}},
                     {3, {2, 3, 4}, 3, {2, 1, 4}}, {3, {5, 1, 4}, 2, {1, 4}}, {2, {3, 4}, 2, {1, 1}}};
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (int mean = 0; mean < 2; mean++) {
                const sbx_broadcast_props bp = {mean};
                sbx_var *vx = input(g, dt, cases[c].nx, cases[c].x), *vl = input(g, dt, cases[c].nl, cases[c].l);
                sbx_node *nst = node_of(apply(g, &sbx_op_sum_to, &bp, 2, vx, vl, NULL));
                sbx_node *nbl = node_of(apply(g, &sbx_op_broadcast_like, &bp, 2, vl, vx, NULL));
                sbx_array *xa = rnd(dt, cases[c].nx, cases[c].x, 0), *la = rnd(dt, cases[c].nl, cases[c].l, 0);
                sbx_array *st = run2(nst, xa, la), *bl = run2(nbl, la, xa);
                const int64_t nxe = sbx_array_numel(xa), nle = sbx_array_numel(la), r = nxe / nle;
                double *ref = calloc((size_t)nle, sizeof *ref);
                for (int64_t o = 0; o < nxe; o++) {
                    const int64_t li = bindex(o, xa->ndim, xa->shape, la->ndim, la->shape);
                    ref[li] += get(xa, o);
                    expect_close(get(bl, o), mean ? get(la, li) / (double)r : get(la, li), tol, "broadcast_like", o);
                }
                assert_int_equal(st->ndim, la->ndim);
                for (int64_t li = 0; li < nle; li++)
                    expect_close(get(st, li), mean ? ref[li] / (double)r : ref[li], tol, "sum_to", li);
                free(ref);
                sbx_array_free(st);
                sbx_array_free(bl);
                sbx_array_free(xa);
                sbx_array_free(la);
            }
        sbx_array_free(a);
        sbx_graph_free(g);
    }
    /* empty sums: 0, and NaN for a mean */
    sbx_graph *g = graph();
    const sbx_reduce_props all = {-1}, ax0 = {0};
    sbx_var *e = input(g, SBX_FLOAT64, 2, S(0, 3));
    sbx_array *ea = make(SBX_FLOAT64, 2, S(0, 3));
    sbx_array *s0 = run1(node_of(apply(g, &sbx_op_sum, &all, 1, e, NULL, NULL)), ea);
    sbx_array *m0 = run1(node_of(apply(g, &sbx_op_mean, &ax0, 1, e, NULL, NULL)), ea);
    assert_true(get(s0, 0) == 0);
    assert_int_equal(m0->shape[1], 3);
    assert_true(isnan(get(m0, 2)));
    sbx_array_free(s0);
    sbx_array_free(m0);
    sbx_array_free(ea);
    /* refusals */
    sbx_var *out, *x2 = input(g, SBX_FLOAT32, 2, S(3, 4));
    const sbx_reduce_props bad = {2}, worse = {-2};
    const sbx_broadcast_props bp = {0};
    expect_error(try_apply(g, &sbx_op_sum, &bad, 1, x2, NULL, NULL, &out), SBX_ERR_ARG,
                 "Sum: input 0 (x): expected an array with an axis 2 (axis -1: over every element), got float32[3,4]");
    expect_error(try_apply(g, &sbx_op_mean, &worse, 1, x2, NULL, NULL, &out), SBX_ERR_ARG, "Mean: input 0 (x)");
    expect_error(
        try_apply(g, &sbx_op_sum_to, &bp, 2, x2, input(g, SBX_FLOAT32, 1, S(3)), NULL, &out), SBX_ERR_ARG,
        "SumTo: input 1 (like): expected a shape that broadcasts to float32[3,4] (input 0, x), got float32[3]");
    expect_error(try_apply(g, &sbx_op_sum_to, &bp, 2, input(g, SBX_FLOAT32, 1, S(4)), x2, NULL, &out), SBX_ERR_ARG,
                 "got float32[3,4]");
    expect_error(try_apply(g, &sbx_op_broadcast_like, &bp, 2, x2, input(g, SBX_FLOAT32, 2, S(2, 4)), NULL, &out),
                 SBX_ERR_ARG,
                 "BroadcastLike: input 0 (x): expected a shape that broadcasts to float32[2,4] (input 1, like)");
    expect_error(try_apply(g, &sbx_op_sum_to, &bp, 2, x2, input(g, SBX_FLOAT64, 1, S(4)), NULL, &out), SBX_ERR_ARG,
                 "SumTo: input 1 (like): expected float32 like input 0 (x), got float64[4]");
    /* unknown extents that could match are accepted */
    const sbx_type *ts = sbx_var_type(
        apply(g, &sbx_op_sum_to, &bp, 2, input(g, SBX_FLOAT32, 2, S(-1, 4)), input(g, SBX_FLOAT32, 1, S(-1)), NULL));
    assert_int_equal(ts->ndim, 1);
    assert_int_equal(ts->shape[0], -1);
    const sbx_type *tb = sbx_var_type(apply(g, &sbx_op_broadcast_like, &bp, 2, input(g, SBX_FLOAT32, 1, S(4)),
                                            input(g, SBX_FLOAT32, 2, S(3, -1)), NULL));
    assert_int_equal(tb->shape[0], 3);
    assert_int_equal(tb->shape[1], 4);
    sbx_graph_free(g);
}

static void test_reshape_zeros_like(void **state) {
    (void)state;
    sbx_graph *g = graph();
    sbx_var *x = input(g, SBX_INT32, 2, S(4, 6)), *out;
    const sbx_reshape_props r1 = {3, {2, -1, 3}};
    sbx_var *y = apply(g, &sbx_op_reshape, &r1, 1, x, NULL, NULL);
    assert_int_equal(sbx_var_type(y)->shape[1], 4);
    assert_int_equal(sbx_var_type(y)->dtype, SBX_INT32);
    sbx_array *a = make(SBX_INT32, 2, S(4, 6));
    for (int i = 0; i < 24; i++) set(a, i, i * 7 - 3);
    sbx_array *ya = run1(node_of(y), a);
    assert_int_equal(ya->ndim, 3);
    assert_int_equal(ya->shape[1], 4);
    assert_memory_equal(ya->data, a->data, 24 * sizeof(int32_t));
    sbx_array_free(ya);
    /* unknown input: the inferred extent is unknown until perform */
    sbx_var *xu = input(g, SBX_FLOAT32, 2, S(-1, 4));
    const sbx_reshape_props r2 = {2, {-1, 2}}, r3 = {1, {12}}, r4 = {1, {6}};
    sbx_var *yu = apply(g, &sbx_op_reshape, &r2, 1, xu, NULL, NULL);
    assert_int_equal(sbx_var_type(yu)->shape[0], -1);
    sbx_array *f = rnd(SBX_FLOAT32, 2, S(3, 4), 0);
    sbx_value in = V(f);
    sbx_type it;
    assert_int_equal(sbx_node_infer_shape(node_of(yu), &in, &it), SBX_OK);
    assert_int_equal(it.shape[0], 6);
    assert_int_equal(it.shape[1], 2);
    sbx_node *n12 = node_of(apply(g, &sbx_op_reshape, &r3, 1, xu, NULL, NULL));
    sbx_array *y12 = run1(n12, f);
    assert_int_equal(y12->shape[0], 12);
    sbx_array_free(y12);
    /* refusals */
    const sbx_reshape_props two = {2, {-1, -1}}, bad = {2, {5, 5}}, neg = {1, {-3}}, odd = {2, {-1, 5}};
    expect_error(try_apply(g, &sbx_op_reshape, &two, 1, x, NULL, NULL, &out), SBX_ERR_ARG,
                 "Reshape: the target has more than one extent -1");
    expect_error(try_apply(g, &sbx_op_reshape, &bad, 1, x, NULL, NULL, &out), SBX_ERR_ARG,
                 "Reshape: input 0 (x): expected 25 elements, got int32[4,6]");
    expect_error(try_apply(g, &sbx_op_reshape, &neg, 1, x, NULL, NULL, &out), SBX_ERR_ARG, "target extent 0 is -3");
    expect_error(try_apply(g, &sbx_op_reshape, &odd, 1, x, NULL, NULL, &out), SBX_ERR_ARG, "got int32[4,6]");
    expect_error(try_apply(g, &sbx_op_reshape, &r4, 1, xu, NULL, NULL, &out), SBX_ERR_ARG,
                 "known extents rule that out");
    sbx_value o = {NULL, NULL};
    sbx_node *n6 = node_of(apply(g, &sbx_op_reshape, &r2, 1, input(g, SBX_FLOAT32, 2, S(-1, 3)), NULL, NULL));
    sbx_array *f3 = rnd(SBX_FLOAT32, 2, S(3, 3), 0);
    sbx_value in3 = V(f3);
    expect_error(sbx_node_perform(n6, &in3, &o, 0), SBX_ERR_ARG, "got float32[3,3]");
    sbx_value_clear(&o);
    sbx_array_free(f3);
    /* ZerosLike: any dtype, all zero, disconnected */
    sbx_var *z = apply(g, &sbx_op_zeros_like, NULL, 1, x, NULL, NULL);
    assert_true(sbx_type_equal(sbx_var_type(z), sbx_var_type(x)));
    sbx_array *za = run1(node_of(z), a);
    for (int i = 0; i < 24; i++) assert_true(get(za, i) == 0);
    int pattern = 1;
    sbx_node_connection_pattern(node_of(z), &pattern);
    assert_int_equal(pattern, 0);
    sbx_var *gz = input(g, SBX_INT32, 2, S(4, 6)), *gin;
    sbx_grad ans;
    const char *why;
    assert_int_equal(sbx_node_grad(g, node_of(z), &gz, &gin, &ans, &why), SBX_OK);
    assert_int_equal(ans, SBX_GRAD_DISCONNECTED);
    sbx_type sp = sbx_type_sparse(SBX_CSR, SBX_FLOAT32, 3, 3);
    sbx_var *s;
    assert_int_equal(sbx_graph_input(g, "s", &sp, &s), SBX_OK);
    /* A sparse x: its structure, every stored value 0 (the zero gradient of a sparse variable). */
    assert_int_equal(try_apply(g, &sbx_op_zeros_like, NULL, 1, s, NULL, NULL, &out), SBX_OK);
    assert_true(sbx_type_equal(sbx_var_type(out), &sp));
    sbx_sparse *m;
    assert_int_equal(sbx_sparse_create(SBX_CSR, SBX_FLOAT32, 3, 3, 2, &m), SBX_OK);
    const int64_t ip[4] = {0, 1, 1, 2}, ix[2] = {2, 0};
    memcpy(m->indptr, ip, sizeof ip);
    memcpy(m->indices, ix, sizeof ix);
    ((float *)m->data)[0] = 5;
    ((float *)m->data)[1] = -1;
    sbx_value mv = {NULL, m}, zs = {NULL, NULL};
    assert_int_equal(sbx_node_perform(node_of(out), &mv, &zs, 0), SBX_OK);
    assert_non_null(zs.sparse);
    assert_int_equal(zs.sparse->nnz, 2);
    assert_memory_equal(zs.sparse->indptr, ip, sizeof ip);
    assert_memory_equal(zs.sparse->indices, ix, sizeof ix);
    assert_true(((float *)zs.sparse->data)[0] == 0 && ((float *)zs.sparse->data)[1] == 0);
    sbx_value_clear(&zs);
    sbx_sparse_free(m);
    sbx_array_free(za);
    sbx_array_free(a);
    sbx_array_free(f);
    sbx_graph_free(g);
}

/* The loss against log-sum-exp written out, stable for large logits; labels of several dtypes. */
static void test_loss_values(void **state) {
    (void)state;
    const sbx_dtype ldt[3] = {SBX_INT64, SBX_INT32, SBX_UINT8};
    for (int t = 0; t < 2; t++)
        for (int L = 0; L < 3; L++) {
            const sbx_dtype dt = t ? SBX_FLOAT64 : SBX_FLOAT32;
            const int64_t B = 6, C = 4;
            sbx_graph *g = graph();
            sbx_var *x = input(g, dt, 2, S(B, C)), *l = input(g, ldt[L], 1, S(B)), *gv = input(g, dt, 0, NULL);
            sbx_var *loss = apply(g, &sbx_op_softmax_cross_entropy, NULL, 2, x, l, NULL);
            assert_int_equal(sbx_var_type(loss)->ndim, 0);
            sbx_var *grad = apply(g, &sbx_op_softmax_cross_entropy_grad, NULL, 3, x, l, gv);
            sbx_array *xa = rnd(dt, 2, S(B, C), 0), *la = make(ldt[L], 1, S(B)), *ga = make(dt, 0, NULL);
            for (int64_t i = 0; i < B * C; i++) set(xa, i, get(xa, i) * 5 + (i < C ? 1000 : 0)); /* a row near 1000 */
            for (int64_t i = 0; i < B; i++) set(la, i, (double)((i * 3) % C));
            set(ga, 0, 0.75);
            sbx_array *ya = run2(node_of(loss), xa, la);
            sbx_array *x3[3] = {xa, la, ga};
            sbx_array *gy = run(node_of(grad), x3);
            double total = 0;
            for (int64_t r = 0; r < B; r++) {
                double m = -INFINITY, s = 0;
                for (int64_t c = 0; c < C; c++) m = fmax(m, get(xa, r * C + c));
                for (int64_t c = 0; c < C; c++) s += exp(get(xa, r * C + c) - m);
                const int64_t lab = (int64_t)get(la, r);
                total += m + log(s) - get(xa, r * C + lab);
                for (int64_t c = 0; c < C; c++) {
                    const double p = exp(get(xa, r * C + c) - m) / s;
                    expect_close(get(gy, r * C + c), 0.75 * (p - (c == lab)) / (double)B, t ? 1e-15 : 1e-6, "sce grad",
                                 r * C + c);
                }
            }
            assert_true(isfinite(get(ya, 0)));
            expect_close(get(ya, 0), total / (double)B, t ? 1e-14 : 1e-5, "sce", 0);
            /* a bad label: named with its position */
            set(la, 4, (double)C);
            sbx_value in[2] = {V(xa), V(la)}, o = {NULL, NULL};
            expect_error(sbx_node_perform(node_of(loss), in, &o, 0), SBX_ERR_ARG,
                         "SoftmaxCrossEntropy: input 1 (labels): expected labels in [0, 4), got 4 at position 4");
            sbx_value in3[3] = {V(xa), V(la), V(ga)};
            expect_error(sbx_node_perform(node_of(grad), in3, &o, 0), SBX_ERR_ARG, "got 4 at position 4");
            if (ldt[L] != SBX_UINT8) {
                set(la, 4, 0);
                set(la, 1, -1);
                expect_error(sbx_node_perform(node_of(loss), in, &o, 0), SBX_ERR_ARG, "got -1 at position 1");
            }
            sbx_value_clear(&o);
            sbx_array_free(ya);
            sbx_array_free(gy);
            sbx_array_free(xa);
            sbx_array_free(la);
            sbx_array_free(ga);
            sbx_graph_free(g);
        }
    /* refusals */
    sbx_graph *g = graph();
    sbx_var *x = input(g, SBX_FLOAT32, 2, S(4, 3)), *out;
    expect_error(try_apply(g, &sbx_op_softmax_cross_entropy, NULL, 2, x, input(g, SBX_FLOAT32, 1, S(4)), NULL, &out),
                 SBX_ERR_ARG,
                 "SoftmaxCrossEntropy: input 1 (labels): expected a dense vector of an integer dtype, got float32[4]");
    expect_error(try_apply(g, &sbx_op_softmax_cross_entropy, NULL, 2, x, input(g, SBX_INT32, 1, S(5)), NULL, &out),
                 SBX_ERR_ARG, "expected 4 labels (the rows of logits), got int32[5]");
    expect_error(try_apply(g, &sbx_op_softmax_cross_entropy, NULL, 2, input(g, SBX_FLOAT32, 1, S(4)),
                           input(g, SBX_INT32, 1, S(4)), NULL, &out),
                 SBX_ERR_ARG,
                 "input 0 (logits): expected a dense float32 or float64 array of 2 dimensions, got float32[4]");
    expect_error(try_apply(g, &sbx_op_softmax_cross_entropy_grad, NULL, 3, x, input(g, SBX_INT32, 1, S(4)),
                           input(g, SBX_FLOAT64, 0, NULL), &out),
                 SBX_ERR_ARG,
                 "SoftmaxCrossEntropyGrad: input 2 (g): expected float32 like input 0 (logits), got float64[]");
    expect_error(try_apply(g, &sbx_op_softmax_cross_entropy, NULL, 1, x, NULL, NULL, &out), SBX_ERR_ARG,
                 "SoftmaxCrossEntropy: expected 2 inputs, got 1");
    sbx_graph_free(g);
}

/* make_node refusals shared by the classes: ranks, kinds, dtypes, arity. */
static void test_refusals(void **state) {
    (void)state;
    sbx_graph *g = graph();
    sbx_var *f32 = input(g, SBX_FLOAT32, 1, S(2)), *f64 = input(g, SBX_FLOAT64, 1, S(2)),
            *i32 = input(g, SBX_INT32, 1, S(2));
    sbx_var *out;
    const sbx_add_props one = {1, 1};
    const sbx_scale_props sc = {2};
    expect_error(try_apply(g, &sbx_op_add, &one, 2, f32, f64, NULL, &out), SBX_ERR_ARG,
                 "Add: input 1 (b): expected float32 like input 0 (a), got float64[2]");
    expect_error(try_apply(g, &sbx_op_mul, NULL, 2, i32, f32, NULL, &out), SBX_ERR_ARG,
                 "Mul: input 0 (a): expected a dense float32 or float64 array, got int32[2]");
    expect_error(try_apply(g, &sbx_op_tanh, NULL, 1, i32, NULL, NULL, &out), SBX_ERR_ARG, "Tanh: input 0 (x)");
    expect_error(try_apply(g, &sbx_op_relu, NULL, 2, f32, f32, NULL, &out), SBX_ERR_ARG,
                 "Relu: expected 1 input, got 2");
    expect_error(try_apply(g, &sbx_op_scale, &sc, 1, i32, NULL, NULL, &out), SBX_ERR_ARG, "got int32[2]");
    expect_error(try_apply(g, &sbx_op_relu_grad, NULL, 2, f32, input(g, SBX_FLOAT32, 1, S(3)), NULL, &out), SBX_ERR_ARG,
                 "ReluGrad: input 1 (g): expected the shape of input 0 (x), float32[2], got float32[3]");
    expect_error(try_apply(g, &sbx_op_relu_grad, NULL, 2, f32, input(g, SBX_FLOAT32, 2, S(2, 1)), NULL, &out),
                 SBX_ERR_ARG, "ReluGrad: input 1 (g)");
    sbx_type sp = sbx_type_sparse(SBX_CSR, SBX_FLOAT32, 2, 2);
    sbx_var *s;
    assert_int_equal(sbx_graph_input(g, "s", &sp, &s), SBX_OK);
    expect_error(try_apply(g, &sbx_op_add, &one, 2, s, f32, NULL, &out), SBX_ERR_ARG, "got csr float32[2,2]");
    /* ReluGrad's unknown extents come from either input */
    const sbx_type *t = sbx_var_type(apply(g, &sbx_op_relu_grad, NULL, 2, input(g, SBX_FLOAT32, 2, S(-1, 3)),
                                           input(g, SBX_FLOAT32, 2, S(5, -1)), NULL));
    assert_int_equal(t->shape[0], 5);
    assert_int_equal(t->shape[1], 3);
    sbx_graph_free(g);
}

/* --- Output storage ------------------------------------------------------------------------------- */
static void test_output_reuse(void **state) {
    (void)state;
    sbx_graph *g = graph();
    const sbx_add_props one = {1, 1};
    const sbx_dot_props dp = {0, 1};
    const sbx_reduce_props rp = {0};
    const sbx_broadcast_props bp = {1};
    const sbx_reshape_props shp = {1, {-1}};
    sbx_var *a = input(g, SBX_FLOAT32, 2, S(3, 4)), *b = input(g, SBX_FLOAT32, 1, S(4));
    sbx_var *l = input(g, SBX_INT64, 1, S(3));
    sbx_node *nodes[] = {
        node_of(apply(g, &sbx_op_add, &one, 2, a, b, NULL)),
        node_of(apply(g, &sbx_op_dot, &dp, 2, a, a, NULL)),
        node_of(apply(g, &sbx_op_sum, &rp, 1, a, NULL, NULL)),
        node_of(apply(g, &sbx_op_sum_to, &bp, 2, a, b, NULL)),
        node_of(apply(g, &sbx_op_broadcast_like, &bp, 2, b, a, NULL)),
        node_of(apply(g, &sbx_op_reshape, &shp, 1, a, NULL, NULL)),
        node_of(apply(g, &sbx_op_tanh, NULL, 1, a, NULL, NULL)),
        node_of(apply(g, &sbx_op_zeros_like, NULL, 1, a, NULL, NULL)),
        node_of(apply(g, &sbx_op_softmax_cross_entropy, NULL, 2, a, l, NULL)),
    };
    sbx_array *av = rnd(SBX_FLOAT32, 2, S(3, 4), 0), *bv = rnd(SBX_FLOAT32, 1, S(4), 0), *lv = make(SBX_INT64, 1, S(3));
    for (size_t k = 0; k < sizeof nodes / sizeof nodes[0]; k++) {
        sbx_array *x[2];
        for (int i = 0; i < nodes[k]->nin; i++) x[i] = nodes[k]->in[i] == b ? bv : nodes[k]->in[i] == l ? lv : av;
        sbx_value out = {NULL, NULL};
        perform(nodes[k], x, &out);
        sbx_array *first = out.dense, *keep;
        assert_int_equal(sbx_array_copy(first, &keep), SBX_OK);
        perform(nodes[k], x, &out);
        assert_ptr_equal(out.dense, first);
        assert_memory_equal(out.dense->data, keep->data, (size_t)sbx_array_numel(keep) * 4);
        /* storage of the wrong shape, and of the wrong dtype, is replaced */
        sbx_array *wrong = make(SBX_FLOAT32, 1, S(7));
        sbx_value_clear(&out);
        out.dense = wrong;
        perform(nodes[k], x, &out);
        assert_ptr_not_equal(out.dense, wrong);
        assert_int_equal(out.dense->ndim, keep->ndim);
        assert_memory_equal(out.dense->data, keep->data, (size_t)sbx_array_numel(keep) * 4);
        sbx_array *wrong_dtype = make(SBX_FLOAT64, keep->ndim, keep->shape);
        sbx_value_clear(&out);
        out.dense = wrong_dtype;
        perform(nodes[k], x, &out);
        assert_ptr_not_equal(out.dense, wrong_dtype);
        assert_int_equal(out.dense->dtype, SBX_FLOAT32);
        sbx_value_clear(&out);
        sbx_array_free(keep);
    }
    sbx_array_free(av);
    sbx_array_free(bv);
    sbx_array_free(lv);
    sbx_graph_free(g);
}

/* --- Threads: the same bits at 1 and 2 threads, above every parallel threshold ---------------------- */
typedef struct big_case {
    const char *what;
    sbx_node *node;
    int nin;
    sbx_array *in[6];
} big_case;

static void same_bits(big_case *c) {
    sbx_value in[6], o1[SBX_OP_MAX_OUTPUTS], o2[SBX_OP_MAX_OUTPUTS];
    memset(o1, 0, sizeof o1);
    memset(o2, 0, sizeof o2);
    for (int i = 0; i < c->nin; i++) in[i] = V(c->in[i]);
    sbx_set_num_threads(1);
    if (sbx_node_perform(c->node, in, o1, 0) != SBX_OK) fail_msg("%s: %s", c->what, sbx_last_error());
    for (int nt = 2; nt <= 3; nt++) {
        sbx_set_num_threads(nt);
        if (sbx_node_perform(c->node, in, o2, 0) != SBX_OK) fail_msg("%s: %s", c->what, sbx_last_error());
        for (int j = 0; j < c->node->nout; j++) {
            const int64_t bytes = sbx_array_numel(o1[j].dense) * (int64_t)sbx_dtype_size(o1[j].dense->dtype);
            if (memcmp(o1[j].dense->data, o2[j].dense->data, (size_t)bytes) != 0)
                fail_msg("%s: output %d differs between 1 and %d threads", c->what, j, nt);
        }
    }
    sbx_set_num_threads(0);
    for (int j = 0; j < SBX_OP_MAX_OUTPUTS; j++) {
        sbx_value_clear(&o1[j]);
        sbx_value_clear(&o2[j]);
    }
    for (int i = 0; i < c->nin; i++) sbx_array_free(c->in[i]);
}

static void test_threads(void **state) {
    (void)state;
    sbx_graph *g = graph();
    const sbx_dtype F = SBX_FLOAT32, D = SBX_FLOAT64;
    const sbx_add_props ap = {1, 1}, am = {0.5, -2};
    const sbx_scale_props sc = {3};
    const sbx_reduce_props all = {-1}, ax0 = {0}, ax1 = {1}, ax2 = {2};
    const sbx_broadcast_props plain = {0}, mean = {1};
    const sbx_dot_props d00 = {0, 0}, d11 = {1, 1}, d10 = {1, 0};
    const sbx_adam_props adam = {0.9, 0.999, 1e-8};
    const sbx_sgd_props sgd = {0.9};
#define IN(dt, nd, ...) input(g, dt, nd, S(__VA_ARGS__))
#define R(dt, nd, ...) rnd(dt, nd, S(__VA_ARGS__), 0)
    sbx_var *v1 = IN(F, 2, 300, 500), *v2 = IN(F, 2, 300, 500), *big = IN(F, 1, 1000000), *vd = IN(D, 1, 150000);
    sbx_array *labels = make(SBX_INT32, 1, S(3000));
    for (int i = 0; i < 3000; i++) set(labels, i, i % 50);
    sbx_var *logits = IN(F, 2, 3000, 50), *lab = IN(SBX_INT32, 1, 3000), *g0 = IN(F, 0, 0);
    sbx_array *gone = make(F, 0, NULL), *lab2;
    set(gone, 0, 1.5);
    assert_int_equal(sbx_array_copy(labels, &lab2), SBX_OK);
    sbx_array *lr = make(F, 0, NULL), *t = make(F, 0, NULL);
    set(lr, 0, 1e-3);
    set(t, 0, 4);
    sbx_array *vpos = R(F, 1, 200000);
    for (int64_t i = 0; i < 200000; i++) set(vpos, i, fabs(get(vpos, i)));
    sbx_var *w = IN(F, 1, 200000), *s0 = IN(F, 0, 0);
    big_case cases[] = {
        {"add", node_of(apply(g, &sbx_op_add, &am, 2, v1, v2, NULL)), 2, {R(F, 2, 300, 500), R(F, 2, 300, 500)}},
        {"add bias",
         node_of(apply(g, &sbx_op_add, &ap, 2, IN(F, 2, 2000, 100), IN(F, 1, 100), NULL)),
         2,
         {R(F, 2, 2000, 100), R(F, 1, 100)}},
        {"mul broadcast",
         node_of(apply(g, &sbx_op_mul, NULL, 2, IN(D, 3, 100, 1, 300), IN(D, 3, 1, 40, 300), NULL)),
         2,
         {R(D, 3, 100, 1, 300), R(D, 3, 1, 40, 300)}},
        {"mul column",
         node_of(apply(g, &sbx_op_mul, NULL, 2, IN(F, 2, 3000, 1), IN(F, 2, 3000, 40), NULL)),
         2,
         {R(F, 2, 3000, 1), R(F, 2, 3000, 40)}},
        {"relu", node_of(apply(g, &sbx_op_relu, NULL, 1, vd, NULL, NULL)), 1, {R(D, 1, 150000)}},
        {"tanh", node_of(apply(g, &sbx_op_tanh, NULL, 1, vd, NULL, NULL)), 1, {R(D, 1, 150000)}},
        {"scale", node_of(apply(g, &sbx_op_scale, &sc, 1, v1, NULL, NULL)), 1, {R(F, 2, 300, 500)}},
        {"relu grad",
         node_of(apply(g, &sbx_op_relu_grad, NULL, 2, v1, v2, NULL)),
         2,
         {R(F, 2, 300, 500), R(F, 2, 300, 500)}},
        {"sum all", node_of(apply(g, &sbx_op_sum, &all, 1, big, NULL, NULL)), 1, {R(F, 1, 1000000)}},
        {"mean all", node_of(apply(g, &sbx_op_mean, &all, 1, big, NULL, NULL)), 1, {R(F, 1, 1000000)}},
        {"sum axis 0", node_of(apply(g, &sbx_op_sum, &ax0, 1, IN(F, 2, 20000, 3), NULL, NULL)), 1, {R(F, 2, 20000, 3)}},
        {"sum axis 1",
         node_of(apply(g, &sbx_op_sum, &ax1, 1, IN(D, 3, 40, 3000, 7), NULL, NULL)),
         1,
         {R(D, 3, 40, 3000, 7)}},
        {"mean axis 2",
         node_of(apply(g, &sbx_op_mean, &ax2, 1, IN(F, 3, 300, 200, 30), NULL, NULL)),
         1,
         {R(F, 3, 300, 200, 30)}},
        {"sum rows", node_of(apply(g, &sbx_op_sum, &ax1, 1, IN(F, 2, 4, 300000), NULL, NULL)), 1, {R(F, 2, 4, 300000)}},
        {"sum_to bias",
         node_of(apply(g, &sbx_op_sum_to, &plain, 2, IN(F, 2, 4096, 100), IN(F, 1, 100), NULL)),
         2,
         {R(F, 2, 4096, 100), R(F, 1, 100)}},
        {"sum_to two groups",
         node_of(apply(g, &sbx_op_sum_to, &mean, 2, IN(F, 3, 30, 400, 50), IN(F, 2, 400, 1), NULL)),
         2,
         {R(F, 3, 30, 400, 50), R(F, 2, 400, 1)}},
        {"broadcast_like",
         node_of(apply(g, &sbx_op_broadcast_like, &mean, 2, IN(F, 1, 100), IN(F, 2, 3000, 100), NULL)),
         2,
         {R(F, 1, 100), R(F, 2, 3000, 100)}},
        {"dot",
         node_of(apply(g, &sbx_op_dot, &d00, 2, IN(F, 2, 300, 400), IN(F, 2, 400, 500), NULL)),
         2,
         {R(F, 2, 300, 400), R(F, 2, 400, 500)}},
        {"dot tt",
         node_of(apply(g, &sbx_op_dot, &d11, 2, IN(D, 2, 200, 300), IN(D, 2, 700, 200), NULL)),
         2,
         {R(D, 2, 200, 300), R(D, 2, 700, 200)}},
        {"dot ta",
         node_of(apply(g, &sbx_op_dot, &d10, 2, IN(F, 2, 64, 784), IN(F, 2, 64, 600), NULL)),
         2,
         {R(F, 2, 64, 784), R(F, 2, 64, 600)}},
        {"loss",
         node_of(apply(g, &sbx_op_softmax_cross_entropy, NULL, 2, logits, lab, NULL)),
         2,
         {R(F, 2, 3000, 50), labels}},
        {"loss grad",
         node_of(apply(g, &sbx_op_softmax_cross_entropy_grad, NULL, 3, logits, lab, g0)),
         3,
         {R(F, 2, 3000, 50), lab2, gone}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) same_bits(&cases[k]);
    /* the steps, through their own inputs */
    sbx_var *sin[6] = {w, IN(F, 1, 200000), IN(F, 1, 200000), IN(F, 1, 200000), s0, IN(F, 0, 0)}, *out;
    assert_int_equal(sbx_apply(g, &sbx_op_adam_step, &adam, 6, sin, &out), SBX_OK);
    big_case ac = {"adam", node_of(out), 6, {R(F, 1, 200000), R(F, 1, 200000), vpos, R(F, 1, 200000), lr, t}};
    same_bits(&ac);
    sbx_var *gin[4] = {w, sin[1], sin[3], s0};
    assert_int_equal(sbx_apply(g, &sbx_op_sgd_step, &sgd, 4, gin, &out), SBX_OK);
    sbx_array *lr2 = make(F, 0, NULL);
    set(lr2, 0, 0.01);
    big_case sc2 = {"sgd", node_of(out), 4, {R(F, 1, 200000), R(F, 1, 200000), R(F, 1, 200000), lr2}};
    same_bits(&sc2);
#undef IN
#undef R
    sbx_graph_free(g);
}

/* A long float32 sum (chunked, in lanes) stays close to the exact sum. */
static void test_sum_accuracy(void **state) {
    (void)state;
    sbx_graph *g = graph();
    const sbx_reduce_props all = {-1};
    sbx_node *n = node_of(apply(g, &sbx_op_sum, &all, 1, input(g, SBX_FLOAT32, 1, S(3000001)), NULL, NULL));
    sbx_array *x = make(SBX_FLOAT32, 1, S(3000001));
    long double exact = 0;
    for (int64_t i = 0; i < 3000001; i++) {
        set(x, i, 0.1 + 1e-7 * (double)(i % 1000));
        exact += get(x, i);
    }
    sbx_array *y = run1(n, x);
    assert_true(fabs(get(y, 0) - (double)exact) < 5e-5 * (double)exact);
    sbx_array_free(x);
    sbx_array_free(y);
    sbx_graph_free(g);
}

/* --- Gradients -------------------------------------------------------------------------------------- */
static void test_gradients(void **state) {
    (void)state;
    const sbx_dtype D = SBX_FLOAT64;
    int checked = 0;
#define IN(nd, ...) input(g, D, nd, S(__VA_ARGS__))
#define R(nd, ...) rnd(D, nd, S(__VA_ARGS__), 0.1)
    /* Dot, all four transpose cases */
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            sbx_graph *g = graph();
            const sbx_dot_props p = {ta, tb};
            const int64_t sa[2] = {ta ? 4 : 3, ta ? 3 : 4}, sb[2] = {tb ? 2 : 4, tb ? 4 : 2};
            sbx_node *n = node_of(apply(g, &sbx_op_dot, &p, 2, input(g, D, 2, sa), input(g, D, 2, sb), NULL));
            sbx_array *x[2] = {rnd(D, 2, sa, 0), rnd(D, 2, sb, 0)};
            checked += check_grad(g, n, x);
            sbx_array_free(x[0]);
            sbx_array_free(x[1]);
            sbx_graph_free(g);
        }
    /* Add and Mul, same shapes and broadcasting */
    static const struct {
        int na;
        int64_t a[3];
        int nb;
        int64_t b[3];
    } bc[] = {{2, {3, 4}, 2, {3, 4}},
              {2, {3, 4}, 1, {4}},
              {2, {3, 1}, 2, {1, 4}},
              {0, {0}, 2, {2, 3}},
              {3, {2, 1, 3}, 2, {4, 1}}};
    for (size_t c = 0; c < sizeof bc / sizeof bc[0]; c++) {
        sbx_graph *g = graph();
        sbx_var *a = input(g, D, bc[c].na, bc[c].a), *b = input(g, D, bc[c].nb, bc[c].b);
        const sbx_add_props one = {1, 1}, ab = {-0.5, 2};
        sbx_node *nodes[3] = {node_of(apply(g, &sbx_op_add, &one, 2, a, b, NULL)),
                              node_of(apply(g, &sbx_op_add, &ab, 2, a, b, NULL)),
                              node_of(apply(g, &sbx_op_mul, NULL, 2, a, b, NULL))};
        sbx_array *x[2] = {rnd(D, bc[c].na, bc[c].a, 0), rnd(D, bc[c].nb, bc[c].b, 0)};
        for (int k = 0; k < 3; k++) checked += check_grad(g, nodes[k], x);
        sbx_array_free(x[0]);
        sbx_array_free(x[1]);
        sbx_graph_free(g);
    }
    /* unary, ReluGrad, shapes, reductions, the loss */
    {
        sbx_graph *g = graph();
        const sbx_scale_props sc = {-1.5};
        const sbx_reshape_props rs = {3, {2, -1, 2}};
        sbx_var *x = IN(2, 3, 4), *gg = IN(2, 3, 4), *l = input(g, SBX_INT64, 1, S(3));
        sbx_node *un[] = {
            node_of(apply(g, &sbx_op_scale, &sc, 1, x, NULL, NULL)),
            node_of(apply(g, &sbx_op_tanh, NULL, 1, x, NULL, NULL)),
            node_of(apply(g, &sbx_op_relu, NULL, 1, x, NULL, NULL)),
            node_of(apply(g, &sbx_op_reshape, &rs, 1, x, NULL, NULL)),
            node_of(apply(g, &sbx_op_reshape, &rs, 1, IN(2, -1, 4), NULL, NULL)),
        };
        sbx_array *xa = R(2, 3, 4), *ga = R(2, 3, 4), *la = make(SBX_INT64, 1, S(3));
        for (size_t k = 0; k < sizeof un / sizeof un[0]; k++) checked += check_grad(g, un[k], &xa);
        sbx_array *xg[2] = {xa, ga};
        checked += check_grad(g, node_of(apply(g, &sbx_op_relu_grad, NULL, 2, x, gg, NULL)), xg);
        for (int axis = -1; axis < 2; axis++) {
            const sbx_reduce_props p = {axis};
            checked += check_grad(g, node_of(apply(g, &sbx_op_sum, &p, 1, x, NULL, NULL)), &xa);
            checked += check_grad(g, node_of(apply(g, &sbx_op_mean, &p, 1, x, NULL, NULL)), &xa);
        }
        static const struct {
            int n;
            int64_t s[2];
        } likes[] = {{1, {4}}, {2, {3, 1}}, {0, {0}}, {2, {1, 1}}, {2, {3, 4}}};
        for (size_t k = 0; k < sizeof likes / sizeof likes[0]; k++)
            for (int mean = 0; mean < 2; mean++) {
                const sbx_broadcast_props bp = {mean};
                sbx_var *lk = input(g, D, likes[k].n, likes[k].s);
                sbx_array *lka = rnd(D, likes[k].n, likes[k].s, 0);
                sbx_array *xs[2] = {xa, lka}, *bs[2] = {lka, xa};
                checked += check_grad(g, node_of(apply(g, &sbx_op_sum_to, &bp, 2, x, lk, NULL)), xs);
                checked += check_grad(g, node_of(apply(g, &sbx_op_broadcast_like, &bp, 2, lk, x, NULL)), bs);
                sbx_array_free(lka);
            }
        for (int i = 0; i < 3; i++) set(la, i, (i * 2 + 1) % 4);
        sbx_array *xl[2] = {xa, la};
        checked += check_grad(g, node_of(apply(g, &sbx_op_softmax_cross_entropy, NULL, 2, x, l, NULL)), xl);
        sbx_array_free(xa);
        sbx_array_free(ga);
        sbx_array_free(la);
        sbx_graph_free(g);
    }
#undef IN
#undef R
    /* 4 Dots x 2, 15 Add/Mul x 2, 5 unary, ReluGrad's g (x: zeros, also checked), 6 reductions, 20 SumTo and
     * BroadcastLike, the loss */
    assert_int_equal(checked, 8 + 30 + 5 + 2 + 6 + 20 + 1);
}

/* Second derivatives: through Tanh's gradient (built from its output) and through Mul's broadcast
 * gradient (SumTo, whose own gradient is BroadcastLike), by reverse mode over the gradient nodes. */
static void test_second_derivatives(void **state) {
    (void)state;
    const sbx_dtype D = SBX_FLOAT64;
    const sbx_reduce_props all = {-1};
    for (int which = 0; which < 2; which++) {
        sbx_graph *g = graph();
        sbx_var *x = input(g, D, 2, S(3, 4)), *u = input(g, D, 2, S(3, 4)),
                *vv = input(g, D, which ? 1 : 2, which ? S(4) : S(3, 4));
        sbx_var *gin[2], *first;
        sbx_grad ans[2];
        const char *why[2];
        if (which == 0) { /* f = sum(v * d/dx sum(u * tanh(x))) */
            sbx_var *y = apply(g, &sbx_op_tanh, NULL, 1, x, NULL, NULL);
            assert_int_equal(sbx_node_grad(g, node_of(y), &u, gin, ans, why), SBX_OK);
            first = apply(g, &sbx_op_mul, NULL, 2, gin[0], vv, NULL);
        } else { /* f = sum(x * d/dv sum(u * (x * v))), v broadcast along rows: d/dv = SumTo(u * x, v) */
            sbx_var *y = apply(g, &sbx_op_mul, NULL, 2, x, vv, NULL);
            assert_int_equal(sbx_node_grad(g, node_of(y), &u, gin, ans, why), SBX_OK);
            assert_int_equal(sbx_var_owner(gin[1])->op.cls, &sbx_op_sum_to);
            first = apply(g, &sbx_op_mul, NULL, 2, gin[1], vv, NULL);
        }
        sbx_var *cost = apply(g, &sbx_op_sum, &all, 1, first, NULL, NULL);
        sbx_var *hx = reverse(g, cost, x);
        sbx_array *xa = rnd(D, 2, S(3, 4), 0), *ua = rnd(D, 2, S(3, 4), 0),
                  *va = rnd(D, vv->type.ndim, vv->type.shape, 0);
        binding b[3] = {{x, xa}, {u, ua}, {vv, va}};
        sbx_array *an = evaluate(g, 3, b, hx);
        for (int64_t e = 0; e < 12; e++) {
            const double keep = get(xa, e);
            set(xa, e, keep + H);
            sbx_array *fp = evaluate(g, 3, b, cost);
            set(xa, e, keep - H);
            sbx_array *fm = evaluate(g, 3, b, cost);
            set(xa, e, keep);
            const double num = (get(fp, 0) - get(fm, 0)) / (2 * H), a = get(an, e);
            if (fabs(a - num) / fmax(1e-2, fmax(fabs(a), fabs(num))) > GRAD_TOL)
                fail_msg("second derivative %d [%lld]: %.12g analytic, %.12g numeric", which, (long long)e, a, num);
            /* tanh'' written out: d/dx (u v (1 - tanh^2)) = -2 u v tanh (1 - tanh^2) */
            if (which == 0) {
                const double th = tanh(keep);
                expect_close(a, -2 * get(ua, e) * get(va, e) * th * (1 - th * th), 1e-12, "tanh''", e);
            }
            sbx_array_free(fp);
            sbx_array_free(fm);
        }
        sbx_array_free(an);
        sbx_array_free(xa);
        sbx_array_free(ua);
        sbx_array_free(va);
        sbx_graph_free(g);
    }
}

/* What each grad answers besides DEFINED, the structure of the gradient graphs, connection patterns. */
static void test_grad_answers(void **state) {
    (void)state;
    sbx_graph *g = graph();
    sbx_var *x = input(g, SBX_FLOAT64, 2, S(3, 4)), *l = input(g, SBX_INT32, 1, S(3)),
            *s0 = input(g, SBX_FLOAT64, 0, NULL);
    sbx_var *gx = input(g, SBX_FLOAT64, 2, S(3, 4)), *gin[6], *none[3] = {NULL, NULL, NULL};
    sbx_grad ans[6];
    const char *why[6];
    /* no gradient reaching the output: disconnected */
    sbx_node *nt = node_of(apply(g, &sbx_op_tanh, NULL, 1, x, NULL, NULL));
    assert_int_equal(sbx_node_grad(g, nt, none, gin, ans, why), SBX_OK);
    assert_int_equal(ans[0], SBX_GRAD_DISCONNECTED);
    /* the loss: labels undefined */
    sbx_node *nl = node_of(apply(g, &sbx_op_softmax_cross_entropy, NULL, 2, x, l, NULL));
    assert_int_equal(sbx_node_grad(g, nl, &s0, gin, ans, why), SBX_OK);
    assert_int_equal(ans[0], SBX_GRAD_DEFINED);
    assert_int_equal(ans[1], SBX_GRAD_UNDEFINED);
    assert_string_equal(why[1], "labels are integers");
    assert_ptr_equal(sbx_var_owner(gin[0])->op.cls, &sbx_op_softmax_cross_entropy_grad);
    sbx_node *nlg = sbx_var_owner(gin[0]);
    assert_int_equal(sbx_node_grad(g, nlg, &gx, gin, ans, why), SBX_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ans[i], SBX_GRAD_UNDEFINED);
        assert_non_null(why[i]);
    }
    /* ReluGrad: zero (defined) for x, ReluGrad for g */
    sbx_node *nrg = node_of(apply(g, &sbx_op_relu_grad, NULL, 2, x, gx, NULL));
    assert_int_equal(sbx_node_grad(g, nrg, &gx, gin, ans, why), SBX_OK);
    assert_int_equal(ans[0], SBX_GRAD_DEFINED);
    assert_ptr_equal(sbx_var_owner(gin[0])->op.cls, &sbx_op_zeros_like);
    assert_ptr_equal(sbx_var_owner(gin[1])->op.cls, &sbx_op_relu_grad);
    /* Add: no SumTo where shapes certainly agree, Scale only where alpha is not 1 */
    const sbx_add_props one = {1, 1}, half = {0.5, 1};
    sbx_var *b = input(g, SBX_FLOAT64, 1, S(4)), *xu = input(g, SBX_FLOAT64, 2, S(-1, 4));
    sbx_node *na = node_of(apply(g, &sbx_op_add, &one, 2, x, gx, NULL));
    assert_int_equal(sbx_node_grad(g, na, &gx, gin, ans, why), SBX_OK);
    assert_ptr_equal(gin[0], gx);
    assert_ptr_equal(gin[1], gx);
    sbx_var *yb = apply(g, &sbx_op_add, &half, 2, xu, b, NULL), *gy = input(g, SBX_FLOAT64, 2, S(-1, 4));
    assert_int_equal(sbx_node_grad(g, node_of(yb), &gy, gin, ans, why), SBX_OK);
    assert_ptr_equal(sbx_var_owner(gin[0])->op.cls, &sbx_op_scale); /* [?,4] + [4]: a needs no sum */
    assert_ptr_equal(sbx_var_owner(gin[0])->in[0], gy);
    assert_ptr_equal(sbx_var_owner(gin[1])->op.cls, &sbx_op_sum_to);
    sbx_var *yu = apply(g, &sbx_op_add, &one, 2, xu, gy, NULL); /* [?,4] + [?,4]: either could be 1 */
    assert_int_equal(sbx_node_grad(g, node_of(yu), &gy, gin, ans, why), SBX_OK);
    assert_ptr_equal(sbx_var_owner(gin[0])->op.cls, &sbx_op_sum_to);
    /* Reshape back needs x's shape: two unknown extents refused */
    const sbx_reshape_props flat = {1, {-1}};
    sbx_var *y2 = apply(g, &sbx_op_reshape, &flat, 1, input(g, SBX_FLOAT64, 2, S(-1, -1)), NULL, NULL);
    sbx_var *g2 = input(g, SBX_FLOAT64, 1, S(-1));
    expect_error(sbx_node_grad(g, node_of(y2), &g2, gin, ans, why), SBX_ERR_UNSUPPORTED,
                 "more than one unknown extent");
    /* connection patterns */
    const sbx_broadcast_props bp = {0};
    int pat[18];
    sbx_node_connection_pattern(node_of(apply(g, &sbx_op_sum_to, &bp, 2, x, b, NULL)), pat);
    assert_true(pat[0] == 1 && pat[1] == 0);
    sbx_node_connection_pattern(node_of(apply(g, &sbx_op_broadcast_like, &bp, 2, b, x, NULL)), pat);
    assert_true(pat[0] == 1 && pat[1] == 0);
    sbx_node_connection_pattern(nl, pat);
    assert_true(pat[0] == 1 && pat[1] == 1);
    /* the steps: undefined where connected, and disconnected inputs stay so */
    const sbx_adam_props ap = {0.9, 0.999, 1e-8};
    sbx_var *w = input(g, SBX_FLOAT64, 1, S(5)), *z[6] = {w, w, w, w, s0, s0}, *out;
    assert_int_equal(sbx_apply(g, &sbx_op_adam_step, &ap, 6, z, &out), SBX_OK);
    sbx_node *nad = node_of(out);
    sbx_node_connection_pattern(nad, pat);
    static const int adam_pat[18] = {1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0};
    assert_memory_equal(pat, adam_pat, sizeof adam_pat);
    sbx_var *gm[3] = {NULL, w, NULL}; /* only m' gets a gradient */
    assert_int_equal(sbx_node_grad(g, nad, gm, gin, ans, why), SBX_OK);
    for (int i = 0; i < 6; i++) assert_int_equal(ans[i], i == 1 || i == 3 ? SBX_GRAD_UNDEFINED : SBX_GRAD_DISCONNECTED);
    assert_string_equal(why[1], "an optimiser step is not differentiated");
    const sbx_sgd_props sp = {0.5};
    sbx_var *zs[4] = {w, w, w, s0};
    assert_int_equal(sbx_apply(g, &sbx_op_sgd_step, &sp, 4, zs, &out), SBX_OK);
    sbx_node_connection_pattern(node_of(out), pat);
    static const int sgd_pat[8] = {1, 0, 1, 1, 1, 1, 1, 1};
    assert_memory_equal(pat, sgd_pat, sizeof sgd_pat);
    sbx_var *gs[2] = {w, NULL};
    assert_int_equal(sbx_node_grad(g, node_of(out), gs, gin, ans, why), SBX_OK);
    for (int i = 0; i < 4; i++) assert_int_equal(ans[i], SBX_GRAD_UNDEFINED);
    sbx_graph_free(g);
}

/* --- Properties and the class tables ------------------------------------------------------------------ */
static void test_props(void **state) {
    (void)state;
    const sbx_op_class *classes[] = {&sbx_op_dot,
                                     &sbx_op_add,
                                     &sbx_op_scale,
                                     &sbx_op_mul,
                                     &sbx_op_tanh,
                                     &sbx_op_relu,
                                     &sbx_op_relu_grad,
                                     &sbx_op_reshape,
                                     &sbx_op_sum,
                                     &sbx_op_mean,
                                     &sbx_op_sum_to,
                                     &sbx_op_broadcast_like,
                                     &sbx_op_zeros_like,
                                     &sbx_op_softmax_cross_entropy,
                                     &sbx_op_softmax_cross_entropy_grad,
                                     &sbx_op_sgd_step,
                                     &sbx_op_adam_step};
    for (size_t k = 0; k < sizeof classes / sizeof classes[0]; k++) {
        const sbx_op_class *c = classes[k];
        assert_non_null(c->name);
        assert_non_null(c->props_equal);
        assert_non_null(c->props_hash);
        assert_non_null(c->props_str);
        assert_non_null(c->make_node);
        assert_non_null(c->infer_shape);
        assert_non_null(c->perform);
        assert_non_null(c->grad);
        assert_non_null(c->connection_pattern);
        if (c->props_size == 0) {
            char buf[8] = "x";
            sbx_op a = {c, NULL};
            assert_int_equal(c->props_str(NULL, buf, sizeof buf), 0);
            assert_string_equal(buf, "");
            assert_true(sbx_op_equal(&a, &a));
        }
    }
    const sbx_add_props a1 = {1, 1}, a2 = {1, 1}, a3 = {1, -1};
    sbx_op oa1 = {&sbx_op_add, &a1}, oa2 = {&sbx_op_add, &a2}, oa3 = {&sbx_op_add, &a3};
    assert_true(sbx_op_equal(&oa1, &oa2));
    assert_true(sbx_op_hash(&oa1) == sbx_op_hash(&oa2));
    assert_false(sbx_op_equal(&oa1, &oa3));
    sbx_reshape_props r1 = {2, {3, -1, 7}}, r2 = {2, {3, -1, 9}}, r3 = {2, {3, 4}};
    sbx_op or1 = {&sbx_op_reshape, &r1}, or2 = {&sbx_op_reshape, &r2}, or3 = {&sbx_op_reshape, &r3};
    assert_true(sbx_op_equal(&or1, &or2)); /* entries past ndim do not count */
    assert_true(sbx_op_hash(&or1) == sbx_op_hash(&or2));
    assert_false(sbx_op_equal(&or1, &or3));
    const sbx_dot_props d1 = {1, 0}, d2 = {5, 0};
    sbx_op od1 = {&sbx_op_dot, &d1}, od2 = {&sbx_op_dot, &d2};
    assert_true(sbx_op_equal(&od1, &od2));
    char buf[128];
    sbx_op_add.props_str(&a3, buf, sizeof buf);
    assert_string_equal(buf, "alpha=1 beta=-1");
    sbx_op_reshape.props_str(&r1, buf, sizeof buf);
    assert_string_equal(buf, "shape=(3,-1)");
    const sbx_reduce_props rp = {1};
    sbx_op_sum.props_str(&rp, buf, sizeof buf);
    assert_string_equal(buf, "axis=1");
    const sbx_broadcast_props bp = {1};
    sbx_op_sum_to.props_str(&bp, buf, sizeof buf);
    assert_string_equal(buf, "mean=1");
    sbx_op_dot.props_str(&d1, buf, sizeof buf);
    assert_string_equal(buf, "transpose_a=1 transpose_b=0");
    const sbx_adam_props ad = {0.9, 0.999, 1e-8};
    sbx_op_adam_step.props_str(&ad, buf, sizeof buf);
    assert_string_equal(buf, "beta1=0.9 beta2=0.999 eps=1e-08");
    const sbx_sgd_props sg = {0.5};
    sbx_op_sgd_step.props_str(&sg, buf, sizeof buf);
    assert_string_equal(buf, "momentum=0.5");
    const sbx_scale_props sc = {2};
    sbx_op_scale.props_str(&sc, buf, sizeof buf);
    assert_string_equal(buf, "c=2");
}

/* --- Optimiser steps ------------------------------------------------------------------------------------ */
/* Three steps of AdamStep and SgdStep, fed their own outputs, against the update rules written out. */
static void test_steps(void **state) {
    (void)state;
    const double b1 = 0.8, b2 = 0.95, eps = 1e-3, lr = 0.05, mom = 0.7;
    for (int t = 0; t < 2; t++) {
        const sbx_dtype dt = t ? SBX_FLOAT64 : SBX_FLOAT32;
        const double tol = t ? 1e-14 : 2e-6;
        const int64_t n = 37;
        sbx_graph *g = graph();
        sbx_var *vec[4], *sc[2], *out;
        for (int i = 0; i < 4; i++) vec[i] = input(g, dt, 1, S(n));
        for (int i = 0; i < 2; i++) sc[i] = input(g, dt, 0, NULL);
        const sbx_adam_props ap = {b1, b2, eps};
        const sbx_sgd_props sp = {mom};
        sbx_var *ain[6] = {vec[0], vec[1], vec[2], vec[3], sc[0], sc[1]}, *sin[4] = {vec[0], vec[1], vec[3], sc[0]};
        assert_int_equal(sbx_apply(g, &sbx_op_adam_step, &ap, 6, ain, &out), SBX_OK);
        sbx_node *na = node_of(out);
        assert_int_equal(na->nout, 3);
        assert_int_equal(sbx_apply(g, &sbx_op_sgd_step, &sp, 4, sin, &out), SBX_OK);
        sbx_node *ns = node_of(out);
        sbx_array *w = rnd(dt, 1, S(n), 0), *m = make(dt, 1, S(n)), *v = make(dt, 1, S(n)), *vel = make(dt, 1, S(n));
        sbx_array *sw, *gr = make(dt, 1, S(n)), *lra = make(dt, 0, NULL), *ta = make(dt, 0, NULL);
        assert_int_equal(sbx_array_copy(w, &sw), SBX_OK);
        double rw[64], rm[64] = {0}, rv[64] = {0}, sw_ref[64], svel[64] = {0};
        for (int64_t i = 0; i < n; i++) rw[i] = sw_ref[i] = get(w, i);
        set(lra, 0, lr);
        sbx_value ao[3], so[2];
        memset(ao, 0, sizeof ao);
        memset(so, 0, sizeof so);
        for (int step = 0; step < 3; step++) {
            for (int64_t i = 0; i < n; i++) set(gr, i, urand());
            set(ta, 0, step);
            sbx_value ain_v[6] = {V(w), V(m), V(v), V(gr), V(lra), V(ta)}, sin_v[4] = {V(sw), V(vel), V(gr), V(lra)};
            assert_int_equal(sbx_node_perform(na, ain_v, ao, 0), SBX_OK);
            assert_int_equal(sbx_node_perform(ns, sin_v, so, 0), SBX_OK);
            /* the rules, in double */
            const double bc1 = 1 - pow(b1, step + 1), bc2 = 1 - pow(b2, step + 1);
            for (int64_t i = 0; i < n; i++) {
                const double gi = get(gr, i);
                rm[i] = b1 * rm[i] + (1 - b1) * gi;
                rv[i] = b2 * rv[i] + (1 - b2) * gi * gi;
                rw[i] -= lr * (rm[i] / bc1) / (sqrt(rv[i] / bc2) + eps);
                svel[i] = mom * svel[i] - lr * gi;
                sw_ref[i] += svel[i];
                expect_close(get(ao[0].dense, i), rw[i], tol, "adam w", i);
                expect_close(get(ao[1].dense, i), rm[i], tol, "adam m", i);
                expect_close(get(ao[2].dense, i), rv[i], tol, "adam v", i);
                expect_close(get(so[0].dense, i), sw_ref[i], tol, "sgd w", i);
                expect_close(get(so[1].dense, i), svel[i], tol, "sgd velocity", i);
            }
            /* the outputs become the next step's state */
            memcpy(w->data, ao[0].dense->data, (size_t)n * sbx_dtype_size(dt));
            memcpy(m->data, ao[1].dense->data, (size_t)n * sbx_dtype_size(dt));
            memcpy(v->data, ao[2].dense->data, (size_t)n * sbx_dtype_size(dt));
            memcpy(sw->data, so[0].dense->data, (size_t)n * sbx_dtype_size(dt));
            memcpy(vel->data, so[1].dense->data, (size_t)n * sbx_dtype_size(dt));
        }
        for (int j = 0; j < 3; j++) sbx_value_clear(&ao[j]);
        for (int j = 0; j < 2; j++) sbx_value_clear(&so[j]);
        sbx_array *arrs[] = {w, m, v, vel, sw, gr, lra, ta};
        for (size_t k = 0; k < sizeof arrs / sizeof arrs[0]; k++) sbx_array_free(arrs[k]);
        /* refusals */
        const sbx_adam_props bad = {1, 0.9, 1e-8}, bad_eps = {0.9, 0.9, -1};
        const sbx_sgd_props bad_mom = {-0.5};
        expect_error(sbx_apply(g, &sbx_op_adam_step, &bad, 6, ain, &out), SBX_ERR_ARG,
                     "AdamStep: expected betas in [0, 1)");
        expect_error(sbx_apply(g, &sbx_op_adam_step, &bad_eps, 6, ain, &out), SBX_ERR_ARG, "eps");
        expect_error(sbx_apply(g, &sbx_op_sgd_step, &bad_mom, 4, sin, &out), SBX_ERR_ARG, "SgdStep: momentum -0.5");
        sbx_var *wrong[6] = {vec[0], input(g, dt, 1, S(n + 1)), vec[2], vec[3], sc[0], sc[1]};
        expect_error(sbx_apply(g, &sbx_op_adam_step, &ap, 6, wrong, &out), SBX_ERR_ARG,
                     "AdamStep: input 1 (m): expected the shape");
        sbx_var *wrong_lr[4] = {vec[0], vec[1], vec[3], vec[2]};
        expect_error(sbx_apply(g, &sbx_op_sgd_step, &sp, 4, wrong_lr, &out), SBX_ERR_ARG,
                     "SgdStep: input 3 (lr): expected a dense float32 or float64 array of 0 dimensions");
        sbx_graph_free(g);
    }
}

/* --- Builders --------------------------------------------------------------------------------------- */
static sbx_var *shared(sbx_graph *g, const char *name, sbx_array *a) {
    sbx_value v = V(a);
    sbx_var *s;
    assert_int_equal(sbx_graph_shared(g, name, &v, &s), SBX_OK);
    return s;
}

/* Softmax regression, logits = x W + b, trained three steps by sbx_sgd / sbx_adam (their updates
 * evaluated all, then applied together), against the same training written out in double. */
static void test_builders(void **state) {
    (void)state;
    const int64_t B = 5, I = 3, C = 4;
    const double lr_v = 0.1, mom = 0.9, b1 = 0.9, b2 = 0.99, eps = 1e-6;
    for (int adam = 0; adam < 2; adam++) {
        sbx_graph *g = graph();
        sbx_var *x = input(g, SBX_FLOAT64, 2, S(B, I)), *l = input(g, SBX_INT64, 1, S(B));
        sbx_array *w0 = rnd(SBX_FLOAT64, 2, S(I, C), 0), *b0 = rnd(SBX_FLOAT64, 1, S(C), 0),
                  *lr = make(SBX_FLOAT64, 0, NULL);
        set(lr, 0, lr_v);
        double W[3 * 4], bb[4], mW[12] = {0}, vW[12] = {0}, mb[4] = {0}, vb[4] = {0};
        for (int i = 0; i < 12; i++) W[i] = get(w0, i);
        for (int i = 0; i < 4; i++) bb[i] = get(b0, i);
        sbx_var *W_var = shared(g, "W", w0), *b_var = shared(g, "b", b0), *lr_var = shared(g, "lr", lr);
        const sbx_dot_props dp = {0, 0};
        const sbx_add_props one = {1, 1};
        sbx_var *logits = apply(g, &sbx_op_add, &one, 2, apply(g, &sbx_op_dot, &dp, 2, x, W_var, NULL), b_var, NULL);
        sbx_var *cost = apply(g, &sbx_op_softmax_cross_entropy, NULL, 2, logits, l, NULL);
        sbx_var *params[2] = {W_var, b_var};
        sbx_update upd[7];
        int nupd = 0;
        if (adam)
            assert_int_equal(sbx_adam(g, cost, 2, params, lr_var, b1, b2, eps, upd, &nupd), SBX_OK);
        else
            assert_int_equal(sbx_sgd(g, cost, 2, params, lr_var, mom, upd, &nupd), SBX_OK);
        assert_int_equal(nupd, adam ? 7 : 4);
        assert_ptr_equal(upd[0].shared, W_var);
        assert_string_equal(sbx_var_name(upd[1].shared), adam ? "W.m" : "W.velocity");
        if (adam) {
            assert_string_equal(sbx_var_name(upd[2].shared), "W.v");
            assert_int_equal(sbx_var_type(upd[6].shared)->ndim, 0);
        }
        sbx_array *xa = rnd(SBX_FLOAT64, 2, S(B, I), 0), *la = make(SBX_INT64, 1, S(B));
        for (int i = 0; i < B; i++) set(la, i, (i * 3 + 1) % C);
        binding bind[2] = {{x, xa}, {l, la}};
        double velW[12] = {0}, velb[4] = {0};
        for (int step = 0; step < 3; step++) {
            sbx_array *next[7];
            for (int k = 0; k < nupd; k++) next[k] = evaluate(g, 2, bind, upd[k].value);
            for (int k = 0; k < nupd; k++) {
                sbx_value *sv = sbx_var_value(upd[k].shared);
                sbx_value_clear(sv);
                sv->dense = next[k];
            }
            /* the reference: gradients of the mean cross-entropy, then the rule */
            double dl[5 * 4], gW[12] = {0}, gb[4] = {0};
            for (int r = 0; r < B; r++) {
                double z[4], mx = -INFINITY, s = 0;
                for (int c = 0; c < C; c++) {
                    z[c] = bb[c];
                    for (int i = 0; i < I; i++) z[c] += get(xa, r * I + i) * W[i * C + c];
                    mx = fmax(mx, z[c]);
                }
                for (int c = 0; c < C; c++) s += exp(z[c] - mx);
                for (int c = 0; c < C; c++) dl[r * C + c] = (exp(z[c] - mx) / s - (c == get(la, r))) / (double)B;
            }
            for (int r = 0; r < B; r++)
                for (int c = 0; c < C; c++) {
                    gb[c] += dl[r * C + c];
                    for (int i = 0; i < I; i++) gW[i * C + c] += get(xa, r * I + i) * dl[r * C + c];
                }
            const double bc1 = 1 - pow(b1, step + 1), bc2 = 1 - pow(b2, step + 1);
            for (int k = 0; k < 16; k++) {
                double *p = k < 12 ? &W[k] : &bb[k - 12], gk = k < 12 ? gW[k] : gb[k - 12];
                if (adam) {
                    double *m = k < 12 ? &mW[k] : &mb[k - 12], *v = k < 12 ? &vW[k] : &vb[k - 12];
                    *m = b1 * *m + (1 - b1) * gk;
                    *v = b2 * *v + (1 - b2) * gk * gk;
                    *p -= lr_v * (*m / bc1) / (sqrt(*v / bc2) + eps);
                } else {
                    double *vel = k < 12 ? &velW[k] : &velb[k - 12];
                    *vel = mom * *vel - lr_v * gk;
                    *p += *vel;
                }
            }
            const sbx_array *Wn = sbx_var_value(W_var)->dense, *bn = sbx_var_value(b_var)->dense;
            for (int i = 0; i < 12; i++) expect_close(get(Wn, i), W[i], 1e-12, "W", i);
            for (int i = 0; i < 4; i++) expect_close(get(bn, i), bb[i], 1e-12, "b", i);
            if (adam) assert_true(get(sbx_var_value(upd[6].shared)->dense, 0) == step + 1);
        }
        /* refusals */
        sbx_update u2[8];
        int n2;
        sbx_var *bad[1] = {x};
        expect_error(adam ? sbx_adam(g, cost, 1, bad, lr_var, b1, b2, eps, u2, &n2)
                          : sbx_sgd(g, cost, 1, bad, lr_var, mom, u2, &n2),
                     SBX_ERR_ARG, "is not a dense float shared variable");
        sbx_array *w32 = make(SBX_FLOAT32, 1, S(2));
        sbx_var *mixed[2] = {W_var, shared(g, "w32", w32)};
        expect_error(adam ? sbx_adam(g, cost, 2, mixed, lr_var, b1, b2, eps, u2, &n2)
                          : sbx_sgd(g, cost, 2, mixed, lr_var, mom, u2, &n2),
                     SBX_ERR_ARG, "share one dtype");
        sbx_array_free(xa);
        sbx_array_free(la);
        sbx_graph_free(g);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_values),
        cmocka_unit_test(test_broadcast_values),
        cmocka_unit_test(test_broadcast_types),
        cmocka_unit_test(test_dot_values),
        cmocka_unit_test(test_reduce_values),
        cmocka_unit_test(test_reshape_zeros_like),
        cmocka_unit_test(test_loss_values),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_output_reuse),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_sum_accuracy),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_second_derivatives),
        cmocka_unit_test(test_grad_answers),
        cmocka_unit_test(test_props),
        cmocka_unit_test(test_steps),
        cmocka_unit_test(test_builders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
