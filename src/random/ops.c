/* The original's Op answers for Binomial, Poisson and Multinomial: the number of inputs, the gradient
 * kind of each input, and the output's shape. */
#include "random/internal.h"
#include "sparse/internal.h"

int sbx_random_op_inputs(sbx_random_op op) {
    switch (op) {
    case SBX_RANDOM_BINOMIAL: return 3;
    case SBX_RANDOM_POISSON: return 1;
    case SBX_RANDOM_MULTINOMIAL: return 2;
    default: return 0;
    }
}

sbx_status sbx_random_op_grad(sbx_random_op op, int input, sbx_grad *out) {
    const int inputs = sbx_random_op_inputs(op);
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_random_op_grad: out is NULL");
    if (inputs == 0) return sbx__error(SBX_ERR_ARG, "op %d is not an sbx_random_op", (int)op);
    if (input < 0 || input >= inputs)
        return sbx__error(SBX_ERR_ARG, "input %d is outside [0, %d) for this op", input, inputs);
    *out = op == SBX_RANDOM_BINOMIAL && input == 2 ? SBX_GRAD_DISCONNECTED : SBX_GRAD_UNDEFINED;
    return SBX_OK;
}

static int integer_dtype(sbx_dtype dtype) { return dtype != SBX_FLOAT32 && dtype != SBX_FLOAT64 && dtype != SBX_BOOL; }

sbx_status sbx_random_op_infer_shape(sbx_random_op op, const sbx_array *shape, const sbx_sparse *like,
                                     int64_t out[2]) {
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_random_op_infer_shape: out is NULL");
    if (sbx_random_op_inputs(op) == 0) return sbx__error(SBX_ERR_ARG, "op %d is not an sbx_random_op", (int)op);
    if (op != SBX_RANDOM_BINOMIAL) {
        SBX_CHECK(sbx__sparse_check_header(like, op == SBX_RANDOM_POISSON ? "x" : "p"));
        out[0] = like->nrows;
        out[1] = like->ncols;
        return SBX_OK;
    }
    if (!shape || !sbx__dtype_valid(shape->dtype) || !integer_dtype(shape->dtype))
        return sbx__error(SBX_ERR_ARG, "shape must be an array of an integer dtype");
    if (shape->ndim != 1 || shape->shape[0] != 2 || !shape->data)
        return sbx__error(SBX_ERR_ARG, "shape must hold 2 values in a 1-d array (it has ndim %d, %lld values)",
                          shape->ndim, (long long)sbx_array_numel(shape));
    int64_t v[2];
    SBX_CHECK(sbx__cast(v, SBX_INT64, shape->data, shape->dtype, 2, "shape")); /* exact, or an error */
    for (int i = 0; i < 2; i++)
        if (v[i] < 0) return sbx__error(SBX_ERR_ARG, "shape[%d] = %lld is negative", i, (long long)v[i]);
    out[0] = v[0];
    out[1] = v[1];
    return SBX_OK;
}
