/* Optimisers: the fused step ops SgdStep and AdamStep (one pass over the parameter, in its dtype),
 * and the builders sbx_sgd and sbx_adam, which take the cost's gradients, make the optimiser's state
 * as zeroed shared variables and give the updates a compiled function applies. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "op/dense.h"


#define CHUNK 16384 /* elements per parallel task */

#define KERNELS(T, S, SQRT)                                                                                            \
    SBX_CLONES static void sgd_##S(T *restrict w1, T *restrict v1, const T *restrict w, const T *restrict v,           \
                                   const T *restrict g, int64_t n, T momentum, T lr) {                                 \
        for (int64_t i = 0; i < n; i++) {                                                                              \
            const T nv = momentum * v[i] - lr * g[i];                                                                  \
            v1[i] = nv;                                                                                                \
            w1[i] = w[i] + nv;                                                                                         \
        }                                                                                                              \
    }                                                                                                                  \
    /* c: beta1, 1 - beta1, beta2, 1 - beta2, eps, lr / (1 - beta1^(t+1)), sqrt(1 - beta2^(t+1)). The sqrt             \
     * stays scalar: with errno kept (no -fno-math-errno) gcc does not vectorise it */                                 \
    SBX_CLONES static void adam_##S(T *restrict w1, T *restrict m1, T *restrict v1, const T *restrict w,               \
                                    const T *restrict m, const T *restrict v, const T *restrict g, int64_t n,          \
                                    const T *c) {                                                                      \
        const T b1 = c[0], r1 = c[1], b2 = c[2], r2 = c[3], eps = c[4], step = c[5], bc2 = c[6];                       \
        for (int64_t i = 0; i < n; i++) {                                                                              \
            const T gi = g[i], mi = b1 * m[i] + r1 * gi, vi = b2 * v[i] + r2 * gi * gi;                                \
            m1[i] = mi;                                                                                                \
            v1[i] = vi;                                                                                                \
            w1[i] = w[i] - step * (mi / (SQRT(vi) / bc2 + eps));                                                       \
        }                                                                                                              \
    }

KERNELS(float, f32, sqrtf)
KERNELS(double, f64, sqrt)
#undef KERNELS

/* Elements [lo, lo + n) of a step: arrays outputs first, then inputs; c its scalars. */
typedef void step_chunk(const sbx_array *const *arr, const double *c, int64_t lo, int64_t n);

static void sgd_chunk(const sbx_array *const *a, const double *c, int64_t lo, int64_t n) {
    if (a[0]->dtype == SBX_FLOAT32)
        sgd_f32((float *)a[0]->data + lo, (float *)a[1]->data + lo, (const float *)a[2]->data + lo,
                (const float *)a[3]->data + lo, (const float *)a[4]->data + lo, n, (float)c[0], (float)c[1]);
    else
        sgd_f64((double *)a[0]->data + lo, (double *)a[1]->data + lo, (const double *)a[2]->data + lo,
                (const double *)a[3]->data + lo, (const double *)a[4]->data + lo, n, c[0], c[1]);
}

static void adam_chunk(const sbx_array *const *a, const double *c, int64_t lo, int64_t n) {
    if (a[0]->dtype == SBX_FLOAT32) {
        float cf[7];
        for (int k = 0; k < 7; k++) cf[k] = (float)c[k];
        adam_f32((float *)a[0]->data + lo, (float *)a[1]->data + lo, (float *)a[2]->data + lo,
                 (const float *)a[3]->data + lo, (const float *)a[4]->data + lo, (const float *)a[5]->data + lo,
                 (const float *)a[6]->data + lo, n, cf);
    } else {
        adam_f64((double *)a[0]->data + lo, (double *)a[1]->data + lo, (double *)a[2]->data + lo,
                 (const double *)a[3]->data + lo, (const double *)a[4]->data + lo, (const double *)a[5]->data + lo,
                 (const double *)a[6]->data + lo, n, c);
    }
}

/* The n elements in chunks of CHUNK, across threads when there are enough (cost: operations per
 * element). */
static void run_chunks(step_chunk *f, const sbx_array *const *arr, const double *c, int64_t n, int cost) {
    const int64_t chunks = (n + CHUNK - 1) / CHUNK;
    const int nt = sbx__dense_threads(n * cost, chunks);
    if (n == 0) return;
    if (nt == 1) {
        f(arr, c, 0, n);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t k = 0; k < chunks; k++) f(arr, c, k * CHUNK, n - k * CHUNK < CHUNK ? n - k * CHUNK : CHUNK);
}

/* A 0-d float value as a double. */
static double scalar_of(const sbx_array *a) {
    return a->dtype == SBX_FLOAT32 ? (double)*(const float *)a->data : *(const double *)a->data;
}

/* Inputs 1 .. nsame - 1 like input 0 (w): dense, w's dtype and rank, extents agreeing where known; the
 * rest 0-d of w's dtype. The outputs: nout of w's type, unknown extents filled in from the others. */
static sbx_status step_make_node(const sbx_op *op, int nin, const sbx_type *in, int nsame, const char *const *names,
                                 int nout_want, int *nout, sbx_type *out) {
    SBX_CHECK(sbx__dense_float(op, &in[0], 0, names[0], -1));
    sbx_type t = in[0];
    for (int i = 1; i < nin; i++) {
        const int same = i < nsame;
        SBX_CHECK(sbx__dense_float(op, &in[i], i, names[i], same ? in[0].ndim : 0));
        SBX_CHECK(sbx__dense_same_dtype(op, in, i, names[i], 0, names[0]));
        for (int d = 0; same && d < t.ndim; d++) {
            if (in[i].shape[d] >= 0 && t.shape[d] >= 0 && in[i].shape[d] != t.shape[d]) {
                char want[128], got[128];
                sbx_type_str(&in[0], want, sizeof want);
                sbx_type_str(&in[i], got, sizeof got);
                return sbx__op_error(op, i, names[i], "expected the shape of input 0 (%s), %s, got %s", names[0], want,
                                     got);
            }
            if (t.shape[d] < 0) t.shape[d] = in[i].shape[d];
        }
    }
    for (int j = 0; j < nout_want; j++) out[j] = t;
    *nout = nout_want;
    return SBX_OK;
}

/* perform's shape check: inputs 1 .. nsame - 1 of w's shape, the rest 0-d. */
static sbx_status step_values(const sbx_op *op, int nin, const sbx_value *in, int nsame, const char *const *names,
                              int nout, sbx_value *out) {
    SBX_CHECK(sbx__dense_values(op, nin, in, nout, out));
    const sbx_type w = sbx__type_of_dense(in[0].dense);
    for (int i = 1; i < nin; i++) {
        const sbx_type t = sbx__type_of_dense(in[i].dense);
        const int ok = t.dtype == w.dtype && (i < nsame ? sbx__same_shape(&t, &w) : t.ndim == 0);
        if (!ok) {
            char want[128], got[128];
            sbx_type_str(&w, want, sizeof want);
            sbx_type_str(&t, got, sizeof got);
            return sbx__op_error(op, i, names[i], "expected %s like input 0 (%s), %s, got %s",
                                 i < nsame ? "the shape" : "a 0-d value of the dtype", names[0], want, got);
        }
    }
    return SBX_OK;
}

/* UNDEFINED where a gradient reaches an output the input feeds (pattern), else DISCONNECTED. */
static void step_answers(const sbx_node *node, sbx_var *const *gout, sbx_grad *answer, const char **reason) {
    int pattern[SBX_OP_MAX_INPUTS * SBX_OP_MAX_OUTPUTS];
    node->op.cls->connection_pattern(&node->op, node->nin, node->nout, pattern);
    for (int i = 0; i < node->nin; i++)
        for (int j = 0; j < node->nout; j++)
            if (gout[j] && pattern[i * node->nout + j]) {
                answer[i] = SBX_GRAD_UNDEFINED;
                reason[i] = "an optimiser step is not differentiated";
            }
}

static sbx_status step_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                            const char **reason) {
    (void)g;
    (void)gin;
    step_answers(node, gout, answer, reason);
    return SBX_OK;
}

/* --- SgdStep(momentum): (w, velocity, g, lr) -> (w + velocity', velocity' = momentum velocity - lr g) */
static const char *const sgd_names[] = {"w", "velocity", "g", "lr"};

static int sgd_equal(const void *a, const void *b) { return sbx__props_equal_bytes(a, b, sizeof(sbx_sgd_props)); }
static uint64_t sgd_hash(const void *p) { return sbx__hash_bytes(p, sizeof(sbx_sgd_props), 0xcbf29ce484222325ull); }
static int sgd_str(const void *p, char *buf, size_t size) {
    char m[32];
    return snprintf(buf, size, "momentum=%s", sbx__dense_num(p ? ((const sbx_sgd_props *)p)->momentum : 0.0, m));
}

static sbx_status sgd_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    const double mom = ((const sbx_sgd_props *)op->props)->momentum;
    if (!isfinite(mom) || mom < 0) return sbx__op_fail(op, SBX_ERR_ARG, "momentum %g is not a finite number >= 0", mom);
    SBX_CHECK(sbx__dense_arity(op, nin, 4));
    return step_make_node(op, nin, in, 3, sgd_names, 2, nout, out);
}

static sbx_status sgd_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                              sbx_value *out) {
    (void)ctx;
    SBX_CHECK(sbx__dense_arity(op, nin, 4));
    if (nout != 2) return sbx__op_fail(op, SBX_ERR_ARG, "expected 2 outputs, got %d", nout);
    SBX_CHECK(step_values(op, nin, in, 3, sgd_names, nout, out));
    const sbx_array *w = in[0].dense, *v = in[1].dense, *g = in[2].dense;
    const double mom = ((const sbx_sgd_props *)op->props)->momentum, lr = scalar_of(in[3].dense);
    sbx_array *w1, *v1;
    SBX_CHECK(sbx_output_dense(&out[0], w->dtype, w->ndim, w->shape, 0, &w1));
    SBX_CHECK(sbx_output_dense(&out[1], w->dtype, w->ndim, w->shape, 0, &v1));
    const sbx_array *arr[5] = {w1, v1, w, v, g};
    const double c[2] = {mom, lr};
    run_chunks(sgd_chunk, arr, c, sbx_array_numel(w), 2);
    return SBX_OK;
}

/* w' takes every input; velocity' all but w. */
static void sgd_pattern(const sbx_op *op, int nin, int nout, int *pattern) {
    (void)op;
    for (int i = 0; i < nin; i++)
        for (int j = 0; j < nout; j++) pattern[i * nout + j] = j == 0 || i != 0;
}

const sbx_op_class sbx_op_sgd_step = {.name = "SgdStep",
                                      .props_size = sizeof(sbx_sgd_props),
                                      .props_equal = sgd_equal,
                                      .props_hash = sgd_hash,
                                      .props_str = sgd_str,
                                      .make_node = sgd_make_node,
                                      .infer_shape = sbx__infer_from_types,
                                      .perform = sgd_perform,
                                      .state_free = NULL,
                                      .grad = step_grad,
                                      .connection_pattern = sgd_pattern};

/* --- AdamStep(beta1, beta2, eps): (w, m, v, g, lr, t) -> (w', m', v'), Kingma & Ba, "Adam: a method for
 * stochastic optimization", ICLR 2015, Algorithm 1, at step t + 1 (t counts the steps before this one):
 *     m' = beta1 m + (1 - beta1) g,  v' = beta2 v + (1 - beta2) g^2,
 *     w' = w - lr (m' / (1 - beta1^(t+1))) / (sqrt(v' / (1 - beta2^(t+1))) + eps).
 * eps is added to the bias-corrected root, as in the paper's Algorithm 1 and as torch.optim.Adam does
 * (denominator sqrt(v') / sqrt(1 - beta2^(t+1)) + eps, the step lr / (1 - beta1^(t+1))), not to the
 * uncorrected root of the paper's section 2 reformulation (its epsilon-hat). The per-step scalars are
 * worked out in double, as torch does for a step count held on the CPU; the pass itself runs in the
 * parameter's dtype. */
static const char *const adam_names[] = {"w", "m", "v", "g", "lr", "t"};

static int adam_equal(const void *a, const void *b) { return sbx__props_equal_bytes(a, b, sizeof(sbx_adam_props)); }
static uint64_t adam_hash(const void *p) { return sbx__hash_bytes(p, sizeof(sbx_adam_props), 0xcbf29ce484222325ull); }
static int adam_str(const void *p, char *buf, size_t size) {
    const sbx_adam_props *a = p;
    char b1[32], b2[32], e[32];
    return a ? snprintf(buf, size, "beta1=%s beta2=%s eps=%s", sbx__dense_num(a->beta1, b1),
                        sbx__dense_num(a->beta2, b2), sbx__dense_num(a->eps, e))
             : snprintf(buf, size, "?");
}

static sbx_status adam_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    const sbx_adam_props *p = op->props;
    if (!(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1))
        return sbx__op_fail(op, SBX_ERR_ARG, "expected betas in [0, 1), got beta1 %g and beta2 %g", p->beta1, p->beta2);
    if (!isfinite(p->eps) || p->eps < 0)
        return sbx__op_fail(op, SBX_ERR_ARG, "expected eps finite and >= 0, got %g", p->eps);
    SBX_CHECK(sbx__dense_arity(op, nin, 6));
    return step_make_node(op, nin, in, 4, adam_names, 3, nout, out);
}

static sbx_status adam_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                               sbx_value *out) {
    (void)ctx;
    const sbx_adam_props *p = op->props;
    SBX_CHECK(sbx__dense_arity(op, nin, 6));
    if (nout != 3) return sbx__op_fail(op, SBX_ERR_ARG, "expected 3 outputs, got %d", nout);
    SBX_CHECK(step_values(op, nin, in, 4, adam_names, nout, out));
    const sbx_array *w = in[0].dense, *m = in[1].dense, *v = in[2].dense, *g = in[3].dense;
    const double lr = scalar_of(in[4].dense), t = scalar_of(in[5].dense);
    const double c[7] = {p->beta1,
                         1 - p->beta1,
                         p->beta2,
                         1 - p->beta2,
                         p->eps,
                         lr / (1 - pow(p->beta1, t + 1)),
                         sqrt(1 - pow(p->beta2, t + 1))};
    sbx_array *w1, *m1, *v1;
    SBX_CHECK(sbx_output_dense(&out[0], w->dtype, w->ndim, w->shape, 0, &w1));
    SBX_CHECK(sbx_output_dense(&out[1], w->dtype, w->ndim, w->shape, 0, &m1));
    SBX_CHECK(sbx_output_dense(&out[2], w->dtype, w->ndim, w->shape, 0, &v1));
    const sbx_array *arr[7] = {w1, m1, v1, w, m, v, g};
    run_chunks(adam_chunk, arr, c, sbx_array_numel(w), 4);
    return SBX_OK;
}

/* w' takes every input; m' only m and g; v' only v and g. */
static void adam_pattern(const sbx_op *op, int nin, int nout, int *pattern) {
    (void)op;
    for (int i = 0; i < nin; i++)
        for (int j = 0; j < nout; j++) pattern[i * nout + j] = j == 0 || i == 3 || i == j;
}

const sbx_op_class sbx_op_adam_step = {.name = "AdamStep",
                                       .props_size = sizeof(sbx_adam_props),
                                       .props_equal = adam_equal,
                                       .props_hash = adam_hash,
                                       .props_str = adam_str,
                                       .make_node = adam_make_node,
                                       .infer_shape = sbx__infer_from_types,
                                       .perform = adam_perform,
                                       .state_free = NULL,
                                       .grad = step_grad,
                                       .connection_pattern = adam_pattern};

/* --- Builders ----------------------------------------------------------------------------------------- */
/* The common checks: every parameter a float shared variable of g, all of one dtype. */
static sbx_status check_builder(const char *fn, sbx_graph *g, sbx_var *cost, int nparams, sbx_var *const *params,
                                sbx_var *lr, sbx_update *updates, int *nupd) {
    if (!g || !cost || !lr || !updates || !nupd || (nparams > 0 && !params))
        return sbx__error(SBX_ERR_ARG, "%s: graph, cost, params, lr, updates or nupd is NULL", fn);
    if (nparams < 1 || nparams > (1 << 26))
        return sbx__error(SBX_ERR_ARG, "%s: %d parameters (1 to 2^26)", fn, nparams);
    if (cost->graph != g || lr->graph != g)
        return sbx__error(SBX_ERR_ARG, "%s: cost or lr belongs to another graph", fn);
    for (int i = 0; i < nparams; i++) {
        const sbx_var *p = params[i];
        char got[128];
        if (!p) return sbx__error(SBX_ERR_ARG, "%s: parameter %d is NULL", fn, i);
        sbx_type_str(&p->type, got, sizeof got);
        if (p->graph != g || p->role != VAR_SHARED || p->type.kind != SBX_KIND_DENSE || !sbx__is_float(p->type.dtype))
            return sbx__error(SBX_ERR_ARG,
                              "%s: parameter %d (%s) is not a dense float shared variable of the graph "
                              "(it is %s)",
                              fn, i, sbx_var_name(p), got);
        if (p->type.dtype != params[0]->type.dtype)
            return sbx__error(SBX_ERR_ARG,
                              "%s: parameter %d (%s) is %s but parameter 0 is %s: the parameters share "
                              "one dtype (lr's)",
                              fn, i, sbx_var_name(p), got, sbx_dtype_name(params[0]->type.dtype));
    }
    return SBX_OK;
}

/* A zeroed shared variable of param's type named "<param>.<what>". */
static sbx_status zero_state(sbx_graph *g, const sbx_var *param, const char *what, sbx_var **out) {
    char name[256];
    sbx_array *a;
    sbx_value v = {NULL, NULL};
    snprintf(name, sizeof name, "%s%s%s", sbx_var_name(param), sbx_var_name(param)[0] ? "." : "", what);
    SBX_CHECK(sbx_array_create(param->type.dtype, param->type.ndim, param->type.shape, &a));
    v.dense = a;
    sbx_status st = sbx_graph_shared(g, name, &v, out);
    sbx_value_clear(&v); /* empty on success */
    return st;
}

/* The gradients of cost with respect to the parameters, in a new array for the caller to free. */
static sbx_status gradients(sbx_graph *g, sbx_var *cost, int nparams, sbx_var *const *params, sbx_var ***out) {
    sbx_var **grads;
    SBX_CHECK(sbx__alloc(nparams, sizeof *grads, &grads, "gradients"));
    sbx_status st = sbx_gradient(g, cost, nparams, params, 0, grads);
    if (st != SBX_OK) {
        sbx__free(grads);
        return st;
    }
    *out = grads;
    return SBX_OK;
}

sbx_status sbx_sgd(sbx_graph *g, sbx_var *cost, int nparams, sbx_var *const *params, sbx_var *lr, double momentum,
                   sbx_update *updates, int *nupd) {
    sbx_var **grads;
    SBX_CHECK(check_builder("sbx_sgd", g, cost, nparams, params, lr, updates, nupd));
    SBX_CHECK(gradients(g, cost, nparams, params, &grads));
    const sbx_sgd_props props = {momentum};
    sbx_status st = SBX_OK;
    for (int i = 0; st == SBX_OK && i < nparams; i++) {
        sbx_var *vel, *w1;
        st = zero_state(g, params[i], "velocity", &vel);
        sbx_var *in[4] = {params[i], vel, grads[i], lr};
        if (st == SBX_OK) st = sbx_apply(g, &sbx_op_sgd_step, &props, 4, in, &w1);
        if (st == SBX_OK) grads[i] = w1; /* the gradient is used: its slot keeps the step instead */
    }
    /* updates is written only on success (an output is never half-written) */
    for (int i = 0; st == SBX_OK && i < nparams; i++) {
        const sbx_node *step = grads[i]->owner;
        updates[2 * i] = (sbx_update){params[i], step->out[0]};
        updates[2 * i + 1] = (sbx_update){step->in[1], step->out[1]};
    }
    sbx__free(grads);
    if (st == SBX_OK) *nupd = 2 * nparams;
    return st;
}

sbx_status sbx_adam(sbx_graph *g, sbx_var *cost, int nparams, sbx_var *const *params, sbx_var *lr, double beta1,
                    double beta2, double eps, sbx_update *updates, int *nupd) {
    sbx_var **grads, *t, *one, *t1;
    SBX_CHECK(check_builder("sbx_adam", g, cost, nparams, params, lr, updates, nupd));
    const sbx_dtype dt = params[0]->type.dtype;
    /* the step count: one 0-d shared variable for every parameter, counting the steps taken */
    {
        sbx_array *a;
        sbx_value v = {NULL, NULL};
        SBX_CHECK(sbx_array_create(dt, 0, NULL, &a));
        v.dense = a;
        sbx_status st = sbx_graph_shared(g, "adam.t", &v, &t);
        sbx_value_clear(&v);
        SBX_CHECK(st);
    }
    const sbx_add_props plus = {1, 1};
    const sbx_adam_props props = {beta1, beta2, eps};
    SBX_CHECK(sbx_graph_scalar(g, dt, 1, &one));
    sbx_var *inc[2] = {t, one};
    SBX_CHECK(sbx_apply(g, &sbx_op_add, &plus, 2, inc, &t1));
    SBX_CHECK(gradients(g, cost, nparams, params, &grads));
    sbx_status st = SBX_OK;
    for (int i = 0; st == SBX_OK && i < nparams; i++) {
        sbx_var *m = NULL, *v = NULL, *w1;
        st = zero_state(g, params[i], "m", &m);
        if (st == SBX_OK) st = zero_state(g, params[i], "v", &v);
        sbx_var *in[6] = {params[i], m, v, grads[i], lr, t};
        if (st == SBX_OK) st = sbx_apply(g, &sbx_op_adam_step, &props, 6, in, &w1);
        if (st == SBX_OK) grads[i] = w1; /* the gradient is used: its slot keeps the step instead */
    }
    /* updates is written only on success (an output is never half-written) */
    for (int i = 0; st == SBX_OK && i < nparams; i++) {
        const sbx_node *step = grads[i]->owner;
        updates[3 * i] = (sbx_update){params[i], step->out[0]};
        updates[3 * i + 1] = (sbx_update){step->in[1], step->out[1]};
        updates[3 * i + 2] = (sbx_update){step->in[2], step->out[2]};
    }
    sbx__free(grads);
    if (st != SBX_OK) return st;
    updates[3 * nparams] = (sbx_update){t, t1};
    *nupd = 3 * nparams + 1;
    return SBX_OK;
}
