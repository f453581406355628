/* The sparse op classes: StructuredDot and its gradient's SampledDot, EliminateZeros, DenseFromSparse,
 * SparseFromDense and SparseLike (op.h has their semantics), and the dense Transpose that SampledDot's
 * gradient needs when transpose_x == transpose_y.
 *
 * Gradients with respect to a sparse operand are taken over its stored values only (the original's
 * structured_dot): a sparse value with the operand's structure. With C = op(S) B or C = A op(S), G the
 * gradient of the cost with respect to C:
 *   C = S B:   G_B = S^T G,  G_S = (G B^T) on S's structure     C = A S:   G_A = G S^T,  G_S = (A^T G) on S
 *   C = S^T B: G_B = S G,    G_S = (B G^T) on S's structure     C = A S^T: G_A = G S,    G_S = (G^T A) on S
 * and SampledDot, Out = (X Y) on P's structure, bilinear in x and y, sends G (sparse, on P's structure) back as
 *   x: G Y^T (transpose_x = 0), Y G^T (transpose_x = 1);  y: X^T G (transpose_y = 0), G^T X (transpose_y = 1),
 * each a StructuredDot of G with y or x, transposed as a whole when transpose_x == transpose_y. */
#include <stdio.h>
#include <string.h>

#include "op/internal.h"
#include "sparse/internal.h"

/* --- Helpers ------------------------------------------------------------------------------------------ */
/* A type in words, for messages. */
typedef struct {
    char s[128];
} type_words;

static type_words words(const sbx_type *t) {
    type_words w;
    sbx_type_str(t, w.s, sizeof w.s);
    return w;
}

static sbx_status counts(const sbx_op *op, int nin, int want, const char *inputs, int nout, int want_out) {
    if (nin != want)
        return sbx__op_fail(op, SBX_ERR_ARG, "takes %d input%s (%s), got %d", want, want == 1 ? "" : "s", inputs, nin);
    if (nout != want_out) return sbx__op_fail(op, SBX_ERR_ARG, "%d outputs asked for; the op has %d", nout, want_out);
    return SBX_OK;
}

/* A library error said again with the op's name and an input's. */
static sbx_status again_in(const sbx_op *op, int i, const char *name, sbx_status st) {
    return sbx__op_fail(op, st, "input %d (%s): %s", i, name, sbx_last_error()); /* the status kept (FORMAT) */
}

/* An extent known in a, else b's. */
static int64_t known(int64_t a, int64_t b) { return a >= 0 ? a : b; }
/* 1 when two extents cannot be told apart yet or are equal. */
static int agree(int64_t a, int64_t b) { return a < 0 || b < 0 || a == b; }

static sbx_format other_format(sbx_format f) { return f == SBX_CSR ? SBX_CSC : SBX_CSR; }

/* The transpose of m, reading the same arrays (a CSR matrix's arrays read as CSC are its transpose). */
static sbx_sparse transposed_view(const sbx_sparse *m) {
    sbx_sparse t = *m;
    t.format = other_format(m->format);
    t.nrows = m->ncols;
    t.ncols = m->nrows;
    return t;
}

/* Threads worth using for about `work` element operations. */
static int threads_for(int64_t work) { return work < 65536 ? 1 : sbx__threads(); }

/* Makes *out hold a sparse matrix of dtype with pattern's format, shape and structure (indptr and indices
 * copied, values left to the caller) and sets *res to it. The storage's matrix and arrays are kept when they
 * fit (the same format, dtype, shape and nnz), otherwise a new matrix is stored (sbx_output_sparse keeps the
 * storage's struct pointer either way). */
static sbx_status output_like(sbx_value *out, const sbx_sparse *pattern, sbx_dtype dtype, sbx_sparse **res) {
    sbx_sparse *s = out->sparse;
    const int64_t major = sbx_sparse_major(pattern), nnz = pattern->nnz;
    int fits = s && !out->dense && s->format == pattern->format && s->dtype == dtype && s->nrows == pattern->nrows &&
               s->ncols == pattern->ncols && s->nnz == nnz && s->indptr && (nnz == 0 || (s->indices && s->data));
    if (!fits) {
        SBX_CHECK(sbx__sparse_new(pattern->format, dtype, pattern->nrows, pattern->ncols, nnz, 0, &s));
        sbx_output_sparse(out, s);
        s = out->sparse;
    }
    if (s->indptr != pattern->indptr) memcpy(s->indptr, pattern->indptr, (size_t)(major + 1) * sizeof(int64_t));
    if (nnz > 0 && s->indices != pattern->indices) memcpy(s->indices, pattern->indices, (size_t)nnz * sizeof(int64_t));
    *res = s;
    return SBX_OK;
}

/* b (cols x rows) = a^T (a rows x cols, row-major), elements of es bytes moved as bits, 32 x 32 tiles. */
#define TILE 32
#define TRANSPOSE_TILE(T)                                                                                              \
    do {                                                                                                               \
        const T *restrict s = a;                                                                                       \
        T *restrict d = b;                                                                                             \
        for (int64_t i = i0; i < i1; i++)                                                                              \
            for (int64_t j = j0; j < j1; j++) d[j * rows + i] = s[i * cols + j];                                       \
    } while (0)

static void transpose_tile(const void *a, void *b, size_t es, int64_t rows, int64_t cols, int64_t i0, int64_t i1,
                           int64_t j0, int64_t j1) {
    switch (es) {
    case 1: TRANSPOSE_TILE(uint8_t); break;
    case 2: TRANSPOSE_TILE(uint16_t); break;
    case 4: TRANSPOSE_TILE(uint32_t); break;
    default: TRANSPOSE_TILE(uint64_t); break;
    }
}

static void transpose(const void *a, void *b, size_t es, int64_t rows, int64_t cols) {
    if (rows == 0 || cols == 0) return;
    const int64_t tiles = (rows + TILE - 1) / TILE;
    const int nt = threads_for(rows * cols); /* rows * cols is an array's size: no overflow */
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t ti = 0; ti < tiles; ti++) {
        const int64_t i0 = ti * TILE, i1 = i0 + TILE < rows ? i0 + TILE : rows;
        for (int64_t j0 = 0; j0 < cols; j0 += TILE)
            transpose_tile(a, b, es, rows, cols, i0, i1, j0, j0 + TILE < cols ? j0 + TILE : cols);
    }
}

/* The values of a SampledDot: out[p] = sum_t xr[r k + t] yc[c k + t] for stored entry p at (r, c) of pattern,
 * lines l0 .. l1-1; xr holds X's rows, yc Y's columns, each k long. Every sum is taken in one order fixed by
 * k, whatever thread or instruction set computes it: 16 running sums over t mod 16 (a vector's worth of lanes
 * or a few vectors), added as a fixed tree, then the tail in order. */
#define LANES 16
#define SAMPLED_KERNEL(T, NAME)                                                                                        \
    static inline T NAME##_dot(const T *restrict a, const T *restrict b, int64_t k) {                                  \
        int64_t t = 0;                                                                                                 \
        T s = 0;                                                                                                       \
        if (k >= LANES) {                                                                                              \
            T acc[LANES] = {0};                                                                                        \
            for (; t + LANES <= k; t += LANES)                                                                         \
                for (int j = 0; j < LANES; j++) acc[j] += a[t + j] * b[t + j];                                         \
            for (int w = LANES / 2; w > 0; w /= 2)                                                                     \
                for (int j = 0; j < w; j++) acc[j] += acc[j + w];                                                      \
            s = acc[0];                                                                                                \
        }                                                                                                              \
        for (; t < k; t++) s += a[t] * b[t];                                                                           \
        return s;                                                                                                      \
    }                                                                                                                  \
    SBX_CLONES static void NAME(const sbx_sparse *pat, const T *restrict xr, const T *restrict yc, int64_t k,          \
                                T *restrict out, int64_t l0, int64_t l1) {                                             \
        const int64_t *ip = pat->indptr, *ix = pat->indices;                                                           \
        const int csr = pat->format == SBX_CSR;                                                                        \
        for (int64_t l = l0; l < l1; l++) {                                                                            \
            const T *restrict line = (csr ? xr : yc) + l * k;                                                          \
            const T *restrict other = csr ? yc : xr;                                                                   \
            for (int64_t p = ip[l]; p < ip[l + 1]; p++) out[p] = NAME##_dot(line, other + ix[p] * k, k);               \
        }                                                                                                              \
    }
SAMPLED_KERNEL(float, sampled_f32)
SAMPLED_KERNEL(double, sampled_f64)

/* All of a SampledDot's values (see SAMPLED_KERNEL), 64 lines at a time shared among threads (lines differ in
 * length, and each value is the same whichever thread computes it). */
static void sampled_values(const sbx_sparse *pat, const void *xr, const void *yc, int64_t k, sbx_dtype dtype,
                           void *out) {
    const int64_t major = sbx_sparse_major(pat), chunks = (major + 63) / 64;
    int64_t work;
    if (pat->nnz == 0) return;
    if (k == 0) { /* empty sums (and x, y may have no data) */
        memset(out, 0, (size_t)pat->nnz * sbx_dtype_size(dtype));
        return;
    }
    const int nt = threads_for(sbx_mul_i64(pat->nnz, k, &work) == SBX_OK ? work : INT64_MAX);
    const int f32 = dtype == SBX_FLOAT32;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t ch = 0; ch < chunks; ch++) {
        const int64_t l0 = ch * 64, l1 = l0 + 64 < major ? l0 + 64 : major;
        if (f32)
            sampled_f32(pat, xr, yc, k, out, l0, l1);
        else
            sampled_f64(pat, xr, yc, k, out, l0, l1);
    }
}

/* Applies cls to inputs (a gradient's expression); *out its output. */
static sbx_status build(sbx_graph *g, const sbx_op_class *cls, const void *props, int nin, sbx_var *a, sbx_var *b,
                        sbx_var *c, sbx_var **out) {
    sbx_var *in[3] = {a, b, c};
    return sbx_apply(g, cls, props, nin, in, out);
}

/* Answers for a node none of whose outputs gets a gradient: nothing flows back. */
static int nothing_flows(const sbx_node *node, sbx_var *const *gout, sbx_grad *answer) {
    for (int j = 0; j < sbx_node_noutputs(node); j++)
        if (gout[j]) return 0;
    for (int i = 0; i < sbx_node_ninputs(node); i++) answer[i] = SBX_GRAD_DISCONNECTED;
    return 1;
}

static int props_01(int v) { return v == 0 || v == 1; }

/* --- StructuredDot(transpose_sparse): (sparse a, dense b) -> op(a) b, (dense a, sparse b) -> a op(b) -------- */
static int sdot_equal(const void *a, const void *b) {
    return sbx__props_equal_bytes(a, b, sizeof(sbx_structured_dot_props));
}
static uint64_t sdot_hash(const void *p) {
    return sbx__hash_bytes(p, sizeof(sbx_structured_dot_props), 0xcbf29ce484222325ull);
}
static int sdot_str(const void *props, char *buf, size_t size) {
    return snprintf(buf, size, "transpose_sparse=%d", ((const sbx_structured_dot_props *)props)->transpose_sparse);
}

static sbx_status sdot_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    const sbx_structured_dot_props *pr = op->props;
    static const char *const names[2] = {"a", "b"};
    SBX_CHECK(counts(op, nin, 2, "a, b", 1, 1));
    if (!props_01(pr->transpose_sparse))
        return sbx__op_fail(op, SBX_ERR_ARG, "transpose_sparse is %d, must be 0 or 1", pr->transpose_sparse);
    const int sa = in[0].kind == SBX_KIND_SPARSE, sb = in[1].kind == SBX_KIND_SPARSE;
    if (sa && sb)
        return sbx__op_error(op, 1, "b", "expected a dense matrix (a is sparse; one operand is dense), got %s",
                             words(&in[1]).s);
    if (!sa && !sb)
        return sbx__op_error(op, 0, "a", "expected a sparse matrix (b is dense; one operand is sparse), got %s",
                             words(&in[0]).s);
    const int s = sa ? 0 : 1, d = 1 - s, t = pr->transpose_sparse;
    if (!sbx__is_float(in[s].dtype))
        return sbx__op_error(op, s, names[s], "expected a float32 or float64 sparse matrix, got %s", words(&in[s]).s);
    if (in[d].ndim != 2 || in[d].dtype != in[s].dtype)
        return sbx__op_error(op, d, names[d], "expected a 2-d %s matrix (the dtype of %s), got %s",
                             sbx_dtype_name(in[s].dtype), names[s], words(&in[d]).s);
    const int64_t sr = in[s].shape[t], sc = in[s].shape[1 - t]; /* op(sparse) is sr x sc */
    if (sa && !agree(sc, in[1].shape[0]))
        return sbx__op_error(op, 1, "b", "expected %lld rows (the columns of op(a), a %s%s), got %s", (long long)sc,
                             words(&in[0]).s, t ? " transposed" : "", words(&in[1]).s);
    if (sb && !agree(in[0].shape[1], sr))
        return sbx__op_error(op, 0, "a", "expected %lld columns (the rows of op(b), b %s%s), got %s", (long long)sr,
                             words(&in[1]).s, t ? " transposed" : "", words(&in[0]).s);
    const int64_t shape[2] = {sa ? sr : in[0].shape[0], sa ? in[1].shape[1] : sc};
    *nout = 1;
    out[0] = sbx_type_dense(in[s].dtype, 2, shape);
    return SBX_OK;
}

static sbx_status sdot_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                               sbx_value *out) {
    const sbx_structured_dot_props *pr = op->props;
    (void)ctx;
    SBX_CHECK(counts(op, nin, 2, "a, b", nout, 1));
    const int sa = in[0].sparse != NULL;
    const sbx_sparse *s = sa ? in[0].sparse : in[1].sparse;
    const sbx_array *d = sa ? in[1].dense : in[0].dense;
    if (!s || !d || in[sa ? 0 : 1].dense || in[sa ? 1 : 0].sparse)
        return sbx__op_fail(op, SBX_ERR_ARG, "expected one sparse and one dense value");
    sbx_status st = sbx__sparse_check_header(s, "matrix");
    if (st != SBX_OK) return again_in(op, sa ? 0 : 1, sa ? "a" : "b", st);
    const sbx_sparse v = pr->transpose_sparse ? transposed_view(s) : *s;
    if (d->ndim != 2) return sbx__op_error(op, sa ? 1 : 0, sa ? "b" : "a", "expected a 2-d value, got %d-d", d->ndim);
    if (sa && d->shape[0] != v.ncols)
        return sbx__op_error(op, 1, "b", "has %lld rows; op(a) is %lld x %lld", (long long)d->shape[0],
                             (long long)v.nrows, (long long)v.ncols);
    if (!sa && d->shape[1] != v.nrows)
        return sbx__op_error(op, 0, "a", "has %lld columns; op(b) is %lld x %lld", (long long)d->shape[1],
                             (long long)v.nrows, (long long)v.ncols);
    if (!sbx__is_float(s->dtype) || d->dtype != s->dtype)
        return sbx__op_fail(op, SBX_ERR_ARG, "a and b have dtypes %s and %s; both must be float32 or both float64",
                            sbx_dtype_name(sa ? s->dtype : d->dtype), sbx_dtype_name(sa ? d->dtype : s->dtype));
    const int64_t shape[2] = {sa ? v.nrows : d->shape[0], sa ? d->shape[1] : v.ncols};
    sbx_array *c;
    SBX_CHECK(sbx_output_dense(&out[0], s->dtype, 2, shape, 0, &c));
    st = sa ? sbx__sparse_dot_dense_into(&v, d, c) : sbx__dense_dot_sparse_into(d, &v, c);
    return st == SBX_OK ? SBX_OK : sbx__op_again(op, st);
}

static sbx_status sdot_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                            const char **reason) {
    (void)reason;
    if (nothing_flows(node, gout, answer)) return SBX_OK;
    const int t = ((const sbx_structured_dot_props *)sbx_node_op(node).props)->transpose_sparse;
    sbx_var *a = sbx_node_input(node, 0), *b = sbx_node_input(node, 1), *gc = gout[0];
    const sbx_structured_dot_props flip = {!t};
    if (sbx_var_type(a)->kind == SBX_KIND_SPARSE) {
        /* C = op(a) b: b gets op(a)^T G, a's stored values (G b^T) or (b G^T) on a's structure. */
        const sbx_sampled_dot_props nt = {0, 1};
        SBX_CHECK(build(g, &sbx_op_structured_dot, &flip, 2, a, gc, NULL, &gin[1]));
        SBX_CHECK(build(g, &sbx_op_sampled_dot, &nt, 3, t ? b : gc, t ? gc : b, a, &gin[0]));
    } else {
        /* C = a op(b): a gets G op(b)^T, b's stored values (a^T G) or (G^T a) on b's structure. */
        const sbx_sampled_dot_props tn = {1, 0};
        SBX_CHECK(build(g, &sbx_op_structured_dot, &flip, 2, gc, b, NULL, &gin[0]));
        SBX_CHECK(build(g, &sbx_op_sampled_dot, &tn, 3, t ? gc : a, t ? a : gc, b, &gin[1]));
    }
    answer[0] = answer[1] = SBX_GRAD_DEFINED;
    return SBX_OK;
}

const sbx_op_class sbx_op_structured_dot = {
    .name = "StructuredDot",
    .props_size = sizeof(sbx_structured_dot_props),
    .props_equal = sdot_equal,
    .props_hash = sdot_hash,
    .props_str = sdot_str,
    .make_node = sdot_make_node,
    .infer_shape = sbx__infer_from_types,
    .perform = sdot_perform,
    .state_free = NULL,
    .grad = sdot_grad,
    .connection_pattern = sbx__all_connected,
};

/* --- SampledDot(transpose_x, transpose_y): (x, y, pattern) -> (X Y) on pattern's structure ---------------- */
static int sampled_equal(const void *a, const void *b) {
    return sbx__props_equal_bytes(a, b, sizeof(sbx_sampled_dot_props));
}
static uint64_t sampled_hash(const void *p) {
    return sbx__hash_bytes(p, sizeof(sbx_sampled_dot_props), 0xcbf29ce484222325ull);
}
static int sampled_str(const void *props, char *buf, size_t size) {
    const sbx_sampled_dot_props *p = props;
    return snprintf(buf, size, "transpose_x=%d transpose_y=%d", p->transpose_x, p->transpose_y);
}

static sbx_status sampled_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    const sbx_sampled_dot_props *pr = op->props;
    SBX_CHECK(counts(op, nin, 3, "x, y, pattern", 1, 1));
    if (!props_01(pr->transpose_x) || !props_01(pr->transpose_y))
        return sbx__op_fail(op, SBX_ERR_ARG, "transpose_x = %d and transpose_y = %d must be 0 or 1", pr->transpose_x,
                            pr->transpose_y);
    if (in[0].kind != SBX_KIND_DENSE || in[0].ndim != 2 || !sbx__is_float(in[0].dtype))
        return sbx__op_error(op, 0, "x", "expected a 2-d float32 or float64 matrix, got %s", words(&in[0]).s);
    if (in[1].kind != SBX_KIND_DENSE || in[1].ndim != 2 || in[1].dtype != in[0].dtype)
        return sbx__op_error(op, 1, "y", "expected a 2-d %s matrix (the dtype of x), got %s",
                             sbx_dtype_name(in[0].dtype), words(&in[1]).s);
    if (in[2].kind != SBX_KIND_SPARSE)
        return sbx__op_error(op, 2, "pattern", "expected a sparse matrix (its structure is read), got %s",
                             words(&in[2]).s);
    const int tx = pr->transpose_x, ty = pr->transpose_y;
    const int64_t m = in[0].shape[tx], kx = in[0].shape[1 - tx], ky = in[1].shape[ty], n = in[1].shape[1 - ty];
    if (!agree(kx, ky))
        return sbx__op_error(op, 1, "y", "expected Y = %s with %lld rows (the columns of X = %s), got %s",
                             ty ? "y^T" : "y", (long long)kx, tx ? "x^T" : "x", words(&in[1]).s);
    if (!agree(in[2].shape[0], m) || !agree(in[2].shape[1], n))
        return sbx__op_error(op, 2, "pattern", "expected the shape of X Y (%lld x %lld, ? unknown), got %s",
                             (long long)m, (long long)n, words(&in[2]).s);
    *nout = 1;
    out[0] = sbx_type_sparse(in[2].format, in[0].dtype, known(in[2].shape[0], m), known(in[2].shape[1], n));
    return SBX_OK;
}

static sbx_status sampled_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                  sbx_value *out) {
    const sbx_sampled_dot_props *pr = op->props;
    (void)ctx;
    SBX_CHECK(counts(op, nin, 3, "x, y, pattern", nout, 1));
    const sbx_array *x = in[0].dense, *y = in[1].dense;
    const sbx_sparse *pat = in[2].sparse;
    if (!x || x->ndim != 2 || !sbx__is_float(x->dtype)) return sbx__op_error(op, 0, "x", "expected a 2-d float value");
    if (!y || y->ndim != 2 || y->dtype != x->dtype)
        return sbx__op_error(op, 1, "y", "expected a 2-d %s value", sbx_dtype_name(x->dtype));
    if (!pat) return sbx__op_error(op, 2, "pattern", "expected a sparse value");
    sbx_status st = sbx_sparse_validate_structure(pat);
    if (st != SBX_OK) return again_in(op, 2, "pattern", st);
    const int tx = pr->transpose_x, ty = pr->transpose_y;
    const int64_t m = x->shape[tx], k = x->shape[1 - tx], n = y->shape[1 - ty];
    if (y->shape[ty] != k)
        return sbx__op_error(op, 1, "y", "Y has %lld rows; X has %lld columns", (long long)y->shape[ty], (long long)k);
    if (pat->nrows != m || pat->ncols != n)
        return sbx__op_error(op, 2, "pattern", "is %lld x %lld; X Y is %lld x %lld", (long long)pat->nrows,
                             (long long)pat->ncols, (long long)m, (long long)n);
    const size_t es = sbx_dtype_size(x->dtype);
    int64_t xn, yn;
    SBX_CHECK(sbx_shape_numel(2, x->shape, &xn));
    SBX_CHECK(sbx_shape_numel(2, y->shape, &yn));
    if ((xn > 0 && !x->data) || (yn > 0 && !y->data)) return sbx__op_fail(op, SBX_ERR_ARG, "x or y has no data");
    /* X's rows and Y's columns as contiguous runs of k: x as it is (or transposed), y transposed (or as it is). */
    void *xt = NULL, *yt = NULL;
    sbx_sparse *res = NULL;
    if (tx) st = sbx__alloc_raw(xn, es, &xt, "SampledDot: x transposed");
    if (st == SBX_OK && !ty) st = sbx__alloc_raw(yn, es, &yt, "SampledDot: y transposed");
    if (st == SBX_OK) st = output_like(&out[0], pat, x->dtype, &res);
    if (st == SBX_OK) {
        if (xt) transpose(x->data, xt, es, x->shape[0], x->shape[1]);
        if (yt) transpose(y->data, yt, es, y->shape[0], y->shape[1]);
        sampled_values(pat, xt ? xt : x->data, yt ? yt : y->data, k, x->dtype, res->data);
    }
    sbx__free(xt);
    sbx__free(yt);
    return st;
}

static sbx_status sampled_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                               sbx_grad *answer, const char **reason) {
    (void)reason;
    if (nothing_flows(node, gout, answer)) return SBX_OK;
    const sbx_sampled_dot_props *pr = sbx_node_op(node).props;
    const int tx = pr->transpose_x, ty = pr->transpose_y;
    sbx_var *x = sbx_node_input(node, 0), *y = sbx_node_input(node, 1), *gs = gout[0], *v;
    const sbx_structured_dot_props plain = {0}, trans = {1};
    /* x: G Y^T (tx = 0) or Y G^T (tx = 1). As products with G on the left or right, untransposed y:
     *   tx = 0, ty = 1: G y          tx = 0, ty = 0: G y^T = (y G^T)^T
     *   tx = 1, ty = 0: y G^T        tx = 1, ty = 1: y^T G^T = (G y)^T */
    SBX_CHECK(build(g, &sbx_op_structured_dot, ty ? &plain : &trans, 2, ty ? gs : y, ty ? y : gs, NULL, &v));
    if (tx == ty) SBX_CHECK(build(g, &sbx_op_transpose, NULL, 1, v, NULL, NULL, &v));
    gin[0] = v;
    /* y: X^T G (ty = 0) or G^T X (ty = 1):
     *   ty = 0, tx = 1: x G          ty = 0, tx = 0: x^T G = (G^T x)^T
     *   ty = 1, tx = 0: G^T x        ty = 1, tx = 1: G^T x^T = (x G)^T */
    SBX_CHECK(build(g, &sbx_op_structured_dot, tx ? &plain : &trans, 2, tx ? x : gs, tx ? gs : x, NULL, &v));
    if (tx == ty) SBX_CHECK(build(g, &sbx_op_transpose, NULL, 1, v, NULL, NULL, &v));
    gin[1] = v;
    answer[0] = answer[1] = SBX_GRAD_DEFINED;
    answer[2] = SBX_GRAD_DISCONNECTED; /* only the pattern's structure is read */
    return SBX_OK;
}

static void sampled_pattern(const sbx_op *op, int nin, int nout, int *pattern) {
    (void)op;
    for (int i = 0; i < nin; i++)
        for (int j = 0; j < nout; j++) pattern[i * nout + j] = i != 2;
}

const sbx_op_class sbx_op_sampled_dot = {
    .name = "SampledDot",
    .props_size = sizeof(sbx_sampled_dot_props),
    .props_equal = sampled_equal,
    .props_hash = sampled_hash,
    .props_str = sampled_str,
    .make_node = sampled_make_node,
    .infer_shape = sbx__infer_from_types,
    .perform = sampled_perform,
    .state_free = NULL,
    .grad = sampled_grad,
    .connection_pattern = sampled_pattern,
};

/* --- Transpose: (2-d dense) -> its transpose, with SampledDot's tiled kernel (its gradient needs it).
 * Its gradient is the transpose of the output's. ------------------------------------------------------------ */
static sbx_status transpose_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    SBX_CHECK(counts(op, nin, 1, "x", 1, 1));
    if (in[0].kind != SBX_KIND_DENSE || in[0].ndim != 2)
        return sbx__op_error(op, 0, "x", "expected a 2-d dense matrix, got %s", words(&in[0]).s);
    const int64_t shape[2] = {in[0].shape[1], in[0].shape[0]};
    *nout = 1;
    out[0] = sbx_type_dense(in[0].dtype, 2, shape);
    return SBX_OK;
}

static sbx_status transpose_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                    sbx_value *out) {
    (void)ctx;
    SBX_CHECK(counts(op, nin, 1, "x", nout, 1));
    const sbx_array *x = in[0].dense;
    int64_t n;
    sbx_array *r;
    if (!x || x->ndim != 2 || !sbx__dtype_valid(x->dtype)) return sbx__op_error(op, 0, "x", "expected a 2-d value");
    SBX_CHECK(sbx_shape_numel(2, x->shape, &n));
    if (n > 0 && !x->data) return sbx__op_error(op, 0, "x", "has %lld elements but no data", (long long)n);
    const int64_t shape[2] = {x->shape[1], x->shape[0]};
    SBX_CHECK(sbx_output_dense(&out[0], x->dtype, 2, shape, 0, &r));
    if (r->data == x->data && n > 0) return sbx__op_fail(op, SBX_ERR_ARG, "the output storage is the input");
    transpose(x->data, r->data, sbx_dtype_size(x->dtype), x->shape[0], x->shape[1]);
    return SBX_OK;
}

static sbx_status transpose_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                                 sbx_grad *answer, const char **reason) {
    (void)reason;
    if (nothing_flows(node, gout, answer)) return SBX_OK;
    SBX_CHECK(build(g, &sbx_op_transpose, NULL, 1, gout[0], NULL, NULL, &gin[0]));
    answer[0] = SBX_GRAD_DEFINED;
    return SBX_OK;
}

const sbx_op_class sbx_op_transpose = {
    .name = "Transpose",
    .props_size = 0,
    .props_equal = sbx__noprops_equal,
    .props_hash = sbx__noprops_hash,
    .props_str = sbx__noprops_str,
    .make_node = transpose_make_node,
    .infer_shape = sbx__infer_from_types,
    .perform = transpose_perform,
    .state_free = NULL,
    .grad = transpose_grad,
    .connection_pattern = sbx__all_connected,
};

/* --- EliminateZeros: (sparse) -> the same without its stored zeros --------------------------------------- */
static sbx_status one_sparse(const sbx_op *op, int nin, const sbx_type *in) {
    SBX_CHECK(counts(op, nin, 1, "x", 1, 1));
    if (in[0].kind != SBX_KIND_SPARSE)
        return sbx__op_error(op, 0, "x", "expected a sparse matrix (csr or csc), got %s", words(&in[0]).s);
    return SBX_OK;
}

static sbx_status elim_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    SBX_CHECK(one_sparse(op, nin, in));
    *nout = 1;
    out[0] = in[0];
    return SBX_OK;
}

static sbx_status elim_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                               sbx_value *out) {
    (void)ctx;
    SBX_CHECK(counts(op, nin, 1, "x", nout, 1));
    const sbx_sparse *x = in[0].sparse;
    sbx_sparse *m;
    if (!x) return sbx__op_error(op, 0, "x", "expected a sparse value");
    sbx_status st = sbx_sparse_validate_structure(x);
    if (st != SBX_OK) return again_in(op, 0, "x", st);
    if ((st = sbx_sparse_copy(x, &m)) != SBX_OK) return sbx__op_again(op, st);
    if ((st = sbx_sparse_eliminate_zeros(m)) != SBX_OK) {
        sbx_sparse_free(m);
        return sbx__op_again(op, st);
    }
    sbx_output_sparse(&out[0], m);
    return SBX_OK;
}

/* The gradient of the stored values kept, at x's structure (0 at the dropped ones). */
static sbx_status like_x_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                              const char **reason) {
    (void)reason;
    if (nothing_flows(node, gout, answer)) return SBX_OK;
    SBX_CHECK(build(g, &sbx_op_sparse_like, NULL, 2, gout[0], sbx_node_input(node, 0), NULL, &gin[0]));
    answer[0] = SBX_GRAD_DEFINED;
    return SBX_OK;
}

const sbx_op_class sbx_op_eliminate_zeros = {
    .name = "EliminateZeros",
    .props_size = 0,
    .props_equal = sbx__noprops_equal,
    .props_hash = sbx__noprops_hash,
    .props_str = sbx__noprops_str,
    .make_node = elim_make_node,
    .infer_shape = sbx__infer_from_types,
    .perform = elim_perform,
    .state_free = NULL,
    .grad = like_x_grad,
    .connection_pattern = sbx__all_connected,
};

/* --- DenseFromSparse: (sparse) -> dense (duplicates summed) ---------------------------------------------- */
static sbx_status dfs_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    SBX_CHECK(one_sparse(op, nin, in));
    *nout = 1;
    out[0] = sbx_type_dense(in[0].dtype, 2, in[0].shape);
    return SBX_OK;
}

/* Adds major lines l0 .. l1-1 of m into the zeroed dense d (each line owns its elements of d). */
static void scatter_lines(const sbx_sparse *m, void *d, int64_t l0, int64_t l1) {
    const int64_t *ip = m->indptr, *ix = m->indices, nc = m->ncols;
    const int csr = m->format == SBX_CSR;
    for (int64_t l = l0; l < l1; l++)
        for (int64_t p = ip[l]; p < ip[l + 1]; p++) {
            const int64_t at = csr ? l * nc + ix[p] : ix[p] * nc + l;
            if (m->dtype == SBX_FLOAT64)
                ((double *)d)[at] += ((const double *)m->data)[p];
            else if (m->dtype == SBX_FLOAT32)
                ((float *)d)[at] += ((const float *)m->data)[p];
            else
                sbx__accumulate(d, at, m->data, p, m->dtype);
        }
}

static sbx_status dfs_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                              sbx_value *out) {
    (void)ctx;
    SBX_CHECK(counts(op, nin, 1, "x", nout, 1));
    const sbx_sparse *x = in[0].sparse;
    sbx_array *d;
    if (!x) return sbx__op_error(op, 0, "x", "expected a sparse value");
    sbx_status st = sbx_sparse_validate_structure(x);
    if (st != SBX_OK) return again_in(op, 0, "x", st);
    const int64_t shape[2] = {x->nrows, x->ncols}, major = sbx_sparse_major(x);
    SBX_CHECK(sbx_output_dense(&out[0], x->dtype, 2, shape, 1, &d));
    const int nt = threads_for(x->nnz);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) scatter_lines(x, d->data, major / nt * t, t + 1 == nt ? major : major / nt * (t + 1));
    return SBX_OK;
}

const sbx_op_class sbx_op_dense_from_sparse = {
    .name = "DenseFromSparse",
    .props_size = 0,
    .props_equal = sbx__noprops_equal,
    .props_hash = sbx__noprops_hash,
    .props_str = sbx__noprops_str,
    .make_node = dfs_make_node,
    .infer_shape = sbx__infer_from_types,
    .perform = dfs_perform,
    .state_free = NULL,
    .grad = like_x_grad,
    .connection_pattern = sbx__all_connected,
};

/* --- SparseFromDense(format): (2-d dense) -> sparse of its non-zeros ---------------------------------------- */
static int format_equal(const void *a, const void *b) { return sbx__props_equal_bytes(a, b, sizeof(sbx_format_props)); }
static uint64_t format_hash(const void *p) {
    return sbx__hash_bytes(p, sizeof(sbx_format_props), 0xcbf29ce484222325ull);
}
static int format_str(const void *props, char *buf, size_t size) {
    return snprintf(buf, size, "format=%s", sbx_format_name(((const sbx_format_props *)props)->format));
}

static sbx_status sfd_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    const sbx_format_props *pr = op->props;
    SBX_CHECK(counts(op, nin, 1, "x", 1, 1));
    if (pr->format != SBX_CSR && pr->format != SBX_CSC)
        return sbx__op_fail(op, SBX_ERR_ARG, "format %d is neither csr nor csc", (int)pr->format);
    if (in[0].kind != SBX_KIND_DENSE || in[0].ndim != 2)
        return sbx__op_error(op, 0, "x", "expected a 2-d dense matrix, got %s", words(&in[0]).s);
    *nout = 1;
    out[0] = sbx_type_sparse(pr->format, in[0].dtype, in[0].shape[0], in[0].shape[1]);
    return SBX_OK;
}

static sbx_status sfd_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                              sbx_value *out) {
    const sbx_format_props *pr = op->props;
    (void)ctx;
    SBX_CHECK(counts(op, nin, 1, "x", nout, 1));
    sbx_sparse *m;
    if (!in[0].dense) return sbx__op_error(op, 0, "x", "expected a dense value");
    sbx_status st = sbx_sparse_from_dense(in[0].dense, pr->format, &m);
    if (st != SBX_OK) return again_in(op, 0, "x", st);
    sbx_output_sparse(&out[0], m);
    return SBX_OK;
}

static sbx_status sfd_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                           const char **reason) {
    (void)reason;
    if (nothing_flows(node, gout, answer)) return SBX_OK;
    SBX_CHECK(build(g, &sbx_op_dense_from_sparse, NULL, 1, gout[0], NULL, NULL, &gin[0]));
    answer[0] = SBX_GRAD_DEFINED;
    return SBX_OK;
}

const sbx_op_class sbx_op_sparse_from_dense = {
    .name = "SparseFromDense",
    .props_size = sizeof(sbx_format_props),
    .props_equal = format_equal,
    .props_hash = format_hash,
    .props_str = format_str,
    .make_node = sfd_make_node,
    .infer_shape = sbx__infer_from_types,
    .perform = sfd_perform,
    .state_free = NULL,
    .grad = sfd_grad,
    .connection_pattern = sbx__all_connected,
};

/* --- SparseLike: (g dense or sparse, x sparse) -> x's structure holding g's values -------------------------- */
static sbx_status like_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    SBX_CHECK(counts(op, nin, 2, "g, x", 1, 1));
    if (in[1].kind != SBX_KIND_SPARSE)
        return sbx__op_error(op, 1, "x", "expected a sparse matrix (csr or csc), got %s", words(&in[1]).s);
    if (in[0].ndim != 2 || in[0].dtype != in[1].dtype)
        return sbx__op_error(op, 0, "g", "expected a 2-d dense or sparse %s matrix (the dtype of x), got %s",
                             sbx_dtype_name(in[1].dtype), words(&in[0]).s);
    if (!agree(in[0].shape[0], in[1].shape[0]) || !agree(in[0].shape[1], in[1].shape[1]))
        return sbx__op_error(op, 0, "g", "expected the shape of x (%s), got %s", words(&in[1]).s, words(&in[0]).s);
    *nout = 1;
    out[0] = sbx_type_sparse(in[1].format, in[1].dtype, known(in[1].shape[0], in[0].shape[0]),
                             known(in[1].shape[1], in[0].shape[1]));
    return SBX_OK;
}

/* The first position in [lo, hi) of sorted indices holding j or more. */
static int64_t lower_bound(const int64_t *indices, int64_t lo, int64_t hi, int64_t j) {
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (indices[mid] < j)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* out[p] = g at stored entry p of x, lines l0 .. l1-1: from a dense g, or from a sparse g in x's format, sorted and
 * without duplicates (0 where g has no entry). x's lines are walked alongside g's, the walk restarting by binary
 * search where x's indices go down (x may be unsorted and hold duplicates). */
static void gather_lines(const sbx_sparse *x, const sbx_array *gd, const sbx_sparse *gs, void *out, int64_t l0,
                         int64_t l1) {
    const size_t es = sbx_dtype_size(x->dtype);
    const int64_t *ip = x->indptr, *ix = x->indices, nc = x->ncols;
    const int csr = x->format == SBX_CSR;
    for (int64_t l = l0; l < l1; l++) {
        int64_t q = gs ? gs->indptr[l] : 0;
        const int64_t qend = gs ? gs->indptr[l + 1] : 0;
        for (int64_t p = ip[l]; p < ip[l + 1]; p++) {
            char *dst = (char *)out + (size_t)p * es;
            if (gd) {
                const int64_t at = csr ? l * nc + ix[p] : ix[p] * nc + l;
                memcpy(dst, (const char *)gd->data + (size_t)at * es, es);
                continue;
            }
            if (p > ip[l] && ix[p] < ix[p - 1]) q = lower_bound(gs->indices, gs->indptr[l], qend, ix[p]);
            while (q < qend && gs->indices[q] < ix[p]) q++;
            if (q < qend && gs->indices[q] == ix[p])
                memcpy(dst, (const char *)gs->data + (size_t)q * es, es);
            else
                memset(dst, 0, es);
        }
    }
}

static sbx_status like_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                               sbx_value *out) {
    (void)ctx;
    SBX_CHECK(counts(op, nin, 2, "g, x", nout, 1));
    const sbx_sparse *x = in[1].sparse, *gs = in[0].sparse;
    const sbx_array *gd = in[0].dense;
    sbx_sparse *converted = NULL, *res;
    sbx_status st;
    if (!x) return sbx__op_error(op, 1, "x", "expected a sparse value");
    if (!gd == !gs) return sbx__op_error(op, 0, "g", "expected a dense or a sparse value");
    if ((st = sbx_sparse_validate_structure(x)) != SBX_OK) return again_in(op, 1, "x", st);
    if (gs && (st = sbx_sparse_validate_structure(gs)) != SBX_OK) return again_in(op, 0, "g", st);
    const int fits = gd ? gd->dtype == x->dtype && gd->ndim == 2 && gd->shape[0] == x->nrows && gd->shape[1] == x->ncols
                        : gs->dtype == x->dtype && gs->nrows == x->nrows && gs->ncols == x->ncols;
    if (!fits)
        return sbx__op_error(op, 0, "g", "expected a %lld x %lld %s value (x's shape and dtype)", (long long)x->nrows,
                             (long long)x->ncols, sbx_dtype_name(x->dtype));
    if (gd && x->nnz > 0 && !gd->data) return sbx__op_error(op, 0, "g", "has no data");
    /* A sparse g is read in x's format, sorted, its duplicates summed (the value a duplicated position holds):
     * a copy unless it is so already. */
    if (gs && (gs->format != x->format || sbx_sparse_validate(gs) != SBX_OK)) {
        if ((st = sbx_sparse_convert(gs, x->format, &converted)) != SBX_OK ||
            (st = sbx_sparse_sum_duplicates(converted)) != SBX_OK) {
            sbx_sparse_free(converted);
            return sbx__op_again(op, st);
        }
        gs = converted;
    }
    if ((st = output_like(&out[0], x, x->dtype, &res)) == SBX_OK) {
        const int64_t major = sbx_sparse_major(x);
        const int nt = threads_for(x->nnz);
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int t = 0; t < nt; t++)
            gather_lines(x, gd, gs, res->data, major / nt * t, t + 1 == nt ? major : major / nt * (t + 1));
    }
    sbx_sparse_free(converted);
    return st;
}

static sbx_status like_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                            const char **reason) {
    (void)reason;
    if (nothing_flows(node, gout, answer)) return SBX_OK;
    sbx_var *gv = sbx_node_input(node, 0);
    if (sbx_var_type(gv)->kind == SBX_KIND_DENSE) /* the values at x's structure, scattered back */
        SBX_CHECK(build(g, &sbx_op_dense_from_sparse, NULL, 1, gout[0], NULL, NULL, &gin[0]));
    else /* at g's structure (0 where x has no entry) */
        SBX_CHECK(build(g, &sbx_op_sparse_like, NULL, 2, gout[0], gv, NULL, &gin[0]));
    answer[0] = SBX_GRAD_DEFINED;
    answer[1] = SBX_GRAD_DISCONNECTED; /* only x's structure is read */
    return SBX_OK;
}

static void like_pattern(const sbx_op *op, int nin, int nout, int *pattern) {
    (void)op;
    for (int i = 0; i < nin; i++)
        for (int j = 0; j < nout; j++) pattern[i * nout + j] = i == 0;
}

const sbx_op_class sbx_op_sparse_like = {
    .name = "SparseLike",
    .props_size = 0,
    .props_equal = sbx__noprops_equal,
    .props_hash = sbx__noprops_hash,
    .props_str = sbx__noprops_str,
    .make_node = like_make_node,
    .infer_shape = sbx__infer_from_types,
    .perform = like_perform,
    .state_free = NULL,
    .grad = like_grad,
    .connection_pattern = like_pattern,
};
