/* Ops about shapes and types rather than values: Reshape and ZerosLike (any dtype; ZerosLike also sparse). */
#include <string.h>

#include "op/dense.h"


static sbx_status dense_input(const sbx_op *op, const sbx_type *t) {
    if (t->kind == SBX_KIND_DENSE) return SBX_OK;
    char got[128];
    sbx_type_str(t, got, sizeof got);
    return sbx__op_error(op, 0, "x", "expected a dense array, got %s", got);
}

/* --- Reshape -------------------------------------------------------------------------------------- */
static int reshape_equal(const void *a, const void *b) {
    const sbx_reshape_props *p = a, *q = b;
    if (p->ndim != q->ndim) return 0;
    for (int d = 0; d < p->ndim && d < SBX_MAX_NDIM; d++)
        if (p->shape[d] != q->shape[d]) return 0;
    return 1;
}

static uint64_t reshape_hash(const void *props) {
    const sbx_reshape_props *p = props;
    const int n = p->ndim < 0 ? 0 : p->ndim > SBX_MAX_NDIM ? SBX_MAX_NDIM : p->ndim;
    uint64_t h = sbx__hash_bytes(&p->ndim, sizeof p->ndim, 0xcbf29ce484222325ull);
    return sbx__hash_bytes(p->shape, (size_t)n * sizeof p->shape[0], h);
}

static int reshape_str(const void *props, char *buf, size_t size) {
    const sbx_reshape_props *p = props;
    char tmp[256];
    int w = 0;
    if (!p || p->ndim < 0 || p->ndim > SBX_MAX_NDIM) return snprintf(buf, size, "shape=?");
    w += snprintf(tmp + w, sizeof tmp - (size_t)w, "shape=(");
    for (int d = 0; d < p->ndim; d++)
        w += snprintf(tmp + w, sizeof tmp - (size_t)w, "%s%lld", d ? "," : "", (long long)p->shape[d]);
    snprintf(tmp + w, sizeof tmp - (size_t)w, ")");
    return snprintf(buf, size, "%s", tmp);
}

/* The target shape for an x of type t (its extents unknown or not): out[], with the -1 extent worked
 * out when x's size is known (left -1 otherwise). Refuses a malformed target and sizes that cannot
 * agree. */
static sbx_status reshape_target(const sbx_op *op, const sbx_type *t, int64_t *out) {
    const sbx_reshape_props *p = op->props;
    char got[128];
    if (p->ndim < 0 || p->ndim > SBX_MAX_NDIM)
        return sbx__op_fail(op, SBX_ERR_ARG, "the target has %d dimensions (0 to %d)", p->ndim, SBX_MAX_NDIM);
    int infer = -1;
    int64_t known = 1; /* the product of the target's given extents */
    for (int d = 0; d < p->ndim; d++) {
        if (p->shape[d] < -1)
            return sbx__op_fail(op, SBX_ERR_ARG, "target extent %d is %lld (an extent is >= 0, or -1 to infer)", d,
                                (long long)p->shape[d]);
        if (p->shape[d] == -1) {
            if (infer >= 0) return sbx__op_fail(op, SBX_ERR_ARG, "the target has more than one extent -1");
            infer = d;
            continue;
        }
        if (sbx_mul_i64(known, p->shape[d], &known) != SBX_OK)
            return sbx__op_fail(op, SBX_ERR_OVERFLOW, "the target's size overflows int64");
        out[d] = p->shape[d];
    }
    /* x's size: exact when every extent is known, else a multiple of the known ones' product */
    int64_t size = 1;
    int unknown = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0) {
            unknown = 1;
            continue;
        }
        if (sbx_mul_i64(size, t->shape[d], &size) != SBX_OK)
            return sbx__op_fail(op, SBX_ERR_OVERFLOW, "the input's size overflows int64");
    }
    sbx_type_str(t, got, sizeof got);
    if (!unknown) {
        if (infer >= 0) {
            if (known == 0 || size % known != 0)
                return sbx__op_error(op, 0, "x",
                                     "expected a size that a shape with the given extents (product %lld) "
                                     "and one inferred can hold, got %s",
                                     (long long)known, got);
            out[infer] = size / known;
        } else if (known != size) {
            return sbx__op_error(op, 0, "x", "expected %lld elements, got %s", (long long)known, got);
        }
    } else {
        if (infer >= 0) {
            out[infer] = -1;
        } else if ((size == 0 && known != 0) || (size != 0 && known % size != 0)) {
            return sbx__op_error(op, 0, "x", "expected %lld elements, got %s (its known extents rule that out)",
                                 (long long)known, got);
        }
    }
    return SBX_OK;
}

static sbx_status reshape_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    int64_t shape[SBX_MAX_NDIM];
    SBX_CHECK(sbx__dense_arity(op, nin, 1));
    SBX_CHECK(dense_input(op, &in[0]));
    SBX_CHECK(reshape_target(op, &in[0], shape));
    out[0] = sbx_type_dense(in[0].dtype, ((const sbx_reshape_props *)op->props)->ndim, shape);
    *nout = 1;
    return SBX_OK;
}

static sbx_status reshape_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                  sbx_value *out) {
    (void)ctx;
    SBX_CHECK(sbx__dense_values(op, nin, in, nout, out));
    const sbx_array *x = in[0].dense;
    sbx_type t = sbx__type_of_dense(x);
    int64_t shape[SBX_MAX_NDIM];
    sbx_array *y;
    SBX_CHECK(reshape_target(op, &t, shape));
    SBX_CHECK(sbx_output_dense(&out[0], x->dtype, ((const sbx_reshape_props *)op->props)->ndim, shape, 0, &y));
    const int64_t n = sbx_array_numel(x);
    if (n > 0) memcpy(y->data, x->data, (size_t)n * sbx_dtype_size(x->dtype));
    return SBX_OK;
}

/* Back to x's static shape; one unknown extent of x becomes the inferred one. */
static sbx_status reshape_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                               sbx_grad *answer, const char **reason) {
    (void)reason;
    if (!gout[0]) return SBX_OK;
    const sbx_type *t = &node->in[0]->type;
    sbx_reshape_props back;
    int unknown = 0;
    memset(&back, 0, sizeof back);
    back.ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) {
        back.shape[d] = t->shape[d];
        unknown += t->shape[d] < 0;
    }
    if (unknown > 1) {
        char got[128];
        sbx_type_str(t, got, sizeof got);
        return sbx__op_fail(&node->op, SBX_ERR_UNSUPPORTED,
                            "the gradient reshapes back to x's shape, and %s has more than one unknown extent", got);
    }
    SBX_CHECK(sbx__dense_apply(g, &sbx_op_reshape, &back, gout[0], NULL, &gin[0]));
    answer[0] = SBX_GRAD_DEFINED;
    return SBX_OK;
}

const sbx_op_class sbx_op_reshape = {.name = "Reshape",
                                     .props_size = sizeof(sbx_reshape_props),
                                     .props_equal = reshape_equal,
                                     .props_hash = reshape_hash,
                                     .props_str = reshape_str,
                                     .make_node = reshape_make_node,
                                     .infer_shape = sbx__infer_from_types,
                                     .perform = reshape_perform,
                                     .state_free = NULL,
                                     .grad = reshape_grad,
                                     .connection_pattern = sbx__all_connected};

/* --- ZerosLike: zeros of x's type (a sparse x: its structure, every stored value 0, the zero gradient
 * of a sparse variable); its output does not depend on x's values, so nothing connects. */
static sbx_status zeros_like_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    SBX_CHECK(sbx__dense_arity(op, nin, 1));
    out[0] = in[0];
    *nout = 1;
    return SBX_OK;
}

static sbx_status zeros_like_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                     sbx_value *out) {
    (void)ctx;
    sbx_array *y;
    if (nin == 1 && nout == 1 && out && in && in[0].sparse && !in[0].dense) {
        sbx_sparse *m;
        SBX_CHECK(sbx_sparse_copy(in[0].sparse, &m));
        if (m->nnz > 0) memset(m->data, 0, (size_t)m->nnz * sbx_dtype_size(m->dtype));
        sbx_output_sparse(&out[0], m);
        return SBX_OK;
    }
    SBX_CHECK(sbx__dense_values(op, nin, in, nout, out));
    const sbx_array *x = in[0].dense;
    return sbx_output_dense(&out[0], x->dtype, x->ndim, x->shape, 1, &y);
}

static sbx_status zeros_like_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                                  sbx_grad *answer, const char **reason) {
    (void)g;
    (void)node;
    (void)gout;
    (void)gin;
    (void)reason;
    answer[0] = SBX_GRAD_DISCONNECTED;
    return SBX_OK;
}

static void zeros_like_pattern(const sbx_op *op, int nin, int nout, int *pattern) {
    (void)op;
    for (int i = 0; i < nin * nout; i++) pattern[i] = 0;
}

const sbx_op_class sbx_op_zeros_like = {.name = "ZerosLike",
                                        .props_size = 0,
                                        .props_equal = sbx__noprops_equal,
                                        .props_hash = sbx__noprops_hash,
                                        .props_str = sbx__noprops_str,
                                        .make_node = zeros_like_make_node,
                                        .infer_shape = sbx__infer_from_types,
                                        .perform = zeros_like_perform,
                                        .state_free = NULL,
                                        .grad = zeros_like_grad,
                                        .connection_pattern = zeros_like_pattern};
