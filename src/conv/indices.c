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

/* Along one dimension: for coordinate i, pairs (o, t) first[i] .. first[i+1]-1, each kept as its
 * share of an entry's row and of its tap number (see axis_make). */
typedef struct {
    int64_t *first;    /* in + 1 entries */
    int64_t *row, *tap; /* per pair, grouped by coordinate, o increasing within a group */
    int64_t pairs;
} axis;

static void axis_free(axis *a) { /* first, row and tap share one block */
    sbx__free(a->first);
    memset(a, 0, sizeof *a);
}

/* The pairs of axis d, pair (o, t) kept as row o * row_o + t * row_t and tap o * tap_o + t * tap_t. */
static sbx_status axis_make(const sbx_conv_shape *s, int d, int64_t row_o, int64_t row_t, int64_t tap_o, int64_t tap_t,
                            axis *a) {
    int64_t in = s->in[d], k = s->kernel[d], st = s->stride[d], out = s->out[d];
    int64_t pad = s->mode == SBX_CONV_FULL ? k - 1 : 0;
    memset(a, 0, sizeof *a);
    /* Pairs: each o reaches at most k coordinates, so out * k bounds them (a product the shape's checks
     * keep far from overflow, as every value below, within [-(k-1), in + k)). */
    int64_t words = 0;
    if (sbx_mul_i64(out, 2 * k, &words) != SBX_OK || sbx_add_i64(words, in + 1, &words) != SBX_OK)
        return sbx__error(SBX_ERR_OVERFLOW, "a convolution axis of %lld outputs and %lld taps overflows",
                          (long long)out, (long long)k);
    SBX_CHECK(sbx__alloc_raw(words, sizeof(int64_t), &a->first, "convolution axis"));
    memset(a->first, 0, (size_t)(in + 1) * sizeof(int64_t));
    /* Count the pairs reaching each coordinate; positions o * st - pad + t with t in [0, k). */
    for (int64_t o = 0; o < out; o++) {
        int64_t lo = o * st - pad, t0 = lo < 0 ? -lo : 0, t1 = in - lo < k ? in - lo : k;
        for (int64_t t = t0; t < t1; t++) a->first[lo + t + 1]++;
    }
    for (int64_t i = 0; i < in; i++) a->first[i + 1] += a->first[i];
    a->pairs = a->first[in];
    a->row = a->first + in + 1;
    a->tap = a->row + a->pairs;
    for (int64_t o = 0; o < out; o++) { /* fill in increasing o: each group ends up sorted */
        int64_t lo = o * st - pad, t0 = lo < 0 ? -lo : 0, t1 = in - lo < k ? in - lo : k;
        for (int64_t t = t0; t < t1; t++) {
            int64_t p = a->first[lo + t]++;
            a->row[p] = o * row_o + t * row_t;
            a->tap[p] = o * tap_o + t * tap_t;
        }
    }
    memmove(a->first + 1, a->first, (size_t)in * sizeof(int64_t)); /* first[i] was advanced to the end */
    a->first[0] = 0;
    return SBX_OK;
}

/* count blocks of n entries made from the block at pr / pv, block t (t = 1 .. count) at r / v + (t-1) n:
 * rows pr[k] + t row_step, tap numbers pv[k] + t tap_step (each block the one before it moved by one
 * step). A column, a run of columns, a line or a feature map made from an earlier one. */
SBX_CLONES static void add_copies(const int64_t *restrict pr, const int64_t *restrict pv, int64_t n, int64_t count,
                                  int64_t row_step, int64_t tap_step, int64_t *restrict r, int64_t *restrict v) {
    for (int64_t t = 1; t <= count; t++, r += n, v += n)
        for (int64_t k = 0; k < n; k++) {
            r[k] = pr[k] + t * row_step;
            v[k] = pv[k] + t * tap_step;
        }
}

/* What the fill of the columns needs, shared by all of them. */
typedef struct {
    const sbx_conv_shape *s;
    axis ax[SBX_MAX_NDIM];
    int64_t ostride[SBX_MAX_NDIM];
    int64_t spatial;     /* pixels per feature map */
    int ws;
    int64_t nkern, mult; /* mult: entries per (pixel, output position, tap): 1 or nkern */
} plan;

/* The pair ranges of the pixel with coordinates i[]; 0 when some axis has none (an empty column). */
static inline int pixel_ranges(const plan *pl, const int64_t *i, int64_t *lo, int64_t *hi) {
    for (int d = 0; d < pl->s->ndim; d++) {
        lo[d] = pl->ax[d].first[i[d]];
        hi[d] = pl->ax[d].first[i[d] + 1];
        if (lo[d] == hi[d]) return 0;
    }
    return 1;
}

/* Advances the raster coordinates i[] of a pixel by one; returns 1 when they wrap to the next map. */
static inline int next_pixel(const sbx_conv_shape *s, int64_t *i) {
    for (int d = s->ndim - 1; d >= 0; d--) {
        if (++i[d] < s->in[d]) return 0;
        i[d] = 0;
    }
    return 1;
}

/* Writes the column of a pixel of feature map f, whose pair ranges are lo[] .. hi[], from position
 * p on: rows and tap numbers, each the sum of its pairs' shares and of the map's and kernel's. */
static void fill_column(const plan *pl, int64_t f, const int64_t *lo, const int64_t *hi, int64_t p,
                        int64_t *restrict rows, int64_t *restrict vals) {
    const sbx_conv_shape *s = pl->s;
    const int last = s->ndim - 1, mid = last - 1; /* the innermost axes: segments along last, one per pair of mid */
    const int64_t K = s->kernel_size, O = s->out_size;
    const int64_t *restrict row_part = pl->ax[last].row, *restrict tap_part = pl->ax[last].tap;
    const int64_t r0 = lo[last], r1 = hi[last];
    const int64_t *mid_row = mid >= 0 ? pl->ax[mid].row : NULL, *mid_tap = mid >= 0 ? pl->ax[mid].tap : NULL;
    const int64_t m0 = mid >= 0 ? lo[mid] : 0, m1 = mid >= 0 ? hi[mid] : 1;
    int64_t q[SBX_MAX_NDIM];
    for (int64_t n = 0; n < pl->mult; n++) {
        const int64_t row0 = pl->ws ? f * K : n * O, tap0 = (f * pl->nkern + n) * O * K + 1;
        for (int d = 0; d < mid; d++) q[d] = lo[d];
        for (;;) { /* each combination of the axes before mid, the last of them fastest */
            int64_t rb = row0, tb = tap0;
            for (int d = 0; d < mid; d++) {
                rb += pl->ax[d].row[q[d]];
                tb += pl->ax[d].tap[q[d]];
            }
            for (int64_t m = m0; m < m1; m++) {
                const int64_t row_base = mid >= 0 ? rb + mid_row[m] : rb, tap_base = mid >= 0 ? tb + mid_tap[m] : tb;
                for (int64_t r = r0; r < r1; r++, p++) {
                    rows[p] = row_base + row_part[r];
                    vals[p] = tap_base + tap_part[r];
                }
            }
            int d = mid - 1;
            while (d >= 0 && ++q[d] == hi[d]) {
                q[d] = lo[d];
                d--;
            }
            if (d < 0) break;
        }
    }
}

/* The axis d along which the column of pixel i[] (ranges lo/hi) repeats the column of its
 * predecessor along d (i_d - 1, every other coordinate the same) moved by one output position, or
 * -1. That holds with stride 1 along d when the kernel's every tap along d reaches both pixels
 * (full lists): the predecessor's pairs (o, t) become (o + 1, t). The predecessor must be a column
 * this call already filled (index at least c0). The last axis is tried first (the nearest column). */
static inline int repeat_axis(const plan *pl, const int64_t *i, const int64_t *lo, const int64_t *hi, int64_t c, int64_t c0,
                       int64_t *pred) {
    const sbx_conv_shape *s = pl->s;
    int64_t step = 1;
    for (int d = s->ndim - 1; d >= 0; step *= s->in[d], d--) {
        if (s->stride[d] != 1 || i[d] == 0 || c - step < c0 || hi[d] - lo[d] != s->kernel[d]) continue;
        const int64_t *first = pl->ax[d].first;
        if (first[i[d]] - first[i[d] - 1] != s->kernel[d]) continue;
        *pred = c - step;
        return d;
    }
    return -1;
}

/* Whether the line of pixels i[] (i[last] = 0, columns c .. c + in[last] - 1) repeats the line before
 * it along axis last - 1 moved by one output position: stride 1 along that axis, every tap along it
 * reaching both lines (full lists), and the line before among this call's columns (from c0). */
static inline int line_repeats(const plan *pl, const int64_t *i, int64_t c, int64_t c0) {
    const sbx_conv_shape *s = pl->s;
    const int d = s->ndim - 2;
    const int64_t *first = pl->ax[d].first, k = s->kernel[d];
    return s->stride[d] == 1 && i[d] > 0 && c - s->in[d + 1] >= c0 && first[i[d] + 1] - first[i[d]] == k &&
           first[i[d]] - first[i[d] - 1] == k;
}

/* Fills columns c0 .. c1-1: a column that repeats an earlier one moved by an output position
 * (repeat_axis) is a streaming add of it (rows + ostride[d] * channels * kernel_size in the
 * convolution form or + ostride[d] in local connections, tap numbers + ostride[d] * kernel_size);
 * the others are enumerated. */
SBX_CLONES static void fill_columns(const plan *pl, int64_t c0, int64_t c1, const int64_t *ip, int64_t *rows,
                                   int64_t *vals) {
    const sbx_conv_shape *s = pl->s;
    const int64_t row_unit = pl->ws ? s->channels * s->kernel_size : 1;
    int64_t i[SBX_MAX_NDIM], lo[SBX_MAX_NDIM], hi[SBX_MAX_NDIM], f = c0 / pl->spatial, pix = c0 % pl->spatial, pred;
    for (int d = s->ndim - 1; d >= 0; d--) {
        i[d] = pix % s->in[d];
        pix /= s->in[d];
    }
    const int last = s->ndim - 1;
    const int64_t W = s->in[last];
    for (int64_t c = c0; c < c1; c++) {
        if (i[last] == 0 && last > 0 && c + W <= c1 && line_repeats(pl, i, c, c0)) {
            /* The whole line of pixels along the last axis repeats the line before it along axis
             * last - 1: one streaming add over the line's entries, which are contiguous. */
            const int d = last - 1;
            const int64_t row_step = pl->ostride[d] * row_unit, tap_step = pl->ostride[d] * s->kernel_size;
            add_copies(rows + ip[c - W], vals + ip[c - W], ip[c + W] - ip[c], 1, row_step, tap_step, rows + ip[c],
                       vals + ip[c]);
            i[last] = W - 1; /* the line's last pixel; the loop's step moves past it */
            c += W - 1;
            f += next_pixel(s, i);
            continue;
        }
        if (pixel_ranges(pl, i, lo, hi)) {
            const int d = repeat_axis(pl, i, lo, hi, c, c0, &pred);
            if (d >= 0) {
                /* Along the last axis, the columns after it that repeat their predecessors too (full
                 * lists, the same outer ranges) make a run: one call. */
                int64_t run = 1;
                if (d == last) {
                    const int64_t *fl = pl->ax[last].first, k = s->kernel[last];
                    while (i[last] + run < W && c + run < c1 && fl[i[last] + run + 1] - fl[i[last] + run] == k) run++;
                }
                const int64_t row_step = pl->ostride[d] * row_unit, tap_step = pl->ostride[d] * s->kernel_size;
                add_copies(rows + ip[pred], vals + ip[pred], ip[c + 1] - ip[c], run, row_step, tap_step, rows + ip[c],
                           vals + ip[c]);
                i[last] += run - 1; /* within the line: the map does not change */
                c += run - 1;
            } else {
                fill_column(pl, f, lo, hi, ip[c], rows, vals);
            }
        }
        f += next_pixel(s, i);
    }
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
    int64_t per = 1, taps, kstride[SBX_MAX_NDIM];
    for (int d = s->ndim - 1; d >= 0; d--) {
        pl->ostride[d] = d == s->ndim - 1 ? 1 : pl->ostride[d + 1] * s->out[d + 1];
        kstride[d] = d == s->ndim - 1 ? 1 : kstride[d + 1] * s->kernel[d + 1];
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
    /* A pair's shares (bounded by the row count and the largest tap number: no overflow): the row
     * (o * ostride * channels + f) * kernel_size + t * kstride in the convolution form, nkern's
     * n * out_size + o * ostride in local connections; the tap number ((f * nkern + n) * out_size +
     * o * ostride) * kernel_size + t * kstride + 1. */
    for (int d = 0; d < s->ndim; d++) {
        const int64_t os = pl->ostride[d], row_o = ws ? os * s->channels * s->kernel_size : os;
        sbx_status st = axis_make(s, d, row_o, ws ? kstride[d] : 0, os * s->kernel_size, kstride[d], &pl->ax[d]);
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

/* Map f repeats map 0 with the rows moved by f * kernel_size (convolution form; the local connections
 * form has the same rows) and the tap numbers by f * nkern * out_size * kernel_size. The entries of maps
 * 1 .. channels-1 in nt equal shares: share t. */
static void copy_maps(const plan *pl, sbx_sparse *m, int t, int nt) {
    const sbx_conv_shape *s = pl->s;
    const int64_t nnz = m->nnz, per_map = nnz / s->channels, rest = nnz - per_map;
    const int64_t row_step = pl->ws ? s->kernel_size : 0, tap_step = pl->nkern * s->out_size * s->kernel_size;
    const int64_t lo = per_map + rest / nt * t, hi = t + 1 == nt ? nnz : per_map + rest / nt * (t + 1);
    for (int64_t p = lo; p < hi;) { /* the part of map f = p / per_map in [p, hi) */
        const int64_t f = p / per_map, in_map = p - f * per_map;
        const int64_t n = (f + 1) * per_map < hi ? (f + 1) * per_map - p : hi - p;
        add_copies(m->indices + in_map, (int64_t *)m->data + in_map, n, 1, f * row_step, f * tap_step, m->indices + p,
                   (int64_t *)m->data + p);
        p += n;
    }
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
        int64_t *ip = m->indptr, per_map = nnz / s->channels, i[SBX_MAX_NDIM] = {0}, sum = 0;
        const int last = s->ndim - 1;
        const int64_t *fl = pl.ax[last].first;
        const int64_t W = s->in[last];
        for (int64_t pix = 0; pix < pl.spatial; pix += W) { /* a line along the last axis at a time */
            int64_t outer = pl.mult;
            for (int d = 0; d < last; d++) outer *= pl.ax[d].first[i[d] + 1] - pl.ax[d].first[i[d]];
            /* The pixel j of the line ends outer * fl[j + 1] entries into it (fl[0] = 0). */
            for (int64_t j = 0; j < W; j++) ip[pix + j + 1] = sum + outer * fl[j + 1];
            sum += outer * fl[W];
            i[last] = W - 1;
            next_pixel(s, i);
        }
        for (int64_t f = 1; f < s->channels; f++)
            for (int64_t pix = 0; pix < pl.spatial; pix++)
                ip[f * pl.spatial + pix + 1] = ip[pix + 1] + f * per_map;
        /* Small matrices run on the calling thread: an OpenMP region costs about 0.25 us even with one
         * thread, 5% of the 28x28 build. */
        const int nt = nnz < 200000 ? 1 : sbx__threads();
        const int64_t sp = pl.spatial;
        if (nt == 1) {
            fill_columns(&pl, 0, sp, ip, m->indices, m->data);
            copy_maps(&pl, m, 0, 1);
        } else { /* shares by loop index, not thread number: the team may have fewer threads than nt */
#pragma omp parallel num_threads(nt)
            {
#pragma omp for schedule(static)
                for (int t = 0; t < nt; t++) /* the first feature map's columns, a block per share */
                    fill_columns(&pl, sp / nt * t, t + 1 == nt ? sp : sp / nt * (t + 1), ip, m->indices, m->data);
#pragma omp for schedule(static)
                for (int t = 0; t < nt; t++) copy_maps(&pl, m, t, nt); /* after the loop above's barrier */
            }
        }
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
