/* Overflow-checked int64_t size arithmetic. */
#include "core/internal.h"

sbx_status sbx_mul_i64(int64_t a, int64_t b, int64_t *out) {
    int64_t r;
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_mul_i64: out is NULL");
    if (__builtin_mul_overflow(a, b, &r))
        return sbx__error(SBX_ERR_OVERFLOW, "%lld * %lld overflows int64", (long long)a, (long long)b);
    *out = r;
    return SBX_OK;
}

sbx_status sbx_add_i64(int64_t a, int64_t b, int64_t *out) {
    int64_t r;
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_add_i64: out is NULL");
    if (__builtin_add_overflow(a, b, &r))
        return sbx__error(SBX_ERR_OVERFLOW, "%lld + %lld overflows int64", (long long)a, (long long)b);
    *out = r;
    return SBX_OK;
}

sbx_status sbx_shape_numel(int ndim, const int64_t *shape, int64_t *out) {
    int64_t n = 1;
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_shape_numel: out is NULL");
    if (ndim < 0 || ndim > SBX_MAX_NDIM)
        return sbx__error(SBX_ERR_ARG, "ndim %d is outside [0, %d]", ndim, SBX_MAX_NDIM);
    if (ndim > 0 && !shape) return sbx__error(SBX_ERR_ARG, "shape is NULL with ndim %d", ndim);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return sbx__error(SBX_ERR_ARG, "shape[%d] = %lld is negative", i, (long long)shape[i]);
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) n = 0; /* an empty array is empty whatever the other extents are */
    for (int i = 0; i < ndim && n != 0; i++)
        if (__builtin_mul_overflow(n, shape[i], &n))
            return sbx__error(SBX_ERR_OVERFLOW, "the product of the shape overflows int64 at shape[%d] = %lld", i,
                              (long long)shape[i]);
    *out = n;
    return SBX_OK;
}
