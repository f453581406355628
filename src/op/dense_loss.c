/* SoftmaxCrossEntropy(logits, labels): the mean over the batch of -log softmax(logits)[label], each row
 * as log-sum-exp with the row's maximum taken out first (so no exp overflows); and its gradient with
 * respect to the logits, SoftmaxCrossEntropyGrad(logits, labels, g) = g (softmax - onehot) / batch.
 * The batch's sum is taken in chunks of LOSS_ROWS rows (each in row order), the chunks added in
 * order: the same bits at any thread count. */
#include <math.h>
#include <string.h>

#include "op/dense.h"


#define LOSS_ROWS 256 /* rows per chunk of the batch's sum */
#define EXP_COST 8    /* an exp costs about this many simple element operations */

/* logits (batch x classes) and labels (batch, an integer dtype): the checks both classes make. */
static sbx_status check_logits_labels(const sbx_op *op, const sbx_type *in, int64_t *batch) {
    char got[128];
    SBX_CHECK(sbx__dense_float(op, &in[0], 0, "logits", 2));
    if (in[1].kind != SBX_KIND_DENSE || !sbx__is_integer(in[1].dtype) || in[1].ndim != 1) {
        sbx_type_str(&in[1], got, sizeof got);
        return sbx__op_error(op, 1, "labels", "expected a dense vector of an integer dtype, got %s", got);
    }
    const int64_t b0 = in[0].shape[0], b1 = in[1].shape[0];
    if (b0 >= 0 && b1 >= 0 && b0 != b1) {
        sbx_type_str(&in[1], got, sizeof got);
        return sbx__op_error(op, 1, "labels", "expected %lld labels (the rows of logits), got %s", (long long)b0, got);
    }
    *batch = b0 >= 0 ? b0 : b1;
    return SBX_OK;
}

/* Label i as an int64; 0 when it does not fit one (uint64 past 2^63 - 1), which check_labels reports. */
static int64_t label_at(const sbx_array *l, int64_t i, int *fits) {
    *fits = 1;
    switch (l->dtype) {
    case SBX_INT8: return ((const int8_t *)l->data)[i];
    case SBX_INT16: return ((const int16_t *)l->data)[i];
    case SBX_INT32: return ((const int32_t *)l->data)[i];
    case SBX_INT64: return ((const int64_t *)l->data)[i];
    case SBX_UINT8: return ((const uint8_t *)l->data)[i];
    case SBX_UINT16: return ((const uint16_t *)l->data)[i];
    case SBX_UINT32: return ((const uint32_t *)l->data)[i];
    case SBX_UINT64: {
        const uint64_t v = ((const uint64_t *)l->data)[i];
        *fits = v <= (uint64_t)INT64_MAX;
        return *fits ? (int64_t)v : 0;
    }
    default: *fits = 0; return 0;
    }
}

/* At perform: the shapes agree, and every label is a class; the labels as int64 into lab (batch). */
static sbx_status check_values(const sbx_op *op, const sbx_array *x, const sbx_array *l, int64_t *lab) {
    const int64_t batch = x->shape[0], classes = x->shape[1];
    if (x->ndim != 2 || l->ndim != 1 || l->shape[0] != batch) {
        sbx_type tl = sbx__type_of_dense(l);
        char got[128];
        sbx_type_str(&tl, got, sizeof got);
        return sbx__op_error(op, 1, "labels", "expected %lld labels (the rows of logits), got %s", (long long)batch,
                             got);
    }
    for (int64_t i = 0; i < batch; i++) {
        int fits;
        const int64_t v = label_at(l, i, &fits);
        if (!fits || v < 0 || v >= classes) {
            if (l->dtype == SBX_UINT64)
                return sbx__op_error(op, 1, "labels", "expected labels in [0, %lld), got %llu at position %lld",
                                     (long long)classes, (unsigned long long)((const uint64_t *)l->data)[i],
                                     (long long)i);
            return sbx__op_error(op, 1, "labels", "expected labels in [0, %lld), got %lld at position %lld",
                                 (long long)classes, (long long)v, (long long)i);
        }
        lab[i] = v;
    }
    return SBX_OK;
}

#define KERNELS(T, S, EXP, LOG)                                                                                        \
    static T row_max_##S(const T *restrict x, int64_t n) {                                                             \
        T m = x[0];                                                                                                    \
        for (int64_t j = 1; j < n; j++) m = x[j] > m ? x[j] : m;                                                       \
        return m;                                                                                                      \
    }                                                                                                                  \
    /* e[j] = exp(x[j] - m) (when e is not NULL), returning their sum in order */                                      \
    static T row_exp_##S(const T *restrict x, int64_t n, T m, T *restrict e) {                                         \
        T s = 0;                                                                                                       \
        for (int64_t j = 0; j < n; j++) {                                                                              \
            const T v = EXP(x[j] - m);                                                                                 \
            if (e) e[j] = v;                                                                                           \
            s += v;                                                                                                    \
        }                                                                                                              \
        return s;                                                                                                      \
    }                                                                                                                  \
    /* the sum of rows [r0, r1)'s losses, in row order: log(sum exp(x - m)) - (x[label] - m) */                        \
    static T loss_rows_##S(const T *x, const int64_t *lab, int64_t classes, int64_t r0, int64_t r1) {                  \
        T total = 0;                                                                                                   \
        for (int64_t r = r0; r < r1; r++) {                                                                            \
            const T *row = x + r * classes, m = row_max_##S(row, classes);                                             \
            total += LOG(row_exp_##S(row, classes, m, NULL)) - (row[lab[r]] - m);                                      \
        }                                                                                                              \
        return total;                                                                                                  \
    }                                                                                                                  \
    /* rows [r0, r1) of the gradient: (exp(x - m) / s - onehot) * scale */                                             \
    static void grad_rows_##S(const T *x, const int64_t *lab, int64_t classes, int64_t r0, int64_t r1, T scale,        \
                              T *y) {                                                                                  \
        for (int64_t r = r0; r < r1; r++) {                                                                            \
            const T *row = x + r * classes;                                                                            \
            T *out = y + r * classes;                                                                                  \
            const T m = row_max_##S(row, classes), s = row_exp_##S(row, classes, m, out);                              \
            for (int64_t j = 0; j < classes; j++) out[j] = out[j] / s * scale;                                         \
            out[lab[r]] -= scale;                                                                                      \
        }                                                                                                              \
    }

KERNELS(float, f32, expf, logf)
KERNELS(double, f64, exp, log)
#undef KERNELS

/* Chunk c of the batch: its rows' losses summed into part[c]; its rows of the gradient. */
static void loss_chunk(const sbx_array *x, const int64_t *lab, int64_t c, void *part) {
    const int64_t batch = x->shape[0], classes = x->shape[1];
    const int64_t r0 = c * LOSS_ROWS, r1 = r0 + LOSS_ROWS < batch ? r0 + LOSS_ROWS : batch;
    if (x->dtype == SBX_FLOAT32)
        ((float *)part)[c] = loss_rows_f32(x->data, lab, classes, r0, r1);
    else
        ((double *)part)[c] = loss_rows_f64(x->data, lab, classes, r0, r1);
}

static void grad_chunk(const sbx_array *x, const int64_t *lab, int64_t c, double scale, sbx_array *y) {
    const int64_t batch = x->shape[0], classes = x->shape[1];
    const int64_t r0 = c * LOSS_ROWS, r1 = r0 + LOSS_ROWS < batch ? r0 + LOSS_ROWS : batch;
    if (x->dtype == SBX_FLOAT32)
        grad_rows_f32(x->data, lab, classes, r0, r1, (float)scale, y->data);
    else
        grad_rows_f64(x->data, lab, classes, r0, r1, scale, y->data);
}

/* --- SoftmaxCrossEntropy -------------------------------------------------------------------------- */
static sbx_status sce_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    int64_t batch;
    SBX_CHECK(sbx__dense_arity(op, nin, 2));
    SBX_CHECK(check_logits_labels(op, in, &batch));
    out[0] = sbx_type_dense(in[0].dtype, 0, NULL);
    *nout = 1;
    return SBX_OK;
}

static sbx_status sce_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                              sbx_value *out) {
    SBX_CHECK(sbx__dense_values(op, nin, in, nout, out));
    const sbx_array *x = in[0].dense, *l = in[1].dense;
    const int64_t batch = x->ndim == 2 ? x->shape[0] : 0, classes = x->ndim == 2 ? x->shape[1] : 0;
    const int64_t chunks = (batch + LOSS_ROWS - 1) / LOSS_ROWS;
    const size_t es = sbx_dtype_size(x->dtype);
    void *scratch = NULL;
    /* scratch: the labels as int64, then each chunk's sum */
    if (batch > 0) SBX_CHECK(sbx__dense_scratch(op, ctx, batch * 8 + chunks * (int64_t)es, &scratch));
    int64_t *lab = scratch;
    SBX_CHECK(check_values(op, x, l, lab));
    sbx_array *y;
    SBX_CHECK(sbx_output_dense(&out[0], x->dtype, 0, NULL, 0, &y));
    if (batch == 0) { /* the mean of nothing */
        if (x->dtype == SBX_FLOAT32)
            *(float *)y->data = NAN;
        else
            *(double *)y->data = NAN;
        return SBX_OK;
    }
    void *part = lab + batch;
    const int f32 = x->dtype == SBX_FLOAT32;
    const int nt = sbx__dense_threads(batch * classes * EXP_COST, chunks);
    if (nt == 1) {
        for (int64_t c = 0; c < chunks; c++) loss_chunk(x, lab, c, part);
    } else {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t c = 0; c < chunks; c++) loss_chunk(x, lab, c, part);
    }
    if (f32) {
        float total = ((float *)part)[0];
        for (int64_t c = 1; c < chunks; c++) total += ((float *)part)[c];
        *(float *)y->data = total / (float)batch;
    } else {
        double total = ((double *)part)[0];
        for (int64_t c = 1; c < chunks; c++) total += ((double *)part)[c];
        *(double *)y->data = total / (double)batch;
    }
    return SBX_OK;
}

static sbx_status sce_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                           const char **reason) {
    if (!gout[0]) return SBX_OK;
    sbx_var *in[3] = {node->in[0], node->in[1], gout[0]};
    SBX_CHECK(sbx_apply(g, &sbx_op_softmax_cross_entropy_grad, NULL, 3, in, &gin[0]));
    answer[0] = SBX_GRAD_DEFINED;
    answer[1] = SBX_GRAD_UNDEFINED;
    reason[1] = "labels are integers";
    return SBX_OK;
}

const sbx_op_class sbx_op_softmax_cross_entropy = {.name = "SoftmaxCrossEntropy",
                                                   .props_size = 0,
                                                   .props_equal = sbx__noprops_equal,
                                                   .props_hash = sbx__noprops_hash,
                                                   .props_str = sbx__noprops_str,
                                                   .make_node = sce_make_node,
                                                   .infer_shape = sbx__infer_from_types,
                                                   .perform = sce_perform,
                                                   .state_free = sbx__dense_scratch_free,
                                                   .grad = sce_grad,
                                                   .connection_pattern = sbx__all_connected};

/* --- SoftmaxCrossEntropyGrad ---------------------------------------------------------------------- */
static sbx_status sce_grad_make_node(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out) {
    int64_t batch;
    SBX_CHECK(sbx__dense_arity(op, nin, 3));
    SBX_CHECK(check_logits_labels(op, in, &batch));
    SBX_CHECK(sbx__dense_float(op, &in[2], 2, "g", 0));
    SBX_CHECK(sbx__dense_same_dtype(op, in, 2, "g", 0, "logits"));
    out[0] = in[0];
    out[0].shape[0] = batch;
    *nout = 1;
    return SBX_OK;
}

static sbx_status sce_grad_perform(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                                   sbx_value *out) {
    SBX_CHECK(sbx__dense_values(op, nin, in, nout, out));
    const sbx_array *x = in[0].dense, *l = in[1].dense, *gv = in[2].dense;
    const int64_t batch = x->ndim == 2 ? x->shape[0] : 0, classes = x->ndim == 2 ? x->shape[1] : 0;
    void *scratch = NULL;
    if (batch > 0) SBX_CHECK(sbx__dense_scratch(op, ctx, batch * 8, &scratch));
    int64_t *lab = scratch;
    SBX_CHECK(check_values(op, x, l, lab));
    sbx_array *y;
    SBX_CHECK(sbx_output_dense(&out[0], x->dtype, 2, x->shape, 0, &y));
    if (batch == 0 || classes == 0) return SBX_OK;
    /* g / batch, in the dtype (exact to carry in a double for float32) */
    const double scale = x->dtype == SBX_FLOAT32 ? (double)(*(const float *)gv->data / (float)batch)
                                                 : *(const double *)gv->data / (double)batch;
    const int64_t chunks = (batch + LOSS_ROWS - 1) / LOSS_ROWS;
    const int nt = sbx__dense_threads(batch * classes * EXP_COST, chunks);
    if (nt == 1) {
        for (int64_t c = 0; c < chunks; c++) grad_chunk(x, lab, c, scale, y);
    } else {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t c = 0; c < chunks; c++) grad_chunk(x, lab, c, scale, y);
    }
    return SBX_OK;
}

static sbx_status sce_grad_grad(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin,
                                sbx_grad *answer, const char **reason) {
    (void)g;
    (void)node;
    (void)gin;
    if (!gout[0]) return SBX_OK;
    answer[0] = answer[2] = SBX_GRAD_UNDEFINED;
    reason[0] = reason[2] = "the softmax cross-entropy's second derivative is not implemented";
    answer[1] = SBX_GRAD_UNDEFINED;
    reason[1] = "labels are integers";
    return SBX_OK;
}

const sbx_op_class sbx_op_softmax_cross_entropy_grad = {.name = "SoftmaxCrossEntropyGrad",
                                                        .props_size = 0,
                                                        .props_equal = sbx__noprops_equal,
                                                        .props_hash = sbx__noprops_hash,
                                                        .props_str = sbx__noprops_str,
                                                        .make_node = sce_grad_make_node,
                                                        .infer_shape = sbx__infer_from_types,
                                                        .perform = sce_grad_perform,
                                                        .state_free = sbx__dense_scratch_free,
                                                        .grad = sce_grad_grad,
                                                        .connection_pattern = sbx__all_connected};
