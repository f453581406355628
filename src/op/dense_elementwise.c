/* Elementwise dense ops: Scale, Tanh, Relu, ReluGrad, and with numpy broadcasting Add, Mul and
 * BroadcastLike (whose adjoint, SumTo, is in dense_reduce.c).
 * Every output element is computed on its own, so any split over threads gives the same bits; the
 * loops are split into fixed chunks of CHUNK elements only above a size where a thread team pays. */
#include <math.h>
#include <string.h>

#include "op/dense.h"


#define CHUNK 16384 /* elements per parallel task */
#define TANH_COST 8 /* a tanh costs about this many simple element operations */

/* --- Kernels, for float and double ----------------------------------------------------------------
 * Patterns of a binary operation along its innermost run: VV both operands advance, VS b is one
 * value repeated, SV a is. */
enum { VV, VS, SV };
typedef enum { K_ADD, K_MUL, K_RELU_GRAD, K_BROADCAST } binary_kind;
typedef enum { K_SCALE, K_TANH, K_RELU } unary_kind;

#define KERNELS(T, S, TANH)                                                                                            \
    SBX_CLONES static void scale_##S(T *restrict y, const T *restrict x, int64_t n, T c) {                             \
        for (int64_t i = 0; i < n; i++) y[i] = c * x[i];                                                               \
    }                                                                                                                  \
    static void tanh_##S(T *restrict y, const T *restrict x, int64_t n) {                                              \
        for (int64_t i = 0; i < n; i++) y[i] = TANH(x[i]);                                                             \
    }                                                                                                                  \
    SBX_CLONES static void relu_##S(T *restrict y, const T *restrict x, int64_t n) {                                   \
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : (T)0;                                                 \
    }                                                                                                                  \
    SBX_CLONES static void relu_grad_##S(T *restrict y, const T *restrict x, const T *restrict g, int64_t n) {         \
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? g[i] : (T)0;                                                 \
    }                                                                                                                  \
    SBX_CLONES static void add_vv_##S(T *restrict y, const T *restrict a, const T *restrict b, int64_t n, T p, T q) {  \
        if (p == 1 && q == 1)                                                                                          \
            for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];                                                        \
        else                                                                                                           \
            for (int64_t i = 0; i < n; i++) y[i] = p * a[i] + q * b[i];                                                \
    }                                                                                                                  \
    SBX_CLONES static void add_vs_##S(T *restrict y, const T *restrict a, T qb, int64_t n, T p) {                      \
        for (int64_t i = 0; i < n; i++) y[i] = p * a[i] + qb;                                                          \
    }                                                                                                                  \
    SBX_CLONES static void add_sv_##S(T *restrict y, T pa, const T *restrict b, int64_t n, T q) {                      \
        for (int64_t i = 0; i < n; i++) y[i] = pa + q * b[i];                                                          \
    }                                                                                                                  \
    SBX_CLONES static void mul_vv_##S(T *restrict y, const T *restrict a, const T *restrict b, int64_t n) {            \
        for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];                                                            \
    }                                                                                                                  \
    SBX_CLONES static void mul_vs_##S(T *restrict y, const T *restrict a, T b, int64_t n) {                            \
        for (int64_t i = 0; i < n; i++) y[i] = a[i] * b;                                                               \
    }                                                                                                                  \
    SBX_CLONES static void mul_sv_##S(T *restrict y, T a, const T *restrict b, int64_t n) {                            \
        for (int64_t i = 0; i < n; i++) y[i] = a * b[i];                                                               \
    }                                                                                                                  \
    SBX_CLONES static void copy_##S(T *restrict y, const T *restrict x, int64_t n, T div) {                            \
        if (div == 1)                                                                                                  \
            memcpy(y, x, (size_t)n * sizeof *y);                                                                       \
        else                                                                                                           \
            for (int64_t i = 0; i < n; i++) y[i] = x[i] / div;                                                         \
    }                                                                                                                  \
    SBX_CLONES static void fill_##S(T *restrict y, T v, int64_t n) {                                                   \
        for (int64_t i = 0; i < n; i++) y[i] = v;                                                                      \
    }                                                                                                                  \
    /* n elements of a unary op */                                                                                     \
    static void unary_##S(unary_kind k, T *y, const T *x, int64_t n, T c) {                                            \
        switch (k) {                                                                                                   \
        case K_SCALE: scale_##S(y, x, n, c); break;                                                                    \
        case K_TANH: tanh_##S(y, x, n); break;                                                                         \
        case K_RELU: relu_##S(y, x, n); break;                                                                         \
        }                                                                                                              \
    }                                                                                                                  \
    /* n elements of a binary op; a (b) points at its one value when the pattern repeats it */                         \
    static void binary_##S(binary_kind k, int pattern, T *y, const T *a, const T *b, int64_t n, T p, T q) {            \
        switch (k) {                                                                                                   \
        case K_ADD:                                                                                                    \
            if (pattern == VV) add_vv_##S(y, a, b, n, p, q);                                                           \
            if (pattern == VS) add_vs_##S(y, a, q *b[0], n, p);                                                        \
            if (pattern == SV) add_sv_##S(y, p *a[0], b, n, q);                                                        \
            break;                                                                                                     \
        case K_MUL:                                                                                                    \
            if (pattern == VV) mul_vv_##S(y, a, b, n);                                                                 \
            if (pattern == VS) mul_vs_##S(y, a, b[0], n);                                                              \
            if (pattern == SV) mul_sv_##S(y, a[0], b, n);                                                              \
            break;                                                                                                     \
        case K_RELU_GRAD: relu_grad_##S(y, a, b, n); break; /* same shapes: always VV */                               \
        case K_BROADCAST: /* a repeated to b's shape (b always advances), divided by p */                              \
            if (pattern == VV) copy_##S(y, a, n, p);                                                                   \
            if (pattern == SV) fill_##S(y, p == 1 ? a[0] : a[0] / p, n);                                               \
            break;                                                                                                     \
        }                                                                                                              \
    }

KERNELS(float, f32, tanhf)
KERNELS(double, f64, tanh)
#undef KERNELS

/* --- Unary ops ------------------------------------------------------------------------------------ */
static void unary_span(unary_kind k, sbx_dtype dt, void *y, const void *x, int64_t lo, int64_t n, double c) {
    if (dt == SBX_FLOAT32)
        unary_f32(k, (float *)y + lo, (const float *)x + lo, n, (float)c);
    else
        unary_f64(k, (double *)y + lo, (const double *)x + lo, n, c);
}

static sbx_status unary_perform(const sbx_op *op, unary_kind k, double c, int nin, const sbx_value *in, int nout,
                                sbx_value *out) {
    SBX_CHECK(sbx__dense_values(op, nin, in, nout, out));
    const sbx_array *x = in[0].dense;
    sbx_array *y;
    SBX_CHECK(sbx_output_dense(&out[0], x->dtype, x->ndim, x->shape, 0, &y));
    /* tasks of about CHUNK simple operations (any split gives the same bits) */
    const int64_t n = sbx_array_numel(x), cost = k == K_TANH ? TANH_COST : 1, size = CHUNK / cost;
    const int64_t chunks = (n + size - 1) / size;
    const int nt = sbx__dense_threads(n * cost, chunks);
    if (nt == 1) {
        if (n > 0) unary_span(k, x->dtype, y->data, x->data, 0, n, c);
        return SBX_OK;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t t = 0; t < chunks; t++)
        unary_span(k, x->dtype, y->data, x->data, t * size, t == chunks - 1 ? n - t * size : size, c);
    return SBX_OK;
}

/* make_node of an op of one float input, whose output has its type. */
static sbx_status unary_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    SBX_CHECK(sbx__dense_arity(op, nin, 1));
    SBX_CHECK(sbx__dense_float(op, &in[0], 0, "x", -1));
    out[0] = in[0];
    *nout = 1;
    return SBX_OK;
}

/* Scale */
static int scale_equal(const void *a, const void *b) { return sbx__props_equal_bytes(a, b, sizeof(sbx_scale_props)); }
static uint64_t scale_hash(const void *p) { return sbx__hash_bytes(p, sizeof(sbx_scale_props), 0xcbf29ce484222325ull); }
static int scale_str(const void *p, char *buf, size_t size) {
    char c[32];
    return snprintf(buf, size, "c=%s", sbx__dense_num(p ? ((const sbx_scale_props *)p)->c : 0.0, c));
}

static sbx_status scale_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                sbx_value *out) {
    (void)ctx;
    return unary_perform(op, K_SCALE, ((const sbx_scale_props *)op->props)->c, nin, in, nout, out);
}

static sbx_status scale_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                             const char **reason) {
    (void)reason;
    if (!gout[0]) return SBX_OK;
    SBX_CHECK(sbx__dense_apply(g, &sbx_op_scale, node->op.props, gout[0], NULL, &gin[0]));
    answer[0] = SBX_GRAD_DEFINED;
    return SBX_OK;
}

const sbx_op_class sbx_op_scale = {.name = "Scale",
                                   .props_size = sizeof(sbx_scale_props),
                                   .props_equal = scale_equal,
                                   .props_hash = scale_hash,
                                   .props_str = scale_str,
                                   .make_node = unary_make_node,
                                   .infer_shape = sbx__infer_from_types,
                                   .perform = scale_perform,
                                   .state_free = NULL,
                                   .grad = scale_grad,
                                   .connection_pattern = sbx__all_connected};

/* Tanh: its gradient from its output y, gout - gout y y, so that it can be differentiated again. */
static sbx_status tanh_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                               sbx_value *out) {
    (void)ctx;
    return unary_perform(op, K_TANH, 0, nin, in, nout, out);
}

static sbx_status tanh_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                            const char **reason) {
    (void)reason;
    if (!gout[0]) return SBX_OK;
    sbx_var *y = node->out[0], *gy, *gyy;
    const sbx_add_props minus = {1, -1};
    SBX_CHECK(sbx__dense_apply(g, &sbx_op_mul, NULL, gout[0], y, &gy));
    SBX_CHECK(sbx__dense_apply(g, &sbx_op_mul, NULL, gy, y, &gyy));
    SBX_CHECK(sbx__dense_apply(g, &sbx_op_add, &minus, gout[0], gyy, &gin[0]));
    answer[0] = SBX_GRAD_DEFINED;
    return SBX_OK;
}

const sbx_op_class sbx_op_tanh = {.name = "Tanh",
                                  .props_size = 0,
                                  .props_equal = sbx__noprops_equal,
                                  .props_hash = sbx__noprops_hash,
                                  .props_str = sbx__noprops_str,
                                  .make_node = unary_make_node,
                                  .infer_shape = sbx__infer_from_types,
                                  .perform = tanh_perform,
                                  .state_free = NULL,
                                  .grad = tanh_grad,
                                  .connection_pattern = sbx__all_connected};

/* Relu */
static sbx_status relu_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                               sbx_value *out) {
    (void)ctx;
    return unary_perform(op, K_RELU, 0, nin, in, nout, out);
}

static sbx_status relu_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                            const char **reason) {
    (void)reason;
    if (!gout[0]) return SBX_OK;
    SBX_CHECK(sbx__dense_apply(g, &sbx_op_relu_grad, NULL, node->in[0], gout[0], &gin[0]));
    answer[0] = SBX_GRAD_DEFINED;
    return SBX_OK;
}

const sbx_op_class sbx_op_relu = {.name = "Relu",
                                  .props_size = 0,
                                  .props_equal = sbx__noprops_equal,
                                  .props_hash = sbx__noprops_hash,
                                  .props_str = sbx__noprops_str,
                                  .make_node = unary_make_node,
                                  .infer_shape = sbx__infer_from_types,
                                  .perform = relu_perform,
                                  .state_free = NULL,
                                  .grad = relu_grad,
                                  .connection_pattern = sbx__all_connected};

/* --- Binary ops -------------------------------------------------------------------------------------
 * The output's shape collapsed to as few axes as keep the operands' strides: axes of extent 1 are
 * dropped and neighbours along which each operand either advances or repeats alike are merged.
 * The innermost axis is the run a kernel takes (split into chunks); the outer ones are walked. */
typedef struct bcast_plan {
    int nd; /* >= 1 */
    int64_t ext[SBX_MAX_NDIM], sa[SBX_MAX_NDIM], sb[SBX_MAX_NDIM];
    int pattern; /* VV, VS or SV along the innermost axis */
} bcast_plan;

static void plan_broadcast(const sbx_array *a, const sbx_array *b, int nd, const int64_t *shape, bcast_plan *p) {
    int pa[SBX_MAX_NDIM], pb[SBX_MAX_NDIM], k = 0;
    for (int d = 0; d < nd; d++) {
        int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
        int va = da >= 0 && a->shape[da] != 1, vb = db >= 0 && b->shape[db] != 1;
        if (shape[d] == 1) continue;
        if (k > 0 && pa[k - 1] == va && pb[k - 1] == vb) {
            p->ext[k - 1] *= shape[d];
            continue;
        }
        p->ext[k] = shape[d];
        pa[k] = va;
        pb[k] = vb;
        k++;
    }
    if (k == 0) { /* a single element */
        p->ext[0] = 1;
        pa[0] = pb[0] = 1;
        k = 1;
    }
    p->nd = k;
    int64_t acc_a = 1, acc_b = 1;
    for (int d = k - 1; d >= 0; d--) {
        p->sa[d] = pa[d] ? acc_a : 0;
        p->sb[d] = pb[d] ? acc_b : 0;
        if (pa[d]) acc_a *= p->ext[d];
        if (pb[d]) acc_b *= p->ext[d];
    }
    p->pattern = pa[k - 1] && pb[k - 1] ? VV : pa[k - 1] ? VS : SV;
}

/* Task t of the plan: row t / per_row (of the outer axes, in order), chunk t % per_row of its run. */
static void binary_task(const bcast_plan *p, binary_kind kind, sbx_dtype dt, void *y, const void *a, const void *b,
                        int64_t t, int64_t per_row, double alpha, double beta) {
    const int64_t run = p->ext[p->nd - 1], row = t / per_row, lo = t % per_row * CHUNK;
    const int64_t n = run - lo < CHUNK ? run - lo : CHUNK;
    int64_t r = row, oa = 0, ob = 0;
    for (int d = p->nd - 2; d >= 0; d--) {
        const int64_t i = r % p->ext[d];
        r /= p->ext[d];
        oa += i * p->sa[d];
        ob += i * p->sb[d];
    }
    if (p->sa[p->nd - 1]) oa += lo;
    if (p->sb[p->nd - 1]) ob += lo;
    const int64_t oy = row * run + lo;
    if (dt == SBX_FLOAT32)
        binary_f32(kind, p->pattern, (float *)y + oy, (const float *)a + oa, (const float *)b + ob, n, (float)alpha,
                   (float)beta);
    else
        binary_f64(kind, p->pattern, (double *)y + oy, (const double *)a + oa, (const double *)b + ob, n, alpha, beta);
}

static sbx_status binary_perform(const sbx_op *op, binary_kind kind, double alpha, double beta, int nin,
                                 const sbx_value *in, int nout, sbx_value *out) {
    SBX_CHECK(sbx__dense_values(op, nin, in, nout, out));
    const sbx_array *a = in[0].dense, *b = in[1].dense;
    sbx_type ta = sbx__type_of_dense(a), tb = sbx__type_of_dense(b), ty;
    if (kind == K_RELU_GRAD) {
        if (!sbx__same_shape(&ta, &tb)) {
            char sa[128], sb[128];
            sbx_type_str(&ta, sa, sizeof sa);
            sbx_type_str(&tb, sb, sizeof sb);
            return sbx__op_error(op, 1, "g", "expected the shape of input 0 (x), %s, got %s", sa, sb);
        }
        ty = ta;
    } else if (kind == K_BROADCAST) {
        SBX_CHECK(sbx__dense_broadcast(op, &ta, 0, "x", &tb, 1, "like", 1, &ty));
    } else {
        SBX_CHECK(sbx__dense_broadcast(op, &ta, 0, "a", &tb, 1, "b", 0, &ty));
    }
    sbx_array *y;
    SBX_CHECK(sbx_output_dense(&out[0], a->dtype, ty.ndim, ty.shape, 0, &y));
    const int64_t n = sbx_array_numel(y);
    if (n == 0) return SBX_OK;
    /* BroadcastLike with mean (beta 1) divides by the number of times each element is repeated */
    if (kind == K_BROADCAST) alpha = beta != 0 ? (double)(n / sbx_array_numel(a)) : 1;
    bcast_plan p;
    plan_broadcast(a, b, ty.ndim, ty.shape, &p);
    /* BroadcastLike reads nothing of like: y stands in for it (the same shape, so the same offsets) */
    const void *bd = kind == K_BROADCAST ? y->data : b->data;
    const int64_t run = p.ext[p.nd - 1], per_row = (run + CHUNK - 1) / CHUNK, tasks = n / run * per_row;
    const int nt = sbx__dense_threads(n, tasks);
    if (nt == 1) {
        for (int64_t t = 0; t < tasks; t++)
            binary_task(&p, kind, a->dtype, y->data, a->data, bd, t, per_row, alpha, beta);
        return SBX_OK;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t t = 0; t < tasks; t++) binary_task(&p, kind, a->dtype, y->data, a->data, bd, t, per_row, alpha, beta);
    return SBX_OK;
}

/* make_node of Add and Mul: two floats of one dtype that broadcast together. */
static sbx_status broadcast_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    SBX_CHECK(sbx__dense_arity(op, nin, 2));
    SBX_CHECK(sbx__dense_float(op, &in[0], 0, "a", -1));
    SBX_CHECK(sbx__dense_float(op, &in[1], 1, "b", -1));
    SBX_CHECK(sbx__dense_same_dtype(op, in, 1, "b", 0, "a"));
    SBX_CHECK(sbx__dense_broadcast(op, &in[0], 0, "a", &in[1], 1, "b", 0, &out[0]));
    *nout = 1;
    return SBX_OK;
}

/* g summed down to x's shape, unless x's shape is certainly the broadcast shape already (other: the
 * other operand). */
static sbx_status sum_to_input(sbx_graph *g, sbx_var *grad, sbx_var *x, const sbx_var *other, sbx_var **out) {
    static const sbx_broadcast_props plain = {0};
    if (sbx__dense_covers(&x->type, &other->type)) {
        *out = grad;
        return SBX_OK;
    }
    return sbx__dense_apply(g, &sbx_op_sum_to, &plain, grad, x, out);
}

/* Add */
static int add_equal(const void *a, const void *b) { return sbx__props_equal_bytes(a, b, sizeof(sbx_add_props)); }
static uint64_t add_hash(const void *p) { return sbx__hash_bytes(p, sizeof(sbx_add_props), 0xcbf29ce484222325ull); }
static int add_str(const void *p, char *buf, size_t size) {
    const sbx_add_props *a = p;
    char x[32], y[32];
    return a ? snprintf(buf, size, "alpha=%s beta=%s", sbx__dense_num(a->alpha, x), sbx__dense_num(a->beta, y))
             : snprintf(buf, size, "?");
}

static sbx_status add_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                              sbx_value *out) {
    (void)ctx;
    const sbx_add_props *p = op->props;
    return binary_perform(op, K_ADD, p->alpha, p->beta, nin, in, nout, out);
}

static sbx_status add_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                           const char **reason) {
    (void)reason;
    if (!gout[0]) return SBX_OK;
    const sbx_add_props *p = node->op.props;
    const double coef[2] = {p->alpha, p->beta};
    for (int i = 0; i < 2; i++) {
        sbx_var *s;
        SBX_CHECK(sum_to_input(g, gout[0], node->in[i], node->in[1 - i], &s));
        if (coef[i] != 1) {
            const sbx_scale_props c = {coef[i]};
            SBX_CHECK(sbx__dense_apply(g, &sbx_op_scale, &c, s, NULL, &s));
        }
        gin[i] = s;
        answer[i] = SBX_GRAD_DEFINED;
    }
    return SBX_OK;
}

const sbx_op_class sbx_op_add = {.name = "Add",
                                 .props_size = sizeof(sbx_add_props),
                                 .props_equal = add_equal,
                                 .props_hash = add_hash,
                                 .props_str = add_str,
                                 .make_node = broadcast_make_node,
                                 .infer_shape = sbx__infer_from_types,
                                 .perform = add_perform,
                                 .state_free = NULL,
                                 .grad = add_grad,
                                 .connection_pattern = sbx__all_connected};

/* Mul */
static sbx_status mul_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                              sbx_value *out) {
    (void)ctx;
    return binary_perform(op, K_MUL, 1, 1, nin, in, nout, out);
}

static sbx_status mul_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                           const char **reason) {
    (void)reason;
    if (!gout[0]) return SBX_OK;
    for (int i = 0; i < 2; i++) {
        sbx_var *prod;
        SBX_CHECK(sbx__dense_apply(g, &sbx_op_mul, NULL, gout[0], node->in[1 - i], &prod));
        SBX_CHECK(sum_to_input(g, prod, node->in[i], node->in[1 - i], &gin[i]));
        answer[i] = SBX_GRAD_DEFINED;
    }
    return SBX_OK;
}

const sbx_op_class sbx_op_mul = {.name = "Mul",
                                 .props_size = 0,
                                 .props_equal = sbx__noprops_equal,
                                 .props_hash = sbx__noprops_hash,
                                 .props_str = sbx__noprops_str,
                                 .make_node = broadcast_make_node,
                                 .infer_shape = sbx__infer_from_types,
                                 .perform = mul_perform,
                                 .state_free = NULL,
                                 .grad = mul_grad,
                                 .connection_pattern = sbx__all_connected};

/* ReluGrad(x, g): g where x > 0, else 0; x and g of one shape. */
static sbx_status relu_grad_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    SBX_CHECK(sbx__dense_arity(op, nin, 2));
    SBX_CHECK(sbx__dense_float(op, &in[0], 0, "x", -1));
    SBX_CHECK(sbx__dense_float(op, &in[1], 1, "g", -1));
    SBX_CHECK(sbx__dense_same_dtype(op, in, 1, "g", 0, "x"));
    int ok = in[0].ndim == in[1].ndim;
    for (int d = 0; ok && d < in[0].ndim; d++)
        ok = in[0].shape[d] < 0 || in[1].shape[d] < 0 || in[0].shape[d] == in[1].shape[d];
    if (!ok) {
        char sx[128], sg[128];
        sbx_type_str(&in[0], sx, sizeof sx);
        sbx_type_str(&in[1], sg, sizeof sg);
        return sbx__op_error(op, 1, "g", "expected the shape of input 0 (x), %s, got %s", sx, sg);
    }
    out[0] = in[0];
    for (int d = 0; d < in[0].ndim; d++)
        if (out[0].shape[d] < 0) out[0].shape[d] = in[1].shape[d];
    *nout = 1;
    return SBX_OK;
}

static sbx_status relu_grad_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                    sbx_value *out) {
    (void)ctx;
    return binary_perform(op, K_RELU_GRAD, 1, 1, nin, in, nout, out);
}

/* Linear in g (the same mask again); piecewise constant in x, so zero there (defined, as the original's
 * gradient of a comparison). */
static sbx_status relu_grad_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                                 sbx_grad *answer, const char **reason) {
    (void)reason;
    if (!gout[0]) return SBX_OK;
    SBX_CHECK(sbx__dense_apply(g, &sbx_op_zeros_like, NULL, node->in[0], NULL, &gin[0]));
    answer[0] = SBX_GRAD_DEFINED;
    SBX_CHECK(sbx__dense_apply(g, &sbx_op_relu_grad, NULL, node->in[0], gout[0], &gin[1]));
    answer[1] = SBX_GRAD_DEFINED;
    return SBX_OK;
}

const sbx_op_class sbx_op_relu_grad = {.name = "ReluGrad",
                                       .props_size = 0,
                                       .props_equal = sbx__noprops_equal,
                                       .props_hash = sbx__noprops_hash,
                                       .props_str = sbx__noprops_str,
                                       .make_node = relu_grad_make_node,
                                       .infer_shape = sbx__infer_from_types,
                                       .perform = relu_grad_perform,
                                       .state_free = NULL,
                                       .grad = relu_grad_grad,
                                       .connection_pattern = sbx__all_connected};

/* BroadcastLike(x, like): x repeated to like's shape (divided by the number of repeats with mean). Its
 * adjoint is SumTo with the same mean; like gives only a shape, so nothing flows back to it. */

static sbx_status broadcast_like_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    SBX_CHECK(sbx__dense_arity(op, nin, 2));
    SBX_CHECK(sbx__dense_float(op, &in[0], 0, "x", -1));
    SBX_CHECK(sbx__dense_float(op, &in[1], 1, "like", -1));
    SBX_CHECK(sbx__dense_same_dtype(op, in, 1, "like", 0, "x"));
    SBX_CHECK(sbx__dense_broadcast(op, &in[0], 0, "x", &in[1], 1, "like", 1, &out[0]));
    *nout = 1;
    return SBX_OK;
}

static sbx_status broadcast_like_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                         sbx_value *out) {
    (void)ctx;
    const int mean = ((const sbx_broadcast_props *)op->props)->mean != 0;
    return binary_perform(op, K_BROADCAST, 1, mean, nin, in, nout, out);
}

static sbx_status broadcast_like_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                                      sbx_grad *answer, const char **reason) {
    (void)reason;
    if (!gout[0]) return SBX_OK;
    SBX_CHECK(sbx__dense_apply(g, &sbx_op_sum_to, node->op.props, gout[0], node->in[0], &gin[0]));
    answer[0] = SBX_GRAD_DEFINED;
    return SBX_OK;
}

/* The output depends on x's values, on like's shape only. */
static void like_pattern(const sbx_op *op, int nin, int nout, int *pattern) {
    (void)op;
    for (int i = 0; i < nin * nout; i++) pattern[i] = i < nout;
}

const sbx_op_class sbx_op_broadcast_like = {.name = "BroadcastLike",
                                            .props_size = sizeof(sbx_broadcast_props),
                                            .props_equal = sbx__dense_broadcast_equal,
                                            .props_hash = sbx__dense_broadcast_hash,
                                            .props_str = sbx__dense_broadcast_str,
                                            .make_node = broadcast_like_make_node,
                                            .infer_shape = sbx__infer_from_types,
                                            .perform = broadcast_like_perform,
                                            .state_free = NULL,
                                            .grad = broadcast_like_grad,
                                            .connection_pattern = like_pattern};
