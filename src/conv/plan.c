/* Layer plans: creation (checks and the gather table) and the argument checks of every execution. */
#include <limits.h>
#include <string.h>

#include "conv/internal.h"
#include "conv/layers.h"

/* base, delta (valid mode) and, with taps set, taps of p, from p->shape (see internal.h). */
static sbx_status direct_tables(sbx_conv_plan *p, int taps) {
    const sbx_conv_shape *s = &p->shape;
    const int64_t spatial = s->in_size / s->channels;
    int64_t istride[SBX_MAX_NDIM];
    for (int d = s->ndim - 1; d >= 0; d--) istride[d] = d == s->ndim - 1 ? 1 : istride[d + 1] * s->in[d + 1];
    sbx_status st = sbx__alloc_raw(s->out_size, sizeof(int64_t), &p->base, "convolution plan");
    if (st == SBX_OK) st = sbx__alloc_raw(s->kernel_size, sizeof(int64_t), &p->delta, "convolution plan");
    if (st == SBX_OK && taps) st = sbx__alloc_raw(p->width, sizeof(int64_t), &p->taps, "convolution plan");
    if (st != SBX_OK) return st;
    for (int64_t o = 0; o < s->out_size; o++) { /* window o starts at o_d * stride_d along each axis */
        int64_t rest = o, at = 0;
        for (int d = s->ndim - 1; d >= 0; d--) {
            at += rest % s->out[d] * s->stride[d] * istride[d];
            rest /= s->out[d];
        }
        p->base[o] = at;
    }
    for (int64_t l = 0; l < s->kernel_size; l++) {
        int64_t rest = l, at = 0;
        for (int d = s->ndim - 1; d >= 0; d--) {
            at += rest % s->kernel[d] * istride[d];
            rest /= s->kernel[d];
        }
        p->delta[l] = at;
    }
    for (int64_t j = 0; taps && j < p->width; j++) p->taps[j] = j / s->kernel_size * spatial + p->delta[j % s->kernel_size];
    return SBX_OK;
}

/* The plan of the image gradient of a stride-1 convolution p (see internal.h), into p->adjoint. */
static sbx_status adjoint_create(sbx_conv_plan *p) {
    const sbx_conv_shape *s = &p->shape;
    int64_t in[SBX_MAX_NDIM];
    sbx_conv_plan *a;
    for (int d = 0; d < s->ndim; d++)
        if (s->mode == SBX_CONV_FULL)
            in[d] = s->out[d];
        else if (__builtin_add_overflow(s->out[d], 2 * (s->kernel[d] - 1), &in[d]))
            return sbx__error(SBX_ERR_OVERFLOW, "the padded output gradient's extent overflows int64");
    SBX_CHECK(sbx__alloc(1, sizeof *a, &a, "convolution plan"));
    sbx_status st = sbx_conv_shape_make(s->ndim, p->nkern, in, s->kernel, NULL, SBX_CONV_VALID, &a->shape);
    if (st == SBX_OK && sbx_mul_i64(p->nkern, s->kernel_size, &a->width) != SBX_OK)
        st = sbx__error(SBX_ERR_OVERFLOW, "the image gradient's patch width overflows int64");
    a->kind = PLAN_CONV;
    a->nkern = s->channels;
    a->dtype = p->dtype;
    if (st == SBX_OK) st = direct_tables(a, 1);
    if (st != SBX_OK) {
        sbx_conv_plan_free(a);
        return st;
    }
    p->adjoint = a;
    return SBX_OK;
}

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
    int64_t width = 0, units; /* full mode's kernels may be larger than the image: the product is checked too */
    if (sbx_mul_i64(shape->channels, shape->kernel_size, &width) != SBX_OK ||
        sbx_mul_i64(nkern, shape->out_size, &units) != SBX_OK || width > INT_MAX || shape->out_size > INT_MAX ||
        nkern > INT_MAX || units > INT64_MAX / width)
        return sbx__error(SBX_ERR_OVERFLOW, "a layer of %lld kernels over %lld positions of %lld taps is too large "
                          "(dimensions must fit a C int for CBLAS)", (long long)nkern, (long long)shape->out_size,
                          (long long)width);
    /* Valid mode reads every tap inside the image: windows are base + delta, and once the gather
     * table would outgrow the caches (copy_runs) the convolution and pooling paths copy contiguous
     * runs instead, so the table is not built at all (100 MB for a 512 x 512 image, 7 x 7 kernel).
     * Local connections always index through it. */
    const int valid = shape->mode == SBX_CONV_VALID;
    const int copy_runs = valid && shape->out_size * width > (16 << 20) / (int64_t)sizeof(int64_t);
    table = NULL;
    if (!copy_runs || kind == PLAN_LOCAL) SBX_CHECK(sbx_conv_gather(shape, &table));
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
    p->copy_runs = copy_runs;
    /* Tiles of about TILE_BYTES of gathered patches: they stay in the cache between the gather and
     * the product. */
    const int64_t TILE_BYTES = 256 << 10, slice = shape->out_size / shape->out[0];
    int64_t rows = TILE_BYTES / (slice * width * (int64_t)sbx_dtype_size(dtype));
    if (rows < shape->kernel[0]) rows = shape->kernel[0];
    if (rows > shape->out[0]) rows = shape->out[0];
    p->tile = rows * slice;
    p->tiles = (shape->out[0] + rows - 1) / rows;
    if (table) {
        p->gather = table->data; /* keep the table's data, drop its header */
        table->data = NULL;
        sbx_array_free(table);
    }
    /* The direct convolution (stride 1 on the last axis) also reads runs at base + taps. Its vectors
     * run along output rows, which must be half a vector or more: rows narrower than a vector go two
     * to a vector (the demo's second layer, 16 x 12 x 12 maps, 32 kernels 5x5, batch 64: 0.55 ms
     * forward against 1.6 by gather + GEMM and 45 by the scalar code this replaced). */
    const int64_t es = (int64_t)sbx_dtype_size(dtype), last = shape->ndim - 1, L = 64 / es;
    if (valid) st = direct_tables(p, kind == PLAN_CONV && shape->stride[last] == 1 && 2 * shape->out[last] >= L);
    int unit = 1;
    for (int d = 0; d < shape->ndim; d++) unit &= shape->stride[d] == 1;
    /* The adjoint computes `channels` maps (4 at a time below 5, else in blocks of 8 kernels): for a
     * single map 3 in 4 of its lanes would be padding, and the gather + GEMM path measured faster. Its
     * output rows are the image's, so images narrower than a vector do without it. */
    const int adjoint = kind == PLAN_CONV && unit && shape->channels >= 2 && shape->in[last] >= L;
    /* The image gradient with the maps in the lanes (internal.h) wants half a vector of maps or more
     * and an image gradient, transposed, that fits the per-thread buffer. It measured faster than the
     * gather path wherever it applies (2.5x on the demo's second layer, 3.8x on 16 x 40 x 40 maps at
     * stride 2), and than the adjoint from a vector of maps and 32 kernels on (1.4x on 16 x 28 x 28
     * maps, 1.08x on bench config c); with fewer kernels the adjoint's padding costs less than adding
     * in the sums. */
    const int64_t spatial = shape->in_size / shape->channels;
    int64_t padded = 0;
    const int maps_fit = valid && kind == PLAN_CONV && 2 * shape->channels >= L &&
                         shape->channels <= SBX__LANES_BUFFER &&
                         sbx_mul_i64(spatial, (shape->channels + L - 1) / L * L * es, &padded) == SBX_OK &&
                         padded <= SBX__LANES_BUFFER;
    p->maps_lanes = maps_fit && (!adjoint || (shape->channels >= L && nkern >= 32));
    if (st == SBX_OK && adjoint && !p->maps_lanes) st = adjoint_create(p);
    if (st != SBX_OK) {
        sbx_conv_plan_free(p);
        return st;
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
    sbx_conv_plan_free(p->adjoint);
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
