/* Layer plans: creation (checks and the gather table) and the argument checks of every execution. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conv/internal.h"
#include "conv/layers.h"

#define MAX_BATCH ((int64_t)1 << 20) /* the most images a MEASURE plan times */

sbx_status sbx__direct_tables(sbx_conv_plan *p, int taps) {
    const sbx_conv_shape *s = &p->shape;
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
    if (taps) sbx__direct_taps(p, p->taps);
    return SBX_OK;
}

void sbx__direct_taps(const sbx_conv_plan *p, int64_t *taps) {
    const sbx_conv_shape *s = &p->shape;
    const int64_t spatial = s->in_size / s->channels;
    for (int64_t j = 0; j < p->width; j++) taps[j] = j / s->kernel_size * spatial + p->delta[j % s->kernel_size];
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
    if (st == SBX_OK) st = sbx__direct_tables(a, 1);
    if (st != SBX_OK) {
        sbx_conv_plan_free(a);
        return st;
    }
    p->adjoint = a;
    return SBX_OK;
}

const char *const sbx__algo_names[SBX_ALGO_COUNT] = {"direct", "gather", "csr", "csc", "local", "pool"};

const char *sbx_algo_name(sbx_algo algo) {
    return algo >= 0 && algo < SBX_ALGO_COUNT ? sbx__algo_names[algo] : "invalid";
}

sbx_status sbx_algo_parse(const char *name, sbx_algo *out) {
    if (!name) return sbx__error(SBX_ERR_ARG, "name is NULL");
    if (!out) return sbx__error(SBX_ERR_ARG, "out is NULL");
    for (int a = 0; a < SBX_ALGO_COUNT; a++)
        if (strcmp(name, sbx__algo_names[a]) == 0) {
            *out = (sbx_algo)a;
            return SBX_OK;
        }
    return sbx__error(SBX_ERR_ARG, "path '%s': must be direct, gather, csr, csc, local or pool", name);
}

/* The transposed patch matrix of the CSR and CSC paths (internal.h) into p->patches. */
static sbx_status patches_create(sbx_conv_plan *p) {
    sbx_sparse *m = NULL;
    const sbx_format f = p->algo == SBX_ALGO_CSR ? SBX_CSR : SBX_CSC;
    SBX_CHECK(sbx_conv_indices(&p->shape, 1, 1, f, &m, NULL));
    void *ones = NULL;
    sbx_status st = sbx__alloc_raw(m->nnz, sbx_dtype_size(p->dtype), &ones, "patch matrix values");
    if (st != SBX_OK) {
        sbx_sparse_free(m);
        return st;
    }
    for (int64_t i = 0; i < m->nnz; i++)
        if (p->dtype == SBX_FLOAT32)
            ((float *)ones)[i] = 1;
        else
            ((double *)ones)[i] = 1;
    sbx__free(m->data);
    m->data = ones;
    m->dtype = p->dtype;
    m->format = f == SBX_CSR ? SBX_CSC : SBX_CSR; /* M^T: the same arrays read the other way */
    const int64_t rows = m->nrows;
    m->nrows = m->ncols;
    m->ncols = rows;
    p->patches = m;
    return SBX_OK;
}

/* Sets p's path to a, making or dropping what it needs. */
static sbx_status take_path(sbx_conv_plan *p, sbx_algo a) {
    p->algo = a;
    if (a == SBX_ALGO_CSR || a == SBX_ALGO_CSC) {
        sbx_sparse_free(p->patches);
        p->patches = NULL;
        return patches_create(p);
    }
    sbx_sparse_free(p->patches);
    p->patches = NULL;
    return SBX_OK;
}

/* Seconds since `from` (a double of the whole clock would keep only about 0.2 us). */
static double seconds_since(const struct timespec *from) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)(ts.tv_sec - from->tv_sec) + 1e-9 * (double)(ts.tv_nsec - from->tv_nsec);
}

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Fills n elements of dtype with values in [-1, 1) from a fixed sequence (the timing's inputs). */
static void fill_values(void *data, sbx_dtype dtype, int64_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        const double v = (double)(s >> 11) * 0x1.0p-52 - 1;
        if (dtype == SBX_FLOAT32)
            ((float *)data)[i] = (float)v;
        else
            ((double *)data)[i] = v;
    }
}

/* One forward pass of p's current path into out (made by the caller). */
static sbx_status run_forward(const sbx_conv_plan *p, const sbx_array *x, const sbx_array *k, sbx_array *y) {
    if (p->kind == PLAN_CONV) return sbx__conv_forward_into(p, x, k, NULL, y);
    if (p->kind == PLAN_LOCAL) return sbx__local_forward_into(p, x, k, NULL, y);
    sbx_array *r = NULL;
    SBX_CHECK(sbx_pool_forward(p, x, &r));
    sbx_array_free(r);
    return SBX_OK;
}

/* Times the forward pass of each of p's candidates on `batch` images (after a warm-up, the median of
 * at least MIN_RUNS runs and until MIN_SECONDS have passed, at most MAX_RUNS) into p->seconds, and
 * takes the fastest (the earlier candidate on a tie). */
static sbx_status measure(sbx_conv_plan *p, int64_t batch) {
    enum { MIN_RUNS = 3, MAX_RUNS = 15 };
    const double MIN_SECONDS = 0.05;
    const int64_t out_cols = (p->kind == PLAN_POOL ? p->shape.channels : p->nkern) * p->shape.out_size;
    const int64_t kcount = p->kind == PLAN_CONV ? p->nkern * p->width : p->width * p->nkern * p->shape.out_size;
    sbx_array *x = NULL, *k = NULL, *y = NULL;
    const int64_t xs[2] = {batch, p->shape.in_size}, ks[2] = {p->nkern, p->width}, ys[2] = {batch, out_cols};
    sbx_status st = sbx__array_new(p->dtype, 2, xs, 0, &x);
    if (st == SBX_OK && p->kind != PLAN_POOL) /* kernels: a matrix (conv), a vector of weights (local) */
        st = p->kind == PLAN_CONV ? sbx__array_new(p->dtype, 2, ks, 0, &k) : sbx__array_new(p->dtype, 1, &kcount, 0, &k);
    if (st == SBX_OK) st = sbx__array_new(p->dtype, 2, ys, 0, &y);
    if (st == SBX_OK) {
        fill_values(x->data, p->dtype, batch * p->shape.in_size, 1);
        if (k) fill_values(k->data, p->dtype, kcount, 2);
    }
    int best = 0;
    for (int c = 0; st == SBX_OK && c < p->ncandidates; c++) {
        double t[MAX_RUNS];
        int runs = 0;
        st = take_path(p, p->candidates[c]);
        if (st == SBX_OK) st = run_forward(p, x, k, y); /* warm-up */
        struct timespec start, t0;
        timespec_get(&start, TIME_UTC);
        for (; st == SBX_OK && runs < MAX_RUNS && (runs < MIN_RUNS || seconds_since(&start) < MIN_SECONDS); runs++) {
            timespec_get(&t0, TIME_UTC);
            st = run_forward(p, x, k, y);
            t[runs] = seconds_since(&t0);
        }
        if (st != SBX_OK) break;
        qsort(t, (size_t)runs, sizeof t[0], by_value);
        p->seconds[c] = runs % 2 ? t[runs / 2] : (t[runs / 2 - 1] + t[runs / 2]) / 2;
        if (p->seconds[c] < p->seconds[best]) best = c;
    }
    sbx_array_free(x);
    sbx_array_free(k);
    sbx_array_free(y);
    if (st == SBX_OK) st = take_path(p, p->candidates[best]);
    return st;
}

/* Output rows wide enough for the direct convolution's vectors: half a 64-byte vector or more. */
static int direct_rows(const sbx_conv_shape *s, sbx_dtype dtype) {
    return 2 * s->out[s->ndim - 1] >= 64 / (int64_t)sbx_dtype_size(dtype);
}

/* The candidates of p's forward pass (conv.h) and the choice: the rules' (ESTIMATE), the wisdom's, or
 * the fastest measured (MEASURE, then recorded in the wisdom). */
static sbx_status choose(sbx_conv_plan *p, unsigned flags, int64_t batch) {
    p->flags = flags;
    p->batch = batch;
    if (p->kind == PLAN_CONV) {
        if ((p->taps && direct_rows(&p->shape, p->dtype)) || p->phased)
            p->candidates[p->ncandidates++] = SBX_ALGO_DIRECT;
        p->candidates[p->ncandidates++] = SBX_ALGO_GATHER;
        p->candidates[p->ncandidates++] = SBX_ALGO_CSR;
        p->candidates[p->ncandidates++] = SBX_ALGO_CSC;
    } else {
        p->candidates[p->ncandidates++] = p->kind == PLAN_LOCAL ? SBX_ALGO_LOCAL : SBX_ALGO_POOL;
    }
    p->algo = p->candidates[0]; /* the rules: the direct kernel where it applies, else gather + GEMM */
    if (flags == SBX_PLAN_ESTIMATE) return SBX_OK;
    if (sbx__wisdom_lookup(p)) return take_path(p, p->algo);
    SBX_CHECK(measure(p, batch));
    return sbx__wisdom_record(p);
}

static sbx_status plan_create(sbx__plan_kind kind, const sbx_conv_shape *shape, int64_t nkern, sbx_dtype dtype,
                              unsigned flags, int64_t batch, sbx_conv_plan **out) {
    static const char *const names[] = {"sbx_conv_plan_create", "sbx_local_plan_create", "sbx_pool_plan_create"};
    sbx_conv_plan *p;
    sbx_array *table;
    if (!out) return sbx__error(SBX_ERR_ARG, "%s: out is NULL", names[kind]);
    if (flags != SBX_PLAN_ESTIMATE && flags != SBX_PLAN_MEASURE)
        return sbx__error(SBX_ERR_ARG, "flags %u: must be SBX_PLAN_ESTIMATE (0) or SBX_PLAN_MEASURE (1)", flags);
    if (batch < 1 || batch > MAX_BATCH)
        return sbx__error(SBX_ERR_ARG, "batch %lld must be in 1 .. %lld", (long long)batch, (long long)MAX_BATCH);
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
     * run along output rows, which must be half a vector or more (direct_rows): rows narrower than a
     * vector go two to a vector (the demo's second layer, 16 x 12 x 12 maps, 32 kernels 5x5, batch 64:
     * 0.55 ms forward against 1.6 by gather + GEMM and 45 by the scalar code this replaced). The
     * kernel gradient with the kernels in the lanes (kgrad_lanes) reads taps a position at a time, so
     * narrower rows have taps too, for it alone: bench_layers' small maps (output rows of 6), float32,
     * backward, 1 thread [Zen 5]: 0.34-0.38 -> 0.24-0.28 ms against gather + GEMM. */
    const int64_t es = (int64_t)sbx_dtype_size(dtype), last = shape->ndim - 1, L = 64 / es;
    if (valid) st = sbx__direct_tables(p, kind == PLAN_CONV && shape->stride[last] == 1);
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
    /* Full mode, or a stride along the last axis: the direct kernel over rearranged images (phased.c)
     * where its output rows are half a vector or more, as above. */
    if (st == SBX_OK && kind == PLAN_CONV && !p->taps && direct_rows(shape, dtype)) st = sbx__phased_create(p);
    /* Narrow rows at stride 2 along the last axis: the forward pass reads the images as they are
     * (internal.h, taps2): no pass to rearrange them, which was 8-12 % of its time (config b at stride
     * 2, float32, one thread). The 32-byte kernels (layers.c) rearrange them all the same. */
    if (st == SBX_OK && p->phased && valid && shape->stride[last] == 2 && shape->out[last] < L) {
        st = sbx__alloc_raw(width, sizeof(int64_t), &p->taps2, "convolution plan");
        if (st == SBX_OK) sbx__direct_taps(p, p->taps2);
    }
    if (st == SBX_OK) st = choose(p, flags, batch);
    if (st != SBX_OK) {
        sbx_conv_plan_free(p);
        return st;
    }
    *out = p;
    return SBX_OK;
}

sbx_status sbx_conv_plan_create(const sbx_conv_shape *shape, int64_t nkern, sbx_dtype dtype, sbx_conv_plan **out) {
    return plan_create(PLAN_CONV, shape, nkern, dtype, SBX_PLAN_ESTIMATE, 1, out);
}

sbx_status sbx_local_plan_create(const sbx_conv_shape *shape, int64_t nkern, sbx_dtype dtype, sbx_conv_plan **out) {
    return plan_create(PLAN_LOCAL, shape, nkern, dtype, SBX_PLAN_ESTIMATE, 1, out);
}

sbx_status sbx_pool_plan_create(const sbx_conv_shape *shape, sbx_dtype dtype, sbx_conv_plan **out) {
    return plan_create(PLAN_POOL, shape, 1, dtype, SBX_PLAN_ESTIMATE, 1, out);
}

sbx_status sbx_conv_plan_create_flags(const sbx_conv_shape *shape, int64_t nkern, sbx_dtype dtype, unsigned flags,
                                      int64_t batch, sbx_conv_plan **out) {
    return plan_create(PLAN_CONV, shape, nkern, dtype, flags, batch, out);
}

sbx_status sbx_local_plan_create_flags(const sbx_conv_shape *shape, int64_t nkern, sbx_dtype dtype, unsigned flags,
                                       int64_t batch, sbx_conv_plan **out) {
    return plan_create(PLAN_LOCAL, shape, nkern, dtype, flags, batch, out);
}

sbx_status sbx_pool_plan_create_flags(const sbx_conv_shape *shape, sbx_dtype dtype, unsigned flags, int64_t batch,
                                      sbx_conv_plan **out) {
    return plan_create(PLAN_POOL, shape, 1, dtype, flags, batch, out);
}

sbx_status sbx_conv_plan_info(const sbx_conv_plan *p, sbx_plan_info *out) {
    if (!p) return sbx__error(SBX_ERR_ARG, "plan is NULL");
    if (!out) return sbx__error(SBX_ERR_ARG, "out is NULL");
    memset(out, 0, sizeof *out);
    out->algo = p->algo;
    out->flags = p->flags;
    out->batch = p->batch;
    out->from_wisdom = p->from_wisdom;
    out->ncandidates = p->ncandidates;
    for (int i = 0; i < p->ncandidates; i++) {
        out->candidates[i] = p->candidates[i];
        out->seconds[i] = p->seconds[i];
    }
    return SBX_OK;
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
    sbx__free(p->taps2);
    sbx_conv_plan_free(p->adjoint);
    sbx_conv_plan_free(p->phased);
    sbx_sparse_free(p->patches);
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
