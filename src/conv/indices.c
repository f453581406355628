/* The patch matrix of a convolution (the original's ConvolutionIndices) and its gather table.
 *
 * The matrix is separable: output position o reads pixel i through tap t exactly when, along every
 * dimension d, i_d = o_d * stride_d - pad_d + t_d. So for each dimension we list, for every
 * coordinate i, the pairs (o, t) that reach it, in increasing o; a pixel's column is then the
 * product of its coordinates' lists, and enumerating that product with the last dimension innermost
 * yields the output positions in raster order, which is the row order of the column. Every entry is
 * written once, with no search and no sort. */
#include <string.h>

#include "conv/internal.h"
#include "sparse/internal.h"

/* Along one dimension: for coordinate i, pairs first[i] .. first[i+1]-1 of o[] and t[]. */
typedef struct {
    int64_t *first; /* in + 1 entries */
    int64_t *o, *t; /* pairs, grouped by coordinate, o increasing within a group */
    int64_t pairs;
} axis;

static void axis_free(axis *a) {
    sbx__free(a->first);
    sbx__free(a->o);
    sbx__free(a->t);
    memset(a, 0, sizeof *a);
}

static sbx_status axis_make(const sbx_conv_shape *s, int d, axis *a) {
    int64_t in = s->in[d], k = s->kernel[d], st = s->stride[d], out = s->out[d];
    int64_t pad = s->mode == SBX_CONV_FULL ? k - 1 : 0;
    memset(a, 0, sizeof *a);
    SBX_CHECK(sbx__alloc(in + 1, sizeof(int64_t), &a->first, "convolution axis"));
    /* Count the pairs reaching each coordinate; positions o * st - pad + t with t in [0, k). Every
     * value below is within [-(k-1), in + k) by the shape's checks: no overflow. */
    for (int64_t o = 0; o < out; o++) {
        int64_t lo = o * st - pad, t0 = lo < 0 ? -lo : 0, t1 = in - lo < k ? in - lo : k;
        for (int64_t t = t0; t < t1; t++) a->first[lo + t + 1]++;
    }
    for (int64_t i = 0; i < in; i++) a->first[i + 1] += a->first[i];
    a->pairs = a->first[in];
    sbx_status st_ = sbx__alloc_raw(a->pairs, sizeof(int64_t), &a->o, "convolution axis");
    if (st_ == SBX_OK) st_ = sbx__alloc_raw(a->pairs, sizeof(int64_t), &a->t, "convolution axis");
    if (st_ != SBX_OK) {
        axis_free(a);
        return st_;
    }
    for (int64_t o = 0; o < out; o++) { /* fill in increasing o: each group ends up sorted */
        int64_t lo = o * st - pad, t0 = lo < 0 ? -lo : 0, t1 = in - lo < k ? in - lo : k;
        for (int64_t t = t0; t < t1; t++) {
            int64_t p = a->first[lo + t]++;
            a->o[p] = o;
            a->t[p] = t;
        }
    }
    memmove(a->first + 1, a->first, (size_t)in * sizeof(int64_t)); /* first[i] was advanced to the end */
    a->first[0] = 0;
    return SBX_OK;
}

/* What the fill of one column needs, shared by all columns. */
typedef struct {
    const sbx_conv_shape *s;
    axis ax[SBX_MAX_NDIM];
    int64_t ostride[SBX_MAX_NDIM], kstride[SBX_MAX_NDIM], istride[SBX_MAX_NDIM];
    int64_t spatial;  /* pixels per feature map */
    int ws;
    int64_t nkern, mult; /* mult: entries per (pixel, output position, tap): 1 or nkern */
} plan;

/* Writes column (f, pix) from position p on: rows and tap numbers. */
static void fill_column(const plan *pl, int64_t f, int64_t pix, int64_t p, int64_t *restrict rows,
                        int64_t *restrict vals) {
    const sbx_conv_shape *s = pl->s;
    const int nd = s->ndim, last = nd - 1;
    const int64_t C = s->channels, K = s->kernel_size, O = s->out_size;
    int64_t lo[SBX_MAX_NDIM], hi[SBX_MAX_NDIM], q[SBX_MAX_NDIM];
    for (int d = nd - 1; d >= 0; d--) { /* the pixel's coordinates and their pair ranges */
        int64_t i = pix % s->in[d];
        pix /= s->in[d];
        lo[d] = pl->ax[d].first[i];
        hi[d] = pl->ax[d].first[i + 1];
        if (lo[d] == hi[d]) return; /* no window reaches this pixel */
    }
    const int64_t *olast = pl->ax[last].o, *tlast = pl->ax[last].t;
    for (int64_t n = 0; n < pl->mult; n++) {
        const int64_t tap0 = (f * pl->nkern + n) * O; /* tap number base, in units of K */
        for (int d = 0; d < last; d++) q[d] = lo[d];
        for (;;) {
            int64_t bo = 0, bl = 0;
            for (int d = 0; d < last; d++) {
                bo += pl->ax[d].o[q[d]] * pl->ostride[d];
                bl += pl->ax[d].t[q[d]] * pl->kstride[d];
            }
            if (pl->ws) {
                for (int64_t r = lo[last]; r < hi[last]; r++, p++) {
                    int64_t o = bo + olast[r], l = bl + tlast[r];
                    rows[p] = (o * C + f) * K + l;
                    vals[p] = (tap0 + o) * K + l + 1;
                }
            } else {
                for (int64_t r = lo[last]; r < hi[last]; r++, p++) {
                    int64_t o = bo + olast[r], l = bl + tlast[r];
                    rows[p] = n * O + o;
                    vals[p] = (tap0 + o) * K + l + 1;
                }
            }
            int d = last - 1; /* next combination of the outer dimensions, last-but-one fastest */
            while (d >= 0 && ++q[d] == hi[d]) {
                q[d] = lo[d];
                d--;
            }
            if (d < 0) break;
        }
    }
}

/* Number of entries in the column of pixel pix (any feature map). */
static int64_t column_count(const plan *pl, int64_t pix) {
    int64_t n = pl->mult;
    for (int d = pl->s->ndim - 1; d >= 0; d--) {
        int64_t i = pix % pl->s->in[d];
        pix /= pl->s->in[d];
        n *= pl->ax[d].first[i + 1] - pl->ax[d].first[i];
    }
    return n;
}

static void plan_free(plan *pl) {
    for (int d = 0; d < SBX_MAX_NDIM; d++) axis_free(&pl->ax[d]);
}

/* Checks, the axes, and nnz and the row count, overflow-checked. */
static sbx_status plan_make(const sbx_conv_shape *s, int ws, int64_t nkern, plan *pl, int64_t *nnz, int64_t *nrows) {
    memset(pl, 0, sizeof *pl);
    SBX_CHECK(sbx__conv_shape_check(s));
    if (ws != 0 && ws != 1) return sbx__error(SBX_ERR_ARG, "weight_sharing %d must be 0 or 1", ws);
    if (nkern < 1) return sbx__error(SBX_ERR_ARG, "nkern %lld must be >= 1", (long long)nkern);
    if (ws && nkern != 1)
        return sbx__error(SBX_ERR_ARG, "nkern %lld with weight sharing: the convolution form serves every kernel with one "
                          "matrix, so nkern must be 1 (it counts kernels only for local connections)", (long long)nkern);
    pl->s = s;
    pl->ws = ws;
    pl->nkern = nkern;
    pl->mult = ws ? 1 : nkern;
    pl->spatial = s->in_size / s->channels;
    int64_t per = 1, taps;
    for (int d = s->ndim - 1; d >= 0; d--) {
        pl->ostride[d] = d == s->ndim - 1 ? 1 : pl->ostride[d + 1] * s->out[d + 1];
        pl->kstride[d] = d == s->ndim - 1 ? 1 : pl->kstride[d + 1] * s->kernel[d + 1];
        pl->istride[d] = d == s->ndim - 1 ? 1 : pl->istride[d + 1] * s->in[d + 1];
    }
    /* Rows: out_size * channels * kernel_size or nkern * out_size. The largest tap number,
     * channels * nkern * out_size * kernel_size, must fit too. Checked before anything is built. */
    int64_t cm;
    if (sbx_mul_i64(s->channels, nkern, &cm) != SBX_OK || sbx_mul_i64(s->out_size, ws ? s->channels : nkern, nrows) != SBX_OK ||
        (ws && sbx_mul_i64(*nrows, s->kernel_size, nrows) != SBX_OK) || sbx_mul_i64(cm, s->out_size, &taps) != SBX_OK ||
        sbx_mul_i64(taps, s->kernel_size, &taps) != SBX_OK)
        return sbx__error(SBX_ERR_OVERFLOW, "the patch matrix of a %lld-channel image of %lld pixels with %lld outputs "
                          "and %lld taps (nkern %lld) overflows int64", (long long)s->channels, (long long)pl->spatial,
                          (long long)s->out_size, (long long)s->kernel_size, (long long)nkern);
    for (int d = 0; d < s->ndim; d++) {
        sbx_status st = axis_make(s, d, &pl->ax[d]);
        if (st == SBX_OK && sbx_mul_i64(per, pl->ax[d].pairs, &per) != SBX_OK)
            st = sbx__error(SBX_ERR_OVERFLOW, "the patch matrix's entry count overflows int64");
        if (st != SBX_OK) {
            plan_free(pl);
            return st;
        }
    }
    if (sbx_mul_i64(per, ws ? s->channels : cm, nnz) != SBX_OK) {
        plan_free(pl);
        return sbx__error(SBX_ERR_OVERFLOW, "the patch matrix's entry count overflows int64");
    }
    return SBX_OK;
}

sbx_status sbx_conv_indices(const sbx_conv_shape *s, int ws, int64_t nkern, sbx_format format, sbx_sparse **matrix,
                            sbx_array **kmap) {
    plan pl;
    sbx_sparse *m = NULL, *csr = NULL;
    sbx_array *km = NULL;
    int64_t nnz, nrows;
    if (!matrix) return sbx__error(SBX_ERR_ARG, "sbx_conv_indices: matrix is NULL");
    if (format != SBX_CSR && format != SBX_CSC)
        return sbx__error(SBX_ERR_ARG, "format %d is neither SBX_CSR nor SBX_CSC", (int)format);
    SBX_CHECK(plan_make(s, ws, nkern, &pl, &nnz, &nrows));
    sbx_status st = sbx__sparse_new(SBX_CSC, SBX_INT64, nrows, s->in_size, nnz, 0, &m);
    if (st == SBX_OK) {
        /* Column pointers: the same counts in every feature map. */
        int64_t *ip = m->indptr, per_map = nnz / s->channels;
        for (int64_t pix = 0; pix < pl.spatial; pix++) ip[pix + 1] = ip[pix] + column_count(&pl, pix);
        for (int64_t f = 1; f < s->channels; f++)
            for (int64_t pix = 0; pix < pl.spatial; pix++)
                ip[f * pl.spatial + pix + 1] = ip[pix + 1] + f * per_map;
        int64_t cols = s->in_size;
        int nt = nnz < 200000 ? 1 : sbx__threads();
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t c = 0; c < cols; c++)
            fill_column(&pl, c / pl.spatial, c % pl.spatial, ip[c], m->indices, m->data);
    }
    plan_free(&pl);
    if (st == SBX_OK && format == SBX_CSR) {
        st = sbx_sparse_convert(m, SBX_CSR, &csr);
        sbx_sparse_free(m);
        m = csr;
    }
    if (st == SBX_OK && kmap) {
        st = sbx_array_create(SBX_INT64, 1, &nnz, &km);
        if (st == SBX_OK)
            for (int64_t p = 0; p < nnz; p++) ((int64_t *)km->data)[p] = ((const int64_t *)m->data)[p] - 1;
    }
    if (st != SBX_OK) {
        sbx_sparse_free(m);
        return st;
    }
    *matrix = m;
    if (kmap) *kmap = km;
    return SBX_OK;
}

sbx_status sbx_conv_gather(const sbx_conv_shape *s, sbx_array **table) {
    int64_t *pos[SBX_MAX_NDIM] = {0}, istride[SBX_MAX_NDIM], width, shape[2];
    sbx_array *t = NULL;
    if (!table) return sbx__error(SBX_ERR_ARG, "sbx_conv_gather: table is NULL");
    SBX_CHECK(sbx__conv_shape_check(s));
    if (sbx_mul_i64(s->channels, s->kernel_size, &width) != SBX_OK)
        return sbx__error(SBX_ERR_OVERFLOW, "channels %lld x kernel size %lld overflows int64", (long long)s->channels,
                          (long long)s->kernel_size);
    shape[0] = s->out_size;
    shape[1] = width;
    sbx_status st = sbx_array_create(SBX_INT64, 2, shape, &t);
    /* pos[d][o * k + t]: the coordinate tap t of output o reads along d, or -1 outside the image. */
    for (int d = 0; d < s->ndim && st == SBX_OK; d++) {
        int64_t n = s->out[d] * s->kernel[d], pad = s->mode == SBX_CONV_FULL ? s->kernel[d] - 1 : 0;
        st = sbx__alloc_raw(n, sizeof(int64_t), &pos[d], "gather table axis");
        for (int64_t o = 0; st == SBX_OK && o < s->out[d]; o++)
            for (int64_t k = 0; k < s->kernel[d]; k++) {
                int64_t i = o * s->stride[d] - pad + k;
                pos[d][o * s->kernel[d] + k] = i >= 0 && i < s->in[d] ? i : -1;
            }
    }
    for (int d = s->ndim - 1; d >= 0; d--) istride[d] = d == s->ndim - 1 ? 1 : istride[d + 1] * s->in[d + 1];
    if (st == SBX_OK) {
        const int64_t spatial = s->in_size / s->channels, K = s->kernel_size, nd = s->ndim;
        int64_t *tab = t->data;
#pragma omp parallel for num_threads(s->out_size * width < 200000 ? 1 : sbx__threads()) schedule(static)
        for (int64_t o = 0; o < s->out_size; o++) {
            int64_t oc[SBX_MAX_NDIM], rest = o;
            for (int d = (int)nd - 1; d >= 0; d--) {
                oc[d] = rest % s->out[d];
                rest /= s->out[d];
            }
            int64_t *row = tab + o * width;
            for (int64_t l = 0; l < K; l++) {
                int64_t idx = 0, r = l;
                for (int d = (int)nd - 1; d >= 0 && idx >= 0; d--) {
                    int64_t i = pos[d][oc[d] * s->kernel[d] + r % s->kernel[d]];
                    r /= s->kernel[d];
                    idx = i < 0 ? -1 : idx + i * istride[d];
                }
                for (int64_t f = 0; f < s->channels; f++) row[f * K + l] = idx < 0 ? -1 : idx + f * spatial;
            }
        }
    }
    for (int d = 0; d < SBX_MAX_NDIM; d++) sbx__free(pos[d]);
    if (st != SBX_OK) {
        sbx_array_free(t);
        return st;
    }
    *table = t;
    return SBX_OK;
}
