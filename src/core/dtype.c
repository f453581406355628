/* Element types: sizes, names, and exact element conversion. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[SBX_NUM_DTYPES] = {
    [SBX_FLOAT32] = {"float32", 4}, [SBX_FLOAT64] = {"float64", 8}, [SBX_INT8] = {"int8", 1},
    [SBX_INT16] = {"int16", 2},     [SBX_INT32] = {"int32", 4},     [SBX_INT64] = {"int64", 8},
    [SBX_UINT8] = {"uint8", 1},     [SBX_UINT16] = {"uint16", 2},   [SBX_UINT32] = {"uint32", 4},
    [SBX_UINT64] = {"uint64", 8},   [SBX_BOOL] = {"bool", 1},
};

int sbx__dtype_valid(sbx_dtype dtype) { return (unsigned)dtype < SBX_NUM_DTYPES; }

size_t sbx_dtype_size(sbx_dtype dtype) { return sbx__dtype_valid(dtype) ? dtypes[dtype].size : 0; }

const char *sbx_dtype_name(sbx_dtype dtype) { return sbx__dtype_valid(dtype) ? dtypes[dtype].name : "invalid"; }

sbx_status sbx_dtype_parse(const char *name, sbx_dtype *out) {
    if (!name) return sbx__error(SBX_ERR_ARG, "dtype name is NULL");
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_dtype_parse: out is NULL");
    static const struct {
        const char *alias;
        sbx_dtype dtype;
    } aliases[] = {{"float", SBX_FLOAT64}, {"double", SBX_FLOAT64}, {"int", SBX_INT64}};
    for (int i = 0; i < SBX_NUM_DTYPES; i++)
        if (strcmp(name, dtypes[i].name) == 0) {
            *out = (sbx_dtype)i;
            return SBX_OK;
        }
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcmp(name, aliases[i].alias) == 0) {
            *out = aliases[i].dtype;
            return SBX_OK;
        }
    return sbx__error(SBX_ERR_ARG,
                      "dtype name '%.64s' is unknown (expected float32, float64, int8, int16, int32, int64, "
                      "uint8, uint16, uint32, uint64 or bool)",
                      name);
}

/* One element held exactly: an integer (signed or not) or a double. */
typedef struct {
    enum { V_INT, V_UINT, V_REAL } kind;
    int64_t i;
    uint64_t u;
    double d;
} value;

static value load(const void *data, sbx_dtype dtype, int64_t k) {
    value v = {V_INT, 0, 0, 0.0};
    switch (dtype) {
    case SBX_FLOAT32: v.kind = V_REAL; v.d = ((const float *)data)[k]; break;
    case SBX_FLOAT64: v.kind = V_REAL; v.d = ((const double *)data)[k]; break;
    case SBX_INT8: v.i = ((const int8_t *)data)[k]; break;
    case SBX_INT16: v.i = ((const int16_t *)data)[k]; break;
    case SBX_INT32: v.i = ((const int32_t *)data)[k]; break;
    case SBX_INT64: v.i = ((const int64_t *)data)[k]; break;
    case SBX_UINT8: v.kind = V_UINT; v.u = ((const uint8_t *)data)[k]; break;
    case SBX_UINT16: v.kind = V_UINT; v.u = ((const uint16_t *)data)[k]; break;
    case SBX_UINT32: v.kind = V_UINT; v.u = ((const uint32_t *)data)[k]; break;
    case SBX_UINT64: v.kind = V_UINT; v.u = ((const uint64_t *)data)[k]; break;
    case SBX_BOOL: v.kind = V_UINT; v.u = ((const uint8_t *)data)[k] != 0; break;
    }
    return v;
}

double sbx__get_f64(const void *data, sbx_dtype dtype, int64_t i) {
    value v = load(data, dtype, i);
    return v.kind == V_REAL ? v.d : v.kind == V_INT ? (double)v.i : (double)v.u;
}

int sbx__nonzero(const void *data, sbx_dtype dtype, int64_t i) {
    value v = load(data, dtype, i);
    return v.kind == V_REAL ? v.d != 0.0 : v.kind == V_INT ? v.i != 0 : v.u != 0;
}

/* Integer range of each integer dtype, as [lo, hi]. */
static void int_range(sbx_dtype dtype, int64_t *lo, uint64_t *hi) {
    switch (dtype) {
    case SBX_INT8: *lo = INT8_MIN; *hi = INT8_MAX; break;
    case SBX_INT16: *lo = INT16_MIN; *hi = INT16_MAX; break;
    case SBX_INT32: *lo = INT32_MIN; *hi = INT32_MAX; break;
    case SBX_INT64: *lo = INT64_MIN; *hi = INT64_MAX; break;
    case SBX_UINT8: *lo = 0; *hi = UINT8_MAX; break;
    case SBX_UINT16: *lo = 0; *hi = UINT16_MAX; break;
    case SBX_UINT32: *lo = 0; *hi = UINT32_MAX; break;
    default: *lo = 0; *hi = UINT64_MAX; break;
    }
}

/* Converts v to an integer of dtype's range, held as (negative ? i : u). Returns 0 when not exact. */
static int to_integer(value v, sbx_dtype dtype, int64_t *i, uint64_t *u, int *negative) {
    int64_t lo;
    uint64_t hi;
    int_range(dtype, &lo, &hi);
    if (v.kind == V_REAL) {
        /* 2^63 and 2^64 are exact doubles; the bounds below are exact comparisons. */
        if (!isfinite(v.d) || v.d != trunc(v.d) || v.d < -9223372036854775808.0 || v.d >= 18446744073709551616.0)
            return 0;
        if (v.d < 0) {
            v.kind = V_INT;
            v.i = (int64_t)v.d;
        } else {
            v.kind = V_UINT;
            v.u = (uint64_t)v.d;
        }
    }
    if (v.kind == V_INT && v.i < 0) {
        if (v.i < lo) return 0;
        *negative = 1;
        *i = v.i;
        return 1;
    }
    uint64_t m = v.kind == V_INT ? (uint64_t)v.i : v.u;
    if (m > hi) return 0;
    *negative = 0;
    *u = m;
    return 1;
}

static int store(void *data, sbx_dtype dtype, int64_t k, value v) {
    if (dtype == SBX_BOOL) {
        int nz = v.kind == V_REAL ? v.d != 0.0 : v.kind == V_INT ? v.i != 0 : v.u != 0;
        ((uint8_t *)data)[k] = (uint8_t)nz;
        return 1;
    }
    if (dtype == SBX_FLOAT32 || dtype == SBX_FLOAT64) {
        double d = v.kind == V_REAL ? v.d : v.kind == V_INT ? (double)v.i : (double)v.u;
        if (dtype == SBX_FLOAT64) {
            ((double *)data)[k] = d;
            return 1;
        }
        if (isfinite(d) && fabs(d) > FLT_MAX) return 0; /* would overflow float32 */
        ((float *)data)[k] = (float)d;
        return 1;
    }
    int64_t i = 0;
    uint64_t u = 0;
    int negative = 0;
    if (!to_integer(v, dtype, &i, &u, &negative)) return 0;
    int64_t s = negative ? i : (int64_t)u; /* u fits the signed types here: checked by to_integer */
    switch (dtype) {
    case SBX_INT8: ((int8_t *)data)[k] = (int8_t)s; break;
    case SBX_INT16: ((int16_t *)data)[k] = (int16_t)s; break;
    case SBX_INT32: ((int32_t *)data)[k] = (int32_t)s; break;
    case SBX_INT64: ((int64_t *)data)[k] = s; break;
    case SBX_UINT8: ((uint8_t *)data)[k] = (uint8_t)u; break;
    case SBX_UINT16: ((uint16_t *)data)[k] = (uint16_t)u; break;
    case SBX_UINT32: ((uint32_t *)data)[k] = (uint32_t)u; break;
    case SBX_UINT64: ((uint64_t *)data)[k] = u; break;
    default: break;
    }
    return 1;
}

sbx_status sbx__cast(void *dst, sbx_dtype dst_dtype, const void *src, sbx_dtype src_dtype, int64_t n,
                     const char *what) {
    if (dst_dtype == src_dtype) {
        if (n > 0) memcpy(dst, src, (size_t)n * sbx_dtype_size(src_dtype));
        return SBX_OK;
    }
    if (src_dtype == SBX_INT64 && (dst_dtype == SBX_FLOAT32 || dst_dtype == SBX_FLOAT64)) {
        /* The common case of counts to floats: always representable (rounded to nearest, as C does). */
        const int64_t *s = src;
        if (dst_dtype == SBX_FLOAT64)
            for (int64_t k = 0; k < n; k++) ((double *)dst)[k] = (double)s[k];
        else
            for (int64_t k = 0; k < n; k++) ((float *)dst)[k] = (float)s[k];
        return SBX_OK;
    }
    for (int64_t k = 0; k < n; k++) {
        value v = load(src, src_dtype, k);
        if (!store(dst, dst_dtype, k, v)) {
            char text[64];
            if (v.kind == V_REAL)
                snprintf(text, sizeof text, "%.17g", v.d);
            else if (v.kind == V_INT)
                snprintf(text, sizeof text, "%lld", (long long)v.i);
            else
                snprintf(text, sizeof text, "%llu", (unsigned long long)v.u);
            return sbx__error(SBX_ERR_ARG, "%s: element %lld = %s is not exactly representable as %s", what,
                              (long long)k, text, sbx_dtype_name(dst_dtype));
        }
    }
    return SBX_OK;
}

void sbx__accumulate(void *dst, int64_t i, const void *src, int64_t j, sbx_dtype dtype) {
    switch (dtype) {
    case SBX_FLOAT32: ((float *)dst)[i] += ((const float *)src)[j]; break;
    case SBX_FLOAT64: ((double *)dst)[i] += ((const double *)src)[j]; break;
    /* Integer sums wrap like numpy's: done in unsigned arithmetic, where wrapping is defined. */
    case SBX_INT8: ((int8_t *)dst)[i] = (int8_t)(uint8_t)((uint8_t)((int8_t *)dst)[i] + (uint8_t)((const int8_t *)src)[j]); break;
    case SBX_INT16: ((int16_t *)dst)[i] = (int16_t)(uint16_t)((uint16_t)((int16_t *)dst)[i] + (uint16_t)((const int16_t *)src)[j]); break;
    case SBX_INT32: ((int32_t *)dst)[i] = (int32_t)((uint32_t)((int32_t *)dst)[i] + (uint32_t)((const int32_t *)src)[j]); break;
    case SBX_INT64: ((int64_t *)dst)[i] = (int64_t)((uint64_t)((int64_t *)dst)[i] + (uint64_t)((const int64_t *)src)[j]); break;
    case SBX_UINT8: ((uint8_t *)dst)[i] = (uint8_t)(((uint8_t *)dst)[i] + ((const uint8_t *)src)[j]); break;
    case SBX_UINT16: ((uint16_t *)dst)[i] = (uint16_t)(((uint16_t *)dst)[i] + ((const uint16_t *)src)[j]); break;
    case SBX_UINT32: ((uint32_t *)dst)[i] += ((const uint32_t *)src)[j]; break;
    case SBX_UINT64: ((uint64_t *)dst)[i] += ((const uint64_t *)src)[j]; break;
    case SBX_BOOL: ((uint8_t *)dst)[i] = ((uint8_t *)dst)[i] | (((const uint8_t *)src)[j] != 0); break;
    }
}
