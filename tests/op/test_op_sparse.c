/* Unit tests of the sparse and random op classes (src/op/sparse_ops.c, src/op/random_ops.c) through the
 * contract on one node (sbx_apply, sbx_node_perform, sbx_node_infer_shape, sbx_node_grad,
 * sbx_node_connection_pattern): values against plain references, op identity, make_node's refusals and
 * their messages, the random ops' determinism, the grad answers and connection patterns, central
 * differences of the StructuredDot and SampledDot gradients in float64 (the sparse operand's stored values
 * included), output storage reuse, allocation failures, and the structured dot products' into-variants. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "sparse/internal.h"
#include "sparsebox/op.h"

/* ------------------------------------------------------------------------------------------------
 * Deterministic test data: splitmix64, seeded by each test.
 * ---------------------------------------------------------------------------------------------- */
static uint64_t rng_state;

static void rng_seed(uint64_t seed) { rng_state = seed; }

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static double rng_unit(void) { return (double)(rng_next() >> 11) * 0x1.0p-53; }

/* ------------------------------------------------------------------------------------------------
 * Assertions that report the caller's line and the library's message.
 * ---------------------------------------------------------------------------------------------- */
#define CHECK_OK(expr) check_ok_at((expr), #expr, __FILE__, __LINE__)

static void check_ok_at(sbx_status st, const char *expr, const char *file, int line) {
    if (st == SBX_OK) return;
    print_error("%s returned %d (%s): '%s'\n", expr, (int)st, sbx_status_str(st), sbx_last_error());
    _fail(file, line);
}

/* The status must be `want` and sbx_last_error() must contain every one of the words that follow. */
#define CHECK_ERR(expr, want, ...)                                                                                     \
    check_err_at((expr), (want), #expr, __FILE__, __LINE__, __VA_ARGS__, (const char *)NULL)

static void check_err_at(sbx_status st, sbx_status want, const char *expr, const char *file, int line, ...) {
    const char *msg = sbx_last_error();
    if (st != want) {
        print_error("%s returned %d (%s), expected %d (%s); message '%s'\n", expr, (int)st, sbx_status_str(st),
                    (int)want, sbx_status_str(want), msg);
        _fail(file, line);
        return;
    }
    va_list ap;
    va_start(ap, line);
    for (const char *word = va_arg(ap, const char *); word; word = va_arg(ap, const char *)) {
        if (!strstr(msg, word)) {
            va_end(ap);
            print_error("%s: message '%s' does not contain '%s'\n", expr, msg, word);
            _fail(file, line);
            return;
        }
    }
    va_end(ap);
}

static int reset(void **state) {
    (void)state;
    sbx__alloc_fail_at(0);
    sbx_set_num_threads(0);
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Values, built and read independently of the ops under test.
 * ---------------------------------------------------------------------------------------------- */
static double get(const void *data, sbx_dtype dt, int64_t i) {
    return dt == SBX_FLOAT32 ? (double)((const float *)data)[i] : ((const double *)data)[i];
}

static void put(void *data, sbx_dtype dt, int64_t i, double v) {
    if (dt == SBX_FLOAT32)
        ((float *)data)[i] = (float)v;
    else
        ((double *)data)[i] = v;
}

static sbx_array *dense_of(sbx_dtype dt, int64_t m, int64_t n, const double *v) {
    const int64_t shape[2] = {m, n};
    sbx_array *a = NULL;
    CHECK_OK(sbx_array_create(dt, 2, shape, &a));
    for (int64_t i = 0; i < m * n; i++) put(a->data, dt, i, v[i]);
    return a;
}

/* m x n, uniform in [-1, 1). */
static sbx_array *random_dense(sbx_dtype dt, int64_t m, int64_t n) {
    const int64_t shape[2] = {m, n};
    sbx_array *a = NULL;
    CHECK_OK(sbx_array_create(dt, 2, shape, &a));
    for (int64_t i = 0; i < m * n; i++) put(a->data, dt, i, 2 * rng_unit() - 1);
    return a;
}

static sbx_array *scalar_i64(int64_t v) {
    sbx_array *a = NULL;
    CHECK_OK(sbx_array_create(SBX_INT64, 0, NULL, &a));
    *(int64_t *)a->data = v;
    return a;
}

static sbx_array *scalar_f64(double v) {
    sbx_array *a = NULL;
    CHECK_OK(sbx_array_create(SBX_FLOAT64, 0, NULL, &a));
    *(double *)a->data = v;
    return a;
}

/* About density of the m x n cells stored, values of magnitude in [0.25, 1.25) with random signs. */
static sbx_sparse *random_sparse(sbx_format f, sbx_dtype dt, int64_t m, int64_t n, double density) {
    double *v = calloc((size_t)(m * n > 0 ? m * n : 1), sizeof(double));
    assert_non_null(v);
    for (int64_t i = 0; i < m * n; i++)
        if (rng_unit() < density) v[i] = (0.25 + rng_unit()) * (rng_unit() < 0.5 ? -1 : 1);
    sbx_array *a = dense_of(dt, m, n, v);
    sbx_sparse *s = NULL;
    CHECK_OK(sbx_sparse_from_dense(a, f, &s));
    sbx_array_free(a);
    free(v);
    return s;
}

/* The dense m x n doubles of a sparse matrix, duplicates summed (read from its arrays directly). */
static double *sparse_ref(const sbx_sparse *s) {
    double *d = calloc((size_t)(s->nrows * s->ncols > 0 ? s->nrows * s->ncols : 1), sizeof(double));
    assert_non_null(d);
    const int64_t major = s->format == SBX_CSR ? s->nrows : s->ncols;
    for (int64_t l = 0; l < major; l++)
        for (int64_t p = s->indptr[l]; p < s->indptr[l + 1]; p++) {
            const int64_t r = s->format == SBX_CSR ? l : s->indices[p], c = s->format == SBX_CSR ? s->indices[p] : l;
            d[r * s->ncols + c] += get(s->data, s->dtype, p);
        }
    return d;
}

static double *dense_ref(const sbx_array *a) {
    const int64_t n = sbx_array_numel(a);
    double *d = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    assert_non_null(d);
    for (int64_t i = 0; i < n; i++) d[i] = get(a->data, a->dtype, i);
    return d;
}

/* c (rows x cols) = op(a) op(b), op(a) rows x k, a stored ar x ac (transposed when ta), the same for b. */
static void ref_mm(const double *a, int64_t ar, int64_t ac, int ta, const double *b, int64_t br, int64_t bc, int tb,
                   double *c) {
    const int64_t rows = ta ? ac : ar, k = ta ? ar : ac, cols = tb ? br : bc;
    assert_int_equal(k, tb ? bc : br);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double s = 0;
            for (int64_t t = 0; t < k; t++)
                s += (ta ? a[t * ac + i] : a[i * ac + t]) * (tb ? b[j * bc + t] : b[t * bc + j]);
            c[i * cols + j] = s;
        }
}

/* max |got - want| <= tol * max(1, max |want|). */
static void near(const double *got, const double *want, int64_t n, double tol, const char *what) {
    double scale = 1, err = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (int64_t i = 0; i < n; i++) err = fmax(err, fabs(got[i] - want[i]));
    if (err > tol * scale) fail_msg("%s: max error %g > %g x %g", what, err, tol, scale);
}

static void same_sparse(const sbx_sparse *a, const sbx_sparse *b) {
    assert_int_equal(a->format, b->format);
    assert_int_equal(a->dtype, b->dtype);
    assert_int_equal(a->nrows, b->nrows);
    assert_int_equal(a->ncols, b->ncols);
    assert_int_equal(a->nnz, b->nnz);
    const int64_t major = a->format == SBX_CSR ? a->nrows : a->ncols;
    assert_memory_equal(a->indptr, b->indptr, (size_t)(major + 1) * sizeof(int64_t));
    if (a->nnz == 0) return;
    assert_memory_equal(a->indices, b->indices, (size_t)a->nnz * sizeof(int64_t));
    assert_memory_equal(a->data, b->data, (size_t)a->nnz * sbx_dtype_size(a->dtype));
}

static int same_structure(const sbx_sparse *a, const sbx_sparse *b) {
    const int64_t major = a->format == SBX_CSR ? a->nrows : a->ncols;
    if (a->format != b->format || a->nrows != b->nrows || a->ncols != b->ncols || a->nnz != b->nnz) return 0;
    if (memcmp(a->indptr, b->indptr, (size_t)(major + 1) * sizeof(int64_t)) != 0) return 0;
    return a->nnz == 0 || memcmp(a->indices, b->indices, (size_t)a->nnz * sizeof(int64_t)) == 0;
}

static sbx_value dv(sbx_array *a) {
    sbx_value v = {a, NULL};
    return v;
}
static sbx_value sv(sbx_sparse *s) {
    sbx_value v = {NULL, s};
    return v;
}

/* ------------------------------------------------------------------------------------------------
 * Graphs: inputs, applies, and a small evaluator that performs owner nodes recursively.
 * ---------------------------------------------------------------------------------------------- */
static sbx_var *input(sbx_graph *g, const char *name, sbx_type t) {
    sbx_var *v = NULL;
    CHECK_OK(sbx_graph_input(g, name, &t, &v));
    return v;
}

static sbx_status try_apply(sbx_graph *g, const sbx_op_class *cls, const void *props, int nin, sbx_var *a, sbx_var *b,
                            sbx_var *c, sbx_var **out) {
    sbx_var *in[3] = {a, b, c};
    return sbx_apply(g, cls, props, nin, in, out);
}

static sbx_var *apply(sbx_graph *g, const sbx_op_class *cls, const void *props, int nin, sbx_var *a, sbx_var *b,
                      sbx_var *c) {
    sbx_var *out = NULL;
    CHECK_OK(try_apply(g, cls, props, nin, a, b, c, &out));
    assert_non_null(out);
    return out;
}

static sbx_type sparse_type(const sbx_sparse *s) { return sbx_type_sparse(s->format, s->dtype, s->nrows, s->ncols); }
static sbx_type dense_type(const sbx_array *a) { return sbx_type_dense(a->dtype, a->ndim, a->shape); }

#define ENV_MAX 64
typedef struct {
    sbx_var *var[ENV_MAX];
    sbx_value val[ENV_MAX];
    int owned[ENV_MAX];
    int n;
} env;

static void bind(env *e, sbx_var *v, sbx_value val) {
    assert_true(e->n < ENV_MAX);
    e->var[e->n] = v;
    e->val[e->n] = val;
    e->owned[e->n++] = 0;
}

static sbx_value *lookup(env *e, const sbx_var *v) {
    for (int i = 0; i < e->n; i++)
        if (e->var[i] == v) return &e->val[i];
    return NULL;
}

/* v's value: bound, a constant's, or its owner node performed (once) on its inputs' values. */
static sbx_value eval(env *e, sbx_var *v) {
    sbx_value *have = lookup(e, v);
    if (have) return *have;
    if (sbx_var_value(v)) return *sbx_var_value(v);
    sbx_node *n = sbx_var_owner(v);
    assert_non_null(n);
    sbx_value in[SBX_OP_MAX_INPUTS], out[SBX_OP_MAX_OUTPUTS];
    memset(out, 0, sizeof out);
    for (int i = 0; i < sbx_node_ninputs(n); i++) in[i] = eval(e, sbx_node_input(n, i));
    CHECK_OK(sbx_node_perform(n, in, out, 11));
    for (int j = 0; j < sbx_node_noutputs(n); j++) {
        assert_true(e->n < ENV_MAX);
        e->var[e->n] = sbx_node_output(n, j);
        e->val[e->n] = out[j];
        e->owned[e->n++] = 1;
    }
    return *lookup(e, v);
}

static void env_free(env *e) {
    for (int i = 0; i < e->n; i++)
        if (e->owned[i]) sbx_value_clear(&e->val[i]);
    e->n = 0;
}

static const char *class_name(const sbx_var *v) {
    const sbx_node *n = sbx_var_owner(v);
    return n ? sbx_node_op(n).cls->name : "(none)";
}

/* ------------------------------------------------------------------------------------------------
 * The classes' tables and identity.
 * ---------------------------------------------------------------------------------------------- */
static const sbx_op_class *const classes[] = {
    &sbx_op_binomial,          &sbx_op_multinomial,       &sbx_op_poisson,
    &sbx_op_structured_dot,    &sbx_op_sampled_dot,       &sbx_op_eliminate_zeros,
    &sbx_op_dense_from_sparse, &sbx_op_sparse_from_dense, &sbx_op_sparse_like};

static void test_classes_and_identity(void **state) {
    (void)state;
    char buf[128];
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
        const sbx_op_class *c = classes[i];
        assert_non_null(c->name);
        assert_true(c->props_equal && c->props_hash && c->props_str && c->make_node && c->infer_shape && c->perform &&
                    c->grad && c->connection_pattern);
        assert_null(c->state_free); /* none keeps a state */
        if (c->props_size == 0) {
            sbx_op a = {c, NULL}, b = {c, NULL};
            assert_true(sbx_op_equal(&a, &b));
            assert_true(sbx_op_hash(&a) == sbx_op_hash(&b));
            assert_int_equal(c->props_str(NULL, buf, sizeof buf), 0);
            assert_true(c->props_equal(NULL, NULL));
        }
    }
    /* Binomial(csr, float32) twice equal and hashing equal; float64 or csc not. */
    sbx_binomial_props p1 = {SBX_CSR, SBX_FLOAT32}, p2 = {SBX_CSR, SBX_FLOAT32}, p3 = {SBX_CSR, SBX_FLOAT64},
                       p4 = {SBX_CSC, SBX_FLOAT32};
    sbx_op a = {&sbx_op_binomial, &p1}, b = {&sbx_op_binomial, &p2}, c = {&sbx_op_binomial, &p3},
           d = {&sbx_op_binomial, &p4};
    assert_true(sbx_op_equal(&a, &b));
    assert_true(sbx_op_hash(&a) == sbx_op_hash(&b));
    assert_false(sbx_op_equal(&a, &c));
    assert_false(sbx_op_equal(&a, &d));
    assert_true(sbx_op_hash(&a) != sbx_op_hash(&c));
    sbx_op_binomial.props_str(&p3, buf, sizeof buf);
    assert_string_equal(buf, "format=csr dtype=float64");
    /* Property structs of the other classes. */
    sbx_structured_dot_props s0 = {0}, s1 = {1}, s1b = {1};
    sbx_op o0 = {&sbx_op_structured_dot, &s0}, o1 = {&sbx_op_structured_dot, &s1}, o1b = {&sbx_op_structured_dot, &s1b};
    assert_true(sbx_op_equal(&o1, &o1b) && sbx_op_hash(&o1) == sbx_op_hash(&o1b));
    assert_false(sbx_op_equal(&o0, &o1));
    sbx_op_structured_dot.props_str(&s1, buf, sizeof buf);
    assert_string_equal(buf, "transpose_sparse=1");
    sbx_sampled_dot_props d01 = {0, 1}, d10 = {1, 0}, d01b = {0, 1};
    sbx_op q01 = {&sbx_op_sampled_dot, &d01}, q10 = {&sbx_op_sampled_dot, &d10}, q01b = {&sbx_op_sampled_dot, &d01b};
    assert_true(sbx_op_equal(&q01, &q01b) && sbx_op_hash(&q01) == sbx_op_hash(&q01b));
    assert_false(sbx_op_equal(&q01, &q10));
    sbx_op_sampled_dot.props_str(&d10, buf, sizeof buf);
    assert_string_equal(buf, "transpose_x=1 transpose_y=0");
    sbx_format_props fr = {SBX_CSR}, fc = {SBX_CSC}, fr2 = {SBX_CSR};
    sbx_op f1 = {&sbx_op_sparse_from_dense, &fr}, f2 = {&sbx_op_sparse_from_dense, &fc},
           f3 = {&sbx_op_sparse_from_dense, &fr2};
    assert_true(sbx_op_equal(&f1, &f3) && !sbx_op_equal(&f1, &f2));
    sbx_op_sparse_from_dense.props_str(&fc, buf, sizeof buf);
    assert_string_equal(buf, "format=csc");
    /* Different classes without properties differ. */
    sbx_op pz = {&sbx_op_poisson, NULL}, mn = {&sbx_op_multinomial, NULL};
    assert_false(sbx_op_equal(&pz, &mn));
}

/* ------------------------------------------------------------------------------------------------
 * Random ops.
 * ---------------------------------------------------------------------------------------------- */
static void test_binomial(void **state) {
    (void)state;
    sbx_graph *g = NULL;
    CHECK_OK(sbx_graph_create(&g));
    const int64_t two = 2, three = 3;
    sbx_var *n = input(g, "n", sbx_type_dense(SBX_INT64, 0, NULL)),
            *p = input(g, "p", sbx_type_dense(SBX_FLOAT64, 0, NULL));
    sbx_var *shape = input(g, "shape", sbx_type_dense(SBX_INT64, 1, &two)), *out = NULL;
    sbx_var *nf = input(g, "nf", sbx_type_dense(SBX_FLOAT64, 0, NULL)),
            *pi = input(g, "pi", sbx_type_dense(SBX_INT32, 0, NULL));
    sbx_var *shape3 = input(g, "s3", sbx_type_dense(SBX_INT64, 1, &three));
    sbx_var *shapef = input(g, "sf", sbx_type_dense(SBX_FLOAT64, 1, &two));
    const sbx_binomial_props bp = {SBX_CSR, SBX_FLOAT32}, bad = {(sbx_format)5, SBX_FLOAT32};
    /* make_node's refusals, as the original's asserts. */
    CHECK_ERR(try_apply(g, &sbx_op_binomial, &bp, 3, nf, p, shape, &out), SBX_ERR_ARG, "Binomial: input 0 (n)",
              "integer", "got float64[]");
    CHECK_ERR(try_apply(g, &sbx_op_binomial, &bp, 3, n, pi, shape, &out), SBX_ERR_ARG, "Binomial: input 1 (p)", "float",
              "got int32[]");
    CHECK_ERR(try_apply(g, &sbx_op_binomial, &bp, 3, n, p, shape3, &out), SBX_ERR_ARG, "Binomial: input 2 (shape)",
              "integer vector of 2", "got int64[3]");
    CHECK_ERR(try_apply(g, &sbx_op_binomial, &bp, 3, n, p, shapef, &out), SBX_ERR_ARG, "Binomial: input 2 (shape)",
              "got float64[2]");
    CHECK_ERR(try_apply(g, &sbx_op_binomial, &bp, 2, n, p, NULL, &out), SBX_ERR_ARG, "Binomial", "3 inputs");
    CHECK_ERR(try_apply(g, &sbx_op_binomial, &bad, 3, n, p, shape, &out), SBX_ERR_ARG, "Binomial", "format 5");
    assert_null(out);

    out = apply(g, &sbx_op_binomial, &bp, 3, n, p, shape);
    const sbx_type want = sbx_type_sparse(SBX_CSR, SBX_FLOAT32, -1, -1);
    assert_true(sbx_type_equal(sbx_var_type(out), &want));
    sbx_node *node = sbx_var_owner(out);
    sbx_array *nv = scalar_i64(5), *pv = scalar_f64(0.3), *sh = NULL;
    CHECK_OK(sbx_array_create(SBX_INT64, 1, &two, &sh));
    ((int64_t *)sh->data)[0] = 40;
    ((int64_t *)sh->data)[1] = 30;
    const sbx_value in[3] = {dv(nv), dv(pv), dv(sh)};

    /* infer_shape reads shape's values. */
    sbx_type t;
    CHECK_OK(sbx_node_infer_shape(node, in, &t));
    const sbx_type full = sbx_type_sparse(SBX_CSR, SBX_FLOAT32, 40, 30);
    assert_true(sbx_type_equal(&t, &full));

    /* Deterministic for a seed, the samplers' bytes for (call seed, node stream), different for another seed. */
    sbx_value a = {0}, b = {0}, c = {0};
    CHECK_OK(sbx_node_perform(node, in, &a, 1));
    CHECK_OK(sbx_node_perform(node, in, &b, 1));
    CHECK_OK(sbx_node_perform(node, in, &c, 2));
    assert_non_null(a.sparse);
    assert_true(sbx_type_accepts(&full, &a));
    same_sparse(a.sparse, b.sparse);
    assert_true(a.sparse->nnz != c.sparse->nnz ||
                memcmp(a.sparse->indices, c.sparse->indices, (size_t)a.sparse->nnz * sizeof(int64_t)) != 0 ||
                memcmp(a.sparse->data, c.sparse->data, (size_t)a.sparse->nnz * sizeof(float)) != 0);
    sbx_rng rng = {sbx_op_call_seed(1, 0), (uint32_t)sbx_node_id(node)};
    sbx_sparse *direct = NULL;
    CHECK_OK(sbx_random_binomial(&rng, 5, 0.3, 40, 30, SBX_CSR, SBX_FLOAT32, &direct));
    same_sparse(a.sparse, direct);
    sbx_sparse_free(direct);
    assert_true(a.sparse->nnz > 500); /* P(non-zero) = 1 - 0.7^5 = 0.83 of 1200 cells */

    /* The storage's struct is kept. */
    sbx_sparse *kept = c.sparse;
    CHECK_OK(sbx_node_perform(node, in, &c, 1));
    assert_ptr_equal(c.sparse, kept);
    same_sparse(a.sparse, c.sparse);

    /* A bad shape value or p at perform. */
    ((int64_t *)sh->data)[1] = -3;
    CHECK_ERR(sbx_node_perform(node, in, &c, 1), SBX_ERR_ARG, "Binomial: input 2 (shape)", "negative");
    ((int64_t *)sh->data)[1] = 30;
    *(double *)pv->data = 1.5;
    CHECK_ERR(sbx_node_perform(node, in, &c, 1), SBX_ERR_ARG, "Binomial", "outside [0, 1]");

    /* grad: undefined, undefined, disconnected, as sbx_random_op_grad; the pattern [[1], [1], [0]]. */
    sbx_var *gz = input(g, "gz", full), *gin[3];
    sbx_grad answer[3];
    const char *reason[3];
    int pattern[3];
    CHECK_OK(sbx_node_grad(g, node, &gz, gin, answer, reason));
    for (int i = 0; i < 3; i++) {
        sbx_grad r;
        CHECK_OK(sbx_random_op_grad(SBX_RANDOM_BINOMIAL, i, &r));
        assert_int_equal(answer[i], r);
        assert_null(gin[i]);
    }
    assert_int_equal(answer[0], SBX_GRAD_UNDEFINED);
    assert_int_equal(answer[2], SBX_GRAD_DISCONNECTED);
    assert_non_null(strstr(reason[0], "Binomial: a random draw has no gradient"));
    assert_non_null(strstr(reason[1], "probability p"));
    sbx_node_connection_pattern(node, pattern);
    assert_true(pattern[0] == 1 && pattern[1] == 1 && pattern[2] == 0);

    sbx_value_clear(&a);
    sbx_value_clear(&b);
    sbx_value_clear(&c);
    sbx_array_free(nv);
    sbx_array_free(pv);
    sbx_array_free(sh);
    sbx_graph_free(g);
}

/* Rows of p: positive values at about half the columns (always one), each row summing to 1. */
static sbx_sparse *probabilities(int64_t rows, int64_t cols) {
    double *v = calloc((size_t)(rows * cols), sizeof(double));
    assert_non_null(v);
    for (int64_t r = 0; r < rows; r++) {
        double sum = 0;
        for (int64_t c = 0; c < cols; c++)
            if (c == r % cols || rng_unit() < 0.5) sum += v[r * cols + c] = 0.1 + rng_unit();
        for (int64_t c = 0; c < cols; c++) v[r * cols + c] /= sum;
    }
    sbx_array *a = dense_of(SBX_FLOAT64, rows, cols, v);
    sbx_sparse *s = NULL;
    CHECK_OK(sbx_sparse_from_dense(a, SBX_CSR, &s));
    sbx_array_free(a);
    free(v);
    return s;
}

static void test_multinomial(void **state) {
    (void)state;
    rng_seed(21);
    sbx_graph *g = NULL;
    CHECK_OK(sbx_graph_create(&g));
    sbx_sparse *pcsr = probabilities(20, 6), *pcsc = NULL;
    CHECK_OK(sbx_sparse_convert(pcsr, SBX_CSC, &pcsc));
    const int64_t rows = 20, three = 3;
    sbx_var *n = input(g, "n", sbx_type_dense(SBX_INT32, 0, NULL));
    sbx_var *nrow = input(g, "nrow", sbx_type_dense(SBX_INT64, 1, &rows));
    sbx_var *n3 = input(g, "n3", sbx_type_dense(SBX_INT64, 1, &three));
    sbx_var *nf = input(g, "nf", sbx_type_dense(SBX_FLOAT64, 0, NULL));
    sbx_var *p = input(g, "p", sparse_type(pcsr)), *pc = input(g, "pc", sparse_type(pcsc));
    const int64_t shape[2] = {20, 6};
    sbx_var *pd = input(g, "pd", sbx_type_dense(SBX_FLOAT64, 2, shape)), *out = NULL;
    CHECK_ERR(try_apply(g, &sbx_op_multinomial, NULL, 2, n, pd, NULL, &out), SBX_ERR_ARG, "Multinomial: input 1 (p)",
              "sparse", "got float64[20,6]");
    CHECK_ERR(try_apply(g, &sbx_op_multinomial, NULL, 2, nf, p, NULL, &out), SBX_ERR_ARG, "Multinomial: input 0 (n)",
              "integer", "got float64[]");
    CHECK_ERR(try_apply(g, &sbx_op_multinomial, NULL, 2, n3, p, NULL, &out), SBX_ERR_ARG, "Multinomial: input 0 (n)",
              "one per row of p (20)", "got int64[3]");

    sbx_array *nv = NULL, *nr = NULL;
    CHECK_OK(sbx_array_create(SBX_INT32, 0, NULL, &nv));
    *(int32_t *)nv->data = 10;
    CHECK_OK(sbx_array_create(SBX_INT64, 1, &rows, &nr));
    for (int64_t r = 0; r < rows; r++) ((int64_t *)nr->data)[r] = r % 5;
    for (int k = 0; k < 3; k++) { /* csr p, csc p (which the original refused), and n per row */
        sbx_sparse *pv = k == 1 ? pcsc : pcsr;
        out = apply(g, &sbx_op_multinomial, NULL, 2, k == 2 ? nrow : n, k == 1 ? pc : p, NULL);
        assert_true(sbx_type_equal(sbx_var_type(out), sbx_var_type(k == 1 ? pc : p)));
        sbx_node *node = sbx_var_owner(out);
        const sbx_value in[2] = {dv(k == 2 ? nr : nv), sv(pv)};
        sbx_value a = {0}, b = {0}, c = {0};
        sbx_type t;
        CHECK_OK(sbx_node_infer_shape(node, in, &t));
        assert_true(sbx_type_equal(&t, sbx_var_type(out)));
        CHECK_OK(sbx_node_perform(node, in, &a, 5));
        CHECK_OK(sbx_node_perform(node, in, &b, 5));
        CHECK_OK(sbx_node_perform(node, in, &c, 6));
        same_sparse(a.sparse, b.sparse);
        assert_true(same_structure(a.sparse, pv)); /* p's structure, zero counts kept */
        assert_memory_not_equal(a.sparse->data, c.sparse->data, (size_t)a.sparse->nnz * sizeof(double));
        sbx_rng rng = {sbx_op_call_seed(5, 0), (uint32_t)sbx_node_id(node)};
        sbx_sparse *direct = NULL;
        CHECK_OK(sbx_random_multinomial(&rng, in[0].dense, pv, 0, &direct));
        same_sparse(a.sparse, direct);
        sbx_sparse_free(direct);
        double *d = sparse_ref(a.sparse);
        for (int64_t r = 0; r < rows; r++) {
            double sum = 0;
            for (int64_t col = 0; col < 6; col++) sum += d[r * 6 + col];
            assert_true(sum == (k == 2 ? (double)(r % 5) : 10.0));
        }
        free(d);
        sbx_sparse *kept = c.sparse;
        CHECK_OK(sbx_node_perform(node, in, &c, 5));
        assert_ptr_equal(c.sparse, kept);
        /* grad: undefined for n and p; every input connected. */
        sbx_var *gz = input(g, "gz", *sbx_var_type(out)), *gin[2];
        sbx_grad answer[2];
        const char *reason[2];
        int pattern[2];
        CHECK_OK(sbx_node_grad(g, node, &gz, gin, answer, reason));
        assert_true(answer[0] == SBX_GRAD_UNDEFINED && answer[1] == SBX_GRAD_UNDEFINED);
        assert_non_null(strstr(reason[0], "Multinomial"));
        assert_non_null(strstr(reason[1], "no gradient"));
        sbx_node_connection_pattern(node, pattern);
        assert_true(pattern[0] == 1 && pattern[1] == 1);
        sbx_value_clear(&a);
        sbx_value_clear(&b);
        sbx_value_clear(&c);
    }
    /* A row not summing to 1 is the sampler's error, named by the op. */
    ((double *)pcsr->data)[0] += 0.5;
    out = apply(g, &sbx_op_multinomial, NULL, 2, n, p, NULL);
    sbx_value in[2] = {dv(nv), sv(pcsr)}, a = {0};
    CHECK_ERR(sbx_node_perform(sbx_var_owner(out), in, &a, 1), SBX_ERR_ARG, "Multinomial", "row 0");
    assert_null(a.sparse);
    sbx_array_free(nv);
    sbx_array_free(nr);
    sbx_sparse_free(pcsr);
    sbx_sparse_free(pcsc);
    sbx_graph_free(g);
}

static void test_poisson(void **state) {
    (void)state;
    rng_seed(22);
    sbx_graph *g = NULL;
    CHECK_OK(sbx_graph_create(&g));
    sbx_sparse *x = random_sparse(SBX_CSC, SBX_FLOAT64, 30, 25, 0.3);
    for (int64_t k = 0; k < x->nnz; k++) ((double *)x->data)[k] = 3 * fabs(((double *)x->data)[k]);
    const int64_t shape[2] = {30, 25};
    sbx_var *xv = input(g, "x", sparse_type(x)), *xd = input(g, "xd", sbx_type_dense(SBX_FLOAT64, 2, shape)),
            *out = NULL;
    CHECK_ERR(try_apply(g, &sbx_op_poisson, NULL, 1, xd, NULL, NULL, &out), SBX_ERR_ARG, "Poisson: input 0 (x)",
              "sparse", "got float64[30,25]");
    out = apply(g, &sbx_op_poisson, NULL, 1, xv, NULL, NULL);
    assert_true(sbx_type_equal(sbx_var_type(out), sbx_var_type(xv)));
    sbx_node *node = sbx_var_owner(out);
    const sbx_value in[1] = {sv(x)};
    sbx_type t;
    CHECK_OK(sbx_node_infer_shape(node, in, &t));
    assert_true(sbx_type_equal(&t, sbx_var_type(xv)));
    sbx_value a = {0}, b = {0}, c = {0};
    CHECK_OK(sbx_node_perform(node, in, &a, 9));
    CHECK_OK(sbx_node_perform(node, in, &b, 9));
    CHECK_OK(sbx_node_perform(node, in, &c, 10));
    same_sparse(a.sparse, b.sparse);
    assert_true(a.sparse->nnz != c.sparse->nnz ||
                memcmp(a.sparse->data, c.sparse->data, (size_t)a.sparse->nnz * 8) != 0);
    sbx_rng rng = {sbx_op_call_seed(9, 0), (uint32_t)sbx_node_id(node)};
    sbx_sparse *direct = NULL;
    CHECK_OK(sbx_random_poisson(&rng, x, &direct));
    same_sparse(a.sparse, direct);
    sbx_sparse_free(direct);
    for (int64_t k = 0; k < a.sparse->nnz; k++) assert_true(((double *)a.sparse->data)[k] >= 1); /* zeros dropped */
    sbx_sparse *kept = c.sparse;
    CHECK_OK(sbx_node_perform(node, in, &c, 9));
    assert_ptr_equal(c.sparse, kept);
    sbx_var *gz = input(g, "gz", *sbx_var_type(out)), *gin[1];
    sbx_grad answer[1];
    const char *reason[1];
    int pattern[1] = {0};
    CHECK_OK(sbx_node_grad(g, node, &gz, gin, answer, reason));
    assert_int_equal(answer[0], SBX_GRAD_UNDEFINED);
    assert_non_null(strstr(reason[0], "Poisson"));
    sbx_node_connection_pattern(node, pattern);
    assert_int_equal(pattern[0], 1);
    sbx_value_clear(&a);
    sbx_value_clear(&b);
    sbx_value_clear(&c);
    sbx_sparse_free(x);
    sbx_graph_free(g);
}

/* ------------------------------------------------------------------------------------------------
 * StructuredDot.
 * ---------------------------------------------------------------------------------------------- */
/* One case: the sparse operand on the left (C = op(S) D) or the right (C = D op(S)); op(S) is rows x cols. */
typedef struct {
    sbx_format format;
    sbx_dtype dtype;
    int transpose, left;
    int64_t m, k, n; /* C = (m x k) (k x n) */
} sdot_case;

static void make_sdot_operands(const sdot_case *c, sbx_sparse **s, sbx_array **d) {
    /* op(S) is m x k (left) or k x n (right); S is stored transposed when c->transpose. */
    const int64_t r = c->left ? c->m : c->k, q = c->left ? c->k : c->n;
    *s = random_sparse(c->format, c->dtype, c->transpose ? q : r, c->transpose ? r : q, 0.4);
    *d = random_dense(c->dtype, c->left ? c->k : c->m, c->left ? c->n : c->k);
}

static void sdot_reference(const sdot_case *c, const sbx_sparse *s, const sbx_array *d, double *out) {
    double *sr = sparse_ref(s), *dr = dense_ref(d);
    if (c->left)
        ref_mm(sr, s->nrows, s->ncols, c->transpose, dr, d->shape[0], d->shape[1], 0, out);
    else
        ref_mm(dr, d->shape[0], d->shape[1], 0, sr, s->nrows, s->ncols, c->transpose, out);
    free(sr);
    free(dr);
}

static void test_structured_dot_values(void **state) {
    (void)state;
    rng_seed(31);
    for (int f = 0; f < 2; f++)
        for (int dt = 0; dt < 2; dt++)
            for (int t = 0; t < 2; t++)
                for (int left = 0; left < 2; left++) {
                    const sdot_case c = {f ? SBX_CSC : SBX_CSR, dt ? SBX_FLOAT64 : SBX_FLOAT32, t, left, 9, 7, 5};
                    sbx_sparse *s;
                    sbx_array *d;
                    make_sdot_operands(&c, &s, &d);
                    sbx_graph *g = NULL;
                    CHECK_OK(sbx_graph_create(&g));
                    /* Extents unknown in the dense operand's type: checked at perform. */
                    sbx_var *vs = input(g, "s", sparse_type(s)), *vd = input(g, "d", sbx_type_dense(c.dtype, 2, NULL));
                    const sbx_structured_dot_props pr = {t};
                    sbx_var *out = apply(g, &sbx_op_structured_dot, &pr, 2, left ? vs : vd, left ? vd : vs, NULL);
                    const sbx_type *ot = sbx_var_type(out);
                    assert_true(ot->kind == SBX_KIND_DENSE && ot->dtype == c.dtype && ot->ndim == 2);
                    assert_int_equal(ot->shape[0], left ? 9 : -1);
                    assert_int_equal(ot->shape[1], left ? -1 : 5);
                    sbx_node *node = sbx_var_owner(out);
                    const sbx_value in[2] = {left ? sv(s) : dv(d), left ? dv(d) : sv(s)};
                    sbx_type it;
                    CHECK_OK(sbx_node_infer_shape(node, in, &it));
                    assert_true(it.shape[0] == 9 && it.shape[1] == 5);
                    sbx_value o = {0};
                    CHECK_OK(sbx_node_perform(node, in, &o, 0));
                    assert_true(sbx_type_accepts(&it, &o));
                    double want[45], *got = dense_ref(o.dense);
                    sdot_reference(&c, s, d, want);
                    near(got, want, 45, dt ? 1e-13 : 1e-5, "StructuredDot");
                    /* The same through the public products (transposing by sbx_sparse_transpose). */
                    sbx_sparse *st = s;
                    sbx_array *pub = NULL;
                    if (t) CHECK_OK(sbx_sparse_transpose(s, &st));
                    CHECK_OK(left ? sbx_sparse_dot_dense(st, d, &pub) : sbx_dense_dot_sparse(d, st, &pub));
                    assert_memory_equal(pub->data, o.dense->data, 45 * sbx_dtype_size(c.dtype));
                    if (t) sbx_sparse_free(st);
                    sbx_array_free(pub);
                    /* Storage reuse: the same array, whatever it held. */
                    sbx_array *kept = o.dense;
                    for (int i = 0; i < 45; i++) put(kept->data, c.dtype, i, NAN);
                    CHECK_OK(sbx_node_perform(node, in, &o, 0));
                    assert_ptr_equal(o.dense, kept);
                    free(got);
                    got = dense_ref(o.dense);
                    near(got, want, 45, dt ? 1e-13 : 1e-5, "StructuredDot again");
                    free(got);
                    sbx_value_clear(&o);
                    sbx_array_free(d);
                    sbx_sparse_free(s);
                    sbx_graph_free(g);
                }
}

static void test_structured_dot_refusals(void **state) {
    (void)state;
    sbx_graph *g = NULL;
    CHECK_OK(sbx_graph_create(&g));
    const int64_t s45[2] = {4, 5}, s54[2] = {5, 4}, s42[2] = {4, 2};
    sbx_var *sp = input(g, "s", sbx_type_sparse(SBX_CSR, SBX_FLOAT64, 3, 5));
    sbx_var *spi = input(g, "si", sbx_type_sparse(SBX_CSR, SBX_INT32, 3, 5));
    sbx_var *d32 = input(g, "d32", sbx_type_dense(SBX_FLOAT32, 2, s54));
    sbx_var *d42 = input(g, "d42", sbx_type_dense(SBX_FLOAT64, 2, s42));
    sbx_var *d45 = input(g, "d45", sbx_type_dense(SBX_FLOAT64, 2, s45));
    sbx_var *d1 = input(g, "d1", sbx_type_dense(SBX_FLOAT64, 1, s45)), *out = NULL;
    const sbx_structured_dot_props p0 = {0}, p1 = {1}, p2 = {2};
    CHECK_ERR(try_apply(g, &sbx_op_structured_dot, &p0, 2, sp, d32, NULL, &out), SBX_ERR_ARG,
              "StructuredDot: input 1 (b)", "float64", "got float32[5,4]");
    CHECK_ERR(try_apply(g, &sbx_op_structured_dot, &p0, 2, sp, d42, NULL, &out), SBX_ERR_ARG,
              "StructuredDot: input 1 (b)", "expected 5 rows", "got float64[4,2]");
    CHECK_ERR(try_apply(g, &sbx_op_structured_dot, &p0, 2, d45, sp, NULL, &out), SBX_ERR_ARG,
              "StructuredDot: input 0 (a)", "expected 3 columns", "got float64[4,5]");
    CHECK_ERR(try_apply(g, &sbx_op_structured_dot, &p1, 2, sp, d45, NULL, &out), SBX_ERR_ARG,
              "StructuredDot: input 1 (b)", "expected 3 rows", "transposed", "got float64[4,5]");
    CHECK_ERR(try_apply(g, &sbx_op_structured_dot, &p0, 2, d45, d42, NULL, &out), SBX_ERR_ARG,
              "StructuredDot: input 0 (a)", "sparse");
    CHECK_ERR(try_apply(g, &sbx_op_structured_dot, &p0, 2, sp, sp, NULL, &out), SBX_ERR_ARG,
              "StructuredDot: input 1 (b)", "dense");
    CHECK_ERR(try_apply(g, &sbx_op_structured_dot, &p0, 2, spi, d45, NULL, &out), SBX_ERR_ARG,
              "StructuredDot: input 0 (a)", "float32 or float64", "int32");
    CHECK_ERR(try_apply(g, &sbx_op_structured_dot, &p0, 2, sp, d1, NULL, &out), SBX_ERR_ARG,
              "StructuredDot: input 1 (b)", "2-d");
    CHECK_ERR(try_apply(g, &sbx_op_structured_dot, &p2, 2, sp, d45, NULL, &out), SBX_ERR_ARG, "StructuredDot",
              "transpose_sparse is 2");
    assert_null(out);
    /* d45 as a (4 x 5) times s (3 x 5) transposed is fine; shapes unknown in the type are checked at perform. */
    out = apply(g, &sbx_op_structured_dot, &p1, 2, d45, sp, NULL);
    assert_true(sbx_var_type(out)->shape[0] == 4 && sbx_var_type(out)->shape[1] == 3);
    sbx_var *du = input(g, "du", sbx_type_dense(SBX_FLOAT64, 2, NULL));
    sbx_var *su = input(g, "su", sbx_type_sparse(SBX_CSR, SBX_FLOAT64, -1, -1));
    out = apply(g, &sbx_op_structured_dot, &p0, 2, su, du, NULL);
    sbx_sparse *s = random_sparse(SBX_CSR, SBX_FLOAT64, 3, 5, 0.5);
    sbx_array *d = random_dense(SBX_FLOAT64, 4, 2);
    sbx_value in[2] = {sv(s), dv(d)}, o = {0};
    CHECK_ERR(sbx_node_perform(sbx_var_owner(out), in, &o, 0), SBX_ERR_ARG, "StructuredDot: input 1 (b)", "has 4 rows",
              "3 x 5");
    assert_null(o.dense);
    /* A broken structure is found before any product. */
    s->indices[0] = 99;
    sbx_array *d5 = random_dense(SBX_FLOAT64, 5, 2);
    in[1] = dv(d5);
    CHECK_ERR(sbx_node_perform(sbx_var_owner(out), in, &o, 0), SBX_ERR_FORMAT, "StructuredDot", "index 99");
    sbx_value_clear(&o);
    sbx_array_free(d5);
    sbx_array_free(d);
    sbx_sparse_free(s);
    sbx_graph_free(g);
}

/* The cost sum(W .* C) of a StructuredDot node on (s, d). */
static double sdot_cost(const sbx_node *node, const sdot_case *c, const sbx_sparse *s, sbx_array *d, const double *w) {
    const sbx_value in[2] = {c->left ? sv((sbx_sparse *)s) : dv(d), c->left ? dv(d) : sv((sbx_sparse *)s)};
    sbx_value o = {0};
    CHECK_OK(sbx_node_perform(node, in, &o, 0));
    double cost = 0;
    for (int64_t i = 0; i < c->m * c->n; i++) cost += w[i] * get(o.dense->data, o.dense->dtype, i);
    sbx_value_clear(&o);
    return cost;
}

/* Central differences of f at every element of data (count n), against the analytic values want. */
#define H 1e-3
static double rel_err(const double *num, const double *ana, int64_t n) {
    double err = 0, scale = 1e-300;
    for (int64_t i = 0; i < n; i++) {
        err = fmax(err, fabs(num[i] - ana[i]));
        scale = fmax(scale, fmax(fabs(num[i]), fabs(ana[i])));
    }
    return err / scale;
}

static void test_structured_dot_grad(void **state) {
    (void)state;
    rng_seed(32);
    for (int f = 0; f < 2; f++)
        for (int t = 0; t < 2; t++)
            for (int left = 0; left < 2; left++) {
                const sdot_case c = {f ? SBX_CSC : SBX_CSR, SBX_FLOAT64, t, left, 5, 7, 4};
                sbx_sparse *s;
                sbx_array *d;
                make_sdot_operands(&c, &s, &d);
                sbx_graph *g = NULL;
                CHECK_OK(sbx_graph_create(&g));
                sbx_var *vs = input(g, "s", sparse_type(s)), *vd = input(g, "d", dense_type(d));
                const sbx_structured_dot_props pr = {t};
                sbx_var *out = apply(g, &sbx_op_structured_dot, &pr, 2, left ? vs : vd, left ? vd : vs, NULL);
                sbx_node *node = sbx_var_owner(out);
                sbx_array *w = random_dense(SBX_FLOAT64, c.m, c.n);
                sbx_var *gc = input(g, "gc", dense_type(w)), *gin[2];
                sbx_grad answer[2];
                const char *reason[2];
                int pattern[2];
                CHECK_OK(sbx_node_grad(g, node, &gc, gin, answer, reason));
                assert_true(answer[0] == SBX_GRAD_DEFINED && answer[1] == SBX_GRAD_DEFINED);
                sbx_node_connection_pattern(node, pattern);
                assert_true(pattern[0] == 1 && pattern[1] == 1);
                sbx_var *gs = gin[left ? 0 : 1], *gd = gin[left ? 1 : 0];
                /* Each gradient has its input's type: the sparse one a SampledDot, the dense one a StructuredDot
                 * with the other transpose. */
                assert_true(sbx_type_equal(sbx_var_type(gs), sbx_var_type(vs)));
                assert_true(sbx_type_equal(sbx_var_type(gd), sbx_var_type(vd)));
                assert_string_equal(class_name(gs), "SampledDot");
                assert_string_equal(class_name(gd), "StructuredDot");
                const sbx_structured_dot_props *gp = sbx_node_op(sbx_var_owner(gd)).props;
                assert_int_equal(gp->transpose_sparse, !t);
                const sbx_sampled_dot_props *sp = sbx_node_op(sbx_var_owner(gs)).props;
                assert_true(sp->transpose_x == !left && sp->transpose_y == left);

                env e = {0};
                bind(&e, vs, sv(s));
                bind(&e, vd, dv(d));
                bind(&e, gc, dv(w));
                const sbx_value gsv = eval(&e, gs), gdv = eval(&e, gd);
                assert_true(same_structure(gsv.sparse, s)); /* stored values only */
                const double *wv = w->data;
                /* The dense operand. */
                const int64_t nd = sbx_array_numel(d);
                double *num = calloc((size_t)nd, sizeof(double)), *ana = dense_ref(gdv.dense);
                for (int64_t i = 0; i < nd; i++) {
                    double *x = (double *)d->data + i, x0 = *x;
                    *x = x0 + H;
                    const double up = sdot_cost(node, &c, s, d, wv);
                    *x = x0 - H;
                    const double down = sdot_cost(node, &c, s, d, wv);
                    *x = x0;
                    num[i] = (up - down) / (2 * H);
                }
                assert_true(rel_err(num, ana, nd) <= 1e-6);
                free(num);
                free(ana);
                /* The sparse operand's stored values. */
                num = calloc((size_t)s->nnz, sizeof(double));
                for (int64_t p = 0; p < s->nnz; p++) {
                    double *x = (double *)s->data + p, x0 = *x;
                    *x = x0 + H;
                    const double up = sdot_cost(node, &c, s, d, wv);
                    *x = x0 - H;
                    const double down = sdot_cost(node, &c, s, d, wv);
                    *x = x0;
                    num[p] = (up - down) / (2 * H);
                }
                assert_true(rel_err(num, gsv.sparse->data, s->nnz) <= 1e-6);
                free(num);
                env_free(&e);
                sbx_array_free(w);
                sbx_array_free(d);
                sbx_sparse_free(s);
                sbx_graph_free(g);
            }
    /* No gradient reaching the output: nothing flows back. */
    sbx_graph *g = NULL;
    CHECK_OK(sbx_graph_create(&g));
    sbx_var *vs = input(g, "s", sbx_type_sparse(SBX_CSR, SBX_FLOAT64, 3, 4));
    sbx_var *vd = input(g, "d", sbx_type_dense(SBX_FLOAT64, 2, NULL)), *none = NULL, *gin[2];
    const sbx_structured_dot_props pr = {0};
    sbx_var *out = apply(g, &sbx_op_structured_dot, &pr, 2, vs, vd, NULL);
    sbx_grad answer[2];
    const char *reason[2];
    CHECK_OK(sbx_node_grad(g, sbx_var_owner(out), &none, gin, answer, reason));
    assert_true(answer[0] == SBX_GRAD_DISCONNECTED && answer[1] == SBX_GRAD_DISCONNECTED);
    sbx_graph_free(g);
}

/* ------------------------------------------------------------------------------------------------
 * SampledDot.
 * ---------------------------------------------------------------------------------------------- */
typedef struct {
    sbx_format format;
    sbx_dtype dtype;
    int tx, ty;
    int64_t m, k, n;
} sampled_case;

static void make_sampled_operands(const sampled_case *c, sbx_array **x, sbx_array **y, sbx_sparse **p, double density) {
    *x = random_dense(c->dtype, c->tx ? c->k : c->m, c->tx ? c->m : c->k);
    *y = random_dense(c->dtype, c->ty ? c->n : c->k, c->ty ? c->k : c->n);
    *p = random_sparse(c->format, c->dtype, c->m, c->n, density);
}

/* The stored values (X Y)[r, c] at p's entries, in p's order. */
static double *sampled_reference(const sampled_case *c, const sbx_array *x, const sbx_array *y, const sbx_sparse *p) {
    double *xr = dense_ref(x), *yr = dense_ref(y), *xy = calloc((size_t)(c->m * c->n), sizeof(double));
    double *want = calloc((size_t)(p->nnz > 0 ? p->nnz : 1), sizeof(double));
    ref_mm(xr, x->shape[0], x->shape[1], c->tx, yr, y->shape[0], y->shape[1], c->ty, xy);
    const int64_t major = p->format == SBX_CSR ? p->nrows : p->ncols;
    for (int64_t l = 0; l < major; l++)
        for (int64_t q = p->indptr[l]; q < p->indptr[l + 1]; q++)
            want[q] = p->format == SBX_CSR ? xy[l * c->n + p->indices[q]] : xy[p->indices[q] * c->n + l];
    free(xr);
    free(yr);
    free(xy);
    return want;
}

static void test_sampled_dot_values(void **state) {
    (void)state;
    rng_seed(41);
    for (int f = 0; f < 2; f++)
        for (int dt = 0; dt < 2; dt++)
            for (int tx = 0; tx < 2; tx++)
                for (int ty = 0; ty < 2; ty++) {
                    const sampled_case c = {f ? SBX_CSC : SBX_CSR, dt ? SBX_FLOAT64 : SBX_FLOAT32, tx, ty, 8, 37, 6};
                    sbx_array *x, *y;
                    sbx_sparse *p;
                    make_sampled_operands(&c, &x, &y, &p, 0.4);
                    sbx_graph *g = NULL;
                    CHECK_OK(sbx_graph_create(&g));
                    sbx_var *vx = input(g, "x", dense_type(x)), *vy = input(g, "y", sbx_type_dense(c.dtype, 2, NULL));
                    sbx_var *vp = input(g, "pattern", sbx_type_sparse(c.format, SBX_FLOAT64, -1, -1));
                    const sbx_sampled_dot_props pr = {tx, ty};
                    sbx_var *out = apply(g, &sbx_op_sampled_dot, &pr, 3, vx, vy, vp);
                    const sbx_type want_t = sbx_type_sparse(c.format, c.dtype, 8, -1);
                    assert_true(sbx_type_equal(sbx_var_type(out), &want_t));
                    sbx_node *node = sbx_var_owner(out);
                    /* The pattern's dtype is not read: a float64 pattern for float32 operands. */
                    sbx_sparse *p64 = p;
                    if (c.dtype != SBX_FLOAT64) CHECK_OK(sbx_sparse_cast(p, SBX_FLOAT64, &p64));
                    const sbx_value in[3] = {dv(x), dv(y), sv(p64)};
                    sbx_type it;
                    CHECK_OK(sbx_node_infer_shape(node, in, &it));
                    assert_true(it.shape[0] == 8 && it.shape[1] == 6);
                    sbx_value o = {0};
                    CHECK_OK(sbx_node_perform(node, in, &o, 0));
                    assert_true(sbx_type_accepts(&it, &o));
                    assert_true(same_structure(o.sparse, p));
                    double *want = sampled_reference(&c, x, y, p), *got = calloc((size_t)p->nnz, sizeof(double));
                    for (int64_t q = 0; q < p->nnz; q++) got[q] = get(o.sparse->data, c.dtype, q);
                    near(got, want, p->nnz, dt ? 1e-13 : 1e-5, "SampledDot");
                    /* Storage reuse: the struct and its arrays (the same nnz). */
                    sbx_sparse *kept = o.sparse;
                    void *kept_data = kept->data;
                    memset(kept->data, 0xff, (size_t)kept->nnz * sbx_dtype_size(c.dtype));
                    CHECK_OK(sbx_node_perform(node, in, &o, 0));
                    assert_ptr_equal(o.sparse, kept);
                    assert_ptr_equal(o.sparse->data, kept_data);
                    for (int64_t q = 0; q < p->nnz; q++) got[q] = get(o.sparse->data, c.dtype, q);
                    near(got, want, p->nnz, dt ? 1e-13 : 1e-5, "SampledDot again");
                    free(want);
                    free(got);
                    sbx_value_clear(&o);
                    if (p64 != p) sbx_sparse_free(p64);
                    sbx_array_free(x);
                    sbx_array_free(y);
                    sbx_sparse_free(p);
                    sbx_graph_free(g);
                }
    /* A pattern with unsorted and duplicate indices: each stored entry gets its value, in the pattern's order. */
    int64_t ip[3] = {0, 3, 4}, ix[4] = {2, 0, 2, 1};
    double pv[4] = {1, 1, 1, 1};
    sbx_sparse pat = {SBX_CSR, SBX_FLOAT64, 2, 3, 4, ip, ix, pv};
    const double xv[4] = {1, 2, 3, 4}, yv[6] = {1, 0, -1, 2, 5, 7}; /* x 2 x 2, y 2 x 3 */
    sbx_array *x = dense_of(SBX_FLOAT64, 2, 2, xv), *y = dense_of(SBX_FLOAT64, 2, 3, yv);
    sbx_graph *g = NULL;
    CHECK_OK(sbx_graph_create(&g));
    const sbx_sampled_dot_props p00 = {0, 0};
    sbx_var *out = apply(g, &sbx_op_sampled_dot, &p00, 3, input(g, "x", dense_type(x)), input(g, "y", dense_type(y)),
                         input(g, "p", sparse_type(&pat)));
    const sbx_value in[3] = {dv(x), dv(y), sv(&pat)};
    sbx_value o = {0};
    CHECK_OK(sbx_node_perform(sbx_var_owner(out), in, &o, 0));
    /* X Y = [[5, 10, 13], [11, 20, 25]] */
    const double want[4] = {13, 5, 13, 20};
    assert_memory_equal(o.sparse->data, want, sizeof want);
    assert_memory_equal(o.sparse->indices, ix, sizeof ix);
    sbx_value_clear(&o);
    sbx_array_free(x);
    sbx_array_free(y);
    sbx_graph_free(g);
}

static void test_sampled_dot_refusals_and_threads(void **state) {
    (void)state;
    rng_seed(42);
    sbx_graph *g = NULL;
    CHECK_OK(sbx_graph_create(&g));
    const int64_t s34[2] = {3, 4}, s45[2] = {4, 5}, s55[2] = {5, 5};
    sbx_var *x = input(g, "x", sbx_type_dense(SBX_FLOAT64, 2, s34)),
            *y = input(g, "y", sbx_type_dense(SBX_FLOAT64, 2, s45));
    sbx_var *y55 = input(g, "y55", sbx_type_dense(SBX_FLOAT64, 2, s55));
    sbx_var *y32 = input(g, "y32", sbx_type_dense(SBX_FLOAT32, 2, s45));
    sbx_var *p35 = input(g, "p", sbx_type_sparse(SBX_CSR, SBX_FLOAT64, 3, 5));
    sbx_var *p36 = input(g, "p36", sbx_type_sparse(SBX_CSC, SBX_FLOAT64, 3, 6)), *out = NULL;
    const sbx_sampled_dot_props p00 = {0, 0}, p01 = {0, 1}, bad = {0, 3};
    CHECK_ERR(try_apply(g, &sbx_op_sampled_dot, &p00, 3, x, y55, p35, &out), SBX_ERR_ARG, "SampledDot: input 1 (y)",
              "expected Y = y with 4 rows", "got float64[5,5]");
    CHECK_ERR(try_apply(g, &sbx_op_sampled_dot, &p01, 3, x, y, p35, &out), SBX_ERR_ARG, "SampledDot: input 1 (y)",
              "y^T");
    CHECK_ERR(try_apply(g, &sbx_op_sampled_dot, &p00, 3, x, y, p36, &out), SBX_ERR_ARG, "SampledDot: input 2 (pattern)",
              "3 x 5", "got csc float64[3,6]");
    CHECK_ERR(try_apply(g, &sbx_op_sampled_dot, &p00, 3, x, y32, p35, &out), SBX_ERR_ARG, "SampledDot: input 1 (y)",
              "float64", "got float32[4,5]");
    CHECK_ERR(try_apply(g, &sbx_op_sampled_dot, &p00, 3, x, y, y, &out), SBX_ERR_ARG, "SampledDot: input 2 (pattern)",
              "sparse");
    CHECK_ERR(try_apply(g, &sbx_op_sampled_dot, &bad, 3, x, y, p35, &out), SBX_ERR_ARG, "SampledDot", "must be 0 or 1");
    assert_null(out);
    sbx_graph_free(g);

    /* The values do not depend on the thread count (work large enough for threads). */
    for (int tx = 0; tx < 2; tx++) {
        const sampled_case c = {SBX_CSR, SBX_FLOAT32, tx, 1, 300, 37, 250};
        sbx_array *xa, *ya;
        sbx_sparse *p;
        make_sampled_operands(&c, &xa, &ya, &p, 0.1);
        CHECK_OK(sbx_graph_create(&g));
        const sbx_sampled_dot_props pr = {tx, 1};
        out = apply(g, &sbx_op_sampled_dot, &pr, 3, input(g, "x", dense_type(xa)), input(g, "y", dense_type(ya)),
                    input(g, "p", sparse_type(p)));
        const sbx_value in[3] = {dv(xa), dv(ya), sv(p)};
        sbx_value one = {0}, two = {0};
        sbx_set_num_threads(1);
        CHECK_OK(sbx_node_perform(sbx_var_owner(out), in, &one, 0));
        sbx_set_num_threads(2);
        CHECK_OK(sbx_node_perform(sbx_var_owner(out), in, &two, 0));
        sbx_set_num_threads(0);
        same_sparse(one.sparse, two.sparse);
        sbx_value_clear(&one);
        sbx_value_clear(&two);
        sbx_array_free(xa);
        sbx_array_free(ya);
        sbx_sparse_free(p);
        sbx_graph_free(g);
    }
}

/* The cost sum_p W_p Out_p of a SampledDot node (Out has the pattern's structure, W's order). */
static double sampled_cost(const sbx_node *node, sbx_array *x, sbx_array *y, sbx_sparse *p, const sbx_sparse *w) {
    const sbx_value in[3] = {dv(x), dv(y), sv(p)};
    sbx_value o = {0};
    CHECK_OK(sbx_node_perform(node, in, &o, 0));
    double cost = 0;
    for (int64_t q = 0; q < w->nnz; q++) cost += ((const double *)w->data)[q] * ((const double *)o.sparse->data)[q];
    sbx_value_clear(&o);
    return cost;
}

static void check_dense_grad(const sbx_node *node, sbx_array *x, sbx_array *y, sbx_sparse *p, const sbx_sparse *w,
                             sbx_array *wrt, const sbx_array *analytic) {
    const int64_t n = sbx_array_numel(wrt);
    assert_int_equal(sbx_array_numel(analytic), n);
    assert_true(analytic->shape[0] == wrt->shape[0] && analytic->shape[1] == wrt->shape[1]);
    double *num = calloc((size_t)n, sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        double *v = (double *)wrt->data + i, v0 = *v;
        *v = v0 + H;
        const double up = sampled_cost(node, x, y, p, w);
        *v = v0 - H;
        const double down = sampled_cost(node, x, y, p, w);
        *v = v0;
        num[i] = (up - down) / (2 * H);
    }
    assert_true(rel_err(num, analytic->data, n) <= 1e-6);
    free(num);
}

static void test_sampled_dot_grad(void **state) {
    (void)state;
    rng_seed(43);
    for (int f = 0; f < 2; f++)
        for (int tx = 0; tx < 2; tx++)
            for (int ty = 0; ty < 2; ty++) {
                const sampled_case c = {f ? SBX_CSC : SBX_CSR, SBX_FLOAT64, tx, ty, 5, 6, 4};
                sbx_array *x, *y;
                sbx_sparse *p, *w;
                make_sampled_operands(&c, &x, &y, &p, 0.5);
                CHECK_OK(sbx_sparse_copy(p, &w));
                for (int64_t q = 0; q < w->nnz; q++) ((double *)w->data)[q] = 2 * rng_unit() - 1;
                sbx_graph *g = NULL;
                CHECK_OK(sbx_graph_create(&g));
                sbx_var *vx = input(g, "x", dense_type(x)), *vy = input(g, "y", dense_type(y));
                sbx_var *vp = input(g, "pattern", sparse_type(p)), *gv = input(g, "g", sparse_type(w)), *gin[3];
                const sbx_sampled_dot_props pr = {tx, ty};
                sbx_node *node = sbx_var_owner(apply(g, &sbx_op_sampled_dot, &pr, 3, vx, vy, vp));
                sbx_grad answer[3];
                const char *reason[3];
                int pattern[3];
                CHECK_OK(sbx_node_grad(g, node, &gv, gin, answer, reason));
                assert_true(answer[0] == SBX_GRAD_DEFINED && answer[1] == SBX_GRAD_DEFINED &&
                            answer[2] == SBX_GRAD_DISCONNECTED);
                assert_null(gin[2]);
                sbx_node_connection_pattern(node, pattern);
                assert_true(pattern[0] == 1 && pattern[1] == 1 && pattern[2] == 0);
                assert_true(sbx_type_equal(sbx_var_type(gin[0]), sbx_var_type(vx)));
                assert_true(sbx_type_equal(sbx_var_type(gin[1]), sbx_var_type(vy)));
                /* StructuredDot of G with y or x, transposed as a whole when tx == ty. */
                assert_string_equal(class_name(gin[0]), tx == ty ? "Transpose" : "StructuredDot");
                env e = {0};
                bind(&e, vx, dv(x));
                bind(&e, vy, dv(y));
                bind(&e, vp, sv(p));
                bind(&e, gv, sv(w));
                const sbx_value gx = eval(&e, gin[0]), gy = eval(&e, gin[1]);
                check_dense_grad(node, x, y, p, w, x, gx.dense);
                check_dense_grad(node, x, y, p, w, y, gy.dense);
                env_free(&e);
                sbx_array_free(x);
                sbx_array_free(y);
                sbx_sparse_free(p);
                sbx_sparse_free(w);
                sbx_graph_free(g);
            }
}

/* The second-order chain: StructuredDot's sparse gradient (a SampledDot) differentiated again w.r.t. gout
 * gives back a StructuredDot: d/dG <G B^T on S, V> = V B for a sparse V on S's structure. */
static void test_grad_of_grad(void **state) {
    (void)state;
    rng_seed(44);
    sbx_sparse *s = random_sparse(SBX_CSR, SBX_FLOAT64, 4, 6, 0.5);
    sbx_array *b = random_dense(SBX_FLOAT64, 6, 3), *w = random_dense(SBX_FLOAT64, 4, 3);
    sbx_graph *g = NULL;
    CHECK_OK(sbx_graph_create(&g));
    sbx_var *vs = input(g, "s", sparse_type(s)), *vb = input(g, "b", dense_type(b)),
            *gc = input(g, "gc", dense_type(w));
    const sbx_structured_dot_props pr = {0};
    sbx_node *node = sbx_var_owner(apply(g, &sbx_op_structured_dot, &pr, 2, vs, vb, NULL));
    sbx_var *gin[3], *gin2[3];
    sbx_grad answer[3];
    const char *reason[3];
    CHECK_OK(sbx_node_grad(g, node, &gc, gin, answer, reason));
    sbx_sparse *v = NULL;
    CHECK_OK(sbx_sparse_copy(s, &v));
    for (int64_t q = 0; q < v->nnz; q++) ((double *)v->data)[q] = 2 * rng_unit() - 1;
    sbx_var *vv = input(g, "v", sparse_type(v));
    CHECK_OK(sbx_node_grad(g, sbx_var_owner(gin[0]), &vv, gin2, answer, reason));
    assert_int_equal(answer[0], SBX_GRAD_DEFINED); /* w.r.t. gc */
    env e = {0};
    bind(&e, vs, sv(s));
    bind(&e, vb, dv(b));
    bind(&e, gc, dv(w));
    bind(&e, vv, sv(v));
    const sbx_value r = eval(&e, gin2[0]);
    double *vr = sparse_ref(v), *br = dense_ref(b), want[12], *got = dense_ref(r.dense);
    ref_mm(vr, 4, 6, 0, br, 6, 3, 0, want);
    near(got, want, 12, 1e-13, "grad of grad");
    free(vr);
    free(br);
    free(got);
    env_free(&e);
    sbx_sparse_free(s);
    sbx_sparse_free(v);
    sbx_array_free(b);
    sbx_array_free(w);
    sbx_graph_free(g);
}

/* ------------------------------------------------------------------------------------------------
 * EliminateZeros, DenseFromSparse, SparseFromDense, SparseLike.
 * ---------------------------------------------------------------------------------------------- */
static void test_conversions(void **state) {
    (void)state;
    rng_seed(51);
    sbx_graph *g = NULL;
    CHECK_OK(sbx_graph_create(&g));
    /* A CSR matrix with a duplicate, an unsorted line and stored zeros. */
    int64_t ip[4] = {0, 3, 3, 6}, ix[6] = {2, 0, 2, 1, 3, 0};
    double xv[6] = {1, 0, 2, 0, 4, -1};
    sbx_sparse x = {SBX_CSR, SBX_FLOAT64, 3, 4, 6, ip, ix, xv};
    sbx_var *vx = input(g, "x", sparse_type(&x));
    /* DenseFromSparse: duplicates summed. */
    sbx_var *d = apply(g, &sbx_op_dense_from_sparse, NULL, 1, vx, NULL, NULL);
    const int64_t s34[2] = {3, 4};
    const sbx_type t34 = sbx_type_dense(SBX_FLOAT64, 2, s34);
    assert_true(sbx_type_equal(sbx_var_type(d), &t34));
    sbx_value in[1] = {sv(&x)}, o = {0};
    CHECK_OK(sbx_node_perform(sbx_var_owner(d), in, &o, 0));
    const double want_d[12] = {0, 0, 3, 0, 0, 0, 0, 0, -1, 0, 0, 4};
    assert_memory_equal(o.dense->data, want_d, sizeof want_d);
    sbx_array *kept = o.dense;
    CHECK_OK(sbx_node_perform(sbx_var_owner(d), in, &o, 0));
    assert_ptr_equal(o.dense, kept);
    assert_memory_equal(o.dense->data, want_d, sizeof want_d);
    sbx_value_clear(&o);
    /* An integer matrix too. */
    int32_t iv[6] = {1, 0, 2, 0, 4, -1};
    sbx_sparse xi = {SBX_CSR, SBX_INT32, 3, 4, 6, ip, ix, iv};
    sbx_var *di = apply(g, &sbx_op_dense_from_sparse, NULL, 1, input(g, "xi", sparse_type(&xi)), NULL, NULL);
    in[0] = sv(&xi);
    CHECK_OK(sbx_node_perform(sbx_var_owner(di), in, &o, 0));
    for (int i = 0; i < 12; i++) assert_int_equal(((int32_t *)o.dense->data)[i], (int32_t)want_d[i]);
    sbx_value_clear(&o);

    /* EliminateZeros: the zeros dropped, the rest in order. */
    sbx_var *ez = apply(g, &sbx_op_eliminate_zeros, NULL, 1, vx, NULL, NULL);
    assert_true(sbx_type_equal(sbx_var_type(ez), sbx_var_type(vx)));
    in[0] = sv(&x);
    CHECK_OK(sbx_node_perform(sbx_var_owner(ez), in, &o, 0));
    const int64_t want_ip[4] = {0, 2, 2, 4}, want_ix[4] = {2, 2, 3, 0};
    const double want_v[4] = {1, 2, 4, -1};
    assert_int_equal(o.sparse->nnz, 4);
    assert_memory_equal(o.sparse->indptr, want_ip, sizeof want_ip);
    assert_memory_equal(o.sparse->indices, want_ix, sizeof want_ix);
    assert_memory_equal(o.sparse->data, want_v, sizeof want_v);
    sbx_sparse *kept_s = o.sparse;
    CHECK_OK(sbx_node_perform(sbx_var_owner(ez), in, &o, 0));
    assert_ptr_equal(o.sparse, kept_s);
    sbx_value_clear(&o);

    /* SparseFromDense in both formats: the library's conversion. */
    sbx_array *a = dense_of(SBX_FLOAT64, 3, 4, want_d);
    for (int f = 0; f < 2; f++) {
        const sbx_format_props fp = {f ? SBX_CSC : SBX_CSR};
        sbx_var *sp = apply(g, &sbx_op_sparse_from_dense, &fp, 1, input(g, "a", dense_type(a)), NULL, NULL);
        const sbx_type want_t = sbx_type_sparse(fp.format, SBX_FLOAT64, 3, 4);
        assert_true(sbx_type_equal(sbx_var_type(sp), &want_t));
        in[0] = dv(a);
        CHECK_OK(sbx_node_perform(sbx_var_owner(sp), in, &o, 0));
        sbx_sparse *lib = NULL;
        CHECK_OK(sbx_sparse_from_dense(a, fp.format, &lib));
        same_sparse(o.sparse, lib);
        sbx_sparse_free(lib);
        kept_s = o.sparse;
        CHECK_OK(sbx_node_perform(sbx_var_owner(sp), in, &o, 0));
        assert_ptr_equal(o.sparse, kept_s);
        sbx_value_clear(&o);
        /* grad: DenseFromSparse(gout). */
        sbx_var *gz = input(g, "gz", want_t), *gin[1];
        sbx_grad answer[1];
        const char *reason[1];
        CHECK_OK(sbx_node_grad(g, sbx_var_owner(sp), &gz, gin, answer, reason));
        assert_int_equal(answer[0], SBX_GRAD_DEFINED);
        assert_string_equal(class_name(gin[0]), "DenseFromSparse");
        assert_true(sbx_type_equal(sbx_var_type(gin[0]), sbx_var_type(sbx_node_input(sbx_var_owner(sp), 0))));
    }
    sbx_array_free(a);

    /* Refusals. */
    sbx_var *out = NULL, *dd = input(g, "dd", t34);
    const sbx_format_props badf = {(sbx_format)7};
    CHECK_ERR(try_apply(g, &sbx_op_dense_from_sparse, NULL, 1, dd, NULL, NULL, &out), SBX_ERR_ARG,
              "DenseFromSparse: input 0 (x)", "sparse", "got float64[3,4]");
    CHECK_ERR(try_apply(g, &sbx_op_eliminate_zeros, NULL, 1, dd, NULL, NULL, &out), SBX_ERR_ARG,
              "EliminateZeros: input 0 (x)", "sparse");
    CHECK_ERR(try_apply(g, &sbx_op_sparse_from_dense, &badf, 1, dd, NULL, NULL, &out), SBX_ERR_ARG, "SparseFromDense",
              "format 7");
    const sbx_format_props fr = {SBX_CSR};
    CHECK_ERR(try_apply(g, &sbx_op_sparse_from_dense, &fr, 1, vx, NULL, NULL, &out), SBX_ERR_ARG,
              "SparseFromDense: input 0 (x)", "2-d dense", "got csr float64[3,4]");
    assert_null(out);

    /* grads of DenseFromSparse and EliminateZeros: SparseLike(gout, x), evaluated. */
    sbx_var *gd = input(g, "gd", t34), *gs = input(g, "gs", *sbx_var_type(ez)), *gin[1];
    sbx_grad answer[1];
    const char *reason[1];
    CHECK_OK(sbx_node_grad(g, sbx_var_owner(d), &gd, gin, answer, reason));
    assert_int_equal(answer[0], SBX_GRAD_DEFINED);
    assert_string_equal(class_name(gin[0]), "SparseLike");
    assert_true(sbx_type_equal(sbx_var_type(gin[0]), sbx_var_type(vx)));
    double gdv[12];
    for (int i = 0; i < 12; i++) gdv[i] = i + 1;
    sbx_array *gda = dense_of(SBX_FLOAT64, 3, 4, gdv);
    env e = {0};
    bind(&e, vx, sv(&x));
    bind(&e, gd, dv(gda));
    sbx_value r = eval(&e, gin[0]);
    /* Each stored entry (r, c) gets gout[r, c]: the derivative of the sum at (r, c) w.r.t. each of its terms. */
    const double want_g[6] = {3, 1, 3, 10, 12, 9};
    assert_true(same_structure(r.sparse, &x));
    assert_memory_equal(r.sparse->data, want_g, sizeof want_g);
    env_free(&e);
    CHECK_OK(sbx_node_grad(g, sbx_var_owner(ez), &gs, gin, answer, reason));
    assert_int_equal(answer[0], SBX_GRAD_DEFINED);
    assert_string_equal(class_name(gin[0]), "SparseLike");
    /* Unsorted lines (the output, and so gout, unsorted too). */
    int64_t ip2[4] = {0, 3, 3, 6}, ix2[6] = {2, 0, 1, 3, 1, 0};
    double xv2[6] = {1, 0, 5, 4, 0, -1};
    sbx_sparse x2 = {SBX_CSR, SBX_FLOAT64, 3, 4, 6, ip2, ix2, xv2};
    sbx_value ezv = {0};
    in[0] = sv(&x2);
    CHECK_OK(sbx_node_perform(sbx_var_owner(ez), in, &ezv, 0));
    for (int64_t q = 0; q < ezv.sparse->nnz; q++) ((double *)ezv.sparse->data)[q] = 10 + (double)q;
    bind(&e, vx, sv(&x2));
    bind(&e, gs, ezv);
    r = eval(&e, gin[0]);
    const double want_e[6] = {10, 0, 11, 12, 0, 13}; /* 0 at the dropped zeros */
    assert_true(same_structure(r.sparse, &x2));
    assert_memory_equal(r.sparse->data, want_e, sizeof want_e);
    env_free(&e);
    sbx_value_clear(&ezv);
    sbx_array_free(gda);
    sbx_graph_free(g);
}

static void test_sparse_like(void **state) {
    (void)state;
    rng_seed(52);
    sbx_graph *g = NULL;
    CHECK_OK(sbx_graph_create(&g));
    sbx_sparse *x = random_sparse(SBX_CSR, SBX_FLOAT64, 7, 9, 0.4);
    sbx_array *gd = random_dense(SBX_FLOAT64, 7, 9);
    sbx_var *vx = input(g, "x", sparse_type(x)), *vg = input(g, "g", dense_type(gd));
    sbx_var *out = apply(g, &sbx_op_sparse_like, NULL, 2, vg, vx, NULL);
    assert_true(sbx_type_equal(sbx_var_type(out), sbx_var_type(vx)));
    sbx_node *node = sbx_var_owner(out);
    sbx_value in[2] = {dv(gd), sv(x)}, o = {0};
    CHECK_OK(sbx_node_perform(node, in, &o, 0));
    assert_true(same_structure(o.sparse, x));
    for (int64_t r = 0; r < 7; r++)
        for (int64_t q = x->indptr[r]; q < x->indptr[r + 1]; q++)
            assert_true(((double *)o.sparse->data)[q] == ((double *)gd->data)[r * 9 + x->indices[q]]);
    sbx_sparse *kept = o.sparse;
    void *kept_data = kept->data;
    CHECK_OK(sbx_node_perform(node, in, &o, 0));
    assert_true(o.sparse == kept && o.sparse->data == kept_data);
    sbx_value_clear(&o);

    /* A sparse g in the other format, some of x's entries missing, others x lacks. */
    double *gv = calloc(63, sizeof(double)), *xr = sparse_ref(x);
    for (int i = 0; i < 63; i++)
        if (rng_unit() < 0.5) gv[i] = 1 + i;
    sbx_array *ga = dense_of(SBX_FLOAT64, 7, 9, gv);
    sbx_sparse *gs = NULL;
    CHECK_OK(sbx_sparse_from_dense(ga, SBX_CSC, &gs));
    sbx_var *vgs = input(g, "gs", sparse_type(gs));
    sbx_var *out2 = apply(g, &sbx_op_sparse_like, NULL, 2, vgs, vx, NULL);
    in[0] = sv(gs);
    CHECK_OK(sbx_node_perform(sbx_var_owner(out2), in, &o, 0));
    assert_true(same_structure(o.sparse, x));
    for (int64_t r = 0; r < 7; r++)
        for (int64_t q = x->indptr[r]; q < x->indptr[r + 1]; q++)
            assert_true(((double *)o.sparse->data)[q] == gv[r * 9 + x->indices[q]]);
    sbx_value_clear(&o);
    free(xr);

    /* grads: DenseFromSparse(gout) for a dense g, SparseLike(gout, g) for a sparse one; x disconnected. */
    sbx_var *gz = input(g, "gz", *sbx_var_type(out)), *gin[2];
    sbx_grad answer[2];
    const char *reason[2];
    int pattern[2];
    CHECK_OK(sbx_node_grad(g, node, &gz, gin, answer, reason));
    assert_true(answer[0] == SBX_GRAD_DEFINED && answer[1] == SBX_GRAD_DISCONNECTED);
    assert_string_equal(class_name(gin[0]), "DenseFromSparse");
    assert_true(sbx_type_equal(sbx_var_type(gin[0]), sbx_var_type(vg)));
    sbx_node_connection_pattern(node, pattern);
    assert_true(pattern[0] == 1 && pattern[1] == 0);
    CHECK_OK(sbx_node_grad(g, sbx_var_owner(out2), &gz, gin, answer, reason));
    assert_true(answer[0] == SBX_GRAD_DEFINED && answer[1] == SBX_GRAD_DISCONNECTED);
    assert_string_equal(class_name(gin[0]), "SparseLike");
    assert_true(sbx_type_equal(sbx_var_type(gin[0]), sbx_var_type(vgs)));
    env e = {0};
    sbx_sparse *gzv = NULL;
    CHECK_OK(sbx_sparse_copy(x, &gzv));
    for (int64_t q = 0; q < gzv->nnz; q++) ((double *)gzv->data)[q] = 100 + (double)q;
    bind(&e, vx, sv(x));
    bind(&e, vgs, sv(gs));
    bind(&e, gz, sv(gzv));
    const sbx_value r = eval(&e, gin[0]);
    assert_true(same_structure(r.sparse, gs));
    double *rr = sparse_ref(r.sparse), *zr = sparse_ref(gzv);
    for (int i = 0; i < 63; i++) assert_true(rr[i] == (gv[i] != 0 ? zr[i] : 0));
    free(rr);
    free(zr);
    env_free(&e);
    sbx_sparse_free(gzv);

    /* Refusals; a sparse g with an unsorted line, then with a duplicate (summed), then broken. */
    const int64_t s79[2] = {7, 9}, s78[2] = {7, 8};
    sbx_var *bad = NULL;
    CHECK_ERR(try_apply(g, &sbx_op_sparse_like, NULL, 2, vg, vg, NULL, &bad), SBX_ERR_ARG, "SparseLike: input 1 (x)",
              "sparse", "got float64[7,9]");
    CHECK_ERR(try_apply(g, &sbx_op_sparse_like, NULL, 2, input(g, "g32", sbx_type_dense(SBX_FLOAT32, 2, s79)), vx, NULL,
                        &bad),
              SBX_ERR_ARG, "SparseLike: input 0 (g)", "float64", "got float32[7,9]");
    CHECK_ERR(try_apply(g, &sbx_op_sparse_like, NULL, 2, input(g, "g78", sbx_type_dense(SBX_FLOAT64, 2, s78)), vx, NULL,
                        &bad),
              SBX_ERR_ARG, "SparseLike: input 0 (g)", "the shape of x", "got float64[7,8]");
    assert_null(bad);
    sbx_sparse *gcsr = NULL;
    CHECK_OK(sbx_sparse_from_dense(ga, SBX_CSR, &gcsr));
    sbx_var *out3 = apply(g, &sbx_op_sparse_like, NULL, 2, input(g, "gc", sparse_type(gcsr)), vx, NULL);
    int64_t line = 0;
    while (gcsr->indptr[line + 1] - gcsr->indptr[line] < 2) line++;
    int64_t *first = gcsr->indices + gcsr->indptr[line], t = first[0];
    double *fv = (double *)gcsr->data + gcsr->indptr[line], tv = fv[0];
    first[0] = first[1];
    first[1] = t;
    fv[0] = fv[1];
    fv[1] = tv;
    in[0] = sv(gcsr);
    for (int dup = 0; dup < 2; dup++) {
        if (dup) first[1] = first[0];
        double *want = sparse_ref(gcsr);
        CHECK_OK(sbx_node_perform(sbx_var_owner(out3), in, &o, 0));
        assert_true(same_structure(o.sparse, x));
        for (int64_t r = 0; r < 7; r++)
            for (int64_t q = x->indptr[r]; q < x->indptr[r + 1]; q++)
                assert_true(((double *)o.sparse->data)[q] == want[r * 9 + x->indices[q]]);
        free(want);
    }
    first[0] = 9;
    CHECK_ERR(sbx_node_perform(sbx_var_owner(out3), in, &o, 0), SBX_ERR_FORMAT, "SparseLike: input 0 (g)", "index 9");
    sbx_value_clear(&o);
    sbx_sparse_free(gcsr);
    sbx_sparse_free(gs);
    sbx_array_free(ga);
    free(gv);
    sbx_array_free(gd);
    sbx_sparse_free(x);
    sbx_graph_free(g);
}

/* ------------------------------------------------------------------------------------------------
 * Allocation failures: every failing allocation of a perform is an error without a leak (LeakSanitizer
 * checks the sanitizer build), and the storage is left usable.
 * ---------------------------------------------------------------------------------------------- */
static void walk_failures(const sbx_node *node, const sbx_value *in) {
    sbx_set_num_threads(1);
    for (int64_t k = 1;; k++) {
        sbx_value o = {0};
        sbx__alloc_fail_at(k);
        const sbx_status st = sbx_node_perform(node, in, &o, 3);
        sbx__alloc_fail_at(0);
        sbx_value_clear(&o);
        if (st == SBX_OK) break;
        if (st != SBX_ERR_NOMEM)
            fail_msg("%s, allocation %lld: '%s'", sbx_node_op(node).cls->name, (long long)k, sbx_last_error());
        assert_true(k < 100);
    }
    sbx_set_num_threads(0);
}

static void test_allocation_failures(void **state) {
    (void)state;
    rng_seed(61);
    sbx_graph *g = NULL;
    CHECK_OK(sbx_graph_create(&g));
    sbx_sparse *s = random_sparse(SBX_CSR, SBX_FLOAT64, 6, 5, 0.5), *sc = NULL;
    for (int64_t q = 0; q < s->nnz; q++) ((double *)s->data)[q] = fabs(((double *)s->data)[q]); /* Poisson means */
    CHECK_OK(sbx_sparse_convert(s, SBX_CSC, &sc));
    sbx_array *x = random_dense(SBX_FLOAT64, 4, 6), *y = random_dense(SBX_FLOAT64, 4, 5),
              *dn = random_dense(SBX_FLOAT64, 6, 5);
    sbx_var *vs = input(g, "s", sparse_type(s)), *vsc = input(g, "sc", sparse_type(sc));
    sbx_var *vx = input(g, "x", dense_type(x)), *vy = input(g, "y", dense_type(y)),
            *vdn = input(g, "dn", dense_type(dn));
    const sbx_sampled_dot_props p10 = {1, 0};
    const sbx_structured_dot_props p1 = {1};
    const sbx_binomial_props bp = {SBX_CSC, SBX_FLOAT64};
    const sbx_value sin3[3] = {dv(x), dv(y), sv(s)}, sone[1] = {sv(s)}, like[2] = {sv(sc), sv(s)};
    walk_failures(sbx_var_owner(apply(g, &sbx_op_sampled_dot, &p10, 3, vx, vy, vs)), sin3);
    const sbx_value dsin[2] = {dv(y), sv(s)};
    walk_failures(sbx_var_owner(apply(g, &sbx_op_structured_dot, &p1, 2, vy, vs, NULL)), dsin);
    walk_failures(sbx_var_owner(apply(g, &sbx_op_eliminate_zeros, NULL, 1, vs, NULL, NULL)), sone);
    walk_failures(sbx_var_owner(apply(g, &sbx_op_dense_from_sparse, NULL, 1, vs, NULL, NULL)), sone);
    walk_failures(sbx_var_owner(apply(g, &sbx_op_sparse_like, NULL, 2, vsc, vs, NULL)), like);
    const sbx_format_props fc = {SBX_CSC};
    const sbx_value dense1[1] = {dv(dn)};
    walk_failures(sbx_var_owner(apply(g, &sbx_op_sparse_from_dense, &fc, 1, vdn, NULL, NULL)), dense1);
    walk_failures(sbx_var_owner(apply(g, &sbx_op_poisson, NULL, 1, vs, NULL, NULL)), sone);
    const int64_t two = 2;
    sbx_array *nv = scalar_i64(4), *pv = scalar_f64(0.2), *sh = NULL;
    CHECK_OK(sbx_array_create(SBX_INT64, 1, &two, &sh));
    ((int64_t *)sh->data)[0] = 70;
    ((int64_t *)sh->data)[1] = 90;
    sbx_var *bn = input(g, "n", dense_type(nv)), *bpv = input(g, "p", dense_type(pv)),
            *bs = input(g, "shape", dense_type(sh));
    const sbx_value bin[3] = {dv(nv), dv(pv), dv(sh)};
    walk_failures(sbx_var_owner(apply(g, &sbx_op_binomial, &bp, 3, bn, bpv, bs)), bin);
    sbx_array_free(nv);
    sbx_array_free(pv);
    sbx_array_free(sh);
    sbx_array_free(x);
    sbx_array_free(y);
    sbx_array_free(dn);
    sbx_sparse_free(s);
    sbx_sparse_free(sc);
    sbx_graph_free(g);
}

/* ------------------------------------------------------------------------------------------------
 * The into-variants of the structured dot products (src/sparse/dot.c).
 * ---------------------------------------------------------------------------------------------- */
static void test_dot_into(void **state) {
    (void)state;
    rng_seed(71);
    for (int f = 0; f < 2; f++)
        for (int dt = 0; dt < 2; dt++)
            for (int threads = 1; threads <= 2; threads++) {
                const sbx_format fmt = f ? SBX_CSC : SBX_CSR;
                const sbx_dtype dtype = dt ? SBX_FLOAT64 : SBX_FLOAT32;
                sbx_set_num_threads(threads);
                /* Large enough for the threaded paths (work of 100000 multiply-adds and more). */
                sbx_sparse *a = random_sparse(fmt, dtype, 300, 200, 0.1);
                sbx_array *b = random_dense(dtype, 200, 40), *l = random_dense(dtype, 50, 300), *pub = NULL;
                CHECK_OK(sbx_sparse_dot_dense(a, b, &pub));
                sbx_array *c = random_dense(dtype, 300, 40); /* garbage on entry */
                CHECK_OK(sbx__sparse_dot_dense_into(a, b, c));
                assert_memory_equal(c->data, pub->data, (size_t)(300 * 40) * sbx_dtype_size(dtype));
                sbx_array_free(pub);
                sbx_array_free(c);
                CHECK_OK(sbx_dense_dot_sparse(l, a, &pub));
                c = random_dense(dtype, 50, 200);
                CHECK_OK(sbx__dense_dot_sparse_into(l, a, c));
                assert_memory_equal(c->data, pub->data, (size_t)(50 * 200) * sbx_dtype_size(dtype));
                /* Errors naming c. */
                CHECK_ERR(sbx__dense_dot_sparse_into(l, a, NULL), SBX_ERR_ARG, "output c is NULL");
                sbx_array *wrong = random_dense(dt ? SBX_FLOAT32 : SBX_FLOAT64, 50, 200);
                CHECK_ERR(sbx__dense_dot_sparse_into(l, a, wrong), SBX_ERR_ARG, "output c has dtype");
                sbx_array_free(wrong);
                wrong = random_dense(dtype, 50, 201);
                CHECK_ERR(sbx__dense_dot_sparse_into(l, a, wrong), SBX_ERR_ARG, "output c", "50 x 201",
                          "the product is 50 x 200");
                sbx_array_free(wrong);
                CHECK_ERR(sbx__sparse_dot_dense_into(a, b, c), SBX_ERR_ARG, "output c", "300 x 40");
                CHECK_ERR(sbx__sparse_dot_dense_into(a, l, c), SBX_ERR_ARG, "dense b has 50 rows");
                sbx_array_free(pub);
                sbx_array_free(c);
                sbx_array_free(b);
                sbx_array_free(l);
                sbx_sparse_free(a);
            }
    sbx_set_num_threads(0);
    /* Empty products zero the output. */
    sbx_sparse *e = NULL;
    CHECK_OK(sbx_sparse_create(SBX_CSR, SBX_FLOAT64, 3, 4, 0, &e));
    sbx_array *b = random_dense(SBX_FLOAT64, 4, 2), *c = random_dense(SBX_FLOAT64, 3, 2);
    CHECK_OK(sbx__sparse_dot_dense_into(e, b, c));
    for (int i = 0; i < 6; i++) assert_true(((double *)c->data)[i] == 0);
    /* The output may not be the dense operand. */
    sbx_sparse *sq = random_sparse(SBX_CSR, SBX_FLOAT64, 4, 4, 0.5);
    sbx_array *d = random_dense(SBX_FLOAT64, 4, 4);
    CHECK_ERR(sbx__sparse_dot_dense_into(sq, d, d), SBX_ERR_ARG, "output c shares its data with dense b");
    sbx_sparse_free(sq);
    sbx_array_free(d);
    sbx_array_free(b);
    sbx_array_free(c);
    sbx_sparse_free(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_classes_and_identity, reset),
        cmocka_unit_test_teardown(test_binomial, reset),
        cmocka_unit_test_teardown(test_multinomial, reset),
        cmocka_unit_test_teardown(test_poisson, reset),
        cmocka_unit_test_teardown(test_structured_dot_values, reset),
        cmocka_unit_test_teardown(test_structured_dot_refusals, reset),
        cmocka_unit_test_teardown(test_structured_dot_grad, reset),
        cmocka_unit_test_teardown(test_sampled_dot_values, reset),
        cmocka_unit_test_teardown(test_sampled_dot_refusals_and_threads, reset),
        cmocka_unit_test_teardown(test_sampled_dot_grad, reset),
        cmocka_unit_test_teardown(test_grad_of_grad, reset),
        cmocka_unit_test_teardown(test_conversions, reset),
        cmocka_unit_test_teardown(test_sparse_like, reset),
        cmocka_unit_test_teardown(test_allocation_failures, reset),
        cmocka_unit_test_teardown(test_dot_into, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
