/* Layer plans: creation (checks and the gather table) and the argument checks of every execution. */
#include <limits.h>
#include <string.h>

#include "conv/internal.h"
#include "conv/layers.h"

static sbx_status plan_create(sbx__plan_kind kind, const sbx_conv_shape *shape, int64_t nkern, sbx_dtype dtype,
                              sbx_conv_plan **out) {
    static const char *const names[] = {"sbx_conv_plan_create", "sbx_local_plan_create", "sbx_pool_plan_create"};
    sbx_conv_plan *p;
    sbx_array *table;
    if (!out) return sbx__error(SBX_ERR_ARG, "%s: out is NULL", names[kind]);
    SBX_CHECK(sbx__conv_shape_check(shape));
    if (nkern < 1) return sbx__error(SBX_ERR_ARG, "nkern %lld must be >= 1", (long long)nkern);
    if (dtype != SBX_FLOAT32 && dtype != SBX_FLOAT64)
        return sbx__error(SBX_ERR_ARG, "dtype %s: layers compute in float32 or float64", sbx_dtype_name(dtype));
    /* CBLAS takes int dimensions: the workspace's and the kernels' must fit. */
    int64_t width = shape->channels * shape->kernel_size, units; /* in_size * kernel_size bounds it: no overflow */
    if (sbx_mul_i64(nkern, shape->out_size, &units) != SBX_OK || width > INT_MAX || shape->out_size > INT_MAX ||
        nkern > INT_MAX || units > INT64_MAX / width)
        return sbx__error(SBX_ERR_OVERFLOW, "a layer of %lld kernels over %lld positions of %lld taps is too large "
                          "(dimensions must fit a C int for CBLAS)", (long long)nkern, (long long)shape->out_size,
                          (long long)width);
    SBX_CHECK(sbx_conv_gather(shape, &table));
    sbx_status st = sbx__alloc(1, sizeof *p, &p, "layer plan");
    if (st != SBX_OK) {
        sbx_array_free(table);
        return st;
    }
    p->kind = kind;
    p->shape = *shape;
    p->nkern = nkern;
    p->dtype = dtype;
    p->width = width;
    /* Tiles of about TILE_BYTES of gathered patches: they stay in the cache between the gather and
     * the product. */
    const int64_t TILE_BYTES = 256 << 10, slice = shape->out_size / shape->out[0];
    int64_t rows = TILE_BYTES / (slice * width * (int64_t)sbx_dtype_size(dtype));
    if (rows < shape->kernel[0]) rows = shape->kernel[0];
    if (rows > shape->out[0]) rows = shape->out[0];
    p->tile = rows * slice;
    p->tiles = (shape->out[0] + rows - 1) / rows;
    p->gather = table->data; /* keep the table's data, drop its header */
    table->data = NULL;
    sbx_array_free(table);
    if (shape->mode == SBX_CONV_VALID) {
        st = sbx__alloc_raw(shape->out_size, sizeof(int64_t), &p->base, "pooling plan");
        if (st == SBX_OK) st = sbx__alloc_raw(shape->kernel_size, sizeof(int64_t), &p->delta, "pooling plan");
        if (st != SBX_OK) {
            sbx_conv_plan_free(p);
            return st;
        }
        /* Every tap of a valid window is inside the image: the gather table of map 0 is base + delta,
         * and delta runs in steps of one along each row of the kernel's last axis. */
        for (int64_t o = 0; o < shape->out_size; o++) p->base[o] = p->gather[o * width];
        for (int64_t l = 0; l < shape->kernel_size; l++) p->delta[l] = p->gather[l] - p->gather[0];
        p->copy_runs = shape->out_size * width > (16 << 20) / (int64_t)sizeof(int64_t);
        if (kind == PLAN_CONV && shape->stride[shape->ndim - 1] == 1) {
            st = sbx__alloc_raw(width, sizeof(int64_t), &p->taps, "convolution plan");
            if (st != SBX_OK) {
                sbx_conv_plan_free(p);
                return st;
            }
            const int64_t spatial = shape->in_size / shape->channels;
            for (int64_t j = 0; j < width; j++)
                p->taps[j] = j / shape->kernel_size * spatial + p->delta[j % shape->kernel_size];
        }
    }
    *out = p;
    return SBX_OK;
}

sbx_status sbx_conv_plan_create(const sbx_conv_shape *shape, int64_t nkern, sbx_dtype dtype, sbx_conv_plan **out) {
    return plan_create(PLAN_CONV, shape, nkern, dtype, out);
}

sbx_status sbx_local_plan_create(const sbx_conv_shape *shape, int64_t nkern, sbx_dtype dtype, sbx_conv_plan **out) {
    return plan_create(PLAN_LOCAL, shape, nkern, dtype, out);
}

sbx_status sbx_pool_plan_create(const sbx_conv_shape *shape, sbx_dtype dtype, sbx_conv_plan **out) {
    return plan_create(PLAN_POOL, shape, 1, dtype, out);
}

sbx_status sbx_pool_shape_aesara(int imgshp_len, const int64_t *imgshp, const int64_t *maxpoolshp, sbx_conv_shape *out) {
    if (!maxpoolshp) return sbx__error(SBX_ERR_ARG, "maxpoolshp is NULL");
    return sbx_conv_shape_aesara(imgshp_len, imgshp, maxpoolshp, maxpoolshp, SBX_CONV_VALID, out);
}

void sbx_conv_plan_free(sbx_conv_plan *p) {
    if (!p) return;
    sbx__free(p->gather);
    sbx__free(p->base);
    sbx__free(p->delta);
    sbx__free(p->taps);
    sbx__free(p);
}

sbx_status sbx__layer_plan(const sbx_conv_plan *p, sbx__plan_kind kind) {
    static const char *const what[] = {"a convolution", "a local-connections", "a pooling"};
    if (!p) return sbx__error(SBX_ERR_ARG, "plan is NULL");
    if (p->kind != kind)
        return sbx__error(SBX_ERR_ARG, "plan is %s plan; this call needs %s plan", what[p->kind], what[kind]);
    return SBX_OK;
}

sbx_status sbx__layer_array(const sbx_conv_plan *p, const sbx_array *a, const char *name, int64_t rows, int64_t cols,
                            int64_t *batch) {
    if (!a) return sbx__error(SBX_ERR_ARG, "%s is NULL", name);
    if (a->dtype != p->dtype)
        return sbx__error(SBX_ERR_ARG, "%s has dtype %s but the plan computes in %s", name, sbx_dtype_name(a->dtype),
                          sbx_dtype_name(p->dtype));
    int64_t n;
    SBX_CHECK(sbx_shape_numel(a->ndim, a->shape, &n));
    if (n > 0 && !a->data) return sbx__error(SBX_ERR_ARG, "%s has %lld elements but data is NULL", name, (long long)n);
    if (cols < 0) { /* a vector of -cols entries */
        if (a->ndim != 1 || a->shape[0] != -cols)
            return sbx__error(SBX_ERR_ARG, "%s must be a vector of %lld entries, not %d-d with %lld elements", name,
                              (long long)-cols, a->ndim, (long long)n);
        return SBX_OK;
    }
    if (a->ndim != 2 || (rows >= 0 && a->shape[0] != rows) || a->shape[1] != cols) {
        char want[64], got[64] = "not 2-d";
        if (rows >= 0)
            snprintf(want, sizeof want, "%lld x %lld", (long long)rows, (long long)cols);
        else
            snprintf(want, sizeof want, "batch x %lld", (long long)cols);
        if (a->ndim == 2) snprintf(got, sizeof got, "%lld x %lld", (long long)a->shape[0], (long long)a->shape[1]);
        return sbx__error(SBX_ERR_ARG, "%s must be %s; it is %s", name, want, got);
    }
    if (batch) *batch = a->shape[0];
    return SBX_OK;
}
