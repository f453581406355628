/* Dot: op(a) op(b) of 2-d dense arrays through CBLAS. The output is cut into tiles of a fixed size
 * (fixed by the shapes, never by the thread count), one gemm call each inside the library's own
 * parallel loop, so a tile's bits are those of one single-threaded call whatever the thread count. */
#include <cblas.h>
#include <limits.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "op/dense.h"


#define TILE_ROWS 128           /* output rows per tile */
#define TILE_COLS 512           /* output columns per tile */
#define ONE_CALL_WORK (1 << 20) /* below this many multiply-adds: one call, on the calling thread */

static int dot_equal(const void *a, const void *b) {
    const sbx_dot_props *p = a, *q = b;
    return (p->transpose_a != 0) == (q->transpose_a != 0) && (p->transpose_b != 0) == (q->transpose_b != 0);
}
static uint64_t dot_hash(const void *props) {
    const sbx_dot_props *p = props;
    const int v[2] = {p->transpose_a != 0, p->transpose_b != 0};
    return sbx__hash_bytes(v, sizeof v, 0xcbf29ce484222325ull);
}
static int dot_str(const void *props, char *buf, size_t size) {
    const sbx_dot_props *p = props;
    return p ? snprintf(buf, size, "transpose_a=%d transpose_b=%d", p->transpose_a != 0, p->transpose_b != 0)
             : snprintf(buf, size, "?");
}

/* op(x)'s rows and columns from x's (r, c) */
static void op_shape(const int64_t *s, int t, int64_t *rows, int64_t *cols) {
    *rows = t ? s[1] : s[0];
    *cols = t ? s[0] : s[1];
}

static sbx_status dot_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    const sbx_dot_props *p = op->props;
    SBX_CHECK(sbx__dense_arity(op, nin, 2));
    SBX_CHECK(sbx__dense_float(op, &in[0], 0, "a", 2));
    SBX_CHECK(sbx__dense_float(op, &in[1], 1, "b", 2));
    SBX_CHECK(sbx__dense_same_dtype(op, in, 1, "b", 0, "a"));
    int64_t m, ka, kb, n;
    op_shape(in[0].shape, p->transpose_a != 0, &m, &ka);
    op_shape(in[1].shape, p->transpose_b != 0, &kb, &n);
    if (ka >= 0 && kb >= 0 && ka != kb) {
        char sa[128], sb[128];
        sbx_type_str(&in[0], sa, sizeof sa);
        sbx_type_str(&in[1], sb, sizeof sb);
        return sbx__op_error(op, 1, "b", "expected %s with %lld rows (the columns of %s, input 0, a%s), got %s",
                             p->transpose_b ? "b^T" : "b", (long long)ka, sa, p->transpose_a ? "^T" : "", sb);
    }
    const int64_t shape[2] = {m, n};
    out[0] = sbx_type_dense(in[0].dtype, 2, shape);
    *nout = 1;
    return SBX_OK;
}

typedef struct gemm_args {
    sbx_dtype dtype;
    int ta, tb;
    int64_t m, n, k, lda, ldb;
    const void *a, *b;
    void *c;
} gemm_args;

/* C[r0 .. r0 + rows, c0 .. c0 + cols] by one gemm call, made single-threaded: the calling thread's
 * OpenMP thread count set to 1 first, as OpenBLAS's OpenMP build sizes its own team from it (this
 * runs inside a parallel region, so it is that region's setting only). */
static void gemm_tile(const gemm_args *g, int64_t r0, int64_t rows, int64_t c0, int64_t cols) {
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    const enum CBLAS_TRANSPOSE ta = g->ta ? CblasTrans : CblasNoTrans, tb = g->tb ? CblasTrans : CblasNoTrans;
    /* op(a)'s row r is a's row r, or a's column r when transposed; likewise op(b)'s column c */
    const int64_t ao = g->ta ? r0 : r0 * g->lda, bo = g->tb ? c0 * g->ldb : c0, co = r0 * g->n + c0;
    if (g->dtype == SBX_FLOAT32)
        cblas_sgemm(CblasRowMajor, ta, tb, (int)rows, (int)cols, (int)g->k, 1.0f, (const float *)g->a + ao, (int)g->lda,
                    (const float *)g->b + bo, (int)g->ldb, 0.0f, (float *)g->c + co, (int)g->n);
    else
        cblas_dgemm(CblasRowMajor, ta, tb, (int)rows, (int)cols, (int)g->k, 1.0, (const double *)g->a + ao, (int)g->lda,
                    (const double *)g->b + bo, (int)g->ldb, 0.0, (double *)g->c + co, (int)g->n);
}

static sbx_status dot_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                              sbx_value *out) {
    (void)ctx;
    const sbx_dot_props *p = op->props;
    SBX_CHECK(sbx__dense_values(op, nin, in, nout, out));
    const sbx_array *a = in[0].dense, *b = in[1].dense;
    if (a->ndim != 2 || b->ndim != 2 || a->dtype != b->dtype)
        return sbx__op_fail(op, SBX_ERR_ARG, "expected two 2-d arrays of one dtype");
    gemm_args g = {
        a->dtype, p->transpose_a != 0, p->transpose_b != 0, 0, 0, 0, a->shape[1], b->shape[1], a->data, b->data, NULL};
    int64_t kb;
    op_shape(a->shape, g.ta, &g.m, &g.k);
    op_shape(b->shape, g.tb, &kb, &g.n);
    if (kb != g.k) {
        sbx_type ta = sbx__type_of_dense(a), tb = sbx__type_of_dense(b);
        char sa[128], sb[128];
        sbx_type_str(&ta, sa, sizeof sa);
        sbx_type_str(&tb, sb, sizeof sb);
        return sbx__op_error(op, 1, "b", "expected %s with %lld rows (the columns of %s, input 0, a%s), got %s",
                             g.tb ? "b^T" : "b", (long long)g.k, sa, g.ta ? "^T" : "", sb);
    }
    if (g.m > INT_MAX || g.n > INT_MAX || g.k > INT_MAX || g.lda > INT_MAX || g.ldb > INT_MAX)
        return sbx__op_fail(op, SBX_ERR_UNSUPPORTED, "an extent above %d (CBLAS takes int sizes)", INT_MAX);
    const int64_t shape[2] = {g.m, g.n};
    sbx_array *y;
    SBX_CHECK(sbx_output_dense(&out[0], a->dtype, 2, shape, 0, &y));
    if (g.m == 0 || g.n == 0) return SBX_OK;
    if (g.k == 0) { /* a sum of nothing (and a gemm with empty operands would see leading dimensions of 0) */
        memset(y->data, 0, (size_t)(g.m * g.n) * sbx_dtype_size(a->dtype));
        return SBX_OK;
    }
    g.c = y->data;
    int64_t work;
    if (sbx_mul_i64(g.m * g.n, g.k, &work) != SBX_OK) work = INT64_MAX;
    if (work < ONE_CALL_WORK) {
        /* a region of one thread: the count set inside it stays inside it */
#pragma omp parallel num_threads(1)
        gemm_tile(&g, 0, g.m, 0, g.n);
        return SBX_OK;
    }
    const int64_t rt = (g.m + TILE_ROWS - 1) / TILE_ROWS, ct = (g.n + TILE_COLS - 1) / TILE_COLS, tiles = rt * ct;
    int nt = sbx__threads();
    if (nt > tiles) nt = (int)tiles;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t t = 0; t < tiles; t++) {
        const int64_t r0 = t / ct * TILE_ROWS, c0 = t % ct * TILE_COLS;
        gemm_tile(&g, r0, g.m - r0 < TILE_ROWS ? g.m - r0 : TILE_ROWS, c0, g.n - c0 < TILE_COLS ? g.n - c0 : TILE_COLS);
    }
    return SBX_OK;
}

/* C = op(A) op(B) with gradient G: with C = A B, dA = G B^T and dB = A^T G; the transposed cases
 * follow from d(X^T) = (dX)^T:
 *   A B:     dA = Dot(G, B; 0, 1)   dB = Dot(A, G; 1, 0)
 *   A^T B:   dA = Dot(B, G; 0, 1)   dB = Dot(A, G; 0, 0)
 *   A B^T:   dA = Dot(G, B; 0, 0)   dB = Dot(G, A; 1, 0)
 *   A^T B^T: dA = Dot(B, G; 1, 1)   dB = Dot(G, A; 1, 1) */
static sbx_status dot_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                           const char **reason) {
    (void)reason;
    if (!gout[0]) return SBX_OK;
    const sbx_dot_props *p = node->op.props;
    sbx_var *A = node->in[0], *B = node->in[1], *G = gout[0];
    const int ta = p->transpose_a != 0, tb = p->transpose_b != 0;
    sbx_dot_props pa, pb;
    sbx_var *a1, *a2, *b1, *b2;
    if (!ta && !tb) {
        pa = (sbx_dot_props){0, 1}, a1 = G, a2 = B;
        pb = (sbx_dot_props){1, 0}, b1 = A, b2 = G;
    } else if (ta && !tb) {
        pa = (sbx_dot_props){0, 1}, a1 = B, a2 = G;
        pb = (sbx_dot_props){0, 0}, b1 = A, b2 = G;
    } else if (!ta && tb) {
        pa = (sbx_dot_props){0, 0}, a1 = G, a2 = B;
        pb = (sbx_dot_props){1, 0}, b1 = G, b2 = A;
    } else {
        pa = (sbx_dot_props){1, 1}, a1 = B, a2 = G;
        pb = (sbx_dot_props){1, 1}, b1 = G, b2 = A;
    }
    SBX_CHECK(sbx__dense_apply(g, &sbx_op_dot, &pa, a1, a2, &gin[0]));
    answer[0] = SBX_GRAD_DEFINED;
    SBX_CHECK(sbx__dense_apply(g, &sbx_op_dot, &pb, b1, b2, &gin[1]));
    answer[1] = SBX_GRAD_DEFINED;
    return SBX_OK;
}

const sbx_op_class sbx_op_dot = {.name = "Dot",
                                 .props_size = sizeof(sbx_dot_props),
                                 .props_equal = dot_equal,
                                 .props_hash = dot_hash,
                                 .props_str = dot_str,
                                 .make_node = dot_make_node,
                                 .infer_shape = sbx__infer_from_types,
                                 .perform = dot_perform,
                                 .state_free = NULL,
                                 .grad = dot_grad,
                                 .connection_pattern = sbx__all_connected};
