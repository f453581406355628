/* The random op classes: the original's sparse Binomial, Multinomial and Poisson (sparse.sandbox.sp2) over
 * sbx_random_binomial / sbx_random_multinomial / sbx_random_poisson. They draw from ctx->rng, which the
 * engine sets per node and call (op.h's determinism rule), so a draw depends on (seed, node, call) alone.
 * Their shape and gradient answers are random.h's sbx_random_op_* ones. */
#include <stdio.h>

#include "op/internal.h"
#include "sparse/internal.h"

/* An input's type in words, for messages. */
typedef struct {
    char s[128];
} type_words;

static type_words words(const sbx_type *t) {
    type_words w;
    sbx_type_str(t, w.s, sizeof w.s);
    return w;
}

static int count_is(const sbx_op *op, int nin, int want, const char *inputs, sbx_status *st) {
    if (nin == want) return 1;
    *st = sbx__op_fail(op, SBX_ERR_ARG, "takes %d input%s (%s), got %d", want, want == 1 ? "" : "s", inputs, nin);
    return 0;
}

/* The gradient answers of sbx_random_op_grad, with a reason for each undefined one. */
static sbx_status random_grad(sbx_random_op kind, const sbx_node *node, sbx_grad *answer, const char **reason,
                              const char *const *reasons) {
    const int nin = sbx_node_ninputs(node);
    for (int i = 0; i < nin; i++) {
        SBX_CHECK(sbx_random_op_grad(kind, i, &answer[i]));
        reason[i] = answer[i] == SBX_GRAD_UNDEFINED ? reasons[i] : NULL;
    }
    return SBX_OK;
}

static void random_pattern(sbx_random_op kind, int nin, int nout, int *pattern) {
    for (int i = 0; i < nin; i++) {
        sbx_grad g = SBX_GRAD_UNDEFINED;
        if (sbx_random_op_grad(kind, i, &g) != SBX_OK) g = SBX_GRAD_UNDEFINED; /* nin is the op's own */
        for (int j = 0; j < nout; j++) pattern[i * nout + j] = g != SBX_GRAD_DISCONNECTED;
    }
}

/* --- Binomial(format, dtype): (n, p, shape) -> sparse ------------------------------------------------ */
static int binomial_equal(const void *a, const void *b) {
    const sbx_binomial_props *x = a, *y = b;
    return x->format == y->format && x->dtype == y->dtype;
}

static uint64_t binomial_hash(const void *props) {
    const sbx_binomial_props *p = props;
    const int64_t v[2] = {(int64_t)p->format, (int64_t)p->dtype};
    return sbx__hash_bytes(v, sizeof v, 0xcbf29ce484222325ull);
}

static int binomial_str(const void *props, char *buf, size_t size) {
    const sbx_binomial_props *p = props;
    return snprintf(buf, size, "format=%s dtype=%s", sbx_format_name(p->format), sbx_dtype_name(p->dtype));
}

static sbx_status binomial_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    const sbx_binomial_props *pr = op->props;
    sbx_status st = SBX_OK;
    if (!count_is(op, nin, 3, "n, p, shape", &st)) return st;
    if (pr->format != SBX_CSR && pr->format != SBX_CSC)
        return sbx__op_fail(op, SBX_ERR_ARG, "format %d is neither csr nor csc", (int)pr->format);
    if (!sbx__dtype_valid(pr->dtype))
        return sbx__op_fail(op, SBX_ERR_ARG, "dtype %d is not an sbx_dtype", (int)pr->dtype);
    if (in[0].kind != SBX_KIND_DENSE || in[0].ndim != 0 || !sbx__is_integer(in[0].dtype))
        return sbx__op_error(op, 0, "n", "expected a 0-d integer tensor (the number of trials), got %s",
                             words(&in[0]).s);
    if (in[1].kind != SBX_KIND_DENSE || in[1].ndim != 0 || !sbx__is_float(in[1].dtype))
        return sbx__op_error(op, 1, "p", "expected a 0-d float tensor (the probability), got %s", words(&in[1]).s);
    if (in[2].kind != SBX_KIND_DENSE || in[2].ndim != 1 || !sbx__is_integer(in[2].dtype) ||
        (in[2].shape[0] != 2 && in[2].shape[0] != -1))
        return sbx__op_error(op, 2, "shape", "expected an integer vector of 2 (rows, columns), got %s",
                             words(&in[2]).s);
    *nout = 1;
    out[0] = sbx_type_sparse(pr->format, pr->dtype, -1, -1); /* the extents are shape's values */
    return SBX_OK;
}

static sbx_status binomial_infer_shape(const sbx_op *op, int nin, const sbx_value *in, int nout, sbx_type *out) {
    int64_t shape[2];
    SBX_CHECK(sbx__infer_from_types(op, nin, in, nout, out));
    if (sbx_random_op_infer_shape(SBX_RANDOM_BINOMIAL, in[2].dense, NULL, shape) != SBX_OK)
        return sbx__op_error(op, 2, "shape", "%s", sbx_last_error());
    out[0].shape[0] = shape[0];
    out[0].shape[1] = shape[1];
    return SBX_OK;
}

static sbx_status binomial_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                   sbx_value *out) {
    const sbx_binomial_props *pr = op->props;
    sbx_status st = SBX_OK;
    int64_t n, shape[2];
    sbx_sparse *m;
    if (!count_is(op, nin, 3, "n, p, shape", &st)) return st;
    if (nout != 1) return sbx__op_fail(op, SBX_ERR_ARG, "%d outputs; the op has 1", nout);
    const sbx_array *na = in[0].dense, *pa = in[1].dense;
    if (!na || na->ndim != 0 || !sbx__is_integer(na->dtype) || !na->data)
        return sbx__op_error(op, 0, "n", "expected a 0-d integer value");
    if (!pa || pa->ndim != 0 || !sbx__is_float(pa->dtype) || !pa->data)
        return sbx__op_error(op, 1, "p", "expected a 0-d float value");
    if (sbx__cast(&n, SBX_INT64, na->data, na->dtype, 1, "n") != SBX_OK) /* exact, or an error */
        return sbx__op_error(op, 0, "n", "%s", sbx_last_error());
    if (sbx_random_op_infer_shape(SBX_RANDOM_BINOMIAL, in[2].dense, NULL, shape) != SBX_OK)
        return sbx__op_error(op, 2, "shape", "%s", sbx_last_error());
    st = sbx_random_binomial(&ctx->rng, n, sbx__get_f64(pa->data, pa->dtype, 0), shape[0], shape[1], pr->format,
                             pr->dtype, &m);
    if (st != SBX_OK) return sbx__op_again(op, st);
    sbx_output_sparse(&out[0], m);
    return SBX_OK;
}

static const char *const binomial_reasons[3] = {
    "Binomial: a random draw has no gradient with respect to its number of trials n",
    "Binomial: a random draw has no gradient with respect to its probability p", NULL};

static sbx_status binomial_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                                sbx_grad *answer, const char **reason) {
    (void)g;
    (void)gout;
    (void)gin;
    return random_grad(SBX_RANDOM_BINOMIAL, node, answer, reason, binomial_reasons);
}

static void binomial_pattern(const sbx_op *op, int nin, int nout, int *pattern) {
    (void)op;
    random_pattern(SBX_RANDOM_BINOMIAL, nin, nout, pattern);
}

const sbx_op_class sbx_op_binomial = {
    .name = "Binomial",
    .props_size = sizeof(sbx_binomial_props),
    .props_equal = binomial_equal,
    .props_hash = binomial_hash,
    .props_str = binomial_str,
    .make_node = binomial_make_node,
    .infer_shape = binomial_infer_shape,
    .perform = binomial_perform,
    .state_free = NULL,
    .grad = binomial_grad,
    .connection_pattern = binomial_pattern,
};

/* --- Multinomial: (n, p) -> sparse like p ------------------------------------------------------------- */
static sbx_status multinomial_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    sbx_status st = SBX_OK;
    if (!count_is(op, nin, 2, "n, p", &st)) return st;
    if (in[0].kind != SBX_KIND_DENSE || in[0].ndim > 1 || !sbx__is_integer(in[0].dtype))
        return sbx__op_error(op, 0, "n",
                             "expected a 0-d or 1-d integer tensor (trials, for all rows or per row), got %s",
                             words(&in[0]).s);
    if (in[1].kind != SBX_KIND_SPARSE || !sbx__is_float(in[1].dtype))
        return sbx__op_error(op, 1, "p", "expected a sparse float matrix (csr or csc) of probabilities, got %s",
                             words(&in[1]).s);
    /* n: one value for every row, or one per row. */
    const int64_t e = in[0].ndim == 1 ? in[0].shape[0] : 1, rows = in[1].shape[0];
    if (e >= 0 && e != 1 && rows >= 0 && e != rows)
        return sbx__op_error(op, 0, "n", "expected 1 value or one per row of p (%lld), got %s", (long long)rows,
                             words(&in[0]).s);
    *nout = 1;
    out[0] = in[1];
    return SBX_OK;
}

static sbx_status multinomial_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                      sbx_value *out) {
    sbx_status st = SBX_OK;
    sbx_sparse *m;
    if (!count_is(op, nin, 2, "n, p", &st)) return st;
    if (nout != 1) return sbx__op_fail(op, SBX_ERR_ARG, "%d outputs; the op has 1", nout);
    if (!in[0].dense || !sbx__is_integer(in[0].dense->dtype))
        return sbx__op_error(op, 0, "n", "expected an integer value");
    if (!in[1].sparse || !sbx__is_float(in[1].sparse->dtype))
        return sbx__op_error(op, 1, "p", "expected a sparse float value");
    st = sbx_random_multinomial(&ctx->rng, in[0].dense, in[1].sparse, 0, &m); /* the original: no renormalising */
    if (st != SBX_OK) return sbx__op_again(op, st);
    sbx_output_sparse(&out[0], m);
    return SBX_OK;
}

static const char *const multinomial_reasons[2] = {
    "Multinomial: a random draw has no gradient with respect to its number of trials n",
    "Multinomial: a random draw has no gradient with respect to its probabilities p"};

static sbx_status multinomial_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                                   sbx_grad *answer, const char **reason) {
    (void)g;
    (void)gout;
    (void)gin;
    return random_grad(SBX_RANDOM_MULTINOMIAL, node, answer, reason, multinomial_reasons);
}

static void multinomial_pattern(const sbx_op *op, int nin, int nout, int *pattern) {
    (void)op;
    random_pattern(SBX_RANDOM_MULTINOMIAL, nin, nout, pattern);
}

const sbx_op_class sbx_op_multinomial = {
    .name = "Multinomial",
    .props_size = 0,
    .props_equal = sbx__noprops_equal,
    .props_hash = sbx__noprops_hash,
    .props_str = sbx__noprops_str,
    .make_node = multinomial_make_node,
    .infer_shape = sbx__infer_from_types, /* p's shape */
    .perform = multinomial_perform,
    .state_free = NULL,
    .grad = multinomial_grad,
    .connection_pattern = multinomial_pattern,
};

/* --- Poisson: (x) -> sparse like x -------------------------------------------------------------------- */
static sbx_status poisson_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    sbx_status st = SBX_OK;
    if (!count_is(op, nin, 1, "x", &st)) return st;
    if (in[0].kind != SBX_KIND_SPARSE)
        return sbx__op_error(op, 0, "x", "expected a sparse matrix (csr or csc) of means, got %s", words(&in[0]).s);
    *nout = 1;
    out[0] = in[0];
    return SBX_OK;
}

static sbx_status poisson_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                  sbx_value *out) {
    sbx_status st = SBX_OK;
    sbx_sparse *m;
    if (!count_is(op, nin, 1, "x", &st)) return st;
    if (nout != 1) return sbx__op_fail(op, SBX_ERR_ARG, "%d outputs; the op has 1", nout);
    if (!in[0].sparse) return sbx__op_error(op, 0, "x", "expected a sparse value");
    st = sbx_random_poisson(&ctx->rng, in[0].sparse, &m);
    if (st != SBX_OK) return sbx__op_again(op, st);
    sbx_output_sparse(&out[0], m);
    return SBX_OK;
}

static const char *const poisson_reasons[1] = {"Poisson: a random draw has no gradient with respect to its means x"};

static sbx_status poisson_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                               sbx_grad *answer, const char **reason) {
    (void)g;
    (void)gout;
    (void)gin;
    return random_grad(SBX_RANDOM_POISSON, node, answer, reason, poisson_reasons);
}

static void poisson_pattern(const sbx_op *op, int nin, int nout, int *pattern) {
    (void)op;
    random_pattern(SBX_RANDOM_POISSON, nin, nout, pattern);
}

const sbx_op_class sbx_op_poisson = {
    .name = "Poisson",
    .props_size = 0,
    .props_equal = sbx__noprops_equal,
    .props_hash = sbx__noprops_hash,
    .props_str = sbx__noprops_str,
    .make_node = poisson_make_node,
    .infer_shape = sbx__infer_from_types, /* x's shape */
    .perform = poisson_perform,
    .state_free = NULL,
    .grad = poisson_grad,
    .connection_pattern = poisson_pattern,
};
