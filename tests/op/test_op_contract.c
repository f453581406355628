/* The original's generic Op testers, run over every class that sbx_op_classes() lists:
 *  - completeness of the class tables and of the list (the 34 classes op.h names);
 *  - InferShapeTester: infer_shape's output types against the types of what perform produces, with
 *    static input types and with an unknown batch extent;
 *  - output storage: a second perform into the first's storage keeps each output's array (matrix)
 *    and gives the same values; storage of the wrong shape, dtype or kind is replaced;
 *  - verify_grad: every defined gradient against central differences, in float64;
 *  - the grad answers against connection_pattern (and the random ops' and optimiser steps' pinned
 *    answers);
 *  - op equality and hashing (padding in the property structs must not matter);
 *  - second derivatives: verify_grad of the gradient, where the gradient's ops are differentiable.
 * Every tester walks one case table (build_cases) of small inputs with fixed pseudo-random contents
 * and reports each failure (class, case, what was expected, what came) before failing.
 * To look at one failure: SBX_CONTRACT_CASES=text keeps only the cases whose names contain text,
 * SBX_CONTRACT_CASES='!text' leaves them out (the completeness tester then misses their classes). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sparsebox.h"

/* ------------------------------------------------------------------------------------------------
 * Failures: each tester counts and prints them, then fails once at its end. */
static int nfail;

static void bad(const char *tester, const char *where, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nfail++;
    if (nfail <= 200)
        print_error("FAIL %s [%s]: %s\n", tester, where, msg);
}

static void finish(const char *tester) {
    if (nfail)
        fail_msg("%s: %d failure(s), printed above", tester, nfail);
}

/* A call that must succeed: on failure report it (with the library's message) and jump to done. */
#define TRY(expr)                                                                                                      \
    do {                                                                                                               \
        sbx_status st_ = (expr);                                                                                       \
        if (st_ != SBX_OK) {                                                                                           \
            bad(tester, c->name, "%s gave %s: %s", #expr, sbx_status_str(st_), sbx_last_error());                      \
            goto done;                                                                                                 \
        }                                                                                                              \
    } while (0)

/* Set-up calls that cannot fail on a working library. */
#define MUST(expr)                                                                                                     \
    do {                                                                                                               \
        sbx_status st_ = (expr);                                                                                       \
        if (st_ != SBX_OK)                                                                                             \
            fail_msg("%s:%d: %s gave %s: %s", __FILE__, __LINE__, #expr, sbx_status_str(st_), sbx_last_error());       \
    } while (0)

/* ------------------------------------------------------------------------------------------------
 * Fixed pseudo-random numbers: one sbx_rng cursor, reseeded for each case. */
static sbx_rng_cursor rnd;

static void rnd_seed(uint64_t seed) {
    sbx_rng rng;
    sbx_rng_init(&rng, seed, 11);
    MUST(sbx_rng_cursor_init(&rng, 0, &rnd));
}

static double urand(void) { return sbx_rng_double(&rnd); }
static double uniform(double lo, double hi) { return lo + (hi - lo) * urand(); }
/* |v| in [0.2, 1], either sign: away from ReLU's kink and from zero. */
static double away(void) {
    double m = uniform(0.2, 1.0);
    return urand() < 0.5 ? -m : m;
}

/* ------------------------------------------------------------------------------------------------
 * Elements of any dtype, read and written as doubles. */
static void put(void *data, sbx_dtype dt, int64_t i, double v) {
    switch (dt) {
    case SBX_FLOAT32:
        ((float *)data)[i] = (float)v;
        break;
    case SBX_FLOAT64:
        ((double *)data)[i] = v;
        break;
    case SBX_INT8:
        ((int8_t *)data)[i] = (int8_t)v;
        break;
    case SBX_INT16:
        ((int16_t *)data)[i] = (int16_t)v;
        break;
    case SBX_INT32:
        ((int32_t *)data)[i] = (int32_t)v;
        break;
    case SBX_INT64:
        ((int64_t *)data)[i] = (int64_t)v;
        break;
    case SBX_UINT8:
        ((uint8_t *)data)[i] = (uint8_t)v;
        break;
    case SBX_UINT16:
        ((uint16_t *)data)[i] = (uint16_t)v;
        break;
    case SBX_UINT32:
        ((uint32_t *)data)[i] = (uint32_t)v;
        break;
    case SBX_UINT64:
        ((uint64_t *)data)[i] = (uint64_t)v;
        break;
    case SBX_BOOL:
        ((uint8_t *)data)[i] = v != 0;
        break;
    }
}

static double get(const void *data, sbx_dtype dt, int64_t i) {
    switch (dt) {
    case SBX_FLOAT32:
        return ((const float *)data)[i];
    case SBX_FLOAT64:
        return ((const double *)data)[i];
    case SBX_INT8:
        return ((const int8_t *)data)[i];
    case SBX_INT16:
        return ((const int16_t *)data)[i];
    case SBX_INT32:
        return ((const int32_t *)data)[i];
    case SBX_INT64:
        return (double)((const int64_t *)data)[i];
    case SBX_UINT8:
        return ((const uint8_t *)data)[i];
    case SBX_UINT16:
        return ((const uint16_t *)data)[i];
    case SBX_UINT32:
        return ((const uint32_t *)data)[i];
    case SBX_UINT64:
        return (double)((const uint64_t *)data)[i];
    case SBX_BOOL:
        return ((const uint8_t *)data)[i] != 0;
    }
    return 0;
}

static int is_float(sbx_dtype dt) { return dt == SBX_FLOAT32 || dt == SBX_FLOAT64; }

/* ------------------------------------------------------------------------------------------------
 * Input values. */
enum fill { UNIFORM, AWAY, POSITIVE, DISTINCT, SOME_ZEROS };

static sbx_value dval(sbx_dtype dt, int ndim, const int64_t *shape, enum fill how) {
    sbx_array *a;
    MUST(sbx_array_create(dt, ndim, shape, &a));
    const int64_t n = sbx_array_numel(a);
    if (how == DISTINCT) {
        /* A shuffled ramp 0.04 apart plus jitter under 0.01: no ties, no near-ties. */
        int64_t *perm = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
        for (int64_t i = 0; i < n; i++)
            perm[i] = i;
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)(urand() * (double)(i + 1));
            if (j > i)
                j = i;
            int64_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        for (int64_t i = 0; i < n; i++)
            put(a->data, dt, i, ((double)perm[i] - (double)n / 2) * 0.04 + uniform(0, 0.01));
        free(perm);
    } else {
        for (int64_t i = 0; i < n; i++) {
            double v = how == UNIFORM    ? uniform(-1, 1)
                       : how == AWAY     ? away()
                       : how == POSITIVE ? uniform(0.5, 2)
                                         : (urand() < 0.3 ? 0 : away());
            put(a->data, dt, i, v);
        }
    }
    sbx_value r = {a, NULL};
    return r;
}

/* Integers (or any dtype) with given contents. */
static sbx_value ival(sbx_dtype dt, int ndim, const int64_t *shape, const int64_t *v) {
    sbx_array *a;
    MUST(sbx_array_create(dt, ndim, shape, &a));
    for (int64_t i = 0; i < sbx_array_numel(a); i++)
        put(a->data, dt, i, (double)v[i]);
    sbx_value r = {a, NULL};
    return r;
}

static sbx_value scalar(sbx_dtype dt, double v) {
    sbx_array *a;
    MUST(sbx_array_create(dt, 0, NULL, &a));
    put(a->data, dt, 0, v);
    sbx_value r = {a, NULL};
    return r;
}

/* A sparse matrix: each cell stored with probability density (every row keeps at least one), values
 * as `how` (AWAY: nonzero), or each row's values positive and summing to 1 (rows_sum_one). */
static sbx_value sval(sbx_format fmt, sbx_dtype dt, int64_t rows, int64_t cols, double density, enum fill how,
                      int rows_sum_one) {
    const int64_t shape[2] = {rows, cols};
    sbx_array *d, *cast;
    sbx_sparse *m;
    MUST(sbx_array_create(SBX_FLOAT64, 2, shape, &d));
    double *v = d->data;
    for (int64_t r = 0; r < rows; r++) {
        int64_t kept = 0;
        for (int64_t col = 0; col < cols; col++)
            if (urand() < density) {
                v[r * cols + col] = how == POSITIVE ? uniform(0.5, 2) : how == UNIFORM ? uniform(-1, 1) : away();
                kept++;
            }
        if (!kept)
            v[r * cols + (int64_t)(urand() * (double)cols) % cols] = how == POSITIVE ? 1.0 : away();
        if (rows_sum_one) {
            double s = 0;
            for (int64_t col = 0; col < cols; col++)
                s += fabs(v[r * cols + col]);
            for (int64_t col = 0; col < cols; col++)
                v[r * cols + col] = fabs(v[r * cols + col]) / s;
        }
    }
    MUST(sbx_array_cast(d, dt, &cast));
    MUST(sbx_sparse_from_dense(cast, fmt, &m));
    sbx_array_free(d);
    sbx_array_free(cast);
    sbx_value r = {NULL, m};
    return r;
}

/* A matrix storing nothing (its indices and data may be NULL). */
static sbx_value sempty(sbx_format fmt, sbx_dtype dt, int64_t rows, int64_t cols) {
    sbx_value r = {NULL, NULL};
    MUST(sbx_sparse_create(fmt, dt, rows, cols, 0, &r.sparse));
    return r;
}

static sbx_value copy_value(const sbx_value *v) {
    sbx_value r = {NULL, NULL};
    if (v->dense)
        MUST(sbx_array_copy(v->dense, &r.dense));
    if (v->sparse)
        MUST(sbx_sparse_copy(v->sparse, &r.sparse));
    return r;
}

static int same_value(const sbx_value *a, const sbx_value *b) {
    if (!!a->dense != !!b->dense || !!a->sparse != !!b->sparse)
        return 0;
    if (a->dense) {
        const sbx_array *x = a->dense, *y = b->dense;
        if (x->dtype != y->dtype || x->ndim != y->ndim)
            return 0;
        for (int d = 0; d < x->ndim; d++)
            if (x->shape[d] != y->shape[d])
                return 0;
        size_t bytes = (size_t)sbx_array_numel(x) * sbx_dtype_size(x->dtype);
        return bytes == 0 || memcmp(x->data, y->data, bytes) == 0;
    }
    if (a->sparse) {
        const sbx_sparse *x = a->sparse, *y = b->sparse;
        if (x->format != y->format || x->dtype != y->dtype || x->nrows != y->nrows || x->ncols != y->ncols ||
            x->nnz != y->nnz)
            return 0;
        int64_t major = sbx_sparse_major(x);
        if (memcmp(x->indptr, y->indptr, sizeof(int64_t) * (size_t)(major + 1)) != 0)
            return 0;
        if (x->nnz && memcmp(x->indices, y->indices, sizeof(int64_t) * (size_t)x->nnz) != 0)
            return 0;
        if (x->nnz && memcmp(x->data, y->data, sbx_dtype_size(x->dtype) * (size_t)x->nnz) != 0)
            return 0;
    }
    return 1;
}

static const char *tstr(const sbx_type *t, char *buf) {
    sbx_type_str(t, buf, 128);
    return buf;
}

/* ------------------------------------------------------------------------------------------------
 * The case table. */
typedef union props_u {
    sbx_layer_props layer;
    sbx_pool_props pool;
    sbx_conv_indices_props indices;
    sbx_binomial_props binomial;
    sbx_structured_dot_props sdot;
    sbx_sampled_dot_props sampled;
    sbx_format_props format;
    sbx_dot_props dot;
    sbx_add_props add;
    sbx_scale_props scale;
    sbx_reshape_props reshape;
    sbx_reduce_props reduce;
    sbx_broadcast_props broadcast;
    sbx_sgd_props sgd;
    sbx_adam_props adam;
    unsigned char room[1024]; /* a class whose props_size is larger than expected reads garbage, not past the end */
} props_u;

typedef struct tcase {
    char name[128];
    const sbx_op_class *cls;
    props_u props;
    sbx_dtype dtype; /* the case's float dtype: float64 cases are verified by central differences */
    int nin;
    sbx_value in[SBX_OP_MAX_INPUTS];
    unsigned unknown;     /* bit i: input i's first (batch) extent is made unknown in a second node */
    int structured_zeros; /* input 0 holds zeros its sparse output drops (see verify_case) */
} tcase;

#define MAX_CASES 256
static tcase cases[MAX_CASES];
static int ncases;

static const void *props_of(const tcase *c) { return c->cls->props_size ? (const void *)&c->props : NULL; }

static tcase *add_case(const sbx_op_class *cls, sbx_dtype dt, unsigned unknown, const char *fmt, ...) {
    if (ncases >= MAX_CASES)
        fail_msg("more than %d cases", MAX_CASES);
    tcase *c = &cases[ncases++];
    memset(c, 0, sizeof *c);
    memset(&c->props, 0xAA, sizeof c->props); /* garbage in any padding: nothing may read it */
    char label[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(label, sizeof label, fmt, ap);
    va_end(ap);
    snprintf(c->name, sizeof c->name, "%s %s %s", cls->name ? cls->name : "?", label, sbx_dtype_name(dt));
    c->cls = cls;
    c->dtype = dt;
    c->unknown = unknown;
    rnd_seed(0x5EED0000ull + (uint64_t)ncases * 7919u);
    return c;
}

static void push(tcase *c, sbx_value v) { c->in[c->nin++] = v; }

/* A convolution shape written field by field into a struct whose padding holds garbage. */
static void set_shape(sbx_conv_shape *dst, int ndim, int64_t channels, const int64_t *in, const int64_t *kernel,
                      const int64_t *stride, sbx_conv_mode mode) {
    sbx_conv_shape s;
    MUST(sbx_conv_shape_make(ndim, channels, in, kernel, stride, mode, &s));
    dst->ndim = s.ndim;
    dst->channels = s.channels;
    for (int d = 0; d < SBX_MAX_NDIM; d++) {
        dst->in[d] = s.in[d];
        dst->kernel[d] = s.kernel[d];
        dst->stride[d] = s.stride[d];
        dst->out[d] = s.out[d];
    }
    dst->mode = s.mode;
    dst->in_size = s.in_size;
    dst->out_size = s.out_size;
    dst->kernel_size = s.kernel_size;
}

typedef struct geometry {
    int ndim;
    int64_t channels, in[3], kernel[3], stride[3];
    sbx_conv_mode mode;
    int64_t nkern, batch;
    int bias;
    const char *label;
} geometry;

/* Layers: valid and full, strided, 1-d, 2-d and 3-d, with and without bias. */
static const geometry layer_geometries[] = {
    {2, 2, {5, 5}, {3, 3}, {1, 1}, SBX_CONV_VALID, 2, 2, 1, "2-d valid, bias"},
    {2, 1, {4, 4}, {2, 3}, {1, 1}, SBX_CONV_FULL, 3, 2, 0, "2-d full, no bias"},
    {2, 2, {6, 5}, {3, 2}, {2, 1}, SBX_CONV_VALID, 2, 1, 1, "2-d valid stride (2,1), bias"},
    {2, 1, {4, 5}, {2, 2}, {2, 3}, SBX_CONV_FULL, 2, 2, 1, "2-d full stride (2,3), bias"},
    {1, 2, {7}, {3}, {2}, SBX_CONV_VALID, 2, 3, 1, "1-d valid stride 2, bias"},
    {1, 1, {4}, {3}, {1}, SBX_CONV_FULL, 2, 2, 0, "1-d full, no bias"},
    {3, 1, {3, 3, 2}, {2, 2, 2}, {1, 1, 1}, SBX_CONV_FULL, 2, 2, 1, "3-d full, bias"},
    {3, 2, {3, 4, 3}, {2, 2, 2}, {1, 2, 1}, SBX_CONV_VALID, 1, 2, 0, "3-d valid stride (1,2,1), no bias"},
};

static void layer_cases(const sbx_op_class *cls, sbx_dtype dt, const geometry *gm) {
    const int local = cls == &sbx_op_local_connections || cls == &sbx_op_local_backward;
    const int backward = cls == &sbx_op_conv_backward || cls == &sbx_op_local_backward;
    const int bias = gm->bias && !backward;
    tcase *c = add_case(cls, dt, backward ? 5u : 1u, "%s, nkern %lld", gm->label, (long long)gm->nkern);
    set_shape(&c->props.layer.shape, gm->ndim, gm->channels, gm->in, gm->kernel, gm->stride, gm->mode);
    c->props.layer.nkern = gm->nkern;
    const sbx_conv_shape *s = &c->props.layer.shape;
    const int64_t img[2] = {gm->batch, s->in_size};
    const int64_t ker[2] = {gm->nkern, s->channels * s->kernel_size};
    const int64_t lker[1] = {s->channels * gm->nkern * s->out_size * s->kernel_size};
    const int64_t b[1] = {local ? gm->nkern * s->out_size : gm->nkern};
    const int64_t go[2] = {gm->batch, gm->nkern * s->out_size};
    push(c, dval(dt, 2, img, UNIFORM));
    push(c, local ? dval(dt, 1, lker, UNIFORM) : dval(dt, 2, ker, UNIFORM));
    if (backward)
        push(c, dval(dt, 2, go, UNIFORM));
    else if (bias)
        push(c, dval(dt, 1, b, UNIFORM));
}

static const geometry pool_geometries[] = {
    {2, 2, {4, 4}, {2, 2}, {2, 2}, SBX_CONV_VALID, 1, 2, 0, "2-d 2x2 pool"},
    {2, 1, {4, 3}, {2, 2}, {1, 1}, SBX_CONV_VALID, 1, 2, 0, "2-d 2x2 windows stride 1 (overlapping)"},
    {2, 1, {5, 6}, {2, 3}, {3, 2}, SBX_CONV_VALID, 1, 1, 0, "2-d 2x3 windows stride (3,2)"},
    {2, 1, {6, 6}, {3, 3}, {3, 3}, SBX_CONV_VALID, 1, 2, 0, "2-d 3x3 pool (9 taps, 16-bit mask)"},
    {1, 2, {7}, {3}, {2}, SBX_CONV_VALID, 1, 3, 0, "1-d 3 windows stride 2"},
    {3, 1, {4, 4, 2}, {2, 2, 2}, {2, 2, 2}, SBX_CONV_VALID, 1, 2, 0, "3-d 2x2x2 pool"},
};

/* The case's node performed once; out must hold nout empty values. */
static sbx_status perform_once(const sbx_op_class *cls, const void *props, int nin, const sbx_value *in,
                               sbx_value *out) {
    sbx_graph *g;
    sbx_var *x[SBX_OP_MAX_INPUTS], *y;
    sbx_status st = sbx_graph_create(&g);
    if (st != SBX_OK)
        return st;
    for (int i = 0; st == SBX_OK && i < nin; i++) {
        sbx_type t;
        st = sbx_type_of(&in[i], &t);
        if (st == SBX_OK)
            st = sbx_graph_input(g, NULL, &t, &x[i]);
    }
    if (st == SBX_OK)
        st = sbx_apply(g, cls, props, nin, x, &y);
    if (st == SBX_OK)
        st = sbx_node_perform(sbx_var_owner(y), in, out, 1);
    sbx_graph_free(g);
    return st;
}

static void pool_cases(sbx_dtype dt, const geometry *gm) {
    tcase *c = add_case(&sbx_op_max_pool, dt, 1u, "%s", gm->label);
    set_shape(&c->props.pool.shape, gm->ndim, gm->channels, gm->in, gm->kernel, gm->stride, gm->mode);
    const int64_t img[2] = {gm->batch, c->props.pool.shape.in_size};
    push(c, dval(dt, 2, img, DISTINCT));
    /* MaxPoolGrad takes the mask of a MaxPool node performed on those images. */
    sbx_value out[SBX_OP_MAX_OUTPUTS];
    memset(out, 0, sizeof out);
    sbx_status st = perform_once(&sbx_op_max_pool, &c->props, 1, c->in, out);
    if (st != SBX_OK || !out[1].dense) {
        bad("cases", c->name, "performing MaxPool for MaxPoolGrad's mask gave %s: %s", sbx_status_str(st),
            sbx_last_error());
        for (int j = 0; j < SBX_OP_MAX_OUTPUTS; j++)
            sbx_value_clear(&out[j]);
        return;
    }
    const props_u pool = c->props;
    c = add_case(&sbx_op_max_pool_grad, dt, 3u, "%s", gm->label);
    c->props = pool;
    sbx_value mask = {out[1].dense, NULL};
    out[1].dense = NULL;
    const int64_t go[2] = {out[0].dense->shape[0], out[0].dense->shape[1]};
    push(c, mask);
    push(c, dval(dt, 2, go, UNIFORM));
    for (int j = 0; j < SBX_OP_MAX_OUTPUTS; j++)
        sbx_value_clear(&out[j]);
}

static void indices_case(const geometry *gm, int ws, int64_t nkern, sbx_format fmt) {
    tcase *c = add_case(&sbx_op_convolution_indices, SBX_INT64, 0, "%s ws=%d nkern %lld %s", gm->label, ws,
                        (long long)nkern, sbx_format_name(fmt));
    set_shape(&c->props.indices.shape, gm->ndim, gm->channels, gm->in, gm->kernel, gm->stride, gm->mode);
    c->props.indices.weight_sharing = ws;
    c->props.indices.nkern = nkern;
    c->props.indices.format = fmt;
}

/* Edge cases: an empty batch, matrices storing nothing. */
static void empty_cases(void) {
    const sbx_dtype f64 = SBX_FLOAT64;
    static const geometry empty_batch[2] = {
        {2, 2, {4, 4}, {2, 2}, {1, 1}, SBX_CONV_VALID, 2, 0, 1, "2-d valid, bias, batch 0"},
        {1, 1, {4}, {2}, {2}, SBX_CONV_FULL, 2, 0, 0, "1-d full stride 2, batch 0"},
    };
    const sbx_op_class *const layers[4] = {&sbx_op_convolve, &sbx_op_conv_backward, &sbx_op_local_connections,
                                           &sbx_op_local_backward};
    for (int k = 0; k < 4; k++)
        for (int gi = 0; gi < 2; gi++)
            layer_cases(layers[k], f64, &empty_batch[gi]);
    static const geometry pool_empty = {2, 1, {4, 4}, {2, 2}, {2, 2}, SBX_CONV_VALID, 1, 0, 0, "2-d 2x2 pool, batch 0"};
    pool_cases(f64, &pool_empty);

    tcase *c;
    c = add_case(&sbx_op_dot, f64, 1u, "0x4 times 4x2");
    c->props.dot.transpose_a = c->props.dot.transpose_b = 0;
    push(c, dval(f64, 2, (int64_t[]){0, 4}, UNIFORM));
    push(c, dval(f64, 2, (int64_t[]){4, 2}, UNIFORM));
    c = add_case(&sbx_op_dot, f64, 0, "3x0 times 0x2");
    c->props.dot.transpose_a = c->props.dot.transpose_b = 0;
    push(c, dval(f64, 2, (int64_t[]){3, 0}, UNIFORM));
    push(c, dval(f64, 2, (int64_t[]){0, 2}, UNIFORM));
    c = add_case(&sbx_op_add, f64, 1u, "alpha 1 beta 2 0x3 + 3");
    c->props.add.alpha = 1;
    c->props.add.beta = 2;
    push(c, dval(f64, 2, (int64_t[]){0, 3}, UNIFORM));
    push(c, dval(f64, 1, (int64_t[]){3}, UNIFORM));
    c = add_case(&sbx_op_mul, f64, 1u, "0x3 * 1x3");
    push(c, dval(f64, 2, (int64_t[]){0, 3}, UNIFORM));
    push(c, dval(f64, 2, (int64_t[]){1, 3}, UNIFORM));
    c = add_case(&sbx_op_tanh, f64, 1u, "0x3");
    push(c, dval(f64, 2, (int64_t[]){0, 3}, UNIFORM));
    c = add_case(&sbx_op_relu, f64, 1u, "0x3");
    push(c, dval(f64, 2, (int64_t[]){0, 3}, AWAY));
    c = add_case(&sbx_op_sum, f64, 1u, "axis 0 of 0x3");
    c->props.reduce.axis = 0;
    push(c, dval(f64, 2, (int64_t[]){0, 3}, UNIFORM));
    c = add_case(&sbx_op_sum, f64, 1u, "axis -1 of 0x3");
    c->props.reduce.axis = -1;
    push(c, dval(f64, 2, (int64_t[]){0, 3}, UNIFORM));
    c = add_case(&sbx_op_reshape, f64, 0, "0x4 to (4,0)");
    c->props.reshape.ndim = 2;
    for (int d = 0; d < SBX_MAX_NDIM; d++)
        c->props.reshape.shape[d] = d == 0 ? 4 : 0;
    push(c, dval(f64, 2, (int64_t[]){0, 4}, UNIFORM));
    c = add_case(&sbx_op_sum_to, f64, 1u, "mean=0 0x3 to 1x3");
    c->props.broadcast.mean = 0;
    push(c, dval(f64, 2, (int64_t[]){0, 3}, UNIFORM));
    push(c, dval(f64, 2, (int64_t[]){1, 3}, UNIFORM));
    c = add_case(&sbx_op_broadcast_like, f64, 2u, "mean=0 1x3 to 0x3");
    c->props.broadcast.mean = 0;
    push(c, dval(f64, 2, (int64_t[]){1, 3}, UNIFORM));
    push(c, dval(f64, 2, (int64_t[]){0, 3}, UNIFORM));
    c = add_case(&sbx_op_zeros_like, f64, 1u, "0x3");
    push(c, dval(f64, 2, (int64_t[]){0, 3}, UNIFORM));
    c = add_case(&sbx_op_transpose, f64, 1u, "0x3");
    push(c, dval(f64, 2, (int64_t[]){0, 3}, UNIFORM));

    c = add_case(&sbx_op_structured_dot, f64, 0, "empty csr a 4x5, dense b 5x3");
    c->props.sdot.transpose_sparse = 0;
    push(c, sempty(SBX_CSR, f64, 4, 5));
    push(c, dval(f64, 2, (int64_t[]){5, 3}, UNIFORM));
    c = add_case(&sbx_op_structured_dot, f64, 1u, "dense a 3x4, empty csc b 5x4 transposed");
    c->props.sdot.transpose_sparse = 1;
    push(c, dval(f64, 2, (int64_t[]){3, 4}, UNIFORM));
    push(c, sempty(SBX_CSC, f64, 5, 4));
    c = add_case(&sbx_op_sampled_dot, f64, 0, "empty csr pattern 4x5");
    c->props.sampled.transpose_x = c->props.sampled.transpose_y = 0;
    push(c, dval(f64, 2, (int64_t[]){4, 3}, UNIFORM));
    push(c, dval(f64, 2, (int64_t[]){3, 5}, UNIFORM));
    push(c, sempty(SBX_CSR, f64, 4, 5));
    c = add_case(&sbx_op_eliminate_zeros, f64, 0, "empty csc 3x4");
    push(c, sempty(SBX_CSC, f64, 3, 4));
    c = add_case(&sbx_op_dense_from_sparse, f64, 0, "empty csr 3x4");
    push(c, sempty(SBX_CSR, f64, 3, 4));
    c = add_case(&sbx_op_sparse_from_dense, f64, 1u, "to csr from 3x4 zeros");
    c->props.format.format = SBX_CSR;
    {
        sbx_array *z;
        MUST(sbx_array_create(f64, 2, (int64_t[]){3, 4}, &z));
        sbx_value zv = {z, NULL};
        push(c, zv);
    }
    c->structured_zeros = 1;
    c = add_case(&sbx_op_sparse_like, f64, 0, "dense g 3x4, empty csr x");
    push(c, dval(f64, 2, (int64_t[]){3, 4}, UNIFORM));
    push(c, sempty(SBX_CSR, f64, 3, 4));
    c = add_case(&sbx_op_sparse_like, f64, 0, "empty csr g, csr x 3x4");
    push(c, sempty(SBX_CSR, f64, 3, 4));
    push(c, sval(SBX_CSR, f64, 3, 4, 0.5, AWAY, 0));
    c = add_case(&sbx_op_poisson, f64, 0, "empty csr 3x4");
    push(c, sempty(SBX_CSR, f64, 3, 4));
    c = add_case(&sbx_op_binomial, f64, 4u, "csr n=4 p=0.5 shape (0,3)");
    c->props.binomial.format = SBX_CSR;
    c->props.binomial.dtype = SBX_FLOAT64;
    push(c, scalar(SBX_INT64, 4));
    push(c, scalar(SBX_FLOAT64, 0.5));
    push(c, ival(SBX_INT64, 1, (int64_t[]){2}, (int64_t[]){0, 3}));
    c = add_case(&sbx_op_binomial, f64, 4u, "csc n=0 p=0.5 shape (3,3)");
    c->props.binomial.format = SBX_CSC;
    c->props.binomial.dtype = SBX_FLOAT64;
    push(c, scalar(SBX_INT64, 0));
    push(c, scalar(SBX_FLOAT64, 0.5));
    push(c, ival(SBX_INT64, 1, (int64_t[]){2}, (int64_t[]){3, 3}));
}

static void build_cases(void) {
    const sbx_dtype f64 = SBX_FLOAT64, f32 = SBX_FLOAT32;
    const size_t nlayer = sizeof layer_geometries / sizeof layer_geometries[0];
    const sbx_op_class *const layers[4] = {&sbx_op_convolve, &sbx_op_conv_backward, &sbx_op_local_connections,
                                           &sbx_op_local_backward};
    for (int k = 0; k < 4; k++) {
        for (size_t gi = 0; gi < nlayer; gi++)
            layer_cases(layers[k], f64, &layer_geometries[gi]);
        layer_cases(layers[k], f32, &layer_geometries[0]);
        layer_cases(layers[k], f32, &layer_geometries[6]);
    }
    for (size_t gi = 0; gi < sizeof pool_geometries / sizeof pool_geometries[0]; gi++)
        pool_cases(f64, &pool_geometries[gi]);
    pool_cases(f32, &pool_geometries[0]);
    pool_cases(f32, &pool_geometries[5]);

    indices_case(&layer_geometries[0], 1, 1, SBX_CSR);
    indices_case(&layer_geometries[1], 1, 1, SBX_CSC);
    indices_case(&layer_geometries[2], 0, 2, SBX_CSR);
    indices_case(&layer_geometries[4], 0, 3, SBX_CSC);
    indices_case(&layer_geometries[6], 1, 1, SBX_CSR);
    indices_case(&layer_geometries[7], 0, 2, SBX_CSC);

    tcase *c;
    /* Random ops: integer n and shape, float p. */
    c = add_case(&sbx_op_binomial, f64, 4u, "csr n=5 p=0.3 shape (4,6)");
    c->props.binomial.format = SBX_CSR;
    c->props.binomial.dtype = SBX_FLOAT64;
    push(c, scalar(SBX_INT64, 5));
    push(c, scalar(SBX_FLOAT64, 0.3));
    push(c, ival(SBX_INT64, 1, (int64_t[]){2}, (int64_t[]){4, 6}));
    c = add_case(&sbx_op_binomial, f32, 4u, "csc n=3 p=0.6 shape (5,3) int32");
    c->props.binomial.format = SBX_CSC;
    c->props.binomial.dtype = SBX_FLOAT32;
    push(c, scalar(SBX_INT32, 3));
    push(c, scalar(SBX_FLOAT32, 0.6));
    push(c, ival(SBX_INT32, 1, (int64_t[]){2}, (int64_t[]){5, 3}));
    c = add_case(&sbx_op_binomial, f64, 4u, "csr n=7 p=0.5 shape (3,4) into int16");
    c->props.binomial.format = SBX_CSR;
    c->props.binomial.dtype = SBX_INT16;
    push(c, scalar(SBX_INT16, 7));
    push(c, scalar(SBX_FLOAT64, 0.5));
    push(c, ival(SBX_INT64, 1, (int64_t[]){2}, (int64_t[]){3, 4}));

    c = add_case(&sbx_op_multinomial, f64, 0, "n=3 for all rows, csr p 4x5");
    push(c, scalar(SBX_INT64, 3));
    push(c, sval(SBX_CSR, f64, 4, 5, 0.6, POSITIVE, 1));
    c = add_case(&sbx_op_multinomial, f32, 1u, "n per row, csc p 3x4");
    push(c, ival(SBX_INT32, 1, (int64_t[]){3}, (int64_t[]){2, 20, 5}));
    push(c, sval(SBX_CSC, f32, 3, 4, 0.7, POSITIVE, 1));

    c = add_case(&sbx_op_poisson, f64, 0, "csr 4x5");
    push(c, sval(SBX_CSR, f64, 4, 5, 0.5, POSITIVE, 0));
    c = add_case(&sbx_op_poisson, f32, 0, "csc 3x6");
    push(c, sval(SBX_CSC, f32, 3, 6, 0.5, POSITIVE, 0));

    /* Sparse ops. */
    for (int d = 0; d < 2; d++) {
        const sbx_dtype dt = d ? f32 : f64;
        c = add_case(&sbx_op_structured_dot, dt, 0, "csr a 4x5, dense b 5x3");
        c->props.sdot.transpose_sparse = 0;
        push(c, sval(SBX_CSR, dt, 4, 5, 0.5, AWAY, 0));
        push(c, dval(dt, 2, (int64_t[]){5, 3}, UNIFORM));
        c = add_case(&sbx_op_structured_dot, dt, 1u, "dense a 3x4, csc b 4x5");
        c->props.sdot.transpose_sparse = 0;
        push(c, dval(dt, 2, (int64_t[]){3, 4}, UNIFORM));
        push(c, sval(SBX_CSC, dt, 4, 5, 0.5, AWAY, 0));
        if (d)
            continue;
        c = add_case(&sbx_op_structured_dot, dt, 0, "csc a 5x4 transposed, dense b 5x2");
        c->props.sdot.transpose_sparse = 1;
        push(c, sval(SBX_CSC, dt, 5, 4, 0.5, AWAY, 0));
        push(c, dval(dt, 2, (int64_t[]){5, 2}, UNIFORM));
        c = add_case(&sbx_op_structured_dot, dt, 1u, "dense a 3x4, csr b 5x4 transposed");
        c->props.sdot.transpose_sparse = 1;
        push(c, dval(dt, 2, (int64_t[]){3, 4}, UNIFORM));
        push(c, sval(SBX_CSR, dt, 5, 4, 0.5, AWAY, 0));
    }
    for (int k = 0; k < 4; k++) {
        const int tx = k & 1, ty = k >> 1;
        const sbx_dtype dt = k == 3 ? f32 : f64;
        c = add_case(&sbx_op_sampled_dot, dt, 0, "transpose_x=%d transpose_y=%d %s pattern 4x5", tx, ty,
                     k == 2 ? "csc" : "csr");
        c->props.sampled.transpose_x = tx;
        c->props.sampled.transpose_y = ty;
        push(c, dval(dt, 2, tx ? (int64_t[]){3, 4} : (int64_t[]){4, 3}, UNIFORM));
        push(c, dval(dt, 2, ty ? (int64_t[]){5, 3} : (int64_t[]){3, 5}, UNIFORM));
        push(c, sval(k == 2 ? SBX_CSC : SBX_CSR, dt, 4, 5, 0.5, AWAY, 0));
    }
    c = add_case(&sbx_op_eliminate_zeros, f64, 0, "csr 4x5 without zeros");
    push(c, sval(SBX_CSR, f64, 4, 5, 0.5, AWAY, 0));
    c = add_case(&sbx_op_eliminate_zeros, f64, 0, "csc 5x4 with stored zeros");
    push(c, sval(SBX_CSC, f64, 5, 4, 0.6, AWAY, 0));
    for (int64_t k = 0; k < c->in[0].sparse->nnz; k += 3)
        ((double *)c->in[0].sparse->data)[k] = 0;
    c->structured_zeros = 1;
    c = add_case(&sbx_op_eliminate_zeros, f32, 0, "csr 3x3 with stored zeros");
    push(c, sval(SBX_CSR, f32, 3, 3, 0.8, AWAY, 0));
    ((float *)c->in[0].sparse->data)[0] = 0;

    c = add_case(&sbx_op_dense_from_sparse, f64, 0, "csr 4x5");
    push(c, sval(SBX_CSR, f64, 4, 5, 0.5, AWAY, 0));
    c = add_case(&sbx_op_dense_from_sparse, f32, 0, "csc 3x4");
    push(c, sval(SBX_CSC, f32, 3, 4, 0.5, AWAY, 0));

    c = add_case(&sbx_op_sparse_from_dense, f64, 1u, "to csr from 4x5 with zeros");
    c->props.format.format = SBX_CSR;
    push(c, dval(f64, 2, (int64_t[]){4, 5}, SOME_ZEROS));
    c->structured_zeros = 1;
    c = add_case(&sbx_op_sparse_from_dense, f64, 1u, "to csc from 3x4 without zeros");
    c->props.format.format = SBX_CSC;
    push(c, dval(f64, 2, (int64_t[]){3, 4}, AWAY));
    c = add_case(&sbx_op_sparse_from_dense, f32, 1u, "to csc from 4x3 with zeros");
    c->props.format.format = SBX_CSC;
    push(c, dval(f32, 2, (int64_t[]){4, 3}, SOME_ZEROS));

    c = add_case(&sbx_op_sparse_like, f64, 0, "dense g 4x5, csr x");
    push(c, dval(f64, 2, (int64_t[]){4, 5}, UNIFORM));
    push(c, sval(SBX_CSR, f64, 4, 5, 0.5, AWAY, 0));
    c = add_case(&sbx_op_sparse_like, f64, 0, "csr g of another structure, csr x 4x5");
    push(c, sval(SBX_CSR, f64, 4, 5, 0.5, AWAY, 0));
    push(c, sval(SBX_CSR, f64, 4, 5, 0.5, AWAY, 0));
    c = add_case(&sbx_op_sparse_like, f32, 0, "dense g 3x4, csc x");
    push(c, dval(f32, 2, (int64_t[]){3, 4}, UNIFORM));
    push(c, sval(SBX_CSC, f32, 3, 4, 0.5, AWAY, 0));

    /* Dense ops. */
    for (int k = 0; k < 5; k++) {
        const int ta = k & 1, tb = (k >> 1) & 1;
        const sbx_dtype dt = k == 4 ? f32 : f64;
        c = add_case(&sbx_op_dot, dt, ta ? 2u : 1u, "transpose_a=%d transpose_b=%d", ta, tb);
        c->props.dot.transpose_a = ta;
        c->props.dot.transpose_b = tb;
        push(c, dval(dt, 2, ta ? (int64_t[]){4, 3} : (int64_t[]){3, 4}, UNIFORM));
        push(c, dval(dt, 2, tb ? (int64_t[]){2, 4} : (int64_t[]){4, 2}, UNIFORM));
    }
    static const struct {
        int na, nb;
        int64_t a[3], b[3];
        unsigned unknown;
        const char *label;
    } bshapes[] = {
        {2, 2, {3, 4}, {3, 4}, 3u, "3x4 + 3x4"},
        {2, 1, {3, 4}, {4}, 1u, "3x4 + 4 (broadcast)"},
        {2, 2, {3, 1}, {1, 4}, 0u, "3x1 + 1x4 (both broadcast)"},
        {0, 2, {0}, {2, 3}, 2u, "0-d + 2x3"},
        {3, 2, {2, 3, 4}, {3, 1}, 1u, "2x3x4 + 3x1"},
    };
    for (int k = 0; k < 6; k++) {
        const int s = k % 5;
        const sbx_dtype dt = k == 5 ? f32 : f64;
        c = add_case(&sbx_op_add, dt, bshapes[s].unknown, "alpha 1.5 beta -0.5 %s", bshapes[s].label);
        c->props.add.alpha = 1.5;
        c->props.add.beta = -0.5;
        push(c, dval(dt, bshapes[s].na, bshapes[s].a, UNIFORM));
        push(c, dval(dt, bshapes[s].nb, bshapes[s].b, UNIFORM));
        c = add_case(&sbx_op_mul, dt, bshapes[s].unknown, "%s", bshapes[s].label);
        push(c, dval(dt, bshapes[s].na, bshapes[s].a, UNIFORM));
        push(c, dval(dt, bshapes[s].nb, bshapes[s].b, UNIFORM));
    }
    c = add_case(&sbx_op_transpose, f64, 1u, "3x4");
    push(c, dval(f64, 2, (int64_t[]){3, 4}, UNIFORM));
    c = add_case(&sbx_op_transpose, f64, 1u, "1x5");
    push(c, dval(f64, 2, (int64_t[]){1, 5}, UNIFORM));
    c = add_case(&sbx_op_transpose, f32, 1u, "4x2");
    push(c, dval(f32, 2, (int64_t[]){4, 2}, UNIFORM));
    c = add_case(&sbx_op_scale, f64, 1u, "c=2.5 3x4");
    c->props.scale.c = 2.5;
    push(c, dval(f64, 2, (int64_t[]){3, 4}, UNIFORM));
    c = add_case(&sbx_op_scale, f32, 1u, "c=-0.75 2x3x2");
    c->props.scale.c = -0.75;
    push(c, dval(f32, 3, (int64_t[]){2, 3, 2}, UNIFORM));
    c = add_case(&sbx_op_scale, f64, 0, "c=3 0-d");
    c->props.scale.c = 3;
    push(c, dval(f64, 0, NULL, UNIFORM));

    static const struct {
        int ndim;
        int64_t shape[3];
        unsigned unknown;
    } eshapes[] = {{2, {3, 4}, 1u}, {1, {5}, 1u}, {3, {2, 3, 2}, 1u}};
    for (int k = 0; k < 4; k++) {
        const int s = k % 3;
        const sbx_dtype dt = k == 3 ? f32 : f64;
        const char *lbl = s == 0 ? "3x4" : s == 1 ? "5" : "2x3x2";
        c = add_case(&sbx_op_tanh, dt, eshapes[s].unknown, "%s", lbl);
        push(c, dval(dt, eshapes[s].ndim, eshapes[s].shape, UNIFORM));
        c = add_case(&sbx_op_relu, dt, eshapes[s].unknown, "%s away from 0", lbl);
        push(c, dval(dt, eshapes[s].ndim, eshapes[s].shape, AWAY));
        c = add_case(&sbx_op_relu_grad, dt, eshapes[s].unknown ? 3u : 0u, "%s x away from 0", lbl);
        push(c, dval(dt, eshapes[s].ndim, eshapes[s].shape, AWAY));
        push(c, dval(dt, eshapes[s].ndim, eshapes[s].shape, UNIFORM));
        c = add_case(&sbx_op_zeros_like, dt, eshapes[s].unknown, "%s", lbl);
        push(c, dval(dt, eshapes[s].ndim, eshapes[s].shape, UNIFORM));
    }

    static const struct {
        int nx;
        int64_t x[3];
        int ndim;
        int64_t shape[SBX_MAX_NDIM];
        const char *label;
    } reshapes[] = {
        {2, {3, 4}, 2, {2, 6}, "3x4 to (2,6)"},   {2, {3, 4}, 2, {-1, 3}, "3x4 to (-1,3)"},
        {3, {2, 3, 2}, 1, {12}, "2x3x2 to (12)"}, {2, {3, 4}, 3, {2, 2, 3}, "3x4 to (2,2,3)"},
        {1, {6}, 2, {3, -1}, "6 to (3,-1)"},
    };
    for (int k = 0; k < 6; k++) {
        const int s = k % 5;
        const sbx_dtype dt = k == 5 ? f32 : f64;
        c = add_case(&sbx_op_reshape, dt, 1u, "%s", reshapes[s].label);
        c->props.reshape.ndim = reshapes[s].ndim;
        for (int d = 0; d < SBX_MAX_NDIM; d++)
            c->props.reshape.shape[d] = d < reshapes[s].ndim ? reshapes[s].shape[d] : 0;
        push(c, dval(dt, reshapes[s].nx, reshapes[s].x, UNIFORM));
    }

    for (int m = 0; m < 2; m++) {
        const sbx_op_class *cls = m ? &sbx_op_mean : &sbx_op_sum;
        static const int axes[4] = {-1, 0, 1, 2};
        for (int k = 0; k < 5; k++) {
            const int axis = axes[k % 4];
            const sbx_dtype dt = k == 4 ? f32 : f64;
            const int three = axis == 2;
            c = add_case(cls, dt, 1u, "axis %d of %s", axis, three ? "2x3x4" : "3x4");
            c->props.reduce.axis = axis;
            push(c, dval(dt, three ? 3 : 2, three ? (int64_t[]){2, 3, 4} : (int64_t[]){3, 4}, UNIFORM));
        }
    }

    static const struct {
        int nx;
        int64_t x[3];
        int nl;
        int64_t l[3];
        const char *label;
    } sumto[] = {
        {2, {3, 4}, 2, {1, 4}, "3x4 to 1x4"},
        {3, {2, 3, 4}, 2, {3, 1}, "2x3x4 to 3x1"},
        {2, {3, 4}, 0, {0}, "3x4 to 0-d"},
        {2, {3, 4}, 2, {3, 4}, "3x4 to 3x4"},
    };
    for (int k = 0; k < 6; k++) {
        const int s = k % 4, mean = k >= 4 || k == 1;
        const sbx_dtype dt = k == 5 ? f32 : f64;
        c = add_case(&sbx_op_sum_to, dt, 1u, "mean=%d %s", mean, sumto[s].label);
        c->props.broadcast.mean = mean;
        push(c, dval(dt, sumto[s].nx, sumto[s].x, UNIFORM));
        push(c, dval(dt, sumto[s].nl, sumto[s].l, UNIFORM));
        c = add_case(&sbx_op_broadcast_like, dt, 2u, "mean=%d %s (reversed)", mean, sumto[s].label);
        c->props.broadcast.mean = mean;
        push(c, dval(dt, sumto[s].nl, sumto[s].l, UNIFORM));
        push(c, dval(dt, sumto[s].nx, sumto[s].x, UNIFORM));
    }

    c = add_case(&sbx_op_softmax_cross_entropy, f64, 3u, "4x5 int64 labels");
    push(c, dval(f64, 2, (int64_t[]){4, 5}, UNIFORM));
    push(c, ival(SBX_INT64, 1, (int64_t[]){4}, (int64_t[]){2, 0, 4, 2}));
    c = add_case(&sbx_op_softmax_cross_entropy, f32, 3u, "3x7 int32 labels");
    push(c, dval(f32, 2, (int64_t[]){3, 7}, UNIFORM));
    push(c, ival(SBX_INT32, 1, (int64_t[]){3}, (int64_t[]){6, 1, 3}));
    c = add_case(&sbx_op_softmax_cross_entropy, f64, 3u, "2x3 uint8 labels");
    push(c, dval(f64, 2, (int64_t[]){2, 3}, UNIFORM));
    push(c, ival(SBX_UINT8, 1, (int64_t[]){2}, (int64_t[]){1, 2}));
    c = add_case(&sbx_op_softmax_cross_entropy_grad, f64, 3u, "4x5 int64 labels");
    push(c, dval(f64, 2, (int64_t[]){4, 5}, UNIFORM));
    push(c, ival(SBX_INT64, 1, (int64_t[]){4}, (int64_t[]){1, 3, 3, 0}));
    push(c, scalar(f64, 0.7));
    c = add_case(&sbx_op_softmax_cross_entropy_grad, f32, 3u, "3x4 int32 labels");
    push(c, dval(f32, 2, (int64_t[]){3, 4}, UNIFORM));
    push(c, ival(SBX_INT32, 1, (int64_t[]){3}, (int64_t[]){0, 3, 1}));
    push(c, scalar(f32, 1.3));

    for (int d = 0; d < 2; d++) {
        const sbx_dtype dt = d ? f32 : f64;
        const int64_t ws[2] = {3, 4};
        c = add_case(&sbx_op_sgd_step, dt, 0, "momentum 0.9 3x4");
        c->props.sgd.momentum = 0.9;
        push(c, dval(dt, 2, ws, UNIFORM));
        push(c, dval(dt, 2, ws, UNIFORM));
        push(c, dval(dt, 2, ws, UNIFORM));
        push(c, scalar(dt, 0.05));
        c = add_case(&sbx_op_adam_step, dt, 0, "beta (0.9, 0.999) eps 1e-8 3x4, t=2");
        c->props.adam.beta1 = 0.9;
        c->props.adam.beta2 = 0.999;
        c->props.adam.eps = 1e-8;
        push(c, dval(dt, 2, ws, UNIFORM));
        push(c, dval(dt, 2, ws, UNIFORM));
        push(c, dval(dt, 2, ws, POSITIVE));
        push(c, dval(dt, 2, ws, UNIFORM));
        push(c, scalar(dt, 0.01));
        push(c, scalar(dt, 2));
    }
    c = add_case(&sbx_op_sgd_step, f64, 0, "momentum 0 vector 5");
    c->props.sgd.momentum = 0;
    for (int i = 0; i < 3; i++)
        push(c, dval(f64, 1, (int64_t[]){5}, UNIFORM));
    push(c, scalar(f64, 0.1));

    empty_cases();
}

static int setup(void **state) {
    (void)state;
    sbx_set_num_threads(1); /* results do not depend on it; the machine is shared */
    build_cases();
    const char *only = getenv("SBX_CONTRACT_CASES");
    if (only && *only) {
        const int out = only[0] == '!';
        int kept = 0;
        for (int k = 0; k < ncases; k++) {
            if ((strstr(cases[k].name, only + out) != NULL) != out) {
                cases[kept++] = cases[k];
            } else {
                for (int i = 0; i < cases[k].nin; i++)
                    sbx_value_clear(&cases[k].in[i]);
            }
        }
        print_message("SBX_CONTRACT_CASES=%s: %d of %d cases kept\n", only, kept, ncases);
        ncases = kept;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int k = 0; k < ncases; k++)
        for (int i = 0; i < cases[k].nin; i++)
            sbx_value_clear(&cases[k].in[i]);
    ncases = 0;
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * The case's node: graph inputs of the values' types (the first extent of the inputs in `unknown`
 * made -1), the op applied. */
static sbx_status build_node(const tcase *c, unsigned unknown, sbx_graph *g, sbx_var **x, sbx_node **node) {
    sbx_var *y = NULL;
    for (int i = 0; i < c->nin; i++) {
        sbx_type t;
        sbx_status st = sbx_type_of(&c->in[i], &t);
        if (st != SBX_OK)
            return st;
        if ((unknown >> i) & 1u && t.kind == SBX_KIND_DENSE && t.ndim >= 1)
            t.shape[0] = -1;
        char name[16];
        snprintf(name, sizeof name, "in%d", i);
        st = sbx_graph_input(g, name, &t, &x[i]);
        if (st != SBX_OK)
            return st;
    }
    sbx_status st = sbx_apply(g, c->cls, props_of(c), c->nin, x, &y);
    if (st != SBX_OK)
        return st;
    *node = sbx_var_owner(y);
    return SBX_OK;
}

static void clear_all(sbx_value *v, int n) {
    for (int j = 0; j < n; j++)
        sbx_value_clear(&v[j]);
}

/* ------------------------------------------------------------------------------------------------
 * 1. Completeness. */
static const struct {
    const sbx_op_class *cls;
    const char *name;
    size_t props_size;
} expected[] = {
    {&sbx_op_convolve, "Convolve", sizeof(sbx_layer_props)},
    {&sbx_op_conv_backward, "ConvBackward", sizeof(sbx_layer_props)},
    {&sbx_op_local_connections, "LocalConnections", sizeof(sbx_layer_props)},
    {&sbx_op_local_backward, "LocalBackward", sizeof(sbx_layer_props)},
    {&sbx_op_max_pool, "MaxPool", sizeof(sbx_pool_props)},
    {&sbx_op_max_pool_grad, "MaxPoolGrad", sizeof(sbx_pool_props)},
    {&sbx_op_convolution_indices, "ConvolutionIndices", sizeof(sbx_conv_indices_props)},
    {&sbx_op_binomial, "Binomial", sizeof(sbx_binomial_props)},
    {&sbx_op_multinomial, "Multinomial", 0},
    {&sbx_op_poisson, "Poisson", 0},
    {&sbx_op_structured_dot, "StructuredDot", sizeof(sbx_structured_dot_props)},
    {&sbx_op_sampled_dot, "SampledDot", sizeof(sbx_sampled_dot_props)},
    {&sbx_op_eliminate_zeros, "EliminateZeros", 0},
    {&sbx_op_dense_from_sparse, "DenseFromSparse", 0},
    {&sbx_op_sparse_from_dense, "SparseFromDense", sizeof(sbx_format_props)},
    {&sbx_op_sparse_like, "SparseLike", 0},
    {&sbx_op_transpose, "Transpose", 0},
    {&sbx_op_dot, "Dot", sizeof(sbx_dot_props)},
    {&sbx_op_add, "Add", sizeof(sbx_add_props)},
    {&sbx_op_scale, "Scale", sizeof(sbx_scale_props)},
    {&sbx_op_mul, "Mul", 0},
    {&sbx_op_tanh, "Tanh", 0},
    {&sbx_op_relu, "Relu", 0},
    {&sbx_op_relu_grad, "ReluGrad", 0},
    {&sbx_op_reshape, "Reshape", sizeof(sbx_reshape_props)},
    {&sbx_op_sum, "Sum", sizeof(sbx_reduce_props)},
    {&sbx_op_mean, "Mean", sizeof(sbx_reduce_props)},
    {&sbx_op_sum_to, "SumTo", sizeof(sbx_broadcast_props)},
    {&sbx_op_broadcast_like, "BroadcastLike", sizeof(sbx_broadcast_props)},
    {&sbx_op_zeros_like, "ZerosLike", 0},
    {&sbx_op_softmax_cross_entropy, "SoftmaxCrossEntropy", 0},
    {&sbx_op_softmax_cross_entropy_grad, "SoftmaxCrossEntropyGrad", 0},
    {&sbx_op_sgd_step, "SgdStep", sizeof(sbx_sgd_props)},
    {&sbx_op_adam_step, "AdamStep", sizeof(sbx_adam_props)},
};
#define NEXPECTED ((int)(sizeof expected / sizeof expected[0]))

static size_t expected_props_size(const sbx_op_class *cls) {
    for (int k = 0; k < NEXPECTED; k++)
        if (expected[k].cls == cls)
            return expected[k].props_size;
    return (size_t)-1;
}

static void test_completeness(void **state) {
    (void)state;
    const char *tester = "completeness";
    int count = -1, checked = 0;
    nfail = 0;
    const sbx_op_class *const *list = sbx_op_classes(&count);
    assert_non_null(list);
    if (count != NEXPECTED)
        bad(tester, "list", "expected %d classes, sbx_op_classes gives %d", NEXPECTED, count);
    for (int k = 0; k < count; k++)
        if (!list[k])
            bad(tester, "list", "entry %d of %d is NULL", k, count);
    if (count >= 0 && list[count])
        bad(tester, "list", "the list is not NULL-terminated at [%d]", count);
    for (int k = 0; k < NEXPECTED; k++) {
        int seen = 0;
        for (int i = 0; i < count; i++)
            seen += list[i] == expected[k].cls;
        if (seen != 1)
            bad(tester, expected[k].name, "listed %d times by sbx_op_classes (expected once)", seen);
    }
    for (int i = 0; i < count && list[i]; i++) {
        const sbx_op_class *cls = list[i];
        const char *nm = cls->name ? cls->name : "(unnamed)";
        checked++;
        if (!cls->name || !cls->name[0])
            bad(tester, nm, "class %d has no name", i);
        if (!cls->props_equal)
            bad(tester, nm, "props_equal is NULL");
        if (!cls->props_hash)
            bad(tester, nm, "props_hash is NULL");
        if (!cls->props_str)
            bad(tester, nm, "props_str is NULL");
        if (!cls->make_node)
            bad(tester, nm, "make_node is NULL");
        if (!cls->infer_shape)
            bad(tester, nm, "infer_shape is NULL");
        if (!cls->perform)
            bad(tester, nm, "perform is NULL");
        if (!cls->grad)
            bad(tester, nm, "grad is NULL");
        if (!cls->connection_pattern)
            bad(tester, nm, "connection_pattern is NULL");
        for (int j = 0; j < i; j++)
            if (list[j]->name && cls->name && strcmp(list[j]->name, cls->name) == 0)
                bad(tester, nm, "two classes are named %s", nm);
        for (int k = 0; k < NEXPECTED; k++)
            if (expected[k].cls == cls) {
                if (!cls->name || strcmp(cls->name, expected[k].name) != 0)
                    bad(tester, nm, "expected the name %s (docs/op.md)", expected[k].name);
                if (cls->props_size != expected[k].props_size)
                    bad(tester, nm, "props_size %zu, expected %zu (op.h's property struct)", cls->props_size,
                        expected[k].props_size);
            }
        /* The case table covers the class. */
        int ncase = 0;
        for (int k = 0; k < ncases; k++)
            ncase += cases[k].cls == cls;
        if (!ncase)
            bad(tester, nm, "no case in the table");
    }
    print_message("completeness: %d classes checked (entries, names, property sizes), %d cases in the table\n", checked,
                  ncases);
    assert_true(checked > 0);
    finish(tester);
}

/* ------------------------------------------------------------------------------------------------
 * 3. InferShapeTester. */
static void infer_one(const char *tester, const tcase *c, unsigned unknown, int *nodes, int *outputs) {
    sbx_graph *g = NULL;
    sbx_var *x[SBX_OP_MAX_INPUTS];
    sbx_node *node = NULL;
    sbx_type inferred[SBX_OP_MAX_OUTPUTS];
    sbx_value out[SBX_OP_MAX_OUTPUTS];
    char a[128], b[128];
    memset(out, 0, sizeof out);
    TRY(sbx_graph_create(&g));
    TRY(build_node(c, unknown, g, x, &node));
    const int nout = sbx_node_noutputs(node);
    memset(inferred, 0, sizeof inferred);
    TRY(sbx_node_infer_shape(node, c->in, inferred));
    TRY(sbx_node_perform(node, c->in, out, 42));
    (*nodes)++;
    for (int j = 0; j < nout; j++) {
        sbx_type got;
        const sbx_type *declared = sbx_var_type(sbx_node_output(node, j));
        if (sbx_type_of(&out[j], &got) != SBX_OK) {
            bad(tester, c->name, "%s: perform left output %d empty or malformed: %s",
                unknown ? "unknown batch" : "static", j, sbx_last_error());
            continue;
        }
        (*outputs)++;
        for (int d = 0; d < inferred[j].ndim && d < SBX_MAX_NDIM; d++)
            if (inferred[j].shape[d] < 0)
                bad(tester, c->name, "infer_shape left extent %d of output %d unknown: %s", d, j,
                    tstr(&inferred[j], a));
        if (!sbx_type_equal(&inferred[j], &got))
            bad(tester, c->name, "%s inputs: output %d: infer_shape gives %s, perform produced %s",
                unknown ? "unknown-batch" : "static", j, tstr(&inferred[j], a), tstr(&got, b));
        if (!sbx_type_accepts(declared, &out[j]))
            bad(tester, c->name, "%s inputs: output %d: the node's type %s does not accept perform's %s",
                unknown ? "unknown-batch" : "static", j, tstr(declared, a), tstr(&got, b));
        if (out[j].sparse && sbx_sparse_validate(out[j].sparse) != SBX_OK)
            bad(tester, c->name, "output %d is a malformed sparse matrix: %s", j, sbx_last_error());
    }
done:
    clear_all(out, SBX_OP_MAX_OUTPUTS);
    sbx_graph_free(g);
}

static void test_infer_shape(void **state) {
    (void)state;
    const char *tester = "InferShapeTester";
    int ncase = 0, nodes = 0, unknown_nodes = 0, outputs = 0;
    nfail = 0;
    for (int k = 0; k < ncases; k++) {
        const tcase *c = &cases[k];
        ncase++;
        infer_one(tester, c, 0, &nodes, &outputs);
        if (c->unknown) {
            int before = nodes;
            infer_one(tester, c, c->unknown, &nodes, &outputs);
            unknown_nodes += nodes - before;
        }
    }
    print_message("InferShapeTester: %d cases, %d nodes (%d with an unknown batch extent), %d outputs checked\n", ncase,
                  nodes, unknown_nodes, outputs);
    assert_true(outputs > 0 && unknown_nodes > 0);
    finish(tester);
}

/* ------------------------------------------------------------------------------------------------
 * 4. Output storage. Every class's output shapes follow from its inputs (and from the values of
 * shape-like inputs, Binomial's shape), which are the same in both calls, so every class keeps each
 * output's sbx_array / sbx_sparse: none is excused. */
static void scribble(sbx_value *v) {
    if (v->dense && v->dense->data)
        memset(v->dense->data, 0x5A, (size_t)sbx_array_numel(v->dense) * sbx_dtype_size(v->dense->dtype));
    if (v->sparse && v->sparse->data)
        memset(v->sparse->data, 0x5A, (size_t)v->sparse->nnz * sbx_dtype_size(v->sparse->dtype));
}

/* Storage that does not fit output value v: variant 0 the right dtype, same element count, another
 * shape (sparse: the transposed shape); 1 the right shape, another dtype; 2 the other kind. */
static sbx_value wrong_storage(const sbx_value *v, int variant) {
    sbx_value w = {NULL, NULL};
    if (v->dense) {
        const sbx_array *a = v->dense;
        if (variant == 0) {
            int64_t n = sbx_array_numel(a);
            const int64_t s1[1] = {n}, s2[2] = {1, n};
            MUST(sbx_array_create(a->dtype, a->ndim == 1 ? 2 : 1, a->ndim == 1 ? s2 : s1, &w.dense));
        } else if (variant == 1) {
            MUST(sbx_array_create(a->dtype == SBX_FLOAT64 ? SBX_FLOAT32 : SBX_FLOAT64, a->ndim, a->shape, &w.dense));
        } else {
            MUST(sbx_sparse_create(SBX_CSR, SBX_FLOAT64, 2, 2, 0, &w.sparse));
        }
    } else {
        const sbx_sparse *m = v->sparse;
        if (variant == 0) {
            MUST(sbx_sparse_create(m->format, m->dtype, m->ncols + 1, m->nrows + 2, 0, &w.sparse));
        } else if (variant == 1) {
            MUST(sbx_sparse_create(m->format == SBX_CSR ? SBX_CSC : SBX_CSR,
                                   m->dtype == SBX_FLOAT64 ? SBX_INT8 : SBX_FLOAT64, m->nrows, m->ncols, 0, &w.sparse));
        } else {
            const int64_t s[1] = {3};
            MUST(sbx_array_create(SBX_FLOAT64, 1, s, &w.dense));
        }
    }
    return w;
}

static void test_output_storage(void **state) {
    (void)state;
    const char *tester = "output storage";
    int ncase = 0, kept = 0, replaced = 0;
    nfail = 0;
    for (int k = 0; k < ncases; k++) {
        const tcase *c = &cases[k];
        sbx_graph *g = NULL;
        sbx_var *x[SBX_OP_MAX_INPUTS];
        sbx_node *node;
        sbx_value out[SBX_OP_MAX_OUTPUTS], first[SBX_OP_MAX_OUTPUTS], other[SBX_OP_MAX_OUTPUTS];
        char a[128], b[128];
        memset(out, 0, sizeof out);
        memset(first, 0, sizeof first);
        memset(other, 0, sizeof other);
        TRY(sbx_graph_create(&g));
        TRY(build_node(c, 0, g, x, &node));
        const int nout = sbx_node_noutputs(node);
        TRY(sbx_node_perform(node, c->in, out, 7));
        const void *ptr[SBX_OP_MAX_OUTPUTS];
        for (int j = 0; j < nout; j++) {
            if (!out[j].dense && !out[j].sparse) {
                bad(tester, c->name, "perform left output %d empty", j);
                goto done;
            }
            first[j] = copy_value(&out[j]);
            ptr[j] = out[j].dense ? (const void *)out[j].dense : (const void *)out[j].sparse;
            scribble(&out[j]); /* a perform that reads its old output would now differ */
        }
        ncase++;
        TRY(sbx_node_perform(node, c->in, out, 7));
        for (int j = 0; j < nout; j++) {
            const void *now = out[j].dense ? (const void *)out[j].dense : (const void *)out[j].sparse;
            if (now != ptr[j])
                bad(tester, c->name, "output %d: the second perform replaced the %s it was given (%p, now %p)", j,
                    first[j].dense ? "sbx_array" : "sbx_sparse", ptr[j], now);
            else
                kept++;
            if (!same_value(&out[j], &first[j]))
                bad(tester, c->name, "output %d: the second perform into the first's storage gave other values", j);
        }
        /* Storage of the wrong shape, dtype or kind is replaced by a value of the right type. */
        for (int variant = 0; variant < 3; variant++) {
            for (int j = 0; j < nout; j++)
                other[j] = wrong_storage(&first[j], variant);
            sbx_status st = sbx_node_perform(node, c->in, other, 7);
            if (st != SBX_OK) {
                bad(tester, c->name, "perform into storage of the wrong %s gave %s: %s",
                    variant == 0   ? "shape"
                    : variant == 1 ? "dtype"
                                   : "kind",
                    sbx_status_str(st), sbx_last_error());
            } else {
                for (int j = 0; j < nout; j++) {
                    sbx_type want, got;
                    MUST(sbx_type_of(&first[j], &want));
                    if (sbx_type_of(&other[j], &got) != SBX_OK) {
                        bad(tester, c->name, "output %d: storage of the wrong %s left malformed", j,
                            variant == 0   ? "shape"
                            : variant == 1 ? "dtype"
                                           : "kind");
                        continue;
                    }
                    if (!sbx_type_equal(&want, &got) || !same_value(&other[j], &first[j]))
                        bad(tester, c->name,
                            "output %d: storage of the wrong %s: expected %s with the first call's "
                            "values, got %s%s",
                            j,
                            variant == 0   ? "shape"
                            : variant == 1 ? "dtype"
                                           : "kind",
                            tstr(&want, a), tstr(&got, b), sbx_type_equal(&want, &got) ? " with other values" : "");
                    else
                        replaced++;
                }
            }
            clear_all(other, SBX_OP_MAX_OUTPUTS);
        }
    done:
        clear_all(out, SBX_OP_MAX_OUTPUTS);
        clear_all(first, SBX_OP_MAX_OUTPUTS);
        clear_all(other, SBX_OP_MAX_OUTPUTS);
        sbx_graph_free(g);
    }
    print_message("output storage: %d cases, %d outputs kept in place with equal values, %d wrong storages replaced\n",
                  ncase, kept, replaced);
    assert_true(kept > 0 && replaced > 0);
    finish(tester);
}

/* ------------------------------------------------------------------------------------------------
 * 6. Grad answers against connection_pattern. */
static const char *answer_name(sbx_grad a) {
    return a == SBX_GRAD_DEFINED        ? "defined"
           : a == SBX_GRAD_UNDEFINED    ? "undefined"
           : a == SBX_GRAD_DISCONNECTED ? "disconnected"
                                        : "invalid";
}

/* The types are compatible: kind, dtype, rank (and format) equal, no known extent differing. */
static int compatible(const sbx_type *a, const sbx_type *b) {
    if (a->kind != b->kind || a->dtype != b->dtype || a->ndim != b->ndim)
        return 0;
    if (a->kind == SBX_KIND_SPARSE && a->format != b->format)
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] >= 0 && b->shape[d] >= 0 && a->shape[d] != b->shape[d])
            return 0;
    return 1;
}

/* The answers of the case's node when every output gets a gradient (sbx_node_grad in its own graph). */
static sbx_status answers_of(const tcase *c, sbx_grad *answer) {
    sbx_graph *g;
    sbx_var *x[SBX_OP_MAX_INPUTS], *gout[SBX_OP_MAX_OUTPUTS], *gin[SBX_OP_MAX_INPUTS];
    const char *reason[SBX_OP_MAX_INPUTS];
    sbx_node *node;
    sbx_status st = sbx_graph_create(&g);
    if (st != SBX_OK)
        return st;
    st = build_node(c, 0, g, x, &node);
    for (int j = 0; st == SBX_OK && j < sbx_node_noutputs(node); j++)
        st = sbx_graph_input(g, "gout", sbx_var_type(sbx_node_output(node, j)), &gout[j]);
    if (st == SBX_OK)
        st = sbx_node_grad(g, node, gout, gin, answer, reason);
    sbx_graph_free(g);
    return st;
}

static void test_grad_answers(void **state) {
    (void)state;
    const char *tester = "grad answers";
    int ncase = 0, ninputs = 0, counts[3] = {0, 0, 0}, pinned = 0;
    nfail = 0;
    for (int k = 0; k < ncases; k++) {
        const tcase *c = &cases[k];
        sbx_graph *g = NULL;
        sbx_var *x[SBX_OP_MAX_INPUTS], *gout[SBX_OP_MAX_OUTPUTS], *gin[SBX_OP_MAX_INPUTS];
        sbx_grad answer[SBX_OP_MAX_INPUTS];
        const char *reason[SBX_OP_MAX_INPUTS];
        int pattern[SBX_OP_MAX_INPUTS * SBX_OP_MAX_OUTPUTS];
        sbx_node *node;
        char a[128], b[128];
        TRY(sbx_graph_create(&g));
        TRY(build_node(c, 0, g, x, &node));
        const int nin = c->nin, nout = sbx_node_noutputs(node);
        for (int j = 0; j < nout; j++)
            TRY(sbx_graph_input(g, "gout", sbx_var_type(sbx_node_output(node, j)), &gout[j]));
        for (int i = 0; i < nin * nout; i++)
            pattern[i] = -1;
        sbx_node_connection_pattern(node, pattern);
        TRY(sbx_node_grad(g, node, gout, gin, answer, reason));
        ncase++;
        for (int i = 0; i < nin; i++) {
            int connected = 0;
            for (int j = 0; j < nout; j++) {
                const int p = pattern[i * nout + j];
                if (p != 0 && p != 1)
                    bad(tester, c->name, "connection_pattern[%d][%d] = %d (expected 0 or 1)", i, j, p);
                connected |= p == 1;
            }
            ninputs++;
            if ((unsigned)answer[i] > 2u) {
                bad(tester, c->name, "input %d: answer %d is not an sbx_grad", i, (int)answer[i]);
                continue;
            }
            counts[answer[i]]++;
            if (!connected && answer[i] != SBX_GRAD_DISCONNECTED)
                bad(tester, c->name, "input %d: connection_pattern says no output depends on it, grad answers %s", i,
                    answer_name(answer[i]));
            if (connected && answer[i] == SBX_GRAD_DISCONNECTED)
                bad(tester, c->name, "input %d: connection_pattern connects it, grad answers disconnected", i);
            if (answer[i] == SBX_GRAD_UNDEFINED && (!reason[i] || !reason[i][0]))
                bad(tester, c->name, "input %d: undefined without a reason", i);
            if (answer[i] == SBX_GRAD_DEFINED) {
                if (!gin[i]) {
                    bad(tester, c->name, "input %d: defined but no gradient variable", i);
                } else if (!compatible(sbx_var_type(gin[i]), sbx_var_type(x[i]))) {
                    bad(tester, c->name, "input %d: the gradient's type %s does not fit the input's %s", i,
                        tstr(sbx_var_type(gin[i]), a), tstr(sbx_var_type(x[i]), b));
                }
            }
        }
        /* The original's answers, pinned. */
        if (c->cls == &sbx_op_binomial) {
            pinned++;
            const sbx_grad want[3] = {SBX_GRAD_UNDEFINED, SBX_GRAD_UNDEFINED, SBX_GRAD_DISCONNECTED};
            const int pat[3] = {1, 1, 0};
            for (int i = 0; i < 3 && i < nin; i++) {
                if (answer[i] != want[i])
                    bad(tester, c->name, "input %d: expected %s (the original's), got %s", i, answer_name(want[i]),
                        answer_name(answer[i]));
                if (nout == 1 && pattern[i] != pat[i])
                    bad(tester, c->name, "connection_pattern[%d] = %d, expected the original's [[1],[1],[0]]", i,
                        pattern[i]);
            }
            if (nin != 3 || nout != 1)
                bad(tester, c->name, "%d inputs and %d outputs, expected 3 and 1", nin, nout);
        }
        if (c->cls == &sbx_op_multinomial || c->cls == &sbx_op_poisson || c->cls == &sbx_op_sgd_step ||
            c->cls == &sbx_op_adam_step) {
            /* random draws (the original's grad_undefined) and op.h's optimiser steps: undefined for every input */
            pinned++;
            for (int i = 0; i < nin; i++)
                if (answer[i] != SBX_GRAD_UNDEFINED)
                    bad(tester, c->name, "input %d: expected undefined, got %s", i, answer_name(answer[i]));
        }
        /* A gradient reaching one output only (the others NULL), as sbx_gradient passes it. */
        if (nout > 1)
            for (int j = 0; j < nout; j++) {
                sbx_var *one[SBX_OP_MAX_OUTPUTS] = {NULL};
                sbx_grad ans1[SBX_OP_MAX_INPUTS];
                one[j] = gout[j];
                TRY(sbx_node_grad(g, node, one, gin, ans1, reason));
                for (int i = 0; i < nin; i++)
                    if (ans1[i] == SBX_GRAD_DEFINED &&
                        (!gin[i] || !compatible(sbx_var_type(gin[i]), sbx_var_type(x[i]))))
                        bad(tester, c->name,
                            "only output %d's gradient given: input %d defined without a fitting "
                            "gradient variable",
                            j, i);
            }
    done:
        sbx_graph_free(g);
    }
    print_message("grad answers: %d cases, %d inputs (%d defined, %d undefined, %d disconnected), %d cases pinned\n",
                  ncase, ninputs, counts[0], counts[1], counts[2], pinned);
    assert_true(ninputs > 0 && pinned > 0);
    finish(tester);
}

/* ------------------------------------------------------------------------------------------------
 * 5 and 8. verify_grad: cost = sum_j Sum(Mul(out_j, R_j)) over the float outputs (a sparse output
 * through DenseFromSparse), its gradient with respect to the differentiable inputs against central
 * differences. order 2: cost2 = sum_i Sum(Mul(d cost / d x_i, S_i)) with the R_j graph inputs too,
 * and the gradient of cost2 with respect to the x_i and the R_j. */
#define H 1e-6
#define TOL 1e-6

typedef struct vstats {
    int cases, inputs, skipped, zero_wrt;
    long elements, structural;
    double worst;                    /* the largest |num - ana| / max(1, |num|) */
    const sbx_op_class *classes[64]; /* the classes checked, for the summary */
    int nclasses;
    const sbx_op_class *skip_cls[64]; /* the classes skipped, how often, the first reason */
    int skip_count[64], nskip;
    char skip_reason[64][200];
} vstats;

static void skip_note(vstats *vs, const sbx_op_class *cls, const char *why) {
    vs->skipped++;
    for (int k = 0; k < vs->nskip; k++)
        if (vs->skip_cls[k] == cls) {
            vs->skip_count[k]++;
            return;
        }
    if (vs->nskip >= 64)
        return;
    vs->skip_cls[vs->nskip] = cls;
    vs->skip_count[vs->nskip] = 1;
    snprintf(vs->skip_reason[vs->nskip], sizeof vs->skip_reason[0], "%s", why);
    vs->nskip++;
}

static void note_class(vstats *vs, const sbx_op_class *cls) {
    for (int k = 0; k < vs->nclasses; k++)
        if (vs->classes[k] == cls)
            return;
    if (vs->nclasses < 64)
        vs->classes[vs->nclasses++] = cls;
}

static int noted(const vstats *vs, const sbx_op_class *cls) {
    for (int k = 0; k < vs->nclasses; k++)
        if (vs->classes[k] == cls)
            return 1;
    return 0;
}

static const char *class_list(const vstats *vs, char *buf, size_t size) {
    size_t n = 0;
    buf[0] = '\0';
    for (int k = 0; k < vs->nclasses && n < size; k++)
        n += (size_t)snprintf(buf + n, size - n, "%s%s", k ? ", " : "", vs->classes[k]->name);
    return buf;
}

static sbx_var *apply1(sbx_graph *g, const sbx_op_class *cls, const void *props, sbx_var *a, sbx_var *b,
                       sbx_status *st) {
    sbx_var *in[2] = {a, b}, *out = NULL;
    if (*st == SBX_OK)
        *st = sbx_apply(g, cls, props, b ? 2 : 1, in, &out);
    return out;
}

/* cost += Sum(Mul(dense(v), w)). */
static sbx_status add_term(sbx_graph *g, sbx_var *v, sbx_var *w, sbx_var **cost) {
    static const sbx_reduce_props all = {-1};
    static const sbx_add_props plus = {1.0, 1.0};
    sbx_status st = SBX_OK;
    if (sbx_var_type(v)->kind == SBX_KIND_SPARSE)
        v = apply1(g, &sbx_op_dense_from_sparse, NULL, v, NULL, &st);
    sbx_var *term = apply1(g, &sbx_op_sum, &all, apply1(g, &sbx_op_mul, NULL, v, w, &st), NULL, &st);
    if (st != SBX_OK)
        return st;
    if (!*cost) {
        *cost = term;
        return SBX_OK;
    }
    *cost = apply1(g, &sbx_op_add, &plus, *cost, term, &st);
    return st;
}

/* A random dense float64 value of a fully known type (a sparse type's dense shape). */
static sbx_value weights(const sbx_type *t) { return dval(SBX_FLOAT64, t->ndim, t->shape, UNIFORM); }

/* The perturbable numbers of a float64 value: a dense array's elements, a sparse matrix's stored values. */
static double *numbers(sbx_value *v, int64_t *n) {
    if (v->dense) {
        *n = sbx_array_numel(v->dense);
        return v->dense->data;
    }
    *n = v->sparse->nnz;
    return v->sparse->data;
}

/* The analytic gradient gv of x, at x's numbers (a sparse x: at its stored positions). */
static int extract(const sbx_value *x, const sbx_value *gv, double *out, char *why, size_t whysize) {
    if (x->dense) {
        const sbx_array *a = x->dense, *g = gv->dense;
        if (!g || g->ndim != a->ndim || memcmp(g->shape, a->shape, sizeof(int64_t) * (size_t)a->ndim) != 0 ||
            !is_float(g->dtype)) {
            sbx_type t;
            char s[128] = "nothing";
            if (sbx_type_of(gv, &t) == SBX_OK)
                sbx_type_str(&t, s, sizeof s);
            snprintf(why, whysize, "the gradient's value is %s, not of the input's shape", s);
            return 0;
        }
        for (int64_t i = 0; i < sbx_array_numel(a); i++)
            out[i] = get(g->data, g->dtype, i);
        return 1;
    }
    const sbx_sparse *m = x->sparse;
    sbx_array *d = NULL;
    if (gv->sparse) {
        if (gv->sparse->nrows != m->nrows || gv->sparse->ncols != m->ncols ||
            sbx_sparse_to_dense(gv->sparse, &d) != SBX_OK) {
            snprintf(why, whysize, "the sparse gradient is %lldx%lld, the input %lldx%lld",
                     (long long)gv->sparse->nrows, (long long)gv->sparse->ncols, (long long)m->nrows,
                     (long long)m->ncols);
            return 0;
        }
    } else {
        snprintf(why, whysize, "the gradient of a sparse input is not sparse");
        return 0;
    }
    const int64_t major = sbx_sparse_major(m);
    for (int64_t line = 0; line < major; line++)
        for (int64_t k = m->indptr[line]; k < m->indptr[line + 1]; k++) {
            const int64_t r = m->format == SBX_CSR ? line : m->indices[k];
            const int64_t col = m->format == SBX_CSR ? m->indices[k] : line;
            out[k] = get(d->data, d->dtype, r * m->ncols + col);
        }
    sbx_array_free(d);
    return 1;
}

static int in_list(const sbx_op_class *cls, const sbx_op_class *const *list, int n) {
    for (int k = 0; k < n; k++)
        if (list[k] == cls)
            return 1;
    return 0;
}

static double call_cost(const char *tester, const tcase *c, sbx_function *f, const sbx_value *in, int *ok) {
    sbx_value out[1] = {{NULL, NULL}};
    sbx_status st = sbx_function_call(f, in, out);
    if (st != SBX_OK || !out[0].dense) {
        if (*ok)
            bad(tester, c->name, "calling the cost gave %s: %s", sbx_status_str(st), sbx_last_error());
        *ok = 0;
        return NAN;
    }
    return get(out[0].dense->data, out[0].dense->dtype, 0);
}

/* Classes whose second derivatives must exist: docs/op.md builds their gradients from differentiable ops
 * (Tanh's from Mul and Add, ReLU's from ReluGrad and ReluGrad's from itself, Add's and Mul's through
 * SumTo, whose adjoint is BroadcastLike, and the bilinear Dot, StructuredDot and SampledDot from each
 * other), and the linear Scale and Transpose, whose gradients are themselves. */
static const sbx_op_class *const second_required[] = {&sbx_op_tanh,        &sbx_op_mul,
                                                      &sbx_op_dot,         &sbx_op_add,
                                                      &sbx_op_relu,        &sbx_op_relu_grad,
                                                      &sbx_op_sum_to,      &sbx_op_broadcast_like,
                                                      &sbx_op_scale,       &sbx_op_structured_dot,
                                                      &sbx_op_sampled_dot, &sbx_op_transpose};
#define NREQUIRED ((int)(sizeof second_required / sizeof second_required[0]))

/* order 2: the gradient with respect to the case's which-th differentiable input is differentiated.
 * Returns the number of differentiable inputs. */
static int verify_case(const char *tester, const tcase *c, int order, int which, vstats *vs) {
    sbx_graph *g = NULL;
    sbx_function *fcost = NULL, *fgrad = NULL;
    sbx_var *x[SBX_OP_MAX_INPUTS], *wrt[SBX_OP_MAX_INPUTS + SBX_OP_MAX_OUTPUTS],
        *grads[SBX_OP_MAX_INPUTS + SBX_OP_MAX_OUTPUTS];
    sbx_var *allin[SBX_OP_MAX_INPUTS + SBX_OP_MAX_OUTPUTS], *cost = NULL;
    sbx_value vals[SBX_OP_MAX_INPUTS + SBX_OP_MAX_OUTPUTS], outs[SBX_OP_MAX_OUTPUTS];
    sbx_value gvals[SBX_OP_MAX_INPUTS + SBX_OP_MAX_OUTPUTS];
    int wi[SBX_OP_MAX_INPUTS + SBX_OP_MAX_OUTPUTS], nwrt = 0, nall = 0;
    int mode[SBX_OP_MAX_INPUTS + SBX_OP_MAX_OUTPUTS] = {0}; /* 0 a gradient, 1 disconnected (zero), 2 skipped */
    double *ana[SBX_OP_MAX_INPUTS + SBX_OP_MAX_OUTPUTS] = {NULL};
    sbx_grad answer[SBX_OP_MAX_INPUTS];
    sbx_node *node;
    memset(vals, 0, sizeof vals);
    memset(outs, 0, sizeof outs);
    memset(gvals, 0, sizeof gvals);
    int result = 0;
    if (c->dtype != SBX_FLOAT64)
        return 0;
    TRY(answers_of(c, answer));
    for (int i = 0; i < c->nin; i++) {
        sbx_type t;
        MUST(sbx_type_of(&c->in[i], &t));
        if (answer[i] == SBX_GRAD_DEFINED && t.dtype == SBX_FLOAT64)
            wi[nwrt++] = i;
    }
    if (!nwrt)
        return 0; /* random ops, optimiser steps, integer-only classes: item 6 checks their answers */
    result = nwrt;
    if (which >= nwrt)
        return result;

    TRY(sbx_graph_create(&g));
    TRY(build_node(c, 0, g, x, &node));
    const int nout = sbx_node_noutputs(node);
    for (int i = 0; i < c->nin; i++) {
        allin[nall] = x[i];
        vals[nall++] = copy_value(&c->in[i]);
    }
    for (int k = 0; k < nwrt; k++)
        wrt[k] = x[wi[k]];
    TRY(sbx_node_perform(node, c->in, outs, 3));
    int nfloat = 0;
    sbx_var *rvar[SBX_OP_MAX_OUTPUTS] = {NULL};
    for (int j = 0; j < nout; j++) {
        sbx_type t;
        TRY(sbx_type_of(&outs[j], &t));
        if (!is_float(t.dtype))
            continue;
        sbx_value w = weights(&t);
        sbx_type wt;
        MUST(sbx_type_of(&w, &wt));
        if (order == 1) {
            TRY(sbx_graph_constant(g, "R", &w, &rvar[j]));
        } else {
            TRY(sbx_graph_input(g, "R", &wt, &rvar[j]));
            allin[nall] = rvar[j];
            vals[nall++] = w;
        }
        TRY(add_term(g, sbx_node_output(node, j), rvar[j], &cost));
        nfloat++;
    }
    if (!nfloat)
        goto done;
    {
        sbx_status st = sbx_gradient(g, cost, nwrt, wrt, 0, grads);
        if (st != SBX_OK) {
            if (order == 1)
                bad(tester, c->name, "sbx_gradient of the cost failed: %s", sbx_last_error());
            goto done; /* order 2: order 1 reported it */
        }
    }
    const int nwrt1 = nwrt;
    if (order == 2) {
        sbx_var *cost2 = NULL, *sv;
        sbx_type t;
        MUST(sbx_type_of(&c->in[wi[which]], &t));
        sbx_value s = weights(&t);
        TRY(sbx_graph_constant(g, "S", &s, &sv));
        TRY(add_term(g, grads[which], sv, &cost2));
        cost = cost2;
        (void)nwrt1;
        for (int j = 0; j < nout; j++) {
            sbx_type t;
            MUST(sbx_type_of(&outs[j], &t));
            if (!is_float(t.dtype))
                continue;
            wrt[nwrt] = rvar[j];
            wi[nwrt++] = -1 - j; /* R_j: a value after the inputs */
        }
        /* One wrt at a time: a wrt cost2 does not depend on (the gradient of a linear op's output
         * weights, say) is checked to have a zero derivative; one whose gradient passes through an
         * undefined answer is skipped, except for the classes whose second derivatives must exist. */
        for (int k = 0; k < nwrt; k++) {
            sbx_status st = sbx_gradient(g, cost, 1, &wrt[k], 0, &grads[k]);
            mode[k] = 0;
            if (st == SBX_OK)
                continue;
            grads[k] = NULL;
            if (strstr(sbx_last_error(), "does not depend")) {
                mode[k] = 1;
            } else if (in_list(c->cls, second_required, NREQUIRED)) {
                bad(tester, c->name, "the gradient of input %d's gradient with respect to %s %d failed: %s", wi[which],
                    wi[k] >= 0 ? "input" : "R of output", wi[k] >= 0 ? wi[k] : -1 - wi[k], sbx_last_error());
                goto done;
            } else {
                mode[k] = 2;
                skip_note(vs, c->cls, sbx_last_error());
            }
        }
    }
    /* The gradients to compute: grads[k] for the wrt of mode 0, compacted. */
    sbx_var *compute[SBX_OP_MAX_INPUTS + SBX_OP_MAX_OUTPUTS];
    int slot[SBX_OP_MAX_INPUTS + SBX_OP_MAX_OUTPUTS], ncompute = 0, nchecked = 0;
    for (int k = 0; k < nwrt; k++) {
        slot[k] = mode[k] == 0 ? ncompute : -1;
        if (mode[k] == 0)
            compute[ncompute++] = grads[k];
        nchecked += mode[k] != 2;
    }
    if (!nchecked)
        goto done;
    /* An empty update list, but not NULL: sbx_function_compile memcpy's the list whatever its length,
     * and memcpy from NULL is undefined behaviour, which the sanitizer build stops at. */
    static const sbx_update no_updates[1];
    TRY(sbx_function_compile(g, nall, allin, 1, &cost, 0, no_updates, 0, &fcost));
    if (ncompute) {
        TRY(sbx_function_compile(g, nall, allin, ncompute, compute, 0, no_updates, 0, &fgrad));
        TRY(sbx_function_call(fgrad, vals, gvals));
    }
    /* The values of input (or R) k among vals: inputs first, then the R_j in output order. */
    int vindex[SBX_OP_MAX_INPUTS + SBX_OP_MAX_OUTPUTS];
    for (int k = 0; k < nwrt; k++) {
        if (wi[k] >= 0) {
            vindex[k] = wi[k];
        } else {
            int j = -1 - wi[k], pos = c->nin;
            for (int jj = 0; jj < j; jj++) {
                sbx_type t;
                MUST(sbx_type_of(&outs[jj], &t));
                pos += is_float(t.dtype);
            }
            vindex[k] = pos;
        }
        int64_t n;
        numbers(&vals[vindex[k]], &n);
        ana[k] = calloc((size_t)(n ? n : 1), sizeof(double)); /* mode 1: a zero gradient */
        char why[256];
        if (mode[k] == 0 && !extract(&vals[vindex[k]], &gvals[slot[k]], ana[k], why, sizeof why)) {
            bad(tester, c->name, "%s %d: %s", wi[k] >= 0 ? "input" : "R of output", wi[k] >= 0 ? wi[k] : -1 - wi[k],
                why);
            goto done;
        }
    }
    vs->cases++;
    note_class(vs, c->cls);
    char sec[64] = "";
    if (order == 2)
        snprintf(sec, sizeof sec, "d/dx of the gradient of input %d: ", wi[which]);
    for (int k = 0; k < nwrt; k++) {
        int64_t n;
        double *p = numbers(&vals[vindex[k]], &n);
        int reported = 0, ok = 1;
        if (mode[k] == 2)
            continue;
        vs->inputs++;
        vs->zero_wrt += mode[k] == 1;
        for (int64_t e = 0; e < n && ok; e++) {
            const double save = p[e];
            p[e] = save + H;
            const double cp = call_cost(tester, c, fcost, vals, &ok);
            p[e] = save - H;
            const double cm = call_cost(tester, c, fcost, vals, &ok);
            p[e] = save;
            const double num = (cp - cm) / (2 * H);
            vs->elements++;
            if (order == 1 && c->structured_zeros && wi[k] == 0 && save == 0) {
                /* The structured convention: the sparse output stores nothing here, so no gradient comes
                 * back (central differences, which make an entry appear, see gout's value there). */
                vs->structural++;
                if (ana[k][e] != 0 && ok && reported++ < 3)
                    bad(tester, c->name,
                        "input 0, element %lld (a zero, not stored in the output): gradient %.10g, "
                        "expected 0 (the gradient lives on the output's structure)",
                        (long long)e, ana[k][e]);
                continue;
            }
            const double rel = fabs(num - ana[k][e]) / fmax(1.0, fabs(num));
            if (ok && rel > vs->worst)
                vs->worst = rel;
            if (!(fabs(num - ana[k][e]) <= TOL * fmax(1.0, fabs(num))) && ok) {
                if (reported++ < 3)
                    bad(tester, c->name, "%s%s %d, element %lld: central difference %.10g, gradient %.10g", sec,
                        wi[k] >= 0 ? "input" : "R of output", wi[k] >= 0 ? wi[k] : -1 - wi[k], (long long)e, num,
                        ana[k][e]);
            }
        }
        if (reported > 3)
            bad(tester, c->name, "... %d elements differ in all", reported);
    }
done:
    for (int k = 0; k < SBX_OP_MAX_INPUTS + SBX_OP_MAX_OUTPUTS; k++)
        free(ana[k]);
    /* gvals belong to fgrad */
    sbx_function_free(fcost);
    sbx_function_free(fgrad);
    clear_all(vals, SBX_OP_MAX_INPUTS + SBX_OP_MAX_OUTPUTS);
    clear_all(outs, SBX_OP_MAX_OUTPUTS);
    sbx_graph_free(g);
    return result;
}

static void test_verify_grad(void **state) {
    (void)state;
    const char *tester = "verify_grad";
    vstats vs;
    memset(&vs, 0, sizeof vs);
    nfail = 0;
    char list[1024];
    for (int k = 0; k < ncases; k++)
        verify_case(tester, &cases[k], 1, 0, &vs);
    print_message("verify_grad: %d float64 cases, %d inputs, %ld elements checked by central differences (%ld of them "
                  "zeros a sparse output drops, checked for a zero gradient), worst relative error %.2g; classes: %s\n",
                  vs.cases, vs.inputs, vs.elements, vs.structural, vs.worst, class_list(&vs, list, sizeof list));
    assert_true(vs.elements > 0);
    finish(tester);
}

/* The numbers a case's inputs hold (a sparse input's stored values). */
static int64_t case_size(const tcase *c) {
    int64_t n = 0;
    for (int i = 0; i < c->nin; i++)
        n += c->in[i].dense ? sbx_array_numel(c->in[i].dense) : c->in[i].sparse->nnz;
    return n;
}

/* Second derivatives cost (inputs + weights) x gradients x 2 calls per case: the larger layer cases
 * (unshared kernels of hundreds of weights) are left to verify_grad, keeping the sanitizer run short. */
#define SECOND_MAX_SIZE 300

static void test_second_derivatives(void **state) {
    (void)state;
    const char *tester = "second derivatives";
    vstats vs;
    memset(&vs, 0, sizeof vs);
    nfail = 0;
    char list[1024];
    int too_big = 0;
    for (int k = 0; k < ncases; k++) {
        if (cases[k].dtype == SBX_FLOAT64 && case_size(&cases[k]) > SECOND_MAX_SIZE) {
            too_big++;
            continue;
        }
        const int n = verify_case(tester, &cases[k], 2, 0, &vs);
        for (int which = 1; which < n; which++)
            verify_case(tester, &cases[k], 2, which, &vs);
    }
    for (int k = 0; k < vs.nskip; k++)
        print_message("  second derivatives: %s: %d gradients not differentiable, skipped (%.160s)\n",
                      vs.skip_cls[k]->name, vs.skip_count[k], vs.skip_reason[k]);
    for (int r = 0; r < NREQUIRED; r++)
        if (!noted(&vs, second_required[r]))
            bad(tester, second_required[r]->name, "no second derivative of this class was checked");
    print_message("second derivatives: %d gradients (of one input of a float64 case) differentiated with respect to %d "
                  "inputs and weights (%d on which the gradient does not depend, checked for a zero derivative), %ld "
                  "elements checked, worst relative error %.2g; classes: %s; %d not differentiable, skipped; %d cases "
                  "of more than %d numbers left to verify_grad\n",
                  vs.cases, vs.inputs, vs.zero_wrt, vs.elements, vs.worst, class_list(&vs, list, sizeof list),
                  vs.skipped, too_big, SECOND_MAX_SIZE);
    assert_true(vs.elements > 0);
    finish(tester);
}

/* ------------------------------------------------------------------------------------------------
 * 7. Equality and hash. fill_props writes variant k of a class's properties field by field into a
 * struct holding garbage (k = 0 the base; k >= 1 one property changed); 0 when there is no variant k. */
static void layer_fill(sbx_layer_props *p, int k) {
    int64_t in[3] = {5, 5, 4}, ker[3] = {3, 3, 2}, st[3] = {1, 1, 1};
    int ndim = 2;
    int64_t ch = 2;
    sbx_conv_mode mode = SBX_CONV_VALID;
    if (k == 2)
        st[0] = 2;
    if (k == 3)
        mode = SBX_CONV_FULL;
    if (k == 4)
        ch = 1;
    if (k == 5)
        ker[1] = 2;
    if (k == 6)
        in[1] = 6;
    if (k == 7)
        ndim = 3;
    set_shape(&p->shape, ndim, ch, in, ker, st, mode);
    p->nkern = k == 1 ? 3 : 2;
}

static int fill_props(const sbx_op_class *cls, int k, void *props) {
    if (cls == &sbx_op_convolve || cls == &sbx_op_conv_backward || cls == &sbx_op_local_connections ||
        cls == &sbx_op_local_backward) {
        if (k > 7)
            return 0;
        layer_fill(props, k);
        return 1;
    }
    if (cls == &sbx_op_max_pool || cls == &sbx_op_max_pool_grad) {
        sbx_layer_props tmp;
        if (k == 1 || k > 7)
            return 0; /* no nkern */
        layer_fill(&tmp, k);
        set_shape(&((sbx_pool_props *)props)->shape, tmp.shape.ndim, tmp.shape.channels, tmp.shape.in, tmp.shape.kernel,
                  tmp.shape.stride, tmp.shape.mode);
        return 1;
    }
    if (cls == &sbx_op_convolution_indices) {
        sbx_conv_indices_props *p = props;
        sbx_layer_props tmp;
        if (k > 9)
            return 0;
        layer_fill(&tmp, k <= 7 && k != 1 ? k : 0);
        set_shape(&p->shape, tmp.shape.ndim, tmp.shape.channels, tmp.shape.in, tmp.shape.kernel, tmp.shape.stride,
                  tmp.shape.mode);
        p->weight_sharing = k == 8 ? 0 : 1;
        p->nkern = k == 1 ? 2 : 1;
        p->format = k == 9 ? SBX_CSC : SBX_CSR;
        return 1;
    }
    if (cls == &sbx_op_binomial) {
        sbx_binomial_props *p = props;
        if (k > 2)
            return 0;
        p->format = k == 2 ? SBX_CSC : SBX_CSR;
        p->dtype = k == 1 ? SBX_FLOAT64 : SBX_FLOAT32; /* Binomial(csr, float32) twice equal; (csr, float64) not */
        return 1;
    }
    if (cls == &sbx_op_structured_dot) {
        if (k > 1)
            return 0;
        ((sbx_structured_dot_props *)props)->transpose_sparse = k;
        return 1;
    }
    if (cls == &sbx_op_sampled_dot) {
        sbx_sampled_dot_props *p = props;
        if (k > 2)
            return 0;
        p->transpose_x = k == 1;
        p->transpose_y = k == 2;
        return 1;
    }
    if (cls == &sbx_op_sparse_from_dense) {
        if (k > 1)
            return 0;
        ((sbx_format_props *)props)->format = k ? SBX_CSC : SBX_CSR;
        return 1;
    }
    if (cls == &sbx_op_dot) {
        sbx_dot_props *p = props;
        if (k > 2)
            return 0;
        p->transpose_a = k == 1;
        p->transpose_b = k == 2;
        return 1;
    }
    if (cls == &sbx_op_add) {
        sbx_add_props *p = props;
        if (k > 2)
            return 0;
        p->alpha = k == 1 ? 2.0 : 1.0;
        p->beta = k == 2 ? -1.0 : 1.0;
        return 1;
    }
    if (cls == &sbx_op_scale) {
        if (k > 1)
            return 0;
        ((sbx_scale_props *)props)->c = k ? 0.5 : 2.0;
        return 1;
    }
    if (cls == &sbx_op_reshape) {
        sbx_reshape_props *p = props;
        if (k > 2)
            return 0;
        p->ndim = k == 2 ? 3 : 2;
        const int64_t s[3] = {k == 1 ? 3 : 2, 6, 1};
        for (int d = 0; d < SBX_MAX_NDIM; d++)
            p->shape[d] = d < p->ndim ? s[d] : 0;
        return 1;
    }
    if (cls == &sbx_op_sum || cls == &sbx_op_mean) {
        if (k > 2)
            return 0;
        ((sbx_reduce_props *)props)->axis = k == 0 ? -1 : k == 1 ? 0 : 1;
        return 1;
    }
    if (cls == &sbx_op_sum_to || cls == &sbx_op_broadcast_like) {
        if (k > 1)
            return 0;
        ((sbx_broadcast_props *)props)->mean = k;
        return 1;
    }
    if (cls == &sbx_op_sgd_step) {
        if (k > 1)
            return 0;
        ((sbx_sgd_props *)props)->momentum = k ? 0.5 : 0.9;
        return 1;
    }
    if (cls == &sbx_op_adam_step) {
        sbx_adam_props *p = props;
        if (k > 3)
            return 0;
        p->beta1 = k == 1 ? 0.8 : 0.9;
        p->beta2 = k == 2 ? 0.99 : 0.999;
        p->eps = k == 3 ? 1e-7 : 1e-8;
        return 1;
    }
    return k == 0; /* a class without properties */
}

static void test_equality_hash(void **state) {
    (void)state;
    const char *tester = "equality and hash";
    int count, nclasses = 0, equal_pairs = 0, unequal_pairs = 0;
    nfail = 0;
    const sbx_op_class *const *list = sbx_op_classes(&count);
    for (int i = 0; i < count && list[i]; i++) {
        const sbx_op_class *cls = list[i];
        const char *nm = cls->name ? cls->name : "?";
        if (!cls->props_equal || !cls->props_hash || !cls->props_str)
            continue; /* completeness reports it */
        if (expected_props_size(cls) != cls->props_size) {
            bad(tester, nm, "props_size %zu is not the expected struct's: not comparing", cls->props_size);
            continue;
        }
        nclasses++;
        props_u a[16], b;
        int nvar = 0;
        for (int k = 0; k < 16; k++) {
            memset(&a[k], 0xAA, sizeof a[k]);
            if (!fill_props(cls, k, &a[k]))
                break;
            nvar++;
        }
        for (int k = 0; k < nvar; k++) {
            memset(&b, 0x55, sizeof b); /* other garbage in the padding */
            fill_props(cls, k, &b);
            const sbx_op oa = {cls, cls->props_size ? (const void *)&a[k] : NULL};
            const sbx_op ob = {cls, cls->props_size ? (const void *)&b : NULL};
            equal_pairs++;
            if (!sbx_op_equal(&oa, &ob))
                bad(tester, nm, "variant %d: two ops with equal properties compare unequal", k);
            if (sbx_op_hash(&oa) != sbx_op_hash(&ob))
                bad(tester, nm, "variant %d: two ops with equal properties hash differently", k);
            if (cls->props_size) {
                if (!cls->props_equal(&a[k], &b))
                    bad(tester, nm, "variant %d: props_equal of equal properties is 0", k);
                if (cls->props_hash(&a[k]) != cls->props_hash(&b))
                    bad(tester, nm, "variant %d: props_hash differs for equal properties", k);
            }
            char sa[512], sb[512];
            memset(sa, 1, sizeof sa);
            memset(sb, 2, sizeof sb);
            int na = cls->props_str(cls->props_size ? (const void *)&a[k] : NULL, sa, sizeof sa);
            int nb = cls->props_str(cls->props_size ? (const void *)&b : NULL, sb, sizeof sb);
            if (na < 0 || na >= (int)sizeof sa || !memchr(sa, 0, sizeof sa) || nb != na || strcmp(sa, sb) != 0)
                bad(tester, nm, "variant %d: props_str of equal properties: \"%.100s\" and \"%.100s\"", k, sa, sb);
            for (int m = 0; m < k; m++) {
                const sbx_op om = {cls, &a[m]};
                unequal_pairs++;
                if (sbx_op_equal(&om, &oa) || sbx_op_equal(&oa, &om))
                    bad(tester, nm, "variants %d and %d (a property changed) compare equal", m, k);
            }
        }
        /* Ops of two classes are never equal. */
        const sbx_op_class *other = list[i + 1] ? list[i + 1] : list[0];
        if (other != cls) {
            props_u pa, po;
            memset(&pa, 0, sizeof pa);
            memset(&po, 0, sizeof po);
            fill_props(cls, 0, &pa);
            fill_props(other, 0, &po);
            const sbx_op x = {cls, cls->props_size ? (const void *)&pa : NULL};
            const sbx_op y = {other, other->props_size ? (const void *)&po : NULL};
            unequal_pairs++;
            if (sbx_op_equal(&x, &y))
                bad(tester, nm, "an op of this class equals one of %s", other->name);
        }
    }
    print_message("equality and hash: %d classes, %d equal pairs (and hashes, and strings), %d unequal pairs\n",
                  nclasses, equal_pairs, unequal_pairs);
    assert_true(nclasses > 0 && unequal_pairs > 0);
    finish(tester);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completeness),       cmocka_unit_test(test_infer_shape),
        cmocka_unit_test(test_output_storage),     cmocka_unit_test(test_grad_answers),
        cmocka_unit_test(test_equality_hash),      cmocka_unit_test(test_verify_grad),
        cmocka_unit_test(test_second_derivatives),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
