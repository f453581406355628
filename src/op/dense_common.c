/* What the dense op classes (dense_*.c, optim.c) share: the checks make_node makes and their
 * messages, numpy broadcasting of static and of actual shapes, the thread count of a loop, a scratch
 * buffer kept as a node's state, and building gradients. Declared in dense.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op/dense.h"

/* Element operations below this many run on the calling thread: an OpenMP region costs about
 * 0.25 us, a few thousand elements' worth of a memory-bound loop. */
#define PARALLEL_WORK 32768

int sbx__dense_broadcast_equal(const void *a, const void *b) {
    return sbx__props_equal_bytes(a, b, sizeof(sbx_broadcast_props));
}

uint64_t sbx__dense_broadcast_hash(const void *p) {
    return sbx__hash_bytes(p, sizeof(sbx_broadcast_props), 0xcbf29ce484222325ull);
}

int sbx__dense_broadcast_str(const void *p, char *buf, size_t size) {
    return snprintf(buf, size, "mean=%d", p ? ((const sbx_broadcast_props *)p)->mean : 0);
}

sbx_status sbx__dense_arity(const sbx_op *op, int nin, int want) {
    if (nin != want)
        return sbx__op_fail(op, SBX_ERR_ARG, "expected %d input%s, got %d", want, want == 1 ? "" : "s", nin);
    return SBX_OK;
}

/* Input i a dense float32 or float64 array (of ndim dimensions unless ndim < 0). */
sbx_status sbx__dense_float(const sbx_op *op, const sbx_type *t, int i, const char *name, int ndim) {
    char got[128];
    if (t->kind == SBX_KIND_DENSE && sbx__is_float(t->dtype) && (ndim < 0 || t->ndim == ndim)) return SBX_OK;
    sbx_type_str(t, got, sizeof got);
    if (ndim < 0) return sbx__op_error(op, i, name, "expected a dense float32 or float64 array, got %s", got);
    return sbx__op_error(op, i, name, "expected a dense float32 or float64 array of %d dimension%s, got %s", ndim,
                         ndim == 1 ? "" : "s", got);
}

/* Input i of input j's dtype. */
sbx_status sbx__dense_same_dtype(const sbx_op *op, const sbx_type *in, int i, const char *name, int j,
                                 const char *jname) {
    char got[128];
    if (in[i].dtype == in[j].dtype) return SBX_OK;
    sbx_type_str(&in[i], got, sizeof got);
    return sbx__op_error(op, i, name, "expected %s like input %d (%s), got %s", sbx_dtype_name(in[j].dtype), j, jname,
                         got);
}

/* numpy broadcasting, shapes aligned at the right and a missing extent taken as 1. oneway 0: *out is
 * the shape a and b broadcast to together (an unknown extent is accepted where it could match, and
 * known in the result when the other extent is known and not 1). oneway 1: a must broadcast to b
 * (rank at most b's, each extent 1 or b's) and *out is b's shape, made known where a says what it
 * must be. *out takes a's dtype. Errors name input ia (a) when oneway, else ib (b). */
sbx_status sbx__dense_broadcast(const sbx_op *op, const sbx_type *a, int ia, const char *na, const sbx_type *b, int ib,
                                const char *nb, int oneway, sbx_type *out) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim, ok = !oneway || a->ndim <= b->ndim;
    int64_t shape[SBX_MAX_NDIM];
    for (int d = 0; ok && d < nd; d++) {
        int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
        int64_t ea = da >= 0 ? a->shape[da] : 1, eb = db >= 0 ? b->shape[db] : 1;
        if (oneway) {
            ok = ea == 1 || ea == -1 || eb == -1 || ea == eb;
            shape[d] = eb >= 0 ? eb : ea > 1 || ea == 0 ? ea : -1;
        } else if (ea >= 0 && eb >= 0) {
            ok = ea == eb || ea == 1 || eb == 1;
            shape[d] = ea == 1 ? eb : ea;
        } else if (ea < 0 && eb < 0) {
            shape[d] = -1;
        } else { /* one known: it is the result unless it is 1 */
            int64_t k = ea >= 0 ? ea : eb;
            shape[d] = k == 1 ? -1 : k;
        }
    }
    if (!ok) {
        char sa[128], sb[128];
        sbx_type_str(a, sa, sizeof sa);
        sbx_type_str(b, sb, sizeof sb);
        if (oneway)
            return sbx__op_error(op, ia, na, "expected a shape that broadcasts to %s (input %d, %s), got %s", sb, ib,
                                 nb, sa);
        return sbx__op_error(op, ib, nb, "expected a shape that broadcasts with %s (input %d, %s), got %s", sa, ia, na,
                             sb);
    }
    *out = sbx_type_dense(a->dtype, nd, shape);
    return SBX_OK;
}

/* 1 when the broadcast of a and b has a's shape for certain (so a's gradient needs no SumTo): a's rank
 * at least b's, and along each axis a's extent known and not 1, or b's extent known as 1 (or missing),
 * or both known and equal. */
int sbx__dense_covers(const sbx_type *a, const sbx_type *b) {
    if (a->ndim < b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++) {
        int db = d - (a->ndim - b->ndim);
        int64_t ea = a->shape[d], eb = db >= 0 ? b->shape[db] : 1;
        if (!((ea >= 0 && ea != 1) || eb == 1 || (ea >= 0 && ea == eb))) return 0;
    }
    return 1;
}

/* perform's guard: every input a dense value, the output storage there. The runtime has checked the
 * values against the node's types already; this keeps a caller that has not from crashing. */
sbx_status sbx__dense_values(const sbx_op *op, int nin, const sbx_value *in, int nout, sbx_value *out) {
    if (nout < 1 || !out) return sbx__op_fail(op, SBX_ERR_ARG, "no output storage");
    for (int i = 0; i < nin; i++)
        if (!in || !in[i].dense || in[i].sparse) return sbx__op_error(op, i, "value", "expected a dense array");
    return SBX_OK;
}

/* Threads for a loop of `tasks` tasks, `work` element operations in all: 1 below the threshold,
 * never more than the tasks. */
int sbx__dense_threads(int64_t work, int64_t tasks) {
    if (work < PARALLEL_WORK || tasks < 2) return 1;
    const int t = sbx__threads();
    return tasks < t ? (int)tasks : t;
}

/* A scratch buffer of at least `bytes`, kept in the node's state between calls (so a compiled
 * function's later calls allocate nothing); sbx__dense_scratch_free is the state_free of classes
 * that use it. */
typedef struct scratch {
    int64_t size;
    void *data;
} scratch;

sbx_status sbx__dense_scratch(const sbx_op *op, sbx_perform_ctx *ctx, int64_t bytes, void **p) {
    if (!ctx || !ctx->state) return sbx__op_fail(op, SBX_ERR_ARG, "perform needs a state to keep its scratch in");
    scratch *s = *ctx->state;
    if (!s) {
        SBX_CHECK(sbx__alloc(1, sizeof *s, &s, "scratch"));
        *ctx->state = s;
    }
    if (s->size < bytes) {
        void *data;
        SBX_CHECK(sbx__alloc_raw(bytes, 1, &data, "scratch"));
        sbx__free(s->data);
        s->data = data;
        s->size = bytes;
    }
    *p = s->data;
    return SBX_OK;
}

void sbx__dense_scratch_free(void *state) {
    scratch *s = state;
    if (!s) return;
    sbx__free(s->data);
    sbx__free(s);
}

/* cls(props)(a[, b]) in g, for gradients. */
sbx_status sbx__dense_apply(sbx_graph *g, const sbx_op_class *cls, const void *props, sbx_var *a, sbx_var *b,
                            sbx_var **out) {
    sbx_var *in[2] = {a, b};
    return sbx_apply(g, cls, props, b ? 2 : 1, in, out);
}

/* v in as few digits as read back as v (%.15g, else %.17g), for props_str; buf holds 32 bytes. */
const char *sbx__dense_num(double v, char *buf) {
    snprintf(buf, 32, "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, 32, "%.17g", v);
    return buf;
}
