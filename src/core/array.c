/* Dense row-major arrays. */
#include <string.h>

#include "core/internal.h"

static sbx_status check_array(const sbx_array *a, const char *name) {
    int64_t n;
    if (!a) return sbx__error(SBX_ERR_ARG, "%s is NULL", name);
    if (!sbx__dtype_valid(a->dtype)) return sbx__error(SBX_ERR_ARG, "%s has invalid dtype %d", name, (int)a->dtype);
    if (sbx_shape_numel(a->ndim, a->shape, &n) != SBX_OK)
        return sbx__error(SBX_ERR_ARG, "%s has an invalid shape: %s", name, sbx_last_error());
    if (n > 0 && !a->data) return sbx__error(SBX_ERR_ARG, "%s has %lld elements but data is NULL", name, (long long)n);
    return SBX_OK;
}

sbx_status sbx_array_create(sbx_dtype dtype, int ndim, const int64_t *shape, sbx_array **out) {
    return sbx__array_new(dtype, ndim, shape, 1, out);
}

sbx_status sbx__array_new(sbx_dtype dtype, int ndim, const int64_t *shape, int zero, sbx_array **out) {
    int64_t n;
    sbx_array *a;
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_array_create: out is NULL");
    if (!sbx__dtype_valid(dtype)) return sbx__error(SBX_ERR_ARG, "dtype %d is not an sbx_dtype", (int)dtype);
    SBX_CHECK(sbx_shape_numel(ndim, shape, &n));
    SBX_CHECK(sbx__alloc(1, sizeof *a, &a, "array"));
    sbx_status st = (zero ? sbx__alloc : sbx__alloc_raw)(n, sbx_dtype_size(dtype), &a->data, "array data");
    if (st != SBX_OK) {
        sbx__free(a);
        return st;
    }
    a->dtype = dtype;
    a->ndim = ndim;
    for (int i = 0; i < ndim; i++) a->shape[i] = shape[i];
    *out = a;
    return SBX_OK;
}

void sbx_array_free(sbx_array *a) {
    if (!a) return;
    sbx__free(a->data);
    sbx__free(a);
}

int64_t sbx_array_numel(const sbx_array *a) {
    int64_t n = 0;
    if (!a || sbx_shape_numel(a->ndim, a->shape, &n) != SBX_OK) return 0;
    return n;
}

sbx_status sbx_array_cast(const sbx_array *a, sbx_dtype dtype, sbx_array **out) {
    sbx_array *c;
    SBX_CHECK(check_array(a, "array"));
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_array_cast: out is NULL");
    SBX_CHECK(sbx_array_create(dtype, a->ndim, a->shape, &c));
    sbx_status st = sbx__cast(c->data, dtype, a->data, a->dtype, sbx_array_numel(a), "array cast");
    if (st != SBX_OK) {
        sbx_array_free(c);
        return st;
    }
    *out = c;
    return SBX_OK;
}

sbx_status sbx_array_copy(const sbx_array *a, sbx_array **out) {
    SBX_CHECK(check_array(a, "array"));
    return sbx_array_cast(a, a->dtype, out);
}
