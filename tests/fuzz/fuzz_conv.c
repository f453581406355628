/* The geometry, the patch matrix and plan creation on arbitrary shapes: the bytes give 1 to 8 spatial
 * dimensions, channels, extents, kernel, stride and mode (some of them out of range), then one of the
 * patch matrix (sbx_conv_indices), a convolution, a local-connection or a pooling plan, with an
 * arbitrary kernel count and dtype. Sizes are capped so that an input runs in a millisecond. Checks:
 * a refusal leaves a message; the geometry follows its formulas; a shape struct with a changed computed
 * field is refused by every consumer; the patch matrix is valid, has the gather table's entries, and
 * its kmap is its values minus one; a plan's forward and backward passes on small integer values
 * (exact in float32 and float64) equal sums over the gather table. */
#include <string.h>

#include "fuzz.h"

#define MAX_IN 256
#define MAX_TAPS 2048

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static void check_geometry(const sbx_conv_shape *s) {
    int64_t in = 1, out = 1, k = 1;
    for (int d = 0; d < s->ndim; d++) {
        int64_t e = s->mode == SBX_CONV_VALID ? ceil_div(s->in[d] - s->kernel[d] + 1, s->stride[d])
                                             : ceil_div(s->in[d] + s->kernel[d] - 1, s->stride[d]);
        FUZZ_REQUIRE(s->out[d] == e && e >= 1, "out[%d] = %lld, not %lld", d, (long long)s->out[d], (long long)e);
        in *= s->in[d];
        out *= s->out[d];
        k *= s->kernel[d];
    }
    FUZZ_REQUIRE(s->in_size == in * s->channels && s->out_size == out && s->kernel_size == k, "the computed sizes");
}

/* An array of small integers (-2..2) from the bytes. */
static sbx_array *small_values(fuzz_bytes *b, sbx_dtype dtype, int ndim, const int64_t *shape) {
    sbx_array *a = NULL;
    FUZZ_REQUIRE(sbx_array_create(dtype, ndim, shape, &a) == SBX_OK, "sbx_array_create");
    for (int64_t i = 0; i < sbx_array_numel(a); i++) {
        int v = fuzz_u8(b) % 5 - 2;
        if (dtype == SBX_FLOAT32) ((float *)a->data)[i] = (float)v;
        else ((double *)a->data)[i] = v;
    }
    return a;
}

static double get(const sbx_array *a, int64_t i) {
    return a->dtype == SBX_FLOAT32 ? ((const float *)a->data)[i] : ((const double *)a->data)[i];
}

static void check_indices(const sbx_conv_shape *s, const int64_t *table, fuzz_bytes *b) {
    int ws = (int)fuzz_range(b, -1, 2);
    int64_t nkern = fuzz_range(b, -1, 3);
    sbx_format format = (sbx_format)fuzz_range(b, 0, 2);
    int want_kmap = fuzz_u8(b) & 1;
    sbx_sparse *m = NULL;
    sbx_array *kmap = NULL;
    fuzz_clear_error();
    sbx_status st = sbx_conv_indices(s, ws, nkern, format, &m, want_kmap ? &kmap : NULL);
    if (st != SBX_OK) {
        fuzz_check_failure(st, "sbx_conv_indices");
        FUZZ_REQUIRE(!m && !kmap, "a refused call set its output");
        return;
    }
    FUZZ_REQUIRE((ws == 0 || ws == 1) && nkern >= 1 && (format == SBX_CSR || format == SBX_CSC) &&
                     (ws == 0 || nkern == 1), "sbx_conv_indices took ws %d nkern %lld format %d", ws, (long long)nkern,
                 (int)format);
    FUZZ_REQUIRE(sbx_sparse_validate(m) == SBX_OK && m->dtype == SBX_INT64 && m->ncols == s->in_size,
                 "the patch matrix is malformed");
    int64_t inside = 0, width = s->channels * s->kernel_size;
    for (int64_t i = 0; i < s->out_size * width; i++) inside += table[i] >= 0;
    if (ws == 1)
        FUZZ_REQUIRE(m->nrows == s->out_size * width && m->nnz == inside, "the ws=1 matrix has %lld entries, the "
                     "table %lld", (long long)m->nnz, (long long)inside);
    else
        FUZZ_REQUIRE(m->nrows == nkern * s->out_size && m->nnz == nkern * inside, "the ws=0 matrix's size");
    if (kmap) {
        FUZZ_REQUIRE(kmap->dtype == SBX_INT64 && sbx_array_numel(kmap) == m->nnz, "kmap's size");
        for (int64_t p = 0; p < m->nnz; p++)
            FUZZ_REQUIRE(((int64_t *)kmap->data)[p] == ((int64_t *)m->data)[p] - 1, "kmap[%lld]", (long long)p);
    }
    sbx_sparse_free(m);
    sbx_array_free(kmap);
}

/* Convolution (local = 0) or local connections (local = 1) against the gather table. */
static void check_layer(const sbx_conv_shape *s, const int64_t *table, int local, fuzz_bytes *b) {
    sbx_dtype dtype = (sbx_dtype)fuzz_range(b, 0, SBX_NUM_DTYPES);
    int64_t nkern = fuzz_range(b, -1, 3);
    sbx_conv_plan *p = NULL;
    fuzz_clear_error();
    sbx_status st = local ? sbx_local_plan_create(s, nkern, dtype, &p) : sbx_conv_plan_create(s, nkern, dtype, &p);
    if (st != SBX_OK) {
        fuzz_check_failure(st, local ? "sbx_local_plan_create" : "sbx_conv_plan_create");
        FUZZ_REQUIRE(!p, "a refused call set its output");
        return;
    }
    FUZZ_REQUIRE((dtype == SBX_FLOAT32 || dtype == SBX_FLOAT64) && nkern >= 1, "a plan for dtype %d nkern %lld",
                 (int)dtype, (long long)nkern);
    const int64_t K = s->kernel_size, W = s->channels * K, O = s->out_size, U = nkern * O;
    int64_t batch = fuzz_range(b, 0, 2);
    int64_t ishape[2] = {batch, s->in_size}, kshape[2] = {nkern, W}, kvec = s->channels * nkern * O * K;
    int64_t bshape = local ? U : nkern, oshape[2] = {batch, U};
    int with_bias = fuzz_u8(b) & 1;
    sbx_array *x = small_values(b, dtype, 2, ishape), *k = local ? small_values(b, dtype, 1, &kvec)
                                                                   : small_values(b, dtype, 2, kshape);
    sbx_array *bias = with_bias ? small_values(b, dtype, 1, &bshape) : NULL, *g = small_values(b, dtype, 2, oshape);
    sbx_array *y = NULL, *gx = NULL, *gk = NULL, *gb = NULL;
    st = local ? sbx_local_forward(p, x, k, bias, &y) : sbx_conv_forward(p, x, k, bias, &y);
    FUZZ_REQUIRE(st == SBX_OK, "the forward pass failed");
    st = local ? sbx_local_backward(p, x, k, g, &gx, &gk, &gb) : sbx_conv_backward(p, x, k, g, &gx, &gk, &gb);
    FUZZ_REQUIRE(st == SBX_OK, "the backward pass failed");
    double *rgx = calloc((size_t)(batch * s->in_size) + 1, sizeof(double));
    double *rgk = calloc((size_t)sbx_array_numel(k) + 1, sizeof(double));
    FUZZ_REQUIRE(rgx && rgk, "out of memory");
    for (int64_t i = 0; i < batch; i++)
        for (int64_t n = 0; n < nkern; n++)
            for (int64_t o = 0; o < O; o++) {
                double sum = bias ? get(bias, local ? n * O + o : n) : 0, go = get(g, i * U + n * O + o);
                for (int64_t j = 0; j < W; j++) {
                    int64_t at = table[o * W + j];
                    if (at < 0) continue;
                    int64_t c = j / K, l = j % K;
                    int64_t w = local ? ((c * nkern + n) * O + o) * K + l : n * W + j;
                    sum += get(x, i * s->in_size + at) * get(k, w);
                    rgx[i * s->in_size + at] += go * get(k, w);
                    rgk[w] += go * get(x, i * s->in_size + at);
                }
                FUZZ_REQUIRE(get(y, i * U + n * O + o) == sum, "output (%lld, %lld, %lld)", (long long)i,
                             (long long)n, (long long)o);
            }
    for (int64_t i = 0; i < batch * s->in_size; i++) FUZZ_REQUIRE(get(gx, i) == rgx[i], "grad_images[%lld]", (long long)i);
    for (int64_t i = 0; i < sbx_array_numel(k); i++) FUZZ_REQUIRE(get(gk, i) == rgk[i], "grad_kerns[%lld]", (long long)i);
    for (int64_t u = 0; u < (local ? U : nkern); u++) {
        double sum = 0;
        for (int64_t i = 0; i < batch; i++)
            for (int64_t o = 0; o < (local ? 1 : O); o++) sum += get(g, i * U + (local ? u : u * O + o));
        FUZZ_REQUIRE(get(gb, u) == sum, "grad_bias[%lld]", (long long)u);
    }
    free(rgx);
    free(rgk);
    sbx_array_free(x);
    sbx_array_free(k);
    sbx_array_free(bias);
    sbx_array_free(g);
    sbx_array_free(y);
    sbx_array_free(gx);
    sbx_array_free(gk);
    sbx_array_free(gb);
    sbx_conv_plan_free(p);
}

static void check_pool(const sbx_conv_shape *s, const int64_t *table, fuzz_bytes *b) {
    sbx_dtype dtype = (sbx_dtype)fuzz_range(b, 0, SBX_NUM_DTYPES);
    sbx_conv_plan *p = NULL;
    fuzz_clear_error();
    sbx_status st = sbx_pool_plan_create(s, dtype, &p);
    if (st != SBX_OK) {
        fuzz_check_failure(st, "sbx_pool_plan_create");
        FUZZ_REQUIRE(!p, "a refused call set its output");
        return;
    }
    const int64_t K = s->kernel_size, W = s->channels * K, O = s->out_size, C = s->channels;
    int64_t batch = fuzz_range(b, 0, 2), ishape[2] = {batch, s->in_size}, oshape[2] = {batch, C * O};
    sbx_array *x = small_values(b, dtype, 2, ishape), *g = small_values(b, dtype, 2, oshape);
    sbx_array *y = NULL, *y2 = NULL, *mask = NULL, *gx = NULL, *gx2 = NULL;
    FUZZ_REQUIRE(sbx_pool_forward(p, x, &y) == SBX_OK && sbx_pool_backward(p, x, g, &gx) == SBX_OK,
                 "pooling failed");
    fuzz_clear_error();
    st = sbx_pool_forward_mask(p, x, &y2, &mask);
    if (st != SBX_OK) {
        fuzz_check_failure(st, "sbx_pool_forward_mask");
        FUZZ_REQUIRE(st == SBX_ERR_UNSUPPORTED && K > 64, "the mask refused a window of %lld taps", (long long)K);
    } else {
        FUZZ_REQUIRE(fuzz_arrays_equal(y, y2), "the two forward passes differ");
        FUZZ_REQUIRE(sbx_pool_backward_mask(p, mask, g, &gx2) == SBX_OK && fuzz_arrays_equal(gx, gx2),
                     "the two backward passes differ");
    }
    /* Valid mode: every tap is inside, the output is the window's maximum. */
    for (int64_t i = 0; s->mode == SBX_CONV_VALID && i < batch; i++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t o = 0; o < O; o++) {
                double m = -1e300;
                for (int64_t l = 0; l < K; l++) {
                    double v = get(x, i * s->in_size + table[o * W + c * K + l]);
                    if (v > m) m = v;
                }
                FUZZ_REQUIRE(get(y, i * C * O + c * O + o) == m, "the maximum of window (%lld, %lld, %lld)",
                             (long long)i, (long long)c, (long long)o);
            }
    sbx_array_free(x);
    sbx_array_free(g);
    sbx_array_free(y);
    sbx_array_free(y2);
    sbx_array_free(mask);
    sbx_array_free(gx);
    sbx_array_free(gx2);
    sbx_conv_plan_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_bytes b = {data, size};
    uint8_t flags = fuzz_u8(&b);
    int ndim = (int)fuzz_range(&b, 0, 9);
    int64_t channels = fuzz_range(&b, -1, 3), in[9], kernel[9], stride[9];
    for (int d = 0; d < 9; d++) {
        in[d] = fuzz_range(&b, -1, 6);
        kernel[d] = fuzz_range(&b, -1, 6);
        stride[d] = fuzz_range(&b, -1, 4);
    }
    sbx_conv_mode mode = (sbx_conv_mode)fuzz_range(&b, 0, 2);
    sbx_conv_shape s;
    fuzz_clear_error();
    sbx_status st = sbx_conv_shape_make(ndim, channels, in, kernel, flags & 1 ? NULL : stride, mode, &s);
    if (st != SBX_OK) {
        fuzz_check_failure(st, "sbx_conv_shape_make");
        return 0;
    }
    check_geometry(&s);
    if (s.in_size > MAX_IN || s.out_size * s.channels * s.kernel_size > MAX_TAPS) return 0;
    if (flags & 2) {
        /* A computed field changed: not a shape sbx_conv_shape_make gives, so every consumer refuses it. */
        sbx_conv_shape bad = s;
        int64_t delta = fuzz_range(&b, 1, 2) * (flags & 4 ? -1 : 1);
        switch (fuzz_range(&b, 0, 3)) {
        case 0: bad.out[fuzz_range(&b, 0, s.ndim - 1)] += delta; break;
        case 1: bad.in_size += delta; break;
        case 2: bad.out_size += delta; break;
        default: bad.kernel_size += delta; break;
        }
        sbx_conv_plan *p = NULL;
        sbx_array *t = NULL;
        fuzz_clear_error();
        st = sbx_conv_gather(&bad, &t);
        FUZZ_REQUIRE(st != SBX_OK, "sbx_conv_gather took an inconsistent shape");
        fuzz_check_failure(st, "sbx_conv_gather");
        fuzz_clear_error();
        st = sbx_pool_plan_create(&bad, SBX_FLOAT64, &p);
        FUZZ_REQUIRE(st != SBX_OK, "sbx_pool_plan_create took an inconsistent shape");
        fuzz_check_failure(st, "sbx_pool_plan_create");
        return 0;
    }
    sbx_array *table = NULL;
    FUZZ_REQUIRE(sbx_conv_gather(&s, &table) == SBX_OK, "sbx_conv_gather");
    FUZZ_REQUIRE(table->ndim == 2 && table->shape[0] == s.out_size && table->shape[1] == s.channels * s.kernel_size,
                 "the gather table's shape");
    const int64_t *t = table->data;
    for (int64_t i = 0; i < sbx_array_numel(table); i++)
        FUZZ_REQUIRE(t[i] >= -1 && t[i] < s.in_size, "table entry %lld is %lld", (long long)i, (long long)t[i]);
    switch (fuzz_range(&b, 0, 3)) {
    case 0: check_indices(&s, t, &b); break;
    case 1: check_layer(&s, t, 0, &b); break;
    case 2: check_layer(&s, t, 1, &b); break;
    default: check_pool(&s, t, &b); break;
    }
    sbx_array_free(table);
    return 0;
}
