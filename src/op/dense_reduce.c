/* Reductions: Sum and Mean (over everything or along one axis) and SumTo (down to a broadcastable
 * shape, the adjoint of BroadcastLike in dense_elementwise.c).
 *
 * Every reduction is a sum over the middle axis of x seen as outer x n x inner. Its order is fixed by
 * the shape alone: the n terms are taken in chunks (sizes below), each chunk summed in one fixed
 * order (a contiguous run in LANES interleaved partial sums, a column top to bottom), and the chunks'
 * sums added in order. Threads take whole chunks, so the bits never depend on the thread count. */
#include <math.h>
#include <string.h>

#include "op/dense.h"


#define LANES 16           /* interleaved partial sums of a contiguous run (one or two vectors wide) */
#define RUN_CHUNK 8192     /* terms per chunk of a contiguous run (inner 1) */
#define COL_BLOCK 512      /* columns per task when the sum runs down columns (inner > 1) */
#define COL_CHUNK 8192     /* about this many elements per chunk of a column block, when there are few tasks */
#define FEW_TASKS 16       /* fewer (outer, column block) tasks than this: columns are chunked too */
#define COMBINE_CHUNK 4096 /* outputs per task when adding the chunks' sums */

#define KERNELS(T, S)                                                                                                  \
    /* Sum of x[0 .. n-1]: LANES interleaved sums (vectorised, in a fixed order), then folded in halves */             \
    SBX_CLONES static T run_sum_##S(const T *restrict x, int64_t n) {                                                  \
        T acc[LANES] = {0};                                                                                            \
        int64_t i = 0;                                                                                                 \
        for (; i + LANES <= n; i += LANES)                                                                             \
            for (int l = 0; l < LANES; l++) acc[l] += x[i + l];                                                        \
        for (int l = 0; i + l < n; l++) acc[l] += x[i + l];                                                            \
        for (int w = LANES / 2; w > 0; w /= 2)                                                                         \
            for (int l = 0; l < w; l++) acc[l] += acc[l + w];                                                          \
        return acc[0];                                                                                                 \
    }                                                                                                                  \
    SBX_CLONES static void col_add_##S(T *restrict y, const T *restrict x, int64_t n) {                                \
        for (int64_t i = 0; i < n; i++) y[i] += x[i];                                                                  \
    }                                                                                                                  \
    SBX_CLONES static void divide_##S(T *restrict y, int64_t n, T div) {                                               \
        for (int64_t i = 0; i < n; i++) y[i] /= div;                                                                   \
    }

KERNELS(float, f32)
KERNELS(double, f64)
#undef KERNELS

/* How a sum over the middle axis of outer x n x inner is cut: tasks of (outer index, column block,
 * chunk of rows); with more than one chunk, each task writes its sum into partial[chunk][output]
 * and the chunks are added afterwards. */
typedef struct rplan {
    int64_t outer, n, inner;
    int64_t blocks; /* column blocks (1 when inner is 1) */
    int64_t rows;   /* terms (rows) per chunk */
    int64_t chunks;
} rplan;

static void plan_reduce(int64_t outer, int64_t n, int64_t inner, rplan *p) {
    p->outer = outer;
    p->n = n;
    p->inner = inner;
    p->blocks = (inner + COL_BLOCK - 1) / COL_BLOCK;
    if (inner == 1) {
        p->rows = RUN_CHUNK;
    } else {
        const int64_t width = inner < COL_BLOCK ? inner : COL_BLOCK;
        p->rows = outer * p->blocks >= FEW_TASKS ? n : COL_CHUNK / width > 1 ? COL_CHUNK / width : 1;
    }
    if (p->rows < 1) p->rows = 1;
    p->chunks = n == 0 ? 1 : (n + p->rows - 1) / p->rows;
}

/* Elements of partial sums the plan needs (0: none). */
static int64_t partial_size(const rplan *p) { return p->chunks > 1 ? p->chunks * p->outer * p->inner : 0; }

/* Task t: chunk t % chunks of column block (t / chunks) % blocks of outer index t / chunks / blocks. It
 * writes the chunk's sum into dst (the output, or its partial slice), divided by div when it is the
 * only chunk. */
static void reduce_task(const rplan *p, sbx_dtype dt, const void *x, void *y, void *partial, int64_t t, double div) {
    const int64_t c = t % p->chunks, ob = t / p->chunks, o = ob / p->blocks, blk = ob % p->blocks;
    const int64_t j0 = blk * COL_BLOCK, j1 = j0 + COL_BLOCK < p->inner ? j0 + COL_BLOCK : p->inner;
    const int64_t k0 = c * p->rows, k1 = k0 + p->rows < p->n ? k0 + p->rows : p->n, w = j1 - j0;
    const int64_t at = o * p->inner + j0, m = p->outer * p->inner; /* where in an output-shaped slice */
    const int64_t from = (o * p->n + k0) * p->inner + j0;
    const int last = p->chunks == 1;
    if (dt == SBX_FLOAT32) {
        const float *xs = (const float *)x + from;
        float *d = last ? (float *)y + at : (float *)partial + c * m + at;
        if (p->inner == 1) {
            d[0] = run_sum_f32(xs, k1 - k0);
        } else {
            memcpy(d, xs, (size_t)w * sizeof *d);
            for (int64_t k = k0 + 1; k < k1; k++) col_add_f32(d, xs + (k - k0) * p->inner, w);
        }
        if (last && div != 1) divide_f32(d, w, (float)div);
    } else {
        const double *xs = (const double *)x + from;
        double *d = last ? (double *)y + at : (double *)partial + c * m + at;
        if (p->inner == 1) {
            d[0] = run_sum_f64(xs, k1 - k0);
        } else {
            memcpy(d, xs, (size_t)w * sizeof *d);
            for (int64_t k = k0 + 1; k < k1; k++) col_add_f64(d, xs + (k - k0) * p->inner, w);
        }
        if (last && div != 1) divide_f64(d, w, div);
    }
}

/* Outputs [lo, lo + n) as the chunks' sums added in order, divided by div. */
static void combine_task(const rplan *p, sbx_dtype dt, void *y, const void *partial, int64_t lo, int64_t n,
                         double div) {
    const int64_t m = p->outer * p->inner;
    if (dt == SBX_FLOAT32) {
        float *d = (float *)y + lo;
        memcpy(d, (const float *)partial + lo, (size_t)n * sizeof *d);
        for (int64_t c = 1; c < p->chunks; c++) col_add_f32(d, (const float *)partial + c * m + lo, n);
        if (div != 1) divide_f32(d, n, (float)div);
    } else {
        double *d = (double *)y + lo;
        memcpy(d, (const double *)partial + lo, (size_t)n * sizeof *d);
        for (int64_t c = 1; c < p->chunks; c++) col_add_f64(d, (const double *)partial + c * m + lo, n);
        if (div != 1) divide_f64(d, n, div);
    }
}

/* y (outer x inner) = the sum of x (outer x n x inner) over its middle axis, divided by div (1: not
 * divided); partial holds partial_size(p) elements. n is at least 1. */
static void reduce(const rplan *p, sbx_dtype dt, const void *x, void *y, void *partial, double div) {
    const int64_t tasks = p->outer * p->blocks * p->chunks, m = p->outer * p->inner;
    const int nt = sbx__dense_threads(m * p->n, tasks);
    if (nt == 1) {
        for (int64_t t = 0; t < tasks; t++) reduce_task(p, dt, x, y, partial, t, div);
    } else {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t t = 0; t < tasks; t++) reduce_task(p, dt, x, y, partial, t, div);
    }
    if (p->chunks == 1) return;
    const int64_t ctasks = (m + COMBINE_CHUNK - 1) / COMBINE_CHUNK;
    const int ct = sbx__dense_threads(m * p->chunks, ctasks);
    if (ct == 1) {
        combine_task(p, dt, y, partial, 0, m, div);
        return;
    }
#pragma omp parallel for num_threads(ct) schedule(static)
    for (int64_t t = 0; t < ctasks; t++) {
        const int64_t lo = t * COMBINE_CHUNK;
        combine_task(p, dt, y, partial, lo, m - lo < COMBINE_CHUNK ? m - lo : COMBINE_CHUNK, div);
    }
}

/* An empty sum: 0, or NaN for a mean (0 / 0, as numpy's mean of nothing). */
static void fill_empty(sbx_array *y, int mean) {
    const int64_t n = sbx_array_numel(y);
    for (int64_t i = 0; i < n; i++) {
        if (y->dtype == SBX_FLOAT32)
            ((float *)y->data)[i] = mean ? NAN : 0.0f;
        else
            ((double *)y->data)[i] = mean ? NAN : 0.0;
    }
}

/* --- Sum, Mean -------------------------------------------------------------------------------------- */
static int reduce_equal(const void *a, const void *b) { return sbx__props_equal_bytes(a, b, sizeof(sbx_reduce_props)); }
static uint64_t reduce_hash(const void *p) {
    return sbx__hash_bytes(p, sizeof(sbx_reduce_props), 0xcbf29ce484222325ull);
}
static int reduce_str(const void *p, char *buf, size_t size) {
    return snprintf(buf, size, "axis=%d", p ? ((const sbx_reduce_props *)p)->axis : 0);
}

static sbx_status reduce_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    const int axis = ((const sbx_reduce_props *)op->props)->axis;
    SBX_CHECK(sbx__dense_arity(op, nin, 1));
    SBX_CHECK(sbx__dense_float(op, &in[0], 0, "x", -1));
    if (axis < -1 || axis >= in[0].ndim) {
        char got[128];
        sbx_type_str(&in[0], got, sizeof got);
        return sbx__op_error(op, 0, "x", "expected an array with an axis %d (axis -1: over every element), got %s",
                             axis, got);
    }
    if (axis == -1) {
        out[0] = sbx_type_dense(in[0].dtype, 0, NULL);
    } else {
        out[0] = in[0];
        out[0].shape[axis] = 1;
    }
    *nout = 1;
    return SBX_OK;
}

static sbx_status reduce_perform(const sbx_op *op, sbx_perform_ctx *ctx, int mean, int nin, const sbx_value *in,
                                 int nout, sbx_value *out) {
    SBX_CHECK(sbx__dense_values(op, nin, in, nout, out));
    const sbx_array *x = in[0].dense;
    const int axis = ((const sbx_reduce_props *)op->props)->axis;
    if (axis < -1 || axis >= x->ndim) return sbx__op_error(op, 0, "x", "has no axis %d", axis);
    int64_t shape[SBX_MAX_NDIM], outer = 1, n = sbx_array_numel(x), inner = 1;
    memcpy(shape, x->shape, sizeof shape);
    if (axis >= 0) {
        for (int d = 0; d < axis; d++) outer *= x->shape[d];
        for (int d = axis + 1; d < x->ndim; d++) inner *= x->shape[d];
        n = x->shape[axis];
        shape[axis] = 1;
    }
    sbx_array *y;
    SBX_CHECK(sbx_output_dense(&out[0], x->dtype, axis < 0 ? 0 : x->ndim, shape, 0, &y));
    if (sbx_array_numel(y) == 0) return SBX_OK;
    if (n == 0) {
        fill_empty(y, mean);
        return SBX_OK;
    }
    rplan p;
    void *partial = NULL;
    plan_reduce(outer, n, inner, &p);
    if (partial_size(&p) > 0)
        SBX_CHECK(sbx__dense_scratch(op, ctx, partial_size(&p) * (int64_t)sbx_dtype_size(x->dtype), &partial));
    reduce(&p, x->dtype, x->data, y->data, partial, mean ? (double)n : 1);
    return SBX_OK;
}

static sbx_status sum_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                              sbx_value *out) {
    return reduce_perform(op, ctx, 0, nin, in, nout, out);
}

static sbx_status mean_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                               sbx_value *out) {
    return reduce_perform(op, ctx, 1, nin, in, nout, out);
}

/* Sum's gradient repeats gout over what was summed; Mean's also divides by the count (the adjoint
 * pair). */
static sbx_status reduce_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                              int mean) {
    if (!gout[0]) return SBX_OK;
    const sbx_broadcast_props b = {mean};
    SBX_CHECK(sbx__dense_apply(g, &sbx_op_broadcast_like, &b, gout[0], node->in[0], &gin[0]));
    answer[0] = SBX_GRAD_DEFINED;
    return SBX_OK;
}

static sbx_status sum_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                           const char **reason) {
    (void)reason;
    return reduce_grad(g, node, gout, gin, answer, 0);
}

static sbx_status mean_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                            const char **reason) {
    (void)reason;
    return reduce_grad(g, node, gout, gin, answer, 1);
}

const sbx_op_class sbx_op_sum = {.name = "Sum",
                                 .props_size = sizeof(sbx_reduce_props),
                                 .props_equal = reduce_equal,
                                 .props_hash = reduce_hash,
                                 .props_str = reduce_str,
                                 .make_node = reduce_make_node,
                                 .infer_shape = sbx__infer_from_types,
                                 .perform = sum_perform,
                                 .state_free = sbx__dense_scratch_free,
                                 .grad = sum_grad,
                                 .connection_pattern = sbx__all_connected};

const sbx_op_class sbx_op_mean = {.name = "Mean",
                                  .props_size = sizeof(sbx_reduce_props),
                                  .props_equal = reduce_equal,
                                  .props_hash = reduce_hash,
                                  .props_str = reduce_str,
                                  .make_node = reduce_make_node,
                                  .infer_shape = sbx__infer_from_types,
                                  .perform = mean_perform,
                                  .state_free = sbx__dense_scratch_free,
                                  .grad = mean_grad,
                                  .connection_pattern = sbx__all_connected};

/* --- SumTo ---------------------------------------------------------------------------------------------
 * x's axes (like's aligned at the right) collapsed into groups, kept or summed alike, neighbours of a
 * kind merged and axes of extent 1 dropped. One summed group is one reduction; several are reduced
 * from the innermost out, each pass into a scratch buffer, the last into y. */

static sbx_status sum_to_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    sbx_type ignored;
    SBX_CHECK(sbx__dense_arity(op, nin, 2));
    SBX_CHECK(sbx__dense_float(op, &in[0], 0, "x", -1));
    SBX_CHECK(sbx__dense_float(op, &in[1], 1, "like", -1));
    SBX_CHECK(sbx__dense_same_dtype(op, in, 1, "like", 0, "x"));
    SBX_CHECK(sbx__dense_broadcast(op, &in[1], 1, "like", &in[0], 0, "x", 1, &ignored));
    out[0] = in[1];
    *nout = 1;
    return SBX_OK;
}

static sbx_status sum_to_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                 sbx_value *out) {
    SBX_CHECK(sbx__dense_values(op, nin, in, nout, out));
    const sbx_array *x = in[0].dense, *like = in[1].dense;
    const int mean = ((const sbx_broadcast_props *)op->props)->mean != 0;
    sbx_type tx = sbx__type_of_dense(x), tl = sbx__type_of_dense(like), ignored;
    SBX_CHECK(sbx__dense_broadcast(op, &tl, 1, "like", &tx, 0, "x", 1, &ignored));
    sbx_array *y;
    SBX_CHECK(sbx_output_dense(&out[0], x->dtype, like->ndim, like->shape, 0, &y));
    const int64_t ny = sbx_array_numel(y), nx = sbx_array_numel(x);
    const size_t es = sbx_dtype_size(x->dtype);
    if (ny == 0) return SBX_OK;
    if (nx == 0) {
        fill_empty(y, mean);
        return SBX_OK;
    }
    int64_t ext[SBX_MAX_NDIM];
    int sum[SBX_MAX_NDIM], ng = 0, passes = 0;
    for (int d = 0; d < x->ndim; d++) {
        const int dl = d - (x->ndim - like->ndim);
        const int s = dl < 0 || like->shape[dl] == 1;
        if (x->shape[d] == 1) continue;
        if (ng > 0 && sum[ng - 1] == s) {
            ext[ng - 1] *= x->shape[d];
            continue;
        }
        ext[ng] = x->shape[d];
        sum[ng++] = s;
        passes += s;
    }
    if (passes == 0) { /* nothing summed: like has x's elements */
        memcpy(y->data, x->data, (size_t)nx * es);
        return SBX_OK;
    }
    const double div = mean ? (double)(nx / ny) : 1;
    /* Plans of the passes, innermost summed group first, and the scratch they need: the largest
     * partial sums, then two buffers the passes but the last alternate between. */
    rplan plan[SBX_MAX_NDIM];
    int64_t left = nx, most_partial = 0, between[2] = {0, 0};
    for (int g = ng - 1, k = 0; g >= 0; g--) {
        if (!sum[g]) continue;
        int64_t outer = 1, inner = 1;
        for (int h = 0; h < g; h++) outer *= ext[h];
        for (int h = g + 1; h < ng; h++) inner *= sum[h] ? 1 : ext[h];
        plan_reduce(outer, ext[g], inner, &plan[k]);
        left /= ext[g];
        if (partial_size(&plan[k]) > most_partial) most_partial = partial_size(&plan[k]);
        if (k < passes - 1 && left > between[k % 2]) between[k % 2] = left;
        k++;
    }
    void *partial = NULL;
    char *buf[2] = {NULL, NULL};
    const int64_t need = most_partial + between[0] + between[1];
    if (need > 0) {
        SBX_CHECK(sbx__dense_scratch(op, ctx, need * (int64_t)es, &partial));
        buf[0] = (char *)partial + most_partial * es;
        buf[1] = buf[0] + between[0] * es;
    }
    const void *from = x->data;
    for (int k = 0; k < passes; k++) {
        void *to = k == passes - 1 ? y->data : buf[k % 2];
        reduce(&plan[k], x->dtype, from, to, partial, k == passes - 1 ? div : 1);
        from = to;
    }
    return SBX_OK;
}

static sbx_status sum_to_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                              const char **reason) {
    (void)reason;
    if (!gout[0]) return SBX_OK;
    SBX_CHECK(sbx__dense_apply(g, &sbx_op_broadcast_like, node->op.props, gout[0], node->in[0], &gin[0]));
    answer[0] = SBX_GRAD_DEFINED;
    return SBX_OK;
}

/* The output depends on x's values, on like's shape only. */
static void like_pattern(const sbx_op *op, int nin, int nout, int *pattern) {
    (void)op;
    for (int i = 0; i < nin * nout; i++) pattern[i] = i < nout;
}

const sbx_op_class sbx_op_sum_to = {.name = "SumTo",
                                    .props_size = sizeof(sbx_broadcast_props),
                                    .props_equal = sbx__dense_broadcast_equal,
                                    .props_hash = sbx__dense_broadcast_hash,
                                    .props_str = sbx__dense_broadcast_str,
                                    .make_node = sum_to_make_node,
                                    .infer_shape = sbx__infer_from_types,
                                    .perform = sum_to_perform,
                                    .state_free = sbx__dense_scratch_free,
                                    .grad = sum_to_grad,
                                    .connection_pattern = like_pattern};
