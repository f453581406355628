/* The layer op classes: Convolve, ConvBackward, LocalConnections, LocalBackward, MaxPool, MaxPoolGrad
 * and ConvolutionIndices, over the plans of conv.h. perform makes the node's plan on its first call,
 * keeps it in the node's state, and writes into the output storage it is handed (the _into functions
 * of conv/layers.h), so that a compiled function's later calls make no new arrays. The backward ops
 * are bilinear, and their gradients are built from the same ops (see backward_grad). */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "conv/layers.h"
#include "op/internal.h"

/* --- Words for messages ------------------------------------------------------------------------- */
typedef struct {
    char s[160];
} words;

static words type_words(const sbx_type *t) {
    words w;
    sbx_type_str(t, w.s, sizeof w.s);
    return w;
}

/* "[?,784]": the extents, -1 as ?. */
static words shape_words(int ndim, const int64_t *shape) {
    words w;
    sbx_type t = sbx_type_dense(SBX_FLOAT64, ndim, shape);
    char full[160];
    sbx_type_str(&t, full, sizeof full);
    const char *open = strchr(full, '[');
    snprintf(w.s, sizeof w.s, "%s", open ? open : full);
    return w;
}

static sbx_status arity(const sbx_op *op, int nin, int lo, int hi, const char *inputs) {
    if (nin >= lo && nin <= hi) return SBX_OK;
    if (lo == hi)
        return sbx__op_fail(op, SBX_ERR_ARG, "takes %d input%s (%s), got %d", lo, lo == 1 ? "" : "s", inputs, nin);
    return sbx__op_fail(op, SBX_ERR_ARG, "takes %d or %d inputs (%s), got %d", lo, hi, inputs, nin);
}

/* Input i (name) a dense array of ndim dimensions whose known extents agree with want's known ones,
 * float32 or float64 when dtype < 0, else of that dtype (why: where it comes from, for the message).
 * layout: the extents in words. */
static sbx_status dense_input(const sbx_op *op, const sbx_type *in, int i, const char *name, int ndim,
                              const int64_t *want, int dtype, const char *why, const char *layout) {
    const sbx_type *t = &in[i];
    int ok = t->kind == SBX_KIND_DENSE && t->ndim == ndim;
    ok = ok && (dtype < 0 ? sbx__is_float(t->dtype) : (int)t->dtype == dtype);
    for (int d = 0; ok && d < ndim; d++) ok = want[d] < 0 || t->shape[d] < 0 || t->shape[d] == want[d];
    if (ok) return SBX_OK;
    char dt[96];
    if (dtype < 0)
        snprintf(dt, sizeof dt, "float32 or float64");
    else
        snprintf(dt, sizeof dt, "%s%s", sbx_dtype_name((sbx_dtype)dtype), why);
    return sbx__op_error(op, i, name, "expected a dense %s array %s (%s), got %s", dt, shape_words(ndim, want).s,
                         layout, type_words(t).s);
}

/* The first known of two extents (-1 when neither is). */
static int64_t known(int64_t a, int64_t b) { return a >= 0 ? a : b; }

/* --- Properties ------------------------------------------------------------------------------------ */
static int layer_equal(const void *a, const void *b) {
    const sbx_layer_props *x = a, *y = b;
    return sbx__conv_shape_equal(&x->shape, &y->shape) && x->nkern == y->nkern;
}

static uint64_t layer_hash(const void *props) {
    const sbx_layer_props *p = props;
    return sbx__hash_bytes(&p->nkern, sizeof p->nkern, sbx__conv_shape_hash(&p->shape, 0xcbf29ce484222325ull));
}

static int layer_str(const void *props, char *buf, size_t size) {
    const sbx_layer_props *p = props;
    char s[512];
    sbx__conv_shape_str(&p->shape, s, sizeof s);
    return snprintf(buf, size, "%s nkern=%lld", s, (long long)p->nkern);
}

static int pool_equal(const void *a, const void *b) {
    return sbx__conv_shape_equal(&((const sbx_pool_props *)a)->shape, &((const sbx_pool_props *)b)->shape);
}

static uint64_t pool_hash(const void *props) {
    return sbx__conv_shape_hash(&((const sbx_pool_props *)props)->shape, 0xcbf29ce484222325ull);
}

static int pool_str(const void *props, char *buf, size_t size) {
    return sbx__conv_shape_str(&((const sbx_pool_props *)props)->shape, buf, size);
}

static int indices_equal(const void *a, const void *b) {
    const sbx_conv_indices_props *x = a, *y = b;
    return sbx__conv_shape_equal(&x->shape, &y->shape) && x->weight_sharing == y->weight_sharing &&
           x->nkern == y->nkern && x->format == y->format;
}

static uint64_t indices_hash(const void *props) {
    const sbx_conv_indices_props *p = props;
    const int64_t v[3] = {p->weight_sharing, p->nkern, (int64_t)p->format};
    return sbx__hash_bytes(v, sizeof v, sbx__conv_shape_hash(&p->shape, 0xcbf29ce484222325ull));
}

static int indices_str(const void *props, char *buf, size_t size) {
    const sbx_conv_indices_props *p = props;
    char s[512];
    sbx__conv_shape_str(&p->shape, s, sizeof s);
    return snprintf(buf, size, "%s weight_sharing=%d nkern=%lld format=%s", s, p->weight_sharing, (long long)p->nkern,
                    sbx_format_name(p->format));
}

/* --- Sizes of a layer, checked at make_node as the plans check them --------------------------------
 * A node that make_node accepts gets a plan at its first perform: the shape is well formed, nkern >= 1,
 * and the plan's limits hold (CBLAS takes int dimensions). */
typedef struct {
    int64_t in_size; /* an image's length */
    int64_t width;   /* channels * kernel_size: a convolution kernel's length */
    int64_t units;   /* nkern * out_size: an output row's length (a pooled row's is `pooled`) */
    int64_t weights; /* width * units: the local connections' weight count */
    int64_t pooled;  /* channels * out_size */
} layer_sizes;

static sbx_status sizes_of(const sbx_op *op, const sbx_conv_shape *s, int64_t nkern, layer_sizes *z) {
    if (!s) return sbx__op_fail(op, SBX_ERR_ARG, "properties are NULL");
    if (sbx__conv_shape_check(s) != SBX_OK) return sbx__op_fail(op, SBX_ERR_ARG, "shape: %s", sbx_last_error());
    if (nkern < 1) return sbx__op_fail(op, SBX_ERR_ARG, "nkern %lld must be >= 1", (long long)nkern);
    if (sbx_mul_i64(s->channels, s->kernel_size, &z->width) != SBX_OK ||
        sbx_mul_i64(nkern, s->out_size, &z->units) != SBX_OK || z->width > INT_MAX || s->out_size > INT_MAX ||
        nkern > INT_MAX || sbx_mul_i64(z->units, z->width, &z->weights) != SBX_OK)
        return sbx__op_fail(op, SBX_ERR_OVERFLOW, "%lld kernels over %lld positions of %lld taps in %lld maps is too "
                            "large for a layer plan (its dimensions must fit a C int for CBLAS)", (long long)nkern,
                            (long long)s->out_size, (long long)s->kernel_size, (long long)s->channels);
    z->in_size = s->in_size;
    z->pooled = s->channels * s->out_size; /* at most weights: no overflow */
    return SBX_OK;
}

/* Images: batch x in_size, float32 or float64. */
static sbx_status images_input(const sbx_op *op, const sbx_type *in, int i, const layer_sizes *z) {
    const int64_t want[2] = {-1, z->in_size};
    return dense_input(op, in, i, "images", 2, want, -1, "", "batch x channels * prod(in)");
}

/* Kerns of input 0's dtype: nkern x width, or for local connections a vector of the weights. */
static sbx_status kerns_input(const sbx_op *op, const sbx_type *in, int i, int local, int64_t nkern,
                              const layer_sizes *z) {
    const int64_t conv[2] = {nkern, z->width}, weights[1] = {z->weights};
    if (local)
        return dense_input(op, in, i, "kerns", 1, weights, in[0].dtype, " (as input 0)",
                           "channels * nkern * out_size * kernel_size weights");
    return dense_input(op, in, i, "kerns", 2, conv, in[0].dtype, " (as input 0)", "nkern x channels * kernel_size");
}

/* --- Plans in the node's state ---------------------------------------------------------------------- */
static void plan_state_free(void *state) { sbx_conv_plan_free(state); }

/* The node's plan of kind for shape, nkern and dtype: made on the first call, then the one kept. */
static sbx_status node_plan(const sbx_op *op, sbx_perform_ctx *ctx, sbx__plan_kind kind, const sbx_conv_shape *shape,
                            int64_t nkern, sbx_dtype dtype, sbx_conv_plan **out) {
    if (!ctx || !ctx->state) return sbx__op_fail(op, SBX_ERR_ARG, "perform needs a state to keep its plan in");
    sbx_conv_plan *p = *ctx->state;
    if (p && p->dtype != dtype) { /* a node's dtype is fixed by its types: only a caller's mix-up changes it */
        sbx_conv_plan_free(p);
        *ctx->state = p = NULL;
    }
    if (!p) {
        sbx_status st = kind == PLAN_CONV    ? sbx_conv_plan_create(shape, nkern, dtype, &p)
                        : kind == PLAN_LOCAL ? sbx_local_plan_create(shape, nkern, dtype, &p)
                                             : sbx_pool_plan_create(shape, dtype, &p);
        if (st != SBX_OK) return sbx__op_again(op, st);
        *ctx->state = p;
    }
    *out = p;
    return SBX_OK;
}

/* perform's guard: the input count, every input a dense value, the output storage there. The runtime
 * has checked the values against the node's types; this keeps a caller that has not from crashing
 * (the _into functions check dtypes and shapes). */
static sbx_status dense_values(const sbx_op *op, int nin, const sbx_value *in, int lo, int hi, int nout, int want,
                               sbx_value *out) {
    if (nin < lo || nin > hi) return sbx__op_fail(op, SBX_ERR_ARG, "%d inputs", nin);
    if (nout != want || !out) return sbx__op_fail(op, SBX_ERR_ARG, "%d outputs; the op has %d", nout, want);
    for (int i = 0; i < nin; i++)
        if (!in || !in[i].dense || in[i].sparse) return sbx__op_error(op, i, "value", "expected a dense array");
    return SBX_OK;
}

static int64_t rows_of(const sbx_array *a) { return a->ndim == 2 ? a->shape[0] : 0; }

/* For gradients: output j of the node cls(props) applied to in[0 .. nin-1]. */
static sbx_status apply_output(sbx_graph *g, const sbx_op_class *cls, const void *props, int nin, sbx_var *a,
                               sbx_var *b, sbx_var *c, int j, sbx_var **out) {
    sbx_var *in[3] = {a, b, c}, *first;
    SBX_CHECK(sbx_apply(g, cls, props, nin, in, &first));
    *out = sbx_node_output(sbx_var_owner(first), j);
    return SBX_OK;
}

/* --- Convolve and LocalConnections: (images, kerns[, bias]) -> output --------------------------------- */
static sbx_status forward_make_node(const sbx_op *op, int local, int nin, const sbx_type *in, int *nout,
                                    sbx_type *out) {
    const sbx_layer_props *pr = op->props;
    layer_sizes z;
    SBX_CHECK(arity(op, nin, 2, 3, "images, kerns[, bias]"));
    SBX_CHECK(sizes_of(op, pr ? &pr->shape : NULL, pr ? pr->nkern : 0, &z));
    SBX_CHECK(images_input(op, in, 0, &z));
    SBX_CHECK(kerns_input(op, in, 1, local, pr->nkern, &z));
    const int64_t bias[1] = {local ? z.units : pr->nkern};
    if (nin == 3)
        SBX_CHECK(dense_input(op, in, 2, "bias", 1, bias, in[0].dtype, " (as input 0)",
                              local ? "one per output unit, nkern * out_size" : "one per kernel, nkern"));
    const int64_t shape[2] = {in[0].shape[0], z.units};
    *nout = 1;
    out[0] = sbx_type_dense(in[0].dtype, 2, shape);
    return SBX_OK;
}

static sbx_status forward_perform(const sbx_op *op, int local, sbx_perform_ctx *ctx, int nin, const sbx_value *in,
                                  int nout, sbx_value *out) {
    const sbx_layer_props *pr = op->props;
    sbx_conv_plan *p = NULL;
    sbx_array *y = NULL;
    SBX_CHECK(dense_values(op, nin, in, 2, 3, nout, 1, out));
    if (ctx && !(ctx->needed & 1u)) return SBX_OK;
    const sbx_array *x = in[0].dense;
    SBX_CHECK(node_plan(op, ctx, local ? PLAN_LOCAL : PLAN_CONV, &pr->shape, pr->nkern, x->dtype, &p));
    const int64_t shape[2] = {rows_of(x), pr->nkern * pr->shape.out_size};
    SBX_CHECK(sbx_output_dense(&out[0], x->dtype, 2, shape, 0, &y));
    const sbx_array *bias = nin == 3 ? in[2].dense : NULL;
    sbx_status st = local ? sbx__local_forward_into(p, x, in[1].dense, bias, y)
                          : sbx__conv_forward_into(p, x, in[1].dense, bias, y);
    return st == SBX_OK ? SBX_OK : sbx__op_again(op, st);
}

/* Both: one backward node, whose outputs are the gradients of images, kerns and bias. */
static sbx_status forward_grad(const sbx_op_class *backward, sbx_graph *g, const sbx_node *node, sbx_var *const *gout,
                               sbx_var **gin, sbx_grad *answer, const char **reason) {
    for (int i = 0; i < node->nin; i++) {
        gin[i] = NULL;
        answer[i] = SBX_GRAD_DISCONNECTED;
        reason[i] = NULL;
    }
    if (!gout[0]) return SBX_OK;
    sbx_var *in[3] = {node->in[0], node->in[1], gout[0]}, *first;
    SBX_CHECK(sbx_apply(g, backward, node->op.props, 3, in, &first));
    const sbx_node *b = sbx_var_owner(first);
    for (int i = 0; i < node->nin; i++) {
        gin[i] = sbx_node_output(b, i);
        answer[i] = SBX_GRAD_DEFINED;
    }
    return SBX_OK;
}

static sbx_status convolve_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    return forward_make_node(op, 0, nin, in, nout, out);
}
static sbx_status local_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    return forward_make_node(op, 1, nin, in, nout, out);
}
static sbx_status convolve_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                   sbx_value *out) {
    return forward_perform(op, 0, ctx, nin, in, nout, out);
}
static sbx_status local_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                sbx_value *out) {
    return forward_perform(op, 1, ctx, nin, in, nout, out);
}
static sbx_status convolve_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                                sbx_grad *answer, const char **reason) {
    return forward_grad(&sbx_op_conv_backward, g, node, gout, gin, answer, reason);
}
static sbx_status local_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                             sbx_grad *answer, const char **reason) {
    return forward_grad(&sbx_op_local_backward, g, node, gout, gin, answer, reason);
}

/* --- ConvBackward and LocalBackward: (images, kerns, grad_out) -> (grad_images, grad_kerns, grad_bias) - */
static sbx_status backward_make_node(const sbx_op *op, int local, int nin, const sbx_type *in, int *nout,
                                     sbx_type *out) {
    const sbx_layer_props *pr = op->props;
    layer_sizes z;
    SBX_CHECK(arity(op, nin, 3, 3, "images, kerns, grad_out"));
    SBX_CHECK(sizes_of(op, pr ? &pr->shape : NULL, pr ? pr->nkern : 0, &z));
    SBX_CHECK(images_input(op, in, 0, &z));
    SBX_CHECK(kerns_input(op, in, 1, local, pr->nkern, &z));
    const int64_t g[2] = {in[0].shape[0], z.units};
    SBX_CHECK(dense_input(op, in, 2, "grad_out", 2, g, in[0].dtype, " (as input 0)",
                          "batch of images x nkern * out_size"));
    const int64_t gx[2] = {known(in[0].shape[0], in[2].shape[0]), z.in_size}, gk[2] = {pr->nkern, z.width};
    const int64_t gw = z.weights, gb = local ? z.units : pr->nkern;
    const sbx_dtype t = in[0].dtype;
    *nout = 3;
    out[0] = sbx_type_dense(t, 2, gx);
    out[1] = local ? sbx_type_dense(t, 1, &gw) : sbx_type_dense(t, 2, gk);
    out[2] = sbx_type_dense(t, 1, &gb);
    return SBX_OK;
}

/* Only the gradients ctx->needed asks for are computed; the others' storage is left as it is. */
static sbx_status backward_perform(const sbx_op *op, int local, sbx_perform_ctx *ctx, int nin, const sbx_value *in,
                                   int nout, sbx_value *out) {
    const sbx_layer_props *pr = op->props;
    sbx_conv_plan *p = NULL;
    sbx_array *res[3] = {NULL, NULL, NULL};
    SBX_CHECK(dense_values(op, nin, in, 3, 3, nout, 3, out));
    const unsigned needed = ctx ? ctx->needed : 7u;
    if (!(needed & 7u)) return SBX_OK;
    const sbx_array *x = in[0].dense;
    SBX_CHECK(node_plan(op, ctx, local ? PLAN_LOCAL : PLAN_CONV, &pr->shape, pr->nkern, x->dtype, &p));
    const int64_t gx[2] = {rows_of(x), pr->shape.in_size}, gk[2] = {pr->nkern, p->width};
    const int64_t units = pr->nkern * pr->shape.out_size, gw = p->width * units, gb = local ? units : pr->nkern;
    if (needed & 1u) SBX_CHECK(sbx_output_dense(&out[0], x->dtype, 2, gx, 0, &res[0]));
    if (needed & 2u)
        SBX_CHECK(local ? sbx_output_dense(&out[1], x->dtype, 1, &gw, 0, &res[1])
                        : sbx_output_dense(&out[1], x->dtype, 2, gk, 0, &res[1]));
    if (needed & 4u) SBX_CHECK(sbx_output_dense(&out[2], x->dtype, 1, &gb, 0, &res[2]));
    sbx_status st = local ? sbx__local_backward_into(p, x, in[1].dense, in[2].dense, res[0], res[1], res[2])
                          : sbx__conv_backward_into(p, x, in[1].dense, in[2].dense, res[0], res[1], res[2]);
    return st == SBX_OK ? SBX_OK : sbx__op_again(op, st);
}

/* gb broadcast over the batch (and, for a convolution, over positions) to grad_out's shape: the
 * bias's term of a backward op's gradient when no convolution carries it as its bias. */
static sbx_status broadcast_bias(sbx_graph *g, int local, const sbx_layer_props *pr, sbx_var *gb, sbx_var *like,
                                 sbx_var **out) {
    const sbx_broadcast_props plain = {0};
    sbx_var *pair[2] = {gb, like};
    if (local) return sbx_apply(g, &sbx_op_broadcast_like, &plain, 2, pair, out); /* [U] to [batch, U] */
    /* [nkern] as [nkern, 1] against grad_out as [batch, nkern, out_size], then flat again */
    sbx_reshape_props column, maps, flat;
    memset(&column, 0, sizeof column);
    memset(&maps, 0, sizeof maps);
    memset(&flat, 0, sizeof flat);
    column.ndim = 2;
    column.shape[0] = pr->nkern;
    column.shape[1] = 1;
    maps.ndim = 3;
    maps.shape[0] = -1;
    maps.shape[1] = pr->nkern;
    maps.shape[2] = pr->shape.out_size;
    flat.ndim = 2;
    flat.shape[0] = -1;
    flat.shape[1] = pr->nkern * pr->shape.out_size;
    SBX_CHECK(sbx_apply(g, &sbx_op_reshape, &column, 1, &gb, &pair[0]));
    SBX_CHECK(sbx_apply(g, &sbx_op_reshape, &maps, 1, &like, &pair[1]));
    sbx_var *spread;
    SBX_CHECK(sbx_apply(g, &sbx_op_broadcast_like, &plain, 2, pair, &spread));
    return sbx_apply(g, &sbx_op_reshape, &flat, 1, &spread, out);
}

/* The backward op B(x, k, g) = (gx, gk, gb) is bilinear: with y = F(x, k) the forward op (no bias),
 *   gx = dF/dx^T g (linear in k and g), gk = dF/dk^T g (linear in x and g), gb = g summed to the bias.
 * For a cost with gradients Gx, Gk, Gb of those outputs,
 *   <Gx, gx> = <F(Gx, k), g>, <Gk, gk> = <F(x, Gk), g>, <Gb, gb> = <Gb broadcast, g>, so
 *   d/dx = B(x, Gk, g).gx            (through gk only),
 *   d/dk = B(Gx, k, g).gk            (through gx only),
 *   d/dg = F(Gx, k) + F(x, Gk) + Gb broadcast, the last as the bias of one of the F.
 * (Checked against central differences by tests/op/test_op_conv.c.) */
static sbx_status backward_grad(int local, sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                                sbx_grad *answer, const char **reason) {
    const sbx_op_class *fwd = local ? &sbx_op_local_connections : &sbx_op_convolve;
    const sbx_op_class *bwd = local ? &sbx_op_local_backward : &sbx_op_conv_backward;
    const sbx_layer_props *pr = node->op.props;
    sbx_var *x = node->in[0], *k = node->in[1], *go = node->in[2], *Gx = gout[0], *Gk = gout[1], *Gb = gout[2];
    for (int i = 0; i < node->nin; i++) {
        gin[i] = NULL;
        answer[i] = SBX_GRAD_DISCONNECTED;
        reason[i] = NULL;
    }
    if (Gk) {
        SBX_CHECK(apply_output(g, bwd, pr, 3, x, Gk, go, 0, &gin[0]));
        answer[0] = SBX_GRAD_DEFINED;
    }
    if (Gx) {
        SBX_CHECK(apply_output(g, bwd, pr, 3, Gx, k, go, 1, &gin[1]));
        answer[1] = SBX_GRAD_DEFINED;
    }
    sbx_var *t1 = NULL, *t2 = NULL;
    if (Gx) SBX_CHECK(apply_output(g, fwd, pr, Gb && !Gk ? 3 : 2, Gx, k, Gb, 0, &t1));
    if (Gk) SBX_CHECK(apply_output(g, fwd, pr, Gb ? 3 : 2, x, Gk, Gb, 0, &t2));
    if (Gb && !Gx && !Gk) SBX_CHECK(broadcast_bias(g, local, pr, Gb, go, &t1));
    if (t1 && t2) {
        const sbx_add_props sum = {1.0, 1.0};
        sbx_var *pair[2] = {t1, t2};
        SBX_CHECK(sbx_apply(g, &sbx_op_add, &sum, 2, pair, &t1));
    } else if (!t1) {
        t1 = t2;
    }
    if (t1) {
        gin[2] = t1;
        answer[2] = SBX_GRAD_DEFINED;
    }
    return SBX_OK;
}

/* grad_images depends on kerns and grad_out, grad_kerns on images and grad_out, grad_bias on grad_out. */
static void backward_pattern(const sbx_op *op, int nin, int nout, int *pattern) {
    (void)op;
    for (int i = 0; i < nin; i++)
        for (int j = 0; j < nout; j++) pattern[i * nout + j] = i == 2 || (i == 0 && j == 1) || (i == 1 && j == 0);
}

static sbx_status conv_backward_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    return backward_make_node(op, 0, nin, in, nout, out);
}
static sbx_status local_backward_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    return backward_make_node(op, 1, nin, in, nout, out);
}
static sbx_status conv_backward_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in,
                                        int nout, sbx_value *out) {
    return backward_perform(op, 0, ctx, nin, in, nout, out);
}
static sbx_status local_backward_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in,
                                         int nout, sbx_value *out) {
    return backward_perform(op, 1, ctx, nin, in, nout, out);
}
static sbx_status conv_backward_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                                     sbx_grad *answer, const char **reason) {
    return backward_grad(0, g, node, gout, gin, answer, reason);
}
static sbx_status local_backward_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                                      sbx_grad *answer, const char **reason) {
    return backward_grad(1, g, node, gout, gin, answer, reason);
}

const sbx_op_class sbx_op_convolve = {
    .name = "Convolve",
    .props_size = sizeof(sbx_layer_props),
    .props_equal = layer_equal,
    .props_hash = layer_hash,
    .props_str = layer_str,
    .make_node = convolve_make_node,
    .infer_shape = sbx__infer_from_types,
    .perform = convolve_perform,
    .state_free = plan_state_free,
    .grad = convolve_grad,
    .connection_pattern = sbx__all_connected,
};

const sbx_op_class sbx_op_conv_backward = {
    .name = "ConvBackward",
    .props_size = sizeof(sbx_layer_props),
    .props_equal = layer_equal,
    .props_hash = layer_hash,
    .props_str = layer_str,
    .make_node = conv_backward_make_node,
    .infer_shape = sbx__infer_from_types,
    .perform = conv_backward_perform,
    .state_free = plan_state_free,
    .grad = conv_backward_grad,
    .connection_pattern = backward_pattern,
};

const sbx_op_class sbx_op_local_connections = {
    .name = "LocalConnections",
    .props_size = sizeof(sbx_layer_props),
    .props_equal = layer_equal,
    .props_hash = layer_hash,
    .props_str = layer_str,
    .make_node = local_make_node,
    .infer_shape = sbx__infer_from_types,
    .perform = local_perform,
    .state_free = plan_state_free,
    .grad = local_grad,
    .connection_pattern = sbx__all_connected,
};

const sbx_op_class sbx_op_local_backward = {
    .name = "LocalBackward",
    .props_size = sizeof(sbx_layer_props),
    .props_equal = layer_equal,
    .props_hash = layer_hash,
    .props_str = layer_str,
    .make_node = local_backward_make_node,
    .infer_shape = sbx__infer_from_types,
    .perform = local_backward_perform,
    .state_free = plan_state_free,
    .grad = local_backward_grad,
    .connection_pattern = backward_pattern,
};

/* --- MaxPool: (images) -> (output, mask); MaxPoolGrad: (mask, grad_out) -> grad_images ------------------ */
/* The pooling sizes, windows of at most 64 taps (a mask has a bit per tap). */
static sbx_status pool_sizes(const sbx_op *op, layer_sizes *z) {
    const sbx_pool_props *pr = op->props;
    SBX_CHECK(sizes_of(op, pr ? &pr->shape : NULL, 1, z));
    if (pr->shape.kernel_size > 64)
        return sbx__op_fail(op, SBX_ERR_UNSUPPORTED, "windows of %lld taps: the tap mask has a bit per tap, at most 64",
                            (long long)pr->shape.kernel_size);
    return SBX_OK;
}

static sbx_status max_pool_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    layer_sizes z;
    SBX_CHECK(arity(op, nin, 1, 1, "images"));
    SBX_CHECK(pool_sizes(op, &z));
    SBX_CHECK(images_input(op, in, 0, &z));
    const sbx_pool_props *pr = op->props;
    const int64_t shape[2] = {in[0].shape[0], z.pooled};
    *nout = 2;
    out[0] = sbx_type_dense(in[0].dtype, 2, shape);
    out[1] = sbx_type_dense(sbx__pool_mask_dtype(pr->shape.kernel_size), 2, shape);
    return SBX_OK;
}

/* Both outputs every time (the mask is what the gradient reads, and the kernel writes both at once). */
static sbx_status max_pool_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                   sbx_value *out) {
    const sbx_pool_props *pr = op->props;
    sbx_conv_plan *p = NULL;
    sbx_array *y = NULL, *m = NULL;
    SBX_CHECK(dense_values(op, nin, in, 1, 1, nout, 2, out));
    if (ctx && !(ctx->needed & 3u)) return SBX_OK;
    const sbx_array *x = in[0].dense;
    SBX_CHECK(node_plan(op, ctx, PLAN_POOL, &pr->shape, 1, x->dtype, &p));
    const int64_t shape[2] = {rows_of(x), pr->shape.channels * pr->shape.out_size};
    SBX_CHECK(sbx_output_dense(&out[0], x->dtype, 2, shape, 0, &y));
    SBX_CHECK(sbx_output_dense(&out[1], sbx__pool_mask_dtype(pr->shape.kernel_size), 2, shape, 0, &m));
    sbx_status st = sbx__pool_forward_mask_into(p, x, y, m);
    return st == SBX_OK ? SBX_OK : sbx__op_again(op, st);
}

/* The images' gradient through the mask this node gives (the mask itself has none). */
static sbx_status max_pool_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                                sbx_grad *answer, const char **reason) {
    gin[0] = NULL;
    answer[0] = SBX_GRAD_DISCONNECTED;
    reason[0] = NULL;
    if (!gout[0]) return SBX_OK;
    sbx_var *in[2] = {node->out[1], gout[0]};
    SBX_CHECK(sbx_apply(g, &sbx_op_max_pool_grad, node->op.props, 2, in, &gin[0]));
    answer[0] = SBX_GRAD_DEFINED;
    return SBX_OK;
}

static sbx_status max_pool_grad_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    layer_sizes z;
    char why[96];
    SBX_CHECK(arity(op, nin, 2, 2, "mask, grad_out"));
    SBX_CHECK(pool_sizes(op, &z));
    const sbx_pool_props *pr = op->props;
    const int64_t m[2] = {-1, z.pooled};
    snprintf(why, sizeof why, " (MaxPool's tap mask for windows of %lld taps)", (long long)pr->shape.kernel_size);
    SBX_CHECK(dense_input(op, in, 0, "mask", 2, m, (int)sbx__pool_mask_dtype(pr->shape.kernel_size), why,
                          "batch x channels * out_size"));
    const int64_t g[2] = {in[0].shape[0], z.pooled};
    SBX_CHECK(dense_input(op, in, 1, "grad_out", 2, g, -1, "", "batch of mask x channels * out_size"));
    const int64_t shape[2] = {known(in[0].shape[0], in[1].shape[0]), z.in_size};
    *nout = 1;
    out[0] = sbx_type_dense(in[1].dtype, 2, shape);
    return SBX_OK;
}

static sbx_status max_pool_grad_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in,
                                        int nout, sbx_value *out) {
    const sbx_pool_props *pr = op->props;
    sbx_conv_plan *p = NULL;
    sbx_array *gx = NULL;
    SBX_CHECK(dense_values(op, nin, in, 2, 2, nout, 1, out));
    if (ctx && !(ctx->needed & 1u)) return SBX_OK;
    const sbx_array *g = in[1].dense;
    SBX_CHECK(node_plan(op, ctx, PLAN_POOL, &pr->shape, 1, g->dtype, &p));
    const int64_t shape[2] = {rows_of(g), pr->shape.in_size};
    SBX_CHECK(sbx_output_dense(&out[0], g->dtype, 2, shape, 0, &gx));
    sbx_status st = sbx__pool_backward_mask_into(p, in[0].dense, g, gx);
    return st == SBX_OK ? SBX_OK : sbx__op_again(op, st);
}

static sbx_status max_pool_grad_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                                     sbx_grad *answer, const char **reason) {
    (void)g;
    for (int i = 0; i < node->nin; i++) {
        gin[i] = NULL;
        answer[i] = gout[0] ? SBX_GRAD_UNDEFINED : SBX_GRAD_DISCONNECTED;
        reason[i] = NULL;
    }
    if (!gout[0]) return SBX_OK;
    reason[0] = "MaxPoolGrad: the tap mask is an integer input (which taps hold each window's maximum): it has no "
                "gradient";
    reason[1] = "MaxPoolGrad: the gradient with respect to grad_out (a second derivative of MaxPool) is not "
                "implemented";
    return SBX_OK;
}

const sbx_op_class sbx_op_max_pool = {
    .name = "MaxPool",
    .props_size = sizeof(sbx_pool_props),
    .props_equal = pool_equal,
    .props_hash = pool_hash,
    .props_str = pool_str,
    .make_node = max_pool_make_node,
    .infer_shape = sbx__infer_from_types,
    .perform = max_pool_perform,
    .state_free = plan_state_free,
    .grad = max_pool_grad,
    .connection_pattern = sbx__all_connected, /* the mask too depends on the images */
};

const sbx_op_class sbx_op_max_pool_grad = {
    .name = "MaxPoolGrad",
    .props_size = sizeof(sbx_pool_props),
    .props_equal = pool_equal,
    .props_hash = pool_hash,
    .props_str = pool_str,
    .make_node = max_pool_grad_make_node,
    .infer_shape = sbx__infer_from_types,
    .perform = max_pool_grad_perform,
    .state_free = plan_state_free,
    .grad = max_pool_grad_grad,
    .connection_pattern = sbx__all_connected,
};

/* --- ConvolutionIndices: () -> (matrix[, kmap]) ------------------------------------------------------- */
/* The props as sbx_conv_indices checks them, and the matrix's row count. */
static sbx_status indices_check(const sbx_op *op, int64_t *nrows) {
    const sbx_conv_indices_props *pr = op->props;
    if (!pr) return sbx__op_fail(op, SBX_ERR_ARG, "properties are NULL");
    const sbx_conv_shape *s = &pr->shape;
    if (sbx__conv_shape_check(s) != SBX_OK) return sbx__op_fail(op, SBX_ERR_ARG, "shape: %s", sbx_last_error());
    if (pr->weight_sharing != 0 && pr->weight_sharing != 1)
        return sbx__op_fail(op, SBX_ERR_ARG, "weight_sharing %d must be 0 or 1", pr->weight_sharing);
    if (pr->nkern < 1) return sbx__op_fail(op, SBX_ERR_ARG, "nkern %lld must be >= 1", (long long)pr->nkern);
    if (pr->weight_sharing && pr->nkern != 1)
        return sbx__op_fail(op, SBX_ERR_ARG, "nkern %lld with weight_sharing 1: the convolution form serves every "
                            "kernel with one matrix, so nkern must be 1", (long long)pr->nkern);
    if (pr->format != SBX_CSR && pr->format != SBX_CSC)
        return sbx__op_fail(op, SBX_ERR_ARG, "format %d is neither csr nor csc", (int)pr->format);
    int64_t taps;
    if (sbx_mul_i64(s->out_size, pr->weight_sharing ? s->channels : pr->nkern, nrows) != SBX_OK ||
        (pr->weight_sharing && sbx_mul_i64(*nrows, s->kernel_size, nrows) != SBX_OK) ||
        sbx_mul_i64(s->channels, pr->nkern, &taps) != SBX_OK || sbx_mul_i64(taps, s->out_size, &taps) != SBX_OK ||
        sbx_mul_i64(taps, s->kernel_size, &taps) != SBX_OK)
        return sbx__op_fail(op, SBX_ERR_OVERFLOW, "the patch matrix's size overflows int64");
    return SBX_OK;
}

static sbx_status indices_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    int64_t nrows;
    (void)in;
    SBX_CHECK(arity(op, nin, 0, 0, "none"));
    SBX_CHECK(indices_check(op, &nrows));
    const sbx_conv_indices_props *pr = op->props;
    out[0] = sbx_type_sparse(pr->format, SBX_INT64, nrows, pr->shape.in_size);
    *nout = 1;
    if (!pr->weight_sharing) {
        out[1] = sbx_type_dense(SBX_INT64, 1, NULL); /* one entry per stored entry: known at infer_shape */
        *nout = 2;
    }
    return SBX_OK;
}

/* kmap's length, the matrix's entry count: every (map, kernel, position, tap) whose tap falls inside the
 * image, and a tap is inside when it is along every axis, so the count is channels * nkern times the
 * product over the axes of the (position, tap) pairs inside. */
static sbx_status indices_infer_shape(const sbx_op *op, int nin, const sbx_value *in, int nout, sbx_type *out) {
    SBX_CHECK(sbx__infer_from_types(op, nin, in, nout, out));
    const sbx_conv_indices_props *pr = op->props;
    if (pr->weight_sharing) return SBX_OK;
    const sbx_conv_shape *s = &pr->shape;
    int64_t nnz;
    if (sbx_mul_i64(s->channels, pr->nkern, &nnz) != SBX_OK)
        return sbx__op_fail(op, SBX_ERR_OVERFLOW, "the patch matrix's entry count overflows int64");
    for (int d = 0; d < s->ndim; d++) {
        const int64_t pad = s->mode == SBX_CONV_FULL ? s->kernel[d] - 1 : 0;
        int64_t pairs = 0;
        for (int64_t o = 0; o < s->out[d]; o++) { /* taps t with 0 <= o * stride - pad + t < in */
            const int64_t at = o * s->stride[d] - pad; /* |at| < in + kernel: no overflow */
            const int64_t lo = at < 0 ? -at : 0, hi = s->in[d] - at < s->kernel[d] ? s->in[d] - at : s->kernel[d];
            if (hi > lo) pairs += hi - lo; /* at most out * kernel, which sizes the gather table */
        }
        if (sbx_mul_i64(nnz, pairs, &nnz) != SBX_OK)
            return sbx__op_fail(op, SBX_ERR_OVERFLOW, "the patch matrix's entry count overflows int64");
    }
    out[1].shape[0] = nnz;
    return SBX_OK;
}

static sbx_status indices_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                  sbx_value *out) {
    const sbx_conv_indices_props *pr = op->props;
    sbx_sparse *m = NULL;
    sbx_array *km = NULL;
    (void)in;
    if (nin != 0) return sbx__op_fail(op, SBX_ERR_ARG, "%d inputs; the op has none", nin);
    if (!pr) return sbx__op_fail(op, SBX_ERR_ARG, "properties are NULL");
    const int with_kmap = !pr->weight_sharing;
    if (nout != 1 + with_kmap || !out)
        return sbx__op_fail(op, SBX_ERR_ARG, "%d outputs; the op has %d", nout, 1 + with_kmap);
    const unsigned needed = ctx ? ctx->needed : 3u;
    if (!(needed & (with_kmap ? 3u : 1u))) return SBX_OK;
    sbx_status st = sbx_conv_indices(&pr->shape, pr->weight_sharing, pr->nkern, pr->format, &m,
                                     with_kmap && (needed & 2u) ? &km : NULL);
    if (st != SBX_OK) return sbx__op_again(op, st);
    if (needed & 1u)
        sbx_output_sparse(&out[0], m);
    else
        sbx_sparse_free(m);
    if (km) { /* into the array already there when it fits, else kept as the new value */
        sbx_array *a = out[1].dense;
        if (a && !out[1].sparse && a->dtype == SBX_INT64 && a->ndim == 1 && a->shape[0] == km->shape[0]) {
            if (km->shape[0] > 0) memcpy(a->data, km->data, (size_t)km->shape[0] * sizeof(int64_t));
            sbx_array_free(km);
        } else {
            sbx_value_clear(&out[1]);
            out[1].dense = km;
        }
    }
    return SBX_OK;
}

static sbx_status indices_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                               sbx_grad *answer, const char **reason) {
    (void)g;
    (void)node;
    (void)gout;
    (void)gin;
    (void)answer;
    (void)reason;
    return SBX_OK; /* no inputs */
}

const sbx_op_class sbx_op_convolution_indices = {
    .name = "ConvolutionIndices",
    .props_size = sizeof(sbx_conv_indices_props),
    .props_equal = indices_equal,
    .props_hash = indices_hash,
    .props_str = indices_str,
    .make_node = indices_make_node,
    .infer_shape = indices_infer_shape,
    .perform = indices_perform,
    .state_free = NULL, /* no state: the matrix is made anew each call */
    .grad = indices_grad,
    .connection_pattern = sbx__all_connected, /* no inputs: nothing to say */
};
