/* Tests of the layer op classes (src/op/conv_ops.c): perform against the plans' own calls bit for bit
 * (float32 and float64, with and without bias, strided, full-mode, 1-d and 3-d shapes), output storage
 * kept or replaced, ctx->needed, make_node's refusals and their messages, infer_shape against perform,
 * grad answers against connection_pattern, property equality and hashes, the gradients by central
 * differences (first order, and the backward ops' own gradients), thread counts, empty batches, and
 * the checks of the _into layer functions perform writes through. Only sbx_apply, the sbx_node_* calls
 * and the kernels are used (not sbx_gradient or functions). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conv/layers.h"
#include "sparsebox.h"

#define OK(expr)                                                                   \
    do {                                                                           \
        sbx_status ok_st_ = (expr);                                                \
        if (ok_st_ != SBX_OK) fail_msg("%s: status %d: %s", #expr, ok_st_, sbx_last_error()); \
    } while (0)

static void expect_error(sbx_status got, sbx_status want, const char *needle) {
    if (got != want) fail_msg("status %d, wanted %d; message: %s", got, want, sbx_last_error());
    if (!strstr(sbx_last_error(), needle)) fail_msg("message '%s' lacks '%s'", sbx_last_error(), needle);
}

/* --- Geometries ---------------------------------------------------------------------------------- */
typedef struct {
    const char *name;
    int ndim;
    int64_t channels, in[3], kernel[3], stride[3];
    sbx_conv_mode mode;
    int64_t nkern, batch;
} config;

/* Between them: the gather and direct forward paths, the gather, direct and lanes kernel gradients,
 * the gather and adjoint image gradients, overlapping, full-mode and side-by-side pooling windows
 * (with pixels no window covers). */
static const config CONFIGS[] = {
    {"strided 2-d", 2, 2, {7, 6}, {3, 2}, {2, 1}, SBX_CONV_VALID, 3, 3},
    {"full 2-d", 2, 3, {5, 5}, {3, 3}, {1, 1}, SBX_CONV_FULL, 2, 2},
    {"1-d", 1, 1, {11}, {4}, {1}, SBX_CONV_VALID, 5, 3},
    {"3-d full strided", 3, 2, {4, 3, 5}, {2, 2, 3}, {1, 2, 1}, SBX_CONV_FULL, 2, 2},
    {"direct 2-d", 2, 2, {12, 20}, {3, 3}, {1, 1}, SBX_CONV_VALID, 17, 3},
    {"side-by-side windows", 2, 2, {7, 9}, {2, 2}, {2, 2}, SBX_CONV_VALID, 1, 2},
};
#define NCONFIGS (int)(sizeof CONFIGS / sizeof CONFIGS[0])
static const sbx_dtype DTYPES[2] = {SBX_FLOAT32, SBX_FLOAT64};

static sbx_conv_shape shape_of(const config *c) {
    sbx_conv_shape s;
    OK(sbx_conv_shape_make(c->ndim, c->channels, c->in, c->kernel, c->stride, c->mode, &s));
    return s;
}

static sbx_layer_props layer_props(const config *c) {
    sbx_layer_props p;
    memset(&p, 0, sizeof p);
    p.shape = shape_of(c);
    p.nkern = c->nkern;
    return p;
}

static sbx_pool_props pool_props(const config *c) {
    sbx_pool_props p;
    memset(&p, 0, sizeof p);
    p.shape = shape_of(c);
    return p;
}

/* Sizes of a layer of geometry c. */
typedef struct {
    int64_t in_size, width, units, weights, pooled;
} sizes;

static sizes sizes_of(const config *c) {
    sbx_conv_shape s = shape_of(c);
    sizes z;
    z.in_size = s.in_size;
    z.width = s.channels * s.kernel_size;
    z.units = c->nkern * s.out_size;
    z.weights = z.width * z.units;
    z.pooled = s.channels * s.out_size;
    return z;
}

/* --- Arrays and values ------------------------------------------------------------------------------ */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double uniform(void) { /* in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * 0x1p-52 - 1.0;
}

static void set(sbx_array *a, int64_t i, double v) {
    if (a->dtype == SBX_FLOAT32)
        ((float *)a->data)[i] = (float)v;
    else
        ((double *)a->data)[i] = v;
}

static double get(const sbx_array *a, int64_t i) {
    return a->dtype == SBX_FLOAT32 ? ((const float *)a->data)[i] : ((const double *)a->data)[i];
}

static sbx_array *array(sbx_dtype dtype, int64_t rows, int64_t cols) { /* cols < 0: a vector of rows */
    sbx_array *a;
    int64_t shape[2] = {rows, cols};
    OK(sbx_array_create(dtype, cols < 0 ? 1 : 2, cols < 0 ? &rows : shape, &a));
    return a;
}

static sbx_array *random_array(sbx_dtype dtype, int64_t rows, int64_t cols) {
    sbx_array *a = array(dtype, rows, cols);
    for (int64_t i = 0; i < sbx_array_numel(a); i++) set(a, i, uniform());
    return a;
}

/* Distinct values (a shuffled ramp, 1/n apart): no ties in a pooling window, so max pooling is
 * differentiable there. */
static sbx_array *distinct_array(sbx_dtype dtype, int64_t rows, int64_t cols) {
    sbx_array *a = array(dtype, rows, cols);
    const int64_t n = sbx_array_numel(a);
    for (int64_t i = 0; i < n; i++) set(a, i, (double)i / (double)n - 0.5);
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = (int64_t)((uniform() + 1) / 2 * (double)(i + 1));
        if (j > i) j = i;
        double t = get(a, i);
        set(a, i, get(a, j));
        set(a, j, t);
    }
    return a;
}

/* Every byte of a's data set (NaN in a float array): what perform must overwrite. */
static void poison(sbx_array *a) {
    if (a) memset(a->data, 0xff, (size_t)sbx_array_numel(a) * sbx_dtype_size(a->dtype));
}

static sbx_value val(sbx_array *a) {
    sbx_value v = {a, NULL};
    return v;
}

static void same_bits(const sbx_array *got, const sbx_array *want, const char *what) {
    if (!got || !want) fail_msg("%s: %s is NULL", what, got ? "want" : "got");
    if (got->dtype != want->dtype || got->ndim != want->ndim)
        fail_msg("%s: %s %d-d, expected %s %d-d", what, sbx_dtype_name(got->dtype), got->ndim,
                 sbx_dtype_name(want->dtype), want->ndim);
    for (int d = 0; d < got->ndim; d++)
        if (got->shape[d] != want->shape[d])
            fail_msg("%s: extent %d is %lld, expected %lld", what, d, (long long)got->shape[d],
                     (long long)want->shape[d]);
    const size_t bytes = (size_t)sbx_array_numel(got) * sbx_dtype_size(got->dtype);
    if (bytes && memcmp(got->data, want->data, bytes) != 0) fail_msg("%s: the bits differ", what);
}

static void same_sparse(const sbx_sparse *got, const sbx_sparse *want, const char *what) {
    if (!got) fail_msg("%s: no matrix", what);
    if (got->format != want->format || got->dtype != want->dtype || got->nrows != want->nrows ||
        got->ncols != want->ncols || got->nnz != want->nnz)
        fail_msg("%s: header differs", what);
    const int64_t major = sbx_sparse_major(want);
    assert_memory_equal(got->indptr, want->indptr, (size_t)(major + 1) * sizeof(int64_t));
    if (want->nnz) {
        assert_memory_equal(got->indices, want->indices, (size_t)want->nnz * sizeof(int64_t));
        assert_memory_equal(got->data, want->data, (size_t)want->nnz * sbx_dtype_size(want->dtype));
    }
}

static void clear_all(sbx_value *v, int n) {
    for (int i = 0; i < n; i++) sbx_value_clear(&v[i]);
}

/* --- Graph pieces ------------------------------------------------------------------------------------- */
static sbx_var *input(sbx_graph *g, const char *name, sbx_dtype dtype, int64_t rows, int64_t cols) {
    int64_t shape[2] = {rows, cols};
    sbx_type t = sbx_type_dense(dtype, cols < -1 ? 1 : 2, cols < -1 ? &rows : shape);
    sbx_var *v;
    OK(sbx_graph_input(g, name, &t, &v));
    return v;
}
#define VECTOR (-2) /* cols for input(): a vector of rows */

static sbx_node *node(sbx_graph *g, const sbx_op_class *cls, const void *props, int nin, ...) {
    sbx_var *in[SBX_OP_MAX_INPUTS], *out = NULL;
    va_list a;
    va_start(a, nin);
    for (int i = 0; i < nin; i++) in[i] = va_arg(a, sbx_var *);
    va_end(a);
    sbx_status st = sbx_apply(g, cls, props, nin, in, &out);
    if (st != SBX_OK) fail_msg("%s: %s", cls->name, sbx_last_error());
    return sbx_var_owner(out);
}

static void perform(const sbx_node *n, const sbx_value *in, sbx_value *out) {
    if (sbx_node_perform(n, in, out, 7) != SBX_OK) fail_msg("%s: %s", sbx_node_op(n).cls->name, sbx_last_error());
}

/* The variables of one layer geometry in a graph: images x, kerns k (conv and local), bias b (conv
 * and local), output gradient g (conv/local, and pooled). Batches are unknown in the types. */
typedef struct {
    sbx_graph *g;
    sbx_var *x, *k, *b, *kl, *bl, *gy, *gp;
} layer_vars;

static layer_vars layer_graph(const config *c, sbx_dtype dt) {
    layer_vars v;
    const sizes z = sizes_of(c);
    OK(sbx_graph_create(&v.g));
    v.x = input(v.g, "images", dt, -1, z.in_size);
    v.k = input(v.g, "kerns", dt, c->nkern, z.width);
    v.b = input(v.g, "bias", dt, c->nkern, VECTOR);
    v.kl = input(v.g, "weights", dt, z.weights, VECTOR);
    v.bl = input(v.g, "unit bias", dt, z.units, VECTOR);
    v.gy = input(v.g, "grad_out", dt, -1, z.units);
    v.gp = input(v.g, "pooled grad", dt, -1, z.pooled);
    return v;
}

/* Values for layer_graph's variables. */
typedef struct {
    sbx_array *x, *k, *b, *kl, *bl, *gy, *gp;
} layer_values;

static layer_values layer_data(const config *c, sbx_dtype dt, int64_t batch) {
    const sizes z = sizes_of(c);
    layer_values d;
    d.x = distinct_array(dt, batch, z.in_size);
    d.k = random_array(dt, c->nkern, z.width);
    d.b = random_array(dt, c->nkern, -1);
    d.kl = random_array(dt, z.weights, -1);
    d.bl = random_array(dt, z.units, -1);
    d.gy = random_array(dt, batch, z.units);
    d.gp = random_array(dt, batch, z.pooled);
    return d;
}

static void layer_data_free(layer_values *d) {
    sbx_array *all[] = {d->x, d->k, d->b, d->kl, d->bl, d->gy, d->gp};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sbx_array_free(all[i]);
}

/* --- perform against the plans ------------------------------------------------------------------------ */
static void test_layers_match_plans(void **state) {
    (void)state;
    for (int ci = 0; ci < NCONFIGS; ci++)
        for (int di = 0; di < 2; di++)
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                const config *c = &CONFIGS[ci];
                const sbx_dtype dt = DTYPES[di];
                const sbx_layer_props lp = layer_props(c);
                layer_vars v = layer_graph(c, dt);
                layer_values d = layer_data(c, dt, c->batch);
                sbx_conv_plan *conv, *local;
                OK(sbx_conv_plan_create(&lp.shape, c->nkern, dt, &conv));
                OK(sbx_local_plan_create(&lp.shape, c->nkern, dt, &local));
                sbx_array *want[3] = {NULL, NULL, NULL};
                sbx_value out[3] = {{0}};

                /* Convolve, then ConvBackward */
                sbx_node *n = with_bias ? node(v.g, &sbx_op_convolve, &lp, 3, v.x, v.k, v.b)
                                        : node(v.g, &sbx_op_convolve, &lp, 2, v.x, v.k);
                sbx_value in[3] = {val(d.x), val(d.k), val(d.b)};
                perform(n, in, out);
                OK(sbx_conv_forward(conv, d.x, d.k, with_bias ? d.b : NULL, &want[0]));
                same_bits(out[0].dense, want[0], c->name);
                clear_all(out, 3);
                sbx_array_free(want[0]);
                n = node(v.g, &sbx_op_conv_backward, &lp, 3, v.x, v.k, v.gy);
                in[2] = val(d.gy);
                perform(n, in, out);
                OK(sbx_conv_backward(conv, d.x, d.k, d.gy, &want[0], &want[1], &want[2]));
                for (int j = 0; j < 3; j++) same_bits(out[j].dense, want[j], c->name);
                clear_all(out, 3);
                for (int j = 0; j < 3; j++) sbx_array_free(want[j]);

                /* LocalConnections, then LocalBackward */
                n = with_bias ? node(v.g, &sbx_op_local_connections, &lp, 3, v.x, v.kl, v.bl)
                              : node(v.g, &sbx_op_local_connections, &lp, 2, v.x, v.kl);
                in[1] = val(d.kl);
                in[2] = val(d.bl);
                perform(n, in, out);
                OK(sbx_local_forward(local, d.x, d.kl, with_bias ? d.bl : NULL, &want[0]));
                same_bits(out[0].dense, want[0], c->name);
                clear_all(out, 3);
                sbx_array_free(want[0]);
                n = node(v.g, &sbx_op_local_backward, &lp, 3, v.x, v.kl, v.gy);
                in[2] = val(d.gy);
                perform(n, in, out);
                OK(sbx_local_backward(local, d.x, d.kl, d.gy, &want[0], &want[1], &want[2]));
                for (int j = 0; j < 3; j++) same_bits(out[j].dense, want[j], c->name);
                clear_all(out, 3);
                for (int j = 0; j < 3; j++) sbx_array_free(want[j]);

                sbx_conv_plan_free(conv);
                sbx_conv_plan_free(local);
                layer_data_free(&d);
                sbx_graph_free(v.g);
            }
}

static void test_pool_matches_plans(void **state) {
    (void)state;
    for (int ci = 0; ci < NCONFIGS; ci++)
        for (int di = 0; di < 2; di++) {
            const config *c = &CONFIGS[ci];
            const sbx_dtype dt = DTYPES[di];
            const sbx_pool_props pp = pool_props(c);
            layer_vars v = layer_graph(c, dt);
            layer_values d = layer_data(c, dt, c->batch);
            sbx_conv_plan *pool;
            OK(sbx_pool_plan_create(&pp.shape, dt, &pool));
            sbx_array *y, *mask, *gx;
            sbx_value out[2] = {{0}};
            sbx_node *n = node(v.g, &sbx_op_max_pool, &pp, 1, v.x);
            sbx_value in[2] = {val(d.x), {0}};
            perform(n, in, out);
            OK(sbx_pool_forward_mask(pool, d.x, &y, &mask));
            same_bits(out[0].dense, y, c->name);
            same_bits(out[1].dense, mask, c->name);
            /* MaxPoolGrad on MaxPool's own mask output */
            sbx_node *back = node(v.g, &sbx_op_max_pool_grad, &pp, 2, sbx_node_output(n, 1), v.gp);
            sbx_value bin[2] = {out[1], val(d.gp)}, gout[1] = {{0}};
            perform(back, bin, gout);
            OK(sbx_pool_backward_mask(pool, mask, d.gp, &gx));
            same_bits(gout[0].dense, gx, c->name);
            clear_all(out, 2);
            clear_all(gout, 1);
            sbx_array_free(y);
            sbx_array_free(mask);
            sbx_array_free(gx);
            sbx_conv_plan_free(pool);
            layer_data_free(&d);
            sbx_graph_free(v.g);
        }
}

static sbx_conv_indices_props indices_props(const config *c, int ws, int64_t nkern, sbx_format format) {
    sbx_conv_indices_props p;
    memset(&p, 0, sizeof p);
    p.shape = shape_of(c);
    p.weight_sharing = ws;
    p.nkern = nkern;
    p.format = format;
    return p;
}

/* The patch matrix and kmap against sbx_conv_indices, and infer_shape against what came. */
static void test_indices_match(void **state) {
    (void)state;
    for (int ci = 0; ci < NCONFIGS; ci++)
        for (int ws = 0; ws < 2; ws++)
            for (int f = 0; f < 2; f++) {
                const config *c = &CONFIGS[ci];
                const sbx_format format = f ? SBX_CSC : SBX_CSR;
                const int64_t nkern = ws ? 1 : 3;
                const sbx_conv_indices_props ip = indices_props(c, ws, nkern, format);
                sbx_graph *g;
                OK(sbx_graph_create(&g));
                sbx_node *n = node(g, &sbx_op_convolution_indices, &ip, 0);
                assert_int_equal(sbx_node_noutputs(n), ws ? 1 : 2);
                sbx_value out[2] = {{0}};
                sbx_type inferred[2], got;
                OK(sbx_node_infer_shape(n, NULL, inferred));
                perform(n, NULL, out);
                sbx_sparse *m;
                sbx_array *kmap = NULL;
                OK(sbx_conv_indices(&ip.shape, ws, nkern, format, &m, ws ? NULL : &kmap));
                same_sparse(out[0].sparse, m, c->name);
                for (int j = 0; j < sbx_node_noutputs(n); j++) {
                    OK(sbx_type_of(&out[j], &got));
                    assert_true(sbx_type_equal(&got, &inferred[j]));
                    assert_true(sbx_type_accepts(sbx_var_type(sbx_node_output(n, j)), &out[j]));
                }
                if (!ws) same_bits(out[1].dense, kmap, c->name);
                /* Again into the same storage: the matrix struct and the kmap array are kept. */
                const sbx_sparse *ms = out[0].sparse;
                const sbx_array *ks = out[1].dense;
                if (ks) memset(ks->data, 0xff, (size_t)ks->shape[0] * sizeof(int64_t));
                perform(n, NULL, out);
                assert_ptr_equal(out[0].sparse, ms);
                assert_ptr_equal(out[1].dense, ks);
                same_sparse(out[0].sparse, m, c->name);
                if (!ws) same_bits(out[1].dense, kmap, c->name);
                clear_all(out, 2);
                sbx_sparse_free(m);
                sbx_array_free(kmap);
                sbx_graph_free(g);
            }
}

/* --- Output storage ------------------------------------------------------------------------------------ */
/* Each class performed twice into the same storage, poisoned in between: the arrays are kept and
 * rewritten whole. Then storage of the wrong shape, dtype or kind: replaced by arrays of the right one. */
static void test_storage_reuse(void **state) {
    (void)state;
    for (int ci = 0; ci < NCONFIGS; ci++)
        for (int di = 0; di < 2; di++) {
            const config *c = &CONFIGS[ci];
            const sbx_dtype dt = DTYPES[di], other = di ? SBX_FLOAT32 : SBX_FLOAT64;
            const sbx_layer_props lp = layer_props(c);
            const sbx_pool_props pp = pool_props(c);
            layer_vars v = layer_graph(c, dt);
            layer_values d = layer_data(c, dt, c->batch);
            sbx_node *nodes[6];
            nodes[0] = node(v.g, &sbx_op_convolve, &lp, 3, v.x, v.k, v.b);
            nodes[1] = node(v.g, &sbx_op_conv_backward, &lp, 3, v.x, v.k, v.gy);
            nodes[2] = node(v.g, &sbx_op_local_connections, &lp, 3, v.x, v.kl, v.bl);
            nodes[3] = node(v.g, &sbx_op_local_backward, &lp, 3, v.x, v.kl, v.gy);
            nodes[4] = node(v.g, &sbx_op_max_pool, &pp, 1, v.x);
            nodes[5] = node(v.g, &sbx_op_max_pool_grad, &pp, 2, sbx_node_output(nodes[4], 1), v.gp);
            sbx_value pool_out[2] = {{0}};
            sbx_value ins[6][3] = {{val(d.x), val(d.k), val(d.b)},  {val(d.x), val(d.k), val(d.gy)},
                                   {val(d.x), val(d.kl), val(d.bl)}, {val(d.x), val(d.kl), val(d.gy)},
                                   {val(d.x), {0}, {0}},            {{0}, val(d.gp), {0}}};
            perform(nodes[4], ins[4], pool_out);
            ins[5][0] = pool_out[1];
            for (int t = 0; t < 6; t++) {
                const int nout = sbx_node_noutputs(nodes[t]);
                sbx_value first[3] = {{0}}, out[3] = {{0}};
                perform(nodes[t], ins[t], first);
                perform(nodes[t], ins[t], out);
                const sbx_array *kept[3];
                for (int j = 0; j < nout; j++) {
                    kept[j] = out[j].dense;
                    poison(out[j].dense);
                }
                perform(nodes[t], ins[t], out);
                for (int j = 0; j < nout; j++) {
                    assert_ptr_equal(out[j].dense, kept[j]);
                    same_bits(out[j].dense, first[j].dense, sbx_node_op(nodes[t]).cls->name);
                }
                /* Wrong storage: output 0 of another shape, output 1 of another dtype, output 2 sparse. */
                clear_all(out, 3);
                out[0].dense = array(first[0].dense->dtype, 1, 1);
                if (nout > 1) out[1].dense = array(first[1].dense->dtype == dt ? other : dt, first[1].dense->shape[0],
                                                   first[1].dense->ndim == 2 ? first[1].dense->shape[1] : -1);
                if (nout > 2) {
                    sbx_sparse *s;
                    OK(sbx_sparse_create(SBX_CSR, dt, 2, 2, 0, &s));
                    out[2].sparse = s;
                }
                const sbx_array *wrong0 = out[0].dense;
                perform(nodes[t], ins[t], out);
                assert_ptr_not_equal(out[0].dense, wrong0);
                for (int j = 0; j < nout; j++) {
                    assert_null(out[j].sparse);
                    same_bits(out[j].dense, first[j].dense, sbx_node_op(nodes[t]).cls->name);
                }
                clear_all(first, 3);
                clear_all(out, 3);
            }
            clear_all(pool_out, 2);
            layer_data_free(&d);
            sbx_graph_free(v.g);
        }
}

/* --- ctx->needed and the kept plan ------------------------------------------------------------------- */
static sbx_status perform_needed(const sbx_node *n, void **st, unsigned needed, const sbx_value *in, sbx_value *out) {
    sbx_op op = sbx_node_op(n);
    sbx_perform_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.state = st;
    ctx.needed = needed;
    return op.cls->perform(&op, &ctx, sbx_node_ninputs(n), in, sbx_node_noutputs(n), out);
}

static void test_needed(void **state) {
    (void)state;
    for (int ci = 0; ci < NCONFIGS; ci++)
        for (int local = 0; local < 2; local++) {
            const config *c = &CONFIGS[ci];
            const sbx_layer_props lp = layer_props(c);
            layer_vars v = layer_graph(c, SBX_FLOAT64);
            layer_values d = layer_data(c, SBX_FLOAT64, c->batch);
            const sbx_op_class *cls = local ? &sbx_op_local_backward : &sbx_op_conv_backward;
            sbx_node *n = node(v.g, cls, &lp, 3, v.x, local ? v.kl : v.k, v.gy);
            sbx_value in[3] = {val(d.x), val(local ? d.kl : d.k), val(d.gy)}, all[3] = {{0}};
            perform(n, in, all);
            for (int j = 0; j < 3; j++) {
                /* Only output j: the others keep their (sentinel) arrays and contents. */
                void *st = NULL;
                sbx_value out[3];
                for (int q = 0; q < 3; q++) {
                    out[q].sparse = NULL;
                    out[q].dense = array(SBX_FLOAT64, 2, 2);
                    for (int64_t i = 0; i < 4; i++) set(out[q].dense, i, 100 + q);
                }
                sbx_array *sentinel[3] = {out[0].dense, out[1].dense, out[2].dense};
                OK(perform_needed(n, &st, 1u << j, in, out));
                assert_non_null(st);
                const void *plan = st;
                OK(perform_needed(n, &st, 1u << j, in, out)); /* the plan is made once and kept */
                assert_ptr_equal(st, plan);
                for (int q = 0; q < 3; q++) {
                    if (q == j) {
                        same_bits(out[q].dense, all[q].dense, cls->name);
                        continue;
                    }
                    assert_ptr_equal(out[q].dense, sentinel[q]);
                    for (int64_t i = 0; i < 4; i++) assert_true(get(out[q].dense, i) == 100 + q);
                }
                OK(perform_needed(n, &st, 0, in, out)); /* nothing asked: nothing done */
                cls->state_free(st);
                clear_all(out, 3);
            }
            clear_all(all, 3);
            layer_data_free(&d);
            sbx_graph_free(v.g);
        }
}

/* --- make_node's refusals ------------------------------------------------------------------------------ */
static sbx_status try_apply(sbx_graph *g, const sbx_op_class *cls, const void *props, int nin, sbx_var **in) {
    sbx_var *out = NULL;
    return sbx_apply(g, cls, props, nin, in, &out);
}

static void test_refusals(void **state) {
    (void)state;
    const config *c = &CONFIGS[0]; /* 2 maps of 7 x 6, kernel 3 x 2, stride (2, 1), 3 kernels */
    const sizes z = sizes_of(c);  /* in_size 84, width 12, out_size 3 x 5, units 45, pooled 30 */
    const sbx_layer_props lp = layer_props(c);
    sbx_graph *g;
    OK(sbx_graph_create(&g));
    sbx_var *x = input(g, "x", SBX_FLOAT32, -1, z.in_size), *k = input(g, "k", SBX_FLOAT32, c->nkern, z.width);
    sbx_var *b = input(g, "b", SBX_FLOAT32, c->nkern, VECTOR), *x3 = input(g, "x3", SBX_FLOAT32, 5, z.in_size);
    sbx_var *wide = input(g, "wide", SBX_FLOAT32, -1, z.in_size + 1);
    sbx_var *k64 = input(g, "k64", SBX_FLOAT64, c->nkern, z.width);
    sbx_var *kbad = input(g, "kbad", SBX_FLOAT32, c->nkern, z.width - 1);
    sbx_var *xi = input(g, "xi", SBX_INT32, -1, z.in_size);
    sbx_var *bbad = input(g, "bbad", SBX_FLOAT32, c->nkern + 1, VECTOR);
    sbx_var *vec = input(g, "vec", SBX_FLOAT32, z.in_size, VECTOR);
    sbx_var *g4 = input(g, "g4", SBX_FLOAT32, 4, z.units), *g5 = input(g, "g5", SBX_FLOAT32, 5, z.units);
    sbx_var *xs, *kq = input(g, "kq", SBX_FLOAT32, -1, -1);
    sbx_type sparse = sbx_type_sparse(SBX_CSR, SBX_FLOAT32, -1, z.in_size);
    OK(sbx_graph_input(g, "xs", &sparse, &xs));
    struct {
        const sbx_op_class *cls;
        int nin;
        sbx_var *in[3];
        const char *needle;
    } cases[] = {
        {&sbx_op_convolve, 2, {vec, k}, "Convolve: input 0 (images): expected a dense float32 or float64 array [?,84]"},
        {&sbx_op_convolve, 2, {wide, k}, "got float32[?,85]"},
        {&sbx_op_convolve, 2, {xi, k}, "input 0 (images): expected a dense float32 or float64 array [?,84] (batch x "
                                      "channels * prod(in)), got int32[?,84]"},
        {&sbx_op_convolve, 2, {xs, k}, "input 0 (images): expected a dense float32 or float64 array [?,84] (batch x "
                                      "channels * prod(in)), got csr float32[?,84]"},
        {&sbx_op_convolve, 2, {x, kbad}, "input 1 (kerns): expected a dense float32 (as input 0) array [3,12] (nkern x "
                                        "channels * kernel_size), got float32[3,11]"},
        {&sbx_op_convolve, 2, {x, k64}, "input 1 (kerns): expected a dense float32 (as input 0) array [3,12]"},
        {&sbx_op_convolve, 2, {x, x}, "input 1 (kerns)"},
        {&sbx_op_convolve, 3, {x, k, bbad}, "input 2 (bias): expected a dense float32 (as input 0) array [3]"},
        {&sbx_op_convolve, 1, {x}, "Convolve: takes 2 or 3 inputs (images, kerns[, bias]), got 1"},
        {&sbx_op_local_connections, 2, {x, k},
         "LocalConnections: input 1 (kerns): expected a dense float32 (as input 0) array [540]"},
        {&sbx_op_local_connections, 3, {x, input(g, "w", SBX_FLOAT32, z.weights, VECTOR), b},
         "input 2 (bias): expected a dense float32 (as input 0) array [45] (one per output unit"},
        {&sbx_op_conv_backward, 3, {x3, k, g4},
         "ConvBackward: input 2 (grad_out): expected a dense float32 (as input 0) array [5,45]"},
        {&sbx_op_conv_backward, 2, {x, k}, "ConvBackward: takes 3 inputs (images, kerns, grad_out), got 2"},
        {&sbx_op_local_backward, 3, {x, k, g5}, "LocalBackward: input 1 (kerns)"},
        {&sbx_op_max_pool, 1, {xi}, "MaxPool: input 0 (images)"},
        {&sbx_op_max_pool_grad, 2, {x, g4},
         "MaxPoolGrad: input 0 (mask): expected a dense uint8 (MaxPool's tap mask for windows of 6 taps) array [?,30]"},
    };
    const sbx_pool_props pp = pool_props(c);
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const void *props = cases[t].cls == &sbx_op_max_pool || cases[t].cls == &sbx_op_max_pool_grad
                                ? (const void *)&pp
                                : (const void *)&lp;
        expect_error(try_apply(g, cases[t].cls, props, cases[t].nin, cases[t].in), SBX_ERR_ARG, cases[t].needle);
    }
    /* Unknown extents pass make_node (perform checks the values). */
    sbx_var *ok_in[2] = {x, kq};
    OK(try_apply(g, &sbx_op_convolve, &lp, 2, ok_in));
    /* Bad properties. */
    sbx_var *xk[2] = {x, k};
    sbx_layer_props bad = lp;
    bad.nkern = 0;
    expect_error(try_apply(g, &sbx_op_convolve, &bad, 2, xk), SBX_ERR_ARG, "Convolve: nkern 0 must be >= 1");
    bad = lp;
    bad.shape.out[0] += 1;
    expect_error(try_apply(g, &sbx_op_convolve, &bad, 2, xk), SBX_ERR_ARG, "Convolve: shape: shape's computed fields");
    bad = lp;
    bad.shape.stride[1] = 0;
    expect_error(try_apply(g, &sbx_op_conv_backward, &bad, 2, xk), SBX_ERR_ARG, "takes 3 inputs");
    sbx_var *xkg[3] = {x, k, g4};
    expect_error(try_apply(g, &sbx_op_conv_backward, &bad, 3, xkg), SBX_ERR_ARG, "ConvBackward: shape: stride");
    bad = lp;
    bad.nkern = (int64_t)1 << 40;
    expect_error(try_apply(g, &sbx_op_convolve, &bad, 2, xk), SBX_ERR_OVERFLOW, "must fit a C int");
    /* Windows of more than 64 taps. */
    const config big = {"9 x 9 windows", 2, 1, {9, 9}, {9, 9}, {1, 1}, SBX_CONV_VALID, 1, 1};
    const sbx_pool_props bp = pool_props(&big);
    sbx_var *x81 = input(g, "x81", SBX_FLOAT64, -1, 81);
    expect_error(try_apply(g, &sbx_op_max_pool, &bp, 1, &x81), SBX_ERR_UNSUPPORTED, "MaxPool: windows of 81 taps");
    /* ConvolutionIndices. */
    sbx_conv_indices_props ip = indices_props(c, 1, 2, SBX_CSR);
    expect_error(try_apply(g, &sbx_op_convolution_indices, &ip, 0, NULL), SBX_ERR_ARG,
                 "ConvolutionIndices: nkern 2 with weight_sharing 1");
    ip = indices_props(c, 2, 1, SBX_CSR);
    expect_error(try_apply(g, &sbx_op_convolution_indices, &ip, 0, NULL), SBX_ERR_ARG,
                 "weight_sharing 2 must be 0 or 1");
    ip = indices_props(c, 0, 0, SBX_CSR);
    expect_error(try_apply(g, &sbx_op_convolution_indices, &ip, 0, NULL), SBX_ERR_ARG, "nkern 0 must be >= 1");
    ip = indices_props(c, 0, 1, (sbx_format)7);
    expect_error(try_apply(g, &sbx_op_convolution_indices, &ip, 0, NULL), SBX_ERR_ARG, "format 7");
    ip = indices_props(c, 0, 1, SBX_CSR);
    expect_error(try_apply(g, &sbx_op_convolution_indices, &ip, 1, &x), SBX_ERR_ARG, "takes 0 inputs");
    /* perform on values that the unknown extents let through: the plan's check, with the op's name. */
    sbx_node *n = node(g, &sbx_op_convolve, &lp, 2, x, kq);
    sbx_array *xv = random_array(SBX_FLOAT32, 2, z.in_size), *kv = random_array(SBX_FLOAT32, c->nkern, z.width + 1);
    sbx_value in[2] = {val(xv), val(kv)}, out[1] = {{0}};
    expect_error(sbx_node_perform(n, in, out, 0), SBX_ERR_ARG, "Convolve: kerns must be 3 x 12; it is 3 x 13");
    clear_all(out, 1);
    sbx_array_free(xv);
    sbx_array_free(kv);
    sbx_graph_free(g);
}

/* --- infer_shape against perform ---------------------------------------------------------------------- */
static void test_infer_shape(void **state) {
    (void)state;
    for (int ci = 0; ci < NCONFIGS; ci++) {
        const config *c = &CONFIGS[ci];
        const sbx_layer_props lp = layer_props(c);
        const sbx_pool_props pp = pool_props(c);
        layer_vars v = layer_graph(c, SBX_FLOAT32);
        layer_values d = layer_data(c, SBX_FLOAT32, c->batch + 1);
        sbx_node *pool = node(v.g, &sbx_op_max_pool, &pp, 1, v.x);
        sbx_node *nodes[7] = {node(v.g, &sbx_op_convolve, &lp, 3, v.x, v.k, v.b),
                              node(v.g, &sbx_op_conv_backward, &lp, 3, v.x, v.k, v.gy),
                              node(v.g, &sbx_op_local_connections, &lp, 2, v.x, v.kl),
                              node(v.g, &sbx_op_local_backward, &lp, 3, v.x, v.kl, v.gy),
                              pool,
                              node(v.g, &sbx_op_max_pool_grad, &pp, 2, sbx_node_output(pool, 1), v.gp),
                              NULL};
        sbx_value pool_out[2] = {{0}};
        sbx_value ins[6][3] = {{val(d.x), val(d.k), val(d.b)},  {val(d.x), val(d.k), val(d.gy)},
                               {val(d.x), val(d.kl), {0}},       {val(d.x), val(d.kl), val(d.gy)},
                               {val(d.x), {0}, {0}},            {{0}, val(d.gp), {0}}};
        perform(pool, ins[4], pool_out);
        ins[5][0] = pool_out[1];
        for (int t = 0; nodes[t]; t++) {
            sbx_type inferred[3], got;
            sbx_value out[3] = {{0}};
            OK(sbx_node_infer_shape(nodes[t], ins[t], inferred));
            perform(nodes[t], ins[t], out);
            for (int j = 0; j < sbx_node_noutputs(nodes[t]); j++) {
                OK(sbx_type_of(&out[j], &got));
                if (!sbx_type_equal(&got, &inferred[j])) {
                    char a[128], b[128];
                    sbx_type_str(&inferred[j], a, sizeof a);
                    sbx_type_str(&got, b, sizeof b);
                    fail_msg("%s, %s output %d: inferred %s, perform gave %s", c->name,
                             sbx_node_op(nodes[t]).cls->name, j, a, b);
                }
                assert_true(sbx_type_accepts(sbx_var_type(sbx_node_output(nodes[t], j)), &out[j]));
            }
            clear_all(out, 3);
        }
        clear_all(pool_out, 2);
        layer_data_free(&d);
        sbx_graph_free(v.g);
    }
}

/* --- grad answers against connection_pattern ---------------------------------------------------------- */
/* Gradient variables for the outputs of n picked by mask (inputs of the outputs' types). */
static void gradient_inputs(sbx_graph *g, const sbx_node *n, unsigned mask, sbx_var **gout) {
    for (int j = 0; j < sbx_node_noutputs(n); j++) {
        gout[j] = NULL;
        if (mask & (1u << j)) OK(sbx_graph_input(g, "gout", sbx_var_type(sbx_node_output(n, j)), &gout[j]));
    }
}

/* For every subset of the float outputs given gradients: an input is disconnected exactly when no
 * output with a gradient depends on it; a defined gradient has the input's kind, dtype and rank. */
static void check_answers(sbx_graph *g, const sbx_node *n, unsigned float_outputs) {
    const int nin = sbx_node_ninputs(n), nout = sbx_node_noutputs(n);
    int pattern[SBX_OP_MAX_INPUTS * SBX_OP_MAX_OUTPUTS];
    sbx_node_connection_pattern(n, pattern);
    for (unsigned mask = 0; mask < (1u << nout); mask++) {
        if (mask & ~float_outputs) continue;
        sbx_var *gout[SBX_OP_MAX_OUTPUTS], *gin[SBX_OP_MAX_INPUTS];
        sbx_grad answer[SBX_OP_MAX_INPUTS];
        const char *reason[SBX_OP_MAX_INPUTS];
        gradient_inputs(g, n, mask, gout);
        OK(sbx_node_grad(g, n, gout, gin, answer, reason));
        for (int i = 0; i < nin; i++) {
            int reached = 0;
            for (int j = 0; j < nout; j++) reached |= (mask & (1u << j)) && pattern[i * nout + j];
            const char *name = sbx_node_op(n).cls->name;
            if (!reached && answer[i] != SBX_GRAD_DISCONNECTED)
                fail_msg("%s, outputs %#x: input %d answers %d, not disconnected", name, mask, i, answer[i]);
            if (reached && answer[i] == SBX_GRAD_DISCONNECTED)
                fail_msg("%s, outputs %#x: input %d answers disconnected", name, mask, i);
            if (answer[i] == SBX_GRAD_UNDEFINED && (!reason[i] || !strstr(reason[i], name)))
                fail_msg("%s: input %d undefined without a reason naming the op", name, i);
            if (answer[i] == SBX_GRAD_DEFINED) {
                const sbx_type *want = sbx_var_type(sbx_node_input(n, i)), *got = sbx_var_type(gin[i]);
                assert_non_null(gin[i]);
                assert_int_equal(got->kind, want->kind);
                assert_int_equal(got->dtype, want->dtype);
                assert_int_equal(got->ndim, want->ndim);
                for (int e = 0; e < want->ndim; e++)
                    assert_true(got->shape[e] < 0 || want->shape[e] < 0 || got->shape[e] == want->shape[e]);
            }
        }
    }
}

static void test_grad_answers(void **state) {
    (void)state;
    const config *c = &CONFIGS[1];
    const sbx_layer_props lp = layer_props(c);
    const sbx_pool_props pp = pool_props(c);
    layer_vars v = layer_graph(c, SBX_FLOAT64);
    sbx_node *pool = node(v.g, &sbx_op_max_pool, &pp, 1, v.x);
    check_answers(v.g, node(v.g, &sbx_op_convolve, &lp, 3, v.x, v.k, v.b), 1);
    check_answers(v.g, node(v.g, &sbx_op_convolve, &lp, 2, v.x, v.k), 1);
    check_answers(v.g, node(v.g, &sbx_op_conv_backward, &lp, 3, v.x, v.k, v.gy), 7);
    check_answers(v.g, node(v.g, &sbx_op_local_connections, &lp, 3, v.x, v.kl, v.bl), 1);
    check_answers(v.g, node(v.g, &sbx_op_local_backward, &lp, 3, v.x, v.kl, v.gy), 7);
    check_answers(v.g, pool, 1); /* the mask output is integer: no gradient goes to it */
    check_answers(v.g, node(v.g, &sbx_op_max_pool_grad, &pp, 2, sbx_node_output(pool, 1), v.gp), 1);
    const sbx_conv_indices_props ip = indices_props(c, 0, 2, SBX_CSC);
    sbx_node *ind = node(v.g, &sbx_op_convolution_indices, &ip, 0);
    sbx_var *gout[2] = {NULL, NULL}, *gin[1];
    sbx_grad answer[1];
    const char *reason[1];
    OK(sbx_node_grad(v.g, ind, gout, gin, answer, reason)); /* no inputs: nothing to answer */
    /* The exact patterns. */
    int p[9];
    sbx_node_connection_pattern(node(v.g, &sbx_op_conv_backward, &lp, 3, v.x, v.k, v.gy), p);
    const int want[9] = {0, 1, 0, 1, 0, 0, 1, 1, 1};
    assert_memory_equal(p, want, sizeof want);
    sbx_node_connection_pattern(pool, p);
    assert_true(p[0] == 1 && p[1] == 1);
    /* MaxPoolGrad's answers are undefined, with reasons. */
    sbx_node *back = node(v.g, &sbx_op_max_pool_grad, &pp, 2, sbx_node_output(pool, 1), v.gp);
    sbx_var *go[1], *gi[2];
    sbx_grad an[2];
    const char *re[2];
    gradient_inputs(v.g, back, 1, go);
    OK(sbx_node_grad(v.g, back, go, gi, an, re));
    assert_int_equal(an[0], SBX_GRAD_UNDEFINED);
    assert_int_equal(an[1], SBX_GRAD_UNDEFINED);
    assert_non_null(strstr(re[0], "integer"));
    assert_non_null(strstr(re[1], "not implemented"));
    sbx_graph_free(v.g);
}

/* --- Properties ------------------------------------------------------------------------------------------ */
/* A shape with the fields of s and every padding byte set to fill. */
static sbx_conv_shape padded_copy(const sbx_conv_shape *s, int fill) {
    sbx_conv_shape t;
    memset(&t, fill, sizeof t);
    t.ndim = s->ndim;
    t.channels = s->channels;
    t.mode = s->mode;
    t.in_size = s->in_size;
    t.out_size = s->out_size;
    t.kernel_size = s->kernel_size;
    for (int d = 0; d < SBX_MAX_NDIM; d++) {
        t.in[d] = s->in[d];
        t.kernel[d] = s->kernel[d];
        t.stride[d] = s->stride[d];
        t.out[d] = s->out[d];
    }
    return t;
}

static void expect_same_op(const sbx_op *a, const sbx_op *b, int same) {
    assert_int_equal(sbx_op_equal(a, b), same);
    assert_int_equal(sbx_op_equal(b, a), same);
    if (same) assert_true(sbx_op_hash(a) == sbx_op_hash(b));
    if (!same && a->cls == b->cls) assert_true(sbx_op_hash(a) != sbx_op_hash(b)); /* these differ by design */
}

static void test_props(void **state) {
    (void)state;
    const config *c = &CONFIGS[3];
    const sbx_conv_shape s = shape_of(c);
    sbx_layer_props la, lb, lc;
    memset(&la, 0x11, sizeof la);
    memset(&lb, 0x77, sizeof lb);
    la.shape = padded_copy(&s, 0x11);
    lb.shape = padded_copy(&s, 0x77);
    la.nkern = lb.nkern = 4;
    const sbx_op_class *layer_classes[4] = {&sbx_op_convolve, &sbx_op_conv_backward, &sbx_op_local_connections,
                                            &sbx_op_local_backward};
    for (int t = 0; t < 4; t++) {
        sbx_op a = {layer_classes[t], &la}, b = {layer_classes[t], &lb}, d = {layer_classes[(t + 1) % 4], &la};
        expect_same_op(&a, &b, 1);
        expect_same_op(&a, &d, 0);
        lc = la;
        lc.nkern = 5;
        sbx_op e = {layer_classes[t], &lc};
        expect_same_op(&a, &e, 0);
        lc = la;
        lc.shape.stride[1] = 1;
        expect_same_op(&a, &e, 0);
        lc = la;
        lc.shape.mode = SBX_CONV_VALID;
        expect_same_op(&a, &e, 0);
        lc = la;
        lc.shape.kernel[2] = 2;
        expect_same_op(&a, &e, 0);
        char buf[512];
        layer_classes[t]->props_str(&la, buf, sizeof buf);
        assert_string_equal(buf, "channels=2 in=(4,3,5) kernel=(2,2,3) stride=(1,2,1) mode=full nkern=4");
        assert_int_equal(layer_classes[t]->props_str(&la, buf, 8), (int)strlen("channels=2 in=(4,3,5) kernel=(2,2,3) "
                                                                                "stride=(1,2,1) mode=full nkern=4"));
        assert_string_equal(buf, "channel");
    }
    sbx_pool_props pa, pb, pc;
    memset(&pa, 0x22, sizeof pa);
    memset(&pb, 0x99, sizeof pb);
    pa.shape = padded_copy(&s, 0x22);
    pb.shape = padded_copy(&s, 0x99);
    for (int t = 0; t < 2; t++) {
        const sbx_op_class *cls = t ? &sbx_op_max_pool_grad : &sbx_op_max_pool;
        sbx_op a = {cls, &pa}, b = {cls, &pb}, e = {cls, &pc};
        expect_same_op(&a, &b, 1);
        pc = pa;
        pc.shape.channels = 3;
        expect_same_op(&a, &e, 0);
        pc = pa;
        pc.shape.in[0] = 5;
        expect_same_op(&a, &e, 0);
    }
    sbx_conv_indices_props ia, ib, ic;
    memset(&ia, 0x33, sizeof ia);
    memset(&ib, 0x44, sizeof ib);
    ia.shape = padded_copy(&s, 0x33);
    ib.shape = padded_copy(&s, 0x44);
    ia.weight_sharing = ib.weight_sharing = 0;
    ia.nkern = ib.nkern = 3;
    ia.format = ib.format = SBX_CSC;
    sbx_op a = {&sbx_op_convolution_indices, &ia}, b = {&sbx_op_convolution_indices, &ib};
    sbx_op e = {&sbx_op_convolution_indices, &ic};
    expect_same_op(&a, &b, 1);
    ic = ia;
    ic.weight_sharing = 1;
    expect_same_op(&a, &e, 0);
    ic = ia;
    ic.nkern = 2;
    expect_same_op(&a, &e, 0);
    ic = ia;
    ic.format = SBX_CSR;
    expect_same_op(&a, &e, 0);
    char buf[512];
    sbx_op_convolution_indices.props_str(&ia, buf, sizeof buf);
    assert_non_null(strstr(buf, "weight_sharing=0 nkern=3 format=csc"));
}

/* --- Gradients by central differences (float64) ---------------------------------------------------------- */
/* sum(a * w) over every element. */
static double dot(const sbx_array *a, const sbx_array *w) {
    double s = 0;
    assert_int_equal(sbx_array_numel(a), sbx_array_numel(w));
    for (int64_t i = 0; i < sbx_array_numel(a); i++) s += get(a, i) * get(w, i);
    return s;
}

/* A cost of the arrays: performs nodes and weighs their outputs. */
typedef struct {
    const sbx_node *n;
    sbx_value *in;            /* n's inputs (the arrays perturbed are among them) */
    sbx_array *weight[3];     /* the cost is sum over j of sum(output j * weight[j]); NULL: not counted */
    sbx_value out[3];         /* storage kept between evaluations */
} cost_fn;

static double cost_of(cost_fn *f) {
    perform(f->n, f->in, f->out);
    double s = 0;
    for (int j = 0; j < 3; j++)
        if (f->weight[j]) s += dot(f->out[j].dense, f->weight[j]);
    return s;
}

/* grad against central differences of f with respect to each element of a (one of f's inputs). The
 * costs here are linear in a, so the difference is exact but for rounding; h is for max pooling, whose
 * windows' maxima must not change. */
static void check_fd(cost_fn *f, sbx_array *a, const sbx_array *grad, double h, const char *what) {
    assert_int_equal(sbx_array_numel(a), sbx_array_numel(grad));
    double scale = 0;
    for (int64_t i = 0; i < sbx_array_numel(grad); i++) scale = fmax(scale, fabs(get(grad, i)));
    const int64_t n = sbx_array_numel(a), step = n > 150 ? n / 150 : 1; /* about 150 elements, spread */
    for (int64_t i = 0; i < n; i += step) {
        const double keep = get(a, i);
        set(a, i, keep + h);
        const double up = cost_of(f);
        set(a, i, keep - h);
        const double down = cost_of(f);
        set(a, i, keep);
        const double fd = (up - down) / (2 * h), an = get(grad, i);
        if (!(fabs(fd - an) <= 1e-6 * (1 + scale)))
            fail_msg("%s[%lld]: analytic %.12g, central difference %.12g", what, (long long)i, an, fd);
    }
}

static void test_first_order_fd(void **state) {
    (void)state;
    for (int ci = 0; ci < NCONFIGS; ci++)
        for (int local = 0; local < 2; local++) {
            const config *c = &CONFIGS[ci];
            const sbx_layer_props lp = layer_props(c);
            layer_vars v = layer_graph(c, SBX_FLOAT64);
            layer_values d = layer_data(c, SBX_FLOAT64, 2);
            sbx_var *k = local ? v.kl : v.k, *b = local ? v.bl : v.b;
            sbx_array *kv = local ? d.kl : d.k, *bv = local ? d.bl : d.b;
            sbx_node *fwd = node(v.g, local ? &sbx_op_local_connections : &sbx_op_convolve, &lp, 3, v.x, k, b);
            /* The gradient node, from the forward node's grad, performed. */
            sbx_var *gout[1] = {v.gy}, *gin[3];
            sbx_grad answer[3];
            const char *reason[3];
            OK(sbx_node_grad(v.g, fwd, gout, gin, answer, reason));
            const sbx_node *back = sbx_var_owner(gin[0]);
            assert_ptr_equal(sbx_node_op(back).cls, local ? &sbx_op_local_backward : &sbx_op_conv_backward);
            for (int i = 0; i < 3; i++) {
                assert_int_equal(answer[i], SBX_GRAD_DEFINED);
                assert_ptr_equal(sbx_var_owner(gin[i]), back);
                assert_int_equal(sbx_var_output_index(gin[i]), i);
            }
            sbx_value bin[3] = {val(d.x), val(kv), val(d.gy)}, grads[3] = {{0}};
            perform(back, bin, grads);
            sbx_value fin[3] = {val(d.x), val(kv), val(bv)};
            cost_fn f = {fwd, fin, {d.gy, NULL, NULL}, {{0}}};
            check_fd(&f, d.x, grads[0].dense, 1e-3, "grad_images");
            check_fd(&f, kv, grads[1].dense, 1e-3, "grad_kerns");
            check_fd(&f, bv, grads[2].dense, 1e-3, "grad_bias");
            clear_all(f.out, 3);
            clear_all(grads, 3);
            layer_data_free(&d);
            sbx_graph_free(v.g);
        }
    /* Max pooling: distinct pixels, a step well inside their spacing. */
    for (int ci = 0; ci < NCONFIGS; ci++) {
        const config *c = &CONFIGS[ci];
        const sbx_pool_props pp = pool_props(c);
        layer_vars v = layer_graph(c, SBX_FLOAT64);
        layer_values d = layer_data(c, SBX_FLOAT64, 2);
        sbx_node *pool = node(v.g, &sbx_op_max_pool, &pp, 1, v.x);
        sbx_var *gout[2] = {v.gp, NULL}, *gin[1];
        sbx_grad answer[1];
        const char *reason[1];
        OK(sbx_node_grad(v.g, pool, gout, gin, answer, reason));
        assert_int_equal(answer[0], SBX_GRAD_DEFINED);
        const sbx_node *back = sbx_var_owner(gin[0]);
        assert_ptr_equal(sbx_node_input(back, 0), sbx_node_output(pool, 1));
        sbx_value pin[1] = {val(d.x)}, pout[2] = {{0}}, grads[1] = {{0}};
        perform(pool, pin, pout);
        sbx_value bin[2] = {pout[1], val(d.gp)};
        perform(back, bin, grads);
        cost_fn f = {pool, pin, {d.gp, NULL, NULL}, {{0}}};
        check_fd(&f, d.x, grads[0].dense, 1e-3 / (double)sbx_array_numel(d.x), c->name);
        clear_all(f.out, 3);
        clear_all(pout, 2);
        clear_all(grads, 1);
        layer_data_free(&d);
        sbx_graph_free(v.g);
    }
}

/* A small evaluator for the gradient graphs: each variable's value, performing its node when needed. */
typedef struct {
    sbx_var *var[256];
    sbx_value value[256];
    int owned[256], n;
} env;

static void bind(env *e, sbx_var *v, sbx_value x, int owned) {
    assert_true(e->n < 256);
    e->var[e->n] = v;
    e->value[e->n] = x;
    e->owned[e->n++] = owned;
}

static sbx_value *lookup(env *e, const sbx_var *v) {
    for (int i = 0; i < e->n; i++)
        if (e->var[i] == v) return &e->value[i];
    return NULL;
}

static sbx_value *eval(env *e, sbx_var *v) {
    sbx_value *known = lookup(e, v);
    if (known) return known;
    const sbx_node *n = sbx_var_owner(v);
    if (!n) fail_msg("variable %s has no value", sbx_var_name(v));
    sbx_value in[SBX_OP_MAX_INPUTS], out[SBX_OP_MAX_OUTPUTS];
    memset(out, 0, sizeof out);
    for (int i = 0; i < sbx_node_ninputs(n); i++) in[i] = *eval(e, sbx_node_input(n, i));
    perform(n, in, out);
    for (int j = 0; j < sbx_node_noutputs(n); j++) bind(e, sbx_node_output(n, j), out[j], 1);
    return lookup(e, v);
}

static void env_free(env *e) {
    for (int i = 0; i < e->n; i++)
        if (e->owned[i]) sbx_value_clear(&e->value[i]);
}

/* The backward ops' gradients: for each set of incoming gradients (Gx, Gk, Gb), the cost
 * phi = sum(gx Gx) + sum(gk Gk) + sum(gb Gb) of B(x, k, g) against central differences in x, k, g. */
static void test_second_order_fd(void **state) {
    (void)state;
    const int configs[3] = {0, 1, 3};
    for (int cc = 0; cc < 3; cc++)
        for (int local = 0; local < 2; local++)
            for (unsigned mask = 1; mask < 8; mask++) {
                const config *c = &CONFIGS[configs[cc]];
                const sbx_layer_props lp = layer_props(c);
                const sizes z = sizes_of(c);
                layer_vars v = layer_graph(c, SBX_FLOAT64);
                layer_values d = layer_data(c, SBX_FLOAT64, 2);
                sbx_var *k = local ? v.kl : v.k;
                sbx_array *kv = local ? d.kl : d.k;
                const sbx_op_class *cls = local ? &sbx_op_local_backward : &sbx_op_conv_backward;
                sbx_node *back = node(v.g, cls, &lp, 3, v.x, k, v.gy);
                sbx_var *gout[3] = {NULL, NULL, NULL}, *gin[3];
                sbx_grad answer[3];
                const char *reason[3];
                sbx_array *G[3] = {random_array(SBX_FLOAT64, 2, z.in_size),
                                   local ? random_array(SBX_FLOAT64, z.weights, -1)
                                         : random_array(SBX_FLOAT64, c->nkern, z.width),
                                   random_array(SBX_FLOAT64, local ? z.units : c->nkern, -1)};
                for (int j = 0; j < 3; j++)
                    if (mask & (1u << j))
                        OK(sbx_graph_input(v.g, "G", sbx_var_type(sbx_node_output(back, j)), &gout[j]));
                OK(sbx_node_grad(v.g, back, gout, gin, answer, reason));
                assert_int_equal(answer[0], gout[1] ? SBX_GRAD_DEFINED : SBX_GRAD_DISCONNECTED);
                assert_int_equal(answer[1], gout[0] ? SBX_GRAD_DEFINED : SBX_GRAD_DISCONNECTED);
                assert_int_equal(answer[2], SBX_GRAD_DEFINED);
                env e = {{0}, {{0}}, {0}, 0};
                sbx_array *vals[3] = {d.x, kv, d.gy};
                sbx_var *vars[3] = {v.x, k, v.gy};
                for (int i = 0; i < 3; i++) {
                    bind(&e, vars[i], val(vals[i]), 0);
                    if (gout[i]) bind(&e, gout[i], val(G[i]), 0);
                }
                sbx_value bin[3] = {val(d.x), val(kv), val(d.gy)};
                cost_fn f = {back, bin, {gout[0] ? G[0] : NULL, gout[1] ? G[1] : NULL, gout[2] ? G[2] : NULL}, {{0}}};
                char what[96];
                for (int i = 0; i < 3; i++) {
                    if (answer[i] != SBX_GRAD_DEFINED) continue;
                    snprintf(what, sizeof what, "%s %s, incoming %#x, d/d input %d", c->name, local ? "local" : "conv",
                             mask, i);
                    check_fd(&f, vals[i], eval(&e, gin[i])->dense, 1e-3, what);
                }
                clear_all(f.out, 3);
                env_free(&e);
                for (int j = 0; j < 3; j++) sbx_array_free(G[j]);
                layer_data_free(&d);
                sbx_graph_free(v.g);
            }
}

/* --- Thread counts and empty batches ------------------------------------------------------------------- */
static void test_thread_counts(void **state) {
    (void)state;
    const config *c = &CONFIGS[4];
    const sbx_layer_props lp = layer_props(c);
    layer_vars v = layer_graph(c, SBX_FLOAT32);
    layer_values d = layer_data(c, SBX_FLOAT32, 8);
    sbx_node *nodes[2] = {node(v.g, &sbx_op_convolve, &lp, 3, v.x, v.k, v.b),
                          node(v.g, &sbx_op_conv_backward, &lp, 3, v.x, v.k, v.gy)};
    sbx_value ins[2][3] = {{val(d.x), val(d.k), val(d.b)}, {val(d.x), val(d.k), val(d.gy)}};
    const int before = sbx_get_num_threads();
    for (int t = 0; t < 2; t++) {
        sbx_value one[3] = {{0}}, two[3] = {{0}};
        sbx_set_num_threads(1);
        perform(nodes[t], ins[t], one);
        sbx_set_num_threads(2);
        perform(nodes[t], ins[t], two);
        for (int j = 0; j < sbx_node_noutputs(nodes[t]); j++) same_bits(two[j].dense, one[j].dense, "threads");
        clear_all(one, 3);
        clear_all(two, 3);
    }
    sbx_set_num_threads(before);
    layer_data_free(&d);
    sbx_graph_free(v.g);
}

/* A batch of none: empty outputs, and the kernels' and bias's gradients zero (over poisoned storage). */
static void test_empty_batch(void **state) {
    (void)state;
    for (int ci = 0; ci < NCONFIGS; ci++)
        for (int local = 0; local < 2; local++) {
            const config *c = &CONFIGS[ci];
            const sbx_layer_props lp = layer_props(c);
            layer_vars v = layer_graph(c, SBX_FLOAT64);
            layer_values d = layer_data(c, SBX_FLOAT64, 0);
            sbx_var *k = local ? v.kl : v.k;
            sbx_array *kv = local ? d.kl : d.k;
            sbx_node *back = node(v.g, local ? &sbx_op_local_backward : &sbx_op_conv_backward, &lp, 3, v.x, k, v.gy);
            sbx_value in[3] = {val(d.x), val(kv), val(d.gy)}, out[3] = {{0}};
            perform(back, in, out);
            poison(out[1].dense);
            poison(out[2].dense);
            perform(back, in, out);
            assert_int_equal(out[0].dense->shape[0], 0);
            for (int j = 1; j < 3; j++)
                for (int64_t i = 0; i < sbx_array_numel(out[j].dense); i++) assert_true(get(out[j].dense, i) == 0);
            clear_all(out, 3);
            sbx_node *fwd = node(v.g, local ? &sbx_op_local_connections : &sbx_op_convolve, &lp, 2, v.x, k);
            perform(fwd, in, out);
            assert_int_equal(out[0].dense->shape[0], 0);
            assert_int_equal(out[0].dense->shape[1], sizes_of(c).units);
            clear_all(out, 3);
            layer_data_free(&d);
            sbx_graph_free(v.g);
        }
}

/* --- The _into functions' own checks (conv/layers.h) ------------------------------------------------- */
static void test_into_checks(void **state) {
    (void)state;
    const config *c = &CONFIGS[0];
    const sizes z = sizes_of(c);
    const sbx_conv_shape s = shape_of(c);
    sbx_conv_plan *conv, *pool;
    OK(sbx_conv_plan_create(&s, c->nkern, SBX_FLOAT64, &conv));
    OK(sbx_pool_plan_create(&s, SBX_FLOAT64, &pool));
    sbx_array *x = random_array(SBX_FLOAT64, 3, z.in_size), *k = random_array(SBX_FLOAT64, c->nkern, z.width);
    sbx_array *g = random_array(SBX_FLOAT64, 3, z.units), *y = array(SBX_FLOAT64, 3, z.units);
    sbx_array *short_y = array(SBX_FLOAT64, 2, z.units), *y32 = array(SBX_FLOAT32, 3, z.units);
    sbx_array *gk = array(SBX_FLOAT64, c->nkern, z.width), *gb = array(SBX_FLOAT64, c->nkern, -1);
    expect_error(sbx__conv_forward_into(conv, x, k, NULL, short_y), SBX_ERR_ARG, "out must be 3 x 45; it is 2 x 45");
    expect_error(sbx__conv_forward_into(conv, x, k, NULL, y32), SBX_ERR_ARG, "out has dtype float32");
    expect_error(sbx__conv_forward_into(conv, x, k, NULL, NULL), SBX_ERR_ARG, "out is NULL");
    expect_error(sbx__conv_backward_into(conv, x, k, g, NULL, gk, k), SBX_ERR_ARG, "grad_bias must be a vector of 3");
    expect_error(sbx__conv_backward_into(conv, x, k, g, NULL, k, gb), SBX_ERR_ARG,
                 "grad_kerns shares its data with an input or another output");
    /* Only the gradients asked for: grad_kerns alone leaves grad_bias's array alone. */
    for (int64_t i = 0; i < c->nkern; i++) set(gb, i, 5);
    sbx_array *want_k = NULL;
    OK(sbx_conv_backward(conv, x, k, g, NULL, &want_k, NULL));
    poison(gk);
    OK(sbx__conv_backward_into(conv, x, k, g, NULL, gk, NULL));
    same_bits(gk, want_k, "grad_kerns alone");
    for (int64_t i = 0; i < c->nkern; i++) assert_true(get(gb, i) == 5);
    /* Pooling's outputs: the mask's dtype and the pooled shape. */
    sbx_array *py = array(SBX_FLOAT64, 3, z.pooled), *pm = array(SBX_UINT16, 3, z.pooled);
    expect_error(sbx__pool_forward_mask_into(pool, x, py, pm), SBX_ERR_ARG, "mask must be a uint8 array of 3 x 30");
    expect_error(sbx__pool_forward_mask_into(pool, x, py, py), SBX_ERR_ARG, "mask must be a uint8 array");
    sbx_array *pm8 = array(SBX_UINT8, 3, z.pooled), *px = array(SBX_FLOAT64, 3, z.in_size);
    OK(sbx__pool_forward_mask_into(pool, x, py, pm8));
    expect_error(sbx__pool_backward_mask_into(pool, pm8, py, py), SBX_ERR_ARG, "grad_images must be 3 x 84");
    OK(sbx__pool_backward_mask_into(pool, pm8, py, px));
    assert_int_equal(sbx__pool_mask_dtype(4), SBX_UINT8);
    assert_int_equal(sbx__pool_mask_dtype(9), SBX_UINT16);
    assert_int_equal(sbx__pool_mask_dtype(17), SBX_UINT32);
    assert_int_equal(sbx__pool_mask_dtype(64), SBX_UINT64);
    sbx_array *all[] = {x, k, g, y, short_y, y32, gk, gb, want_k, py, pm, pm8, px};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sbx_array_free(all[i]);
    sbx_conv_plan_free(conv);
    sbx_conv_plan_free(pool);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layers_match_plans), cmocka_unit_test(test_pool_matches_plans),
        cmocka_unit_test(test_indices_match),      cmocka_unit_test(test_storage_reuse),
        cmocka_unit_test(test_needed),             cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_infer_shape),        cmocka_unit_test(test_grad_answers),
        cmocka_unit_test(test_props),              cmocka_unit_test(test_first_order_fd),
        cmocka_unit_test(test_second_order_fd),    cmocka_unit_test(test_thread_counts),
        cmocka_unit_test(test_empty_batch),        cmocka_unit_test(test_into_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
