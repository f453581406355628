/* Max pooling: forward (with or without the mask of the taps that hold each maximum) and backward.
 * Included by layer_kernels.h once per element type (the parameters are listed there), after
 * vector_impl.h. Every output element is computed by one thread in an order fixed by the shapes
 * alone, so results do not depend on the thread count. */

/* The larger of m and v, NaN when either is NaN (NaN propagates, as numpy's max). */
static inline T NAME(max_nan)(T m, T v) { return v > m || v != v ? v : m; }

/* The maximum over the taps inside the image of window o in map c of image xb (NaN if any is NaN). */
static T NAME(window_max)(const sbx_conv_plan *p, const T *xb, int64_t c, int64_t o) {
    const int64_t K = p->shape.kernel_size, *go = p->gather + o * p->width + c * K;
    T m = 0;
    int seen = 0;
    for (int64_t l = 0; l < K; l++) {
        if (go[l] < 0) continue;
        m = seen ? NAME(max_nan)(m, xb[go[l]]) : xb[go[l]];
        seen = 1;
    }
    return m;
}

/* Pooling, one whole map per step: the direct path (valid mode: window o is xm[base[o] + delta[l]])
 * or the gather path. */

/* yr[i] = max_nan(yr[i], window row of output i) over the taps t = 0 .. kl-1 of src[i * sl + t], in
 * tap order (first: yr starts from tap 0). Windows side by side (sl = kl = 2 or 3) have their own loops
 * with the stride written out, which the compiler turns into vector loads and shuffles. */
static inline void NAME(pool_taps)(const T *restrict src, int64_t row, int64_t kl, int64_t sl, int first,
                                   T *restrict yr) {
    if (kl == 2 && sl == 2) {
        for (int64_t i = 0; i < row; i++) {
            const T a = src[2 * i], b = src[2 * i + 1];
            const T m = first ? a : NAME(max_nan)(yr[i], a);
            yr[i] = NAME(max_nan)(m, b);
        }
        return;
    }
    if (kl == 3 && sl == 3) {
        for (int64_t i = 0; i < row; i++) {
            const T a = src[3 * i], b = src[3 * i + 1], c = src[3 * i + 2];
            const T m = first ? a : NAME(max_nan)(yr[i], a);
            yr[i] = NAME(max_nan)(NAME(max_nan)(m, b), c);
        }
        return;
    }
    for (int64_t t = 0; t < kl; t++) {
        if (first && t == 0) {
            for (int64_t i = 0; i < row; i++) yr[i] = src[i * sl];
            continue;
        }
        for (int64_t i = 0; i < row; i++) yr[i] = NAME(max_nan)(yr[i], src[i * sl + t]);
    }
}

/* Row q (out_size positions q .. q + row - 1, the last axis) of the maxima of map xm into yr. */
static inline void NAME(pool_row)(const sbx_conv_plan *p, const T *xm, int64_t q, T *restrict yr) {
    const int last = p->shape.ndim - 1;
    const int64_t row = p->shape.out[last], kl = p->shape.kernel[last], sl = p->shape.stride[last];
    const int64_t K = p->shape.kernel_size;
    for (int64_t r = 0; r < K; r += kl) NAME(pool_taps)(xm + p->base[q] + p->delta[r], row, kl, sl, r == 0, yr);
}

/* The maxima of a whole map (direct path). Rows are short (12 outputs for a 24-wide map pooled by 2),
 * so 256-bit vectors: 512-bit loops would leave them to the scalar remainder. With readable > 0 (the
 * elements from xm to the end of the images; only for images too large to stay cached between calls,
 * SBX__STREAM_BYTES in layers.h) each output row first asks for the input lines POOL_AHEAD bytes past
 * its first window, as many as lie between one output row's windows and the next's: the whole input
 * ahead in 2-d; in 3-d, where rows jump from plane to plane, some lines are missed; 1-d maps are one
 * row and ask for nothing. One core's hardware prefetcher alone fetched pool p3 float64 (16 MiB) at
 * about half the speed [Zen 5]; for images that stay cached the prefetches only cost time. */
SBX_CLONES_256 static void NAME(pool_map)(const sbx_conv_plan *p, const T *xm, int64_t readable, T *restrict ym) {
    const int64_t O = p->shape.out_size, row = p->shape.out[p->shape.ndim - 1];
    const int64_t span = row < O ? p->base[row] - p->base[0] : 0, line = 64 / (int64_t)sizeof(T);
    for (int64_t q = 0; q < O; q += row) {
        const int64_t from = p->base[q] + POOL_AHEAD / (int64_t)sizeof(T), left = readable - from;
        for (int64_t i = 0; i < span && i < left; i += line) __builtin_prefetch(xm + from + i, 0, 3);
        NAME(pool_row)(p, xm, q, ym + q);
    }
}

/* stream: the images are too large to stay cached (pool_map). */
static void NAME(pool_forward)(const sbx_conv_plan *p, int64_t batch, const T *x, T *y, int stream, int nt) {
    const int64_t O = p->shape.out_size, C = p->shape.channels, in = p->shape.in_size;
    const int64_t spatial = in / C, maps = batch * C;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t map = 0; map < maps; map++) {
        const int64_t b = map / C, c = map % C, at = b * in + c * spatial;
        T *ym = y + map * O;
        if (p->base) {
            /* A row of outputs along the last axis at a time, every tap of the other axes in turn:
             * the loop over the row's outputs has no branch and no index load, so it vectorises. */
            NAME(pool_map)(p, x + at, stream ? batch * in - at : 0, ym);
        } else {
            for (int64_t o = 0; o < O; o++) ym[o] = NAME(window_max)(p, x + b * in, c, o);
        }
    }
}

/* work: nt rows of out[last] (direct path only). */
static void NAME(pool_backward)(const sbx_conv_plan *p, int64_t batch, const T *x, const T *g, T *gx, T *work,
                                int nt) {
    const int64_t O = p->shape.out_size, C = p->shape.channels, K = p->shape.kernel_size, in = p->shape.in_size;
    const int64_t spatial = in / C, maps = batch * C;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t map = 0; map < maps; map++) { /* a map's windows overlap only each other */
        const int64_t b = map / C, c = map % C;
        const T *gm = g + map * O;
        if (p->base) { /* maxima by rows, as the forward pass, then each window's selection */
            const T *xm = x + b * in + c * spatial;
            const int64_t row = p->shape.out[p->shape.ndim - 1], *restrict delta = p->delta;
            T *gxm = gx + b * in + c * spatial, *restrict mr = work + (int64_t)sbx__thread() * row;
            for (int64_t q = 0; q < O; q += row) {
                NAME(pool_row)(p, xm, q, mr);
                for (int64_t i = 0; i < row; i++) {
                    const T *w = xm + p->base[q + i], add[2] = {0, gm[q + i]};
                    T *gw = gxm + p->base[q + i];
                    for (int64_t l = 0; l < K; l++) /* a load, not a branch */
                        gw[delta[l]] += add[w[delta[l]] == mr[i]];
                }
            }
        } else {
            const T *xb = x + b * in;
            for (int64_t o = 0; o < O; o++) {
                const T m = NAME(window_max)(p, xb, c, o);
                const int64_t *go = p->gather + o * p->width + c * K;
                for (int64_t l = 0; l < K; l++)
                    if (go[l] >= 0 && xb[go[l]] == m) gx[b * in + go[l]] += gm[o];
            }
        }
    }
}

/* The forward pass, also writing each window's tap mask. */
static void NAME(pool_forward_mask)(const sbx_conv_plan *p, int64_t batch, const T *x, T *y, void *mask, int nt) {
    const int64_t O = p->shape.out_size, C = p->shape.channels, K = p->shape.kernel_size, in = p->shape.in_size;
    const int64_t spatial = in / C, maps = batch * C;
    const int mb = mask_bytes(K);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t map = 0; map < maps; map++) {
        const int64_t b = map / C, c = map % C;
        T *ym = y + map * O;
        char *mm = (char *)mask + map * O * mb;
        if (p->base) {
            const T *xm = x + b * in + c * spatial;
            const int64_t row = p->shape.out[p->shape.ndim - 1], *restrict delta = p->delta;
            for (int64_t q = 0; q < O; q += row) {
                NAME(pool_row)(p, xm, q, ym + q);
                for (int64_t o = q; o < q + row; o++) {
                    const T *w = xm + p->base[o], m = ym[o];
                    uint64_t bits = 0;
                    for (int64_t l = 0; l < K; l++) bits |= (uint64_t)(w[delta[l]] == m) << l;
                    mask_put(mm, mb, o, bits);
                }
            }
        } else {
            const T *xb = x + b * in;
            for (int64_t o = 0; o < O; o++) {
                const T m = NAME(window_max)(p, xb, c, o);
                const int64_t *go = p->gather + o * p->width + c * K;
                uint64_t bits = 0;
                for (int64_t l = 0; l < K; l++) bits |= (uint64_t)(go[l] >= 0 && xb[go[l]] == m) << l;
                ym[o] = m;
                mask_put(mm, mb, o, bits);
            }
        }
    }
}

/* A row of 2 x 2 windows side by side: each window's 4 pixels (top and bottom rows). Returns the OR
 * of the masks. Half a window per lane of 32-byte vectors: each gradient and mask byte spread over two
 * lanes, every lane keeping its value where its tap's bit is set (byte masks left the compiler's own
 * vectorisation of this loop to rows of 32 windows and more). */
__attribute__((always_inline)) static inline uint64_t NAME(unpool_row_2x2)(const uint8_t *restrict m,
                                                                            const T *restrict g, T *restrict top,
                                                                            T *restrict bottom, int64_t row) {
    typedef T half_vec __attribute__((vector_size(32)));
    typedef TI half_ivec __attribute__((vector_size(32)));
    typedef T quarter_vec __attribute__((vector_size(16)));
    typedef uint8_t bytes __attribute__((vector_size(16 / sizeof(T))));
    typedef TI quarter_ivec __attribute__((vector_size(16)));
    const int64_t per = 16 / (int64_t)sizeof(T); /* windows per step */
    const half_ivec top_bits = {PAIR_BITS(1, 2)}, bottom_bits = {PAIR_BITS(4, 8)};
    uint32_t any = 0;
    int64_t i = 0;
    for (; i + per <= row; i += per) {
        quarter_vec gq;
        bytes mb;
        memcpy(&gq, g + i, sizeof gq);
        memcpy(&mb, m + i, sizeof mb);
        const quarter_ivec mq = __builtin_convertvector(mb, quarter_ivec);
        const half_vec gv = __builtin_shufflevector(gq, gq, PAIR_LANES);
        const half_ivec bits = __builtin_shufflevector(mq, mq, PAIR_LANES);
        const half_vec t = (half_vec)((half_ivec)gv & ((bits & top_bits) != 0));
        const half_vec u = (half_vec)((half_ivec)gv & ((bits & bottom_bits) != 0));
        memcpy(top + 2 * i, &t, sizeof t);
        memcpy(bottom + 2 * i, &u, sizeof u);
        for (int64_t k = 0; k < per; k++) any |= m[i + k];
    }
    for (; i < row; i++) {
        const uint32_t bits = m[i];
        any |= bits;
        top[2 * i] = bits & 1 ? g[i] : 0;
        top[2 * i + 1] = bits & 2 ? g[i] : 0;
        bottom[2 * i] = bits & 4 ? g[i] : 0;
        bottom[2 * i + 1] = bits & 8 ? g[i] : 0;
    }
    return any;
}

/* A row of 3 x 3 windows side by side: 32 bytes of windows' gradients per step (8 float windows, 24
 * pixels of each of their 3 rows; or 4 double ones), as unpool_row_2x2: each output vector takes its
 * windows' gradients and masks by a shuffle and keeps the lanes whose tap's bit is set. Returns the OR
 * of the masks. (One loop of 8 lanes for both types made double's vectors 64 bytes, which gcc's AVX2
 * code took apart through the stack: 15x float's time, perf annotate.) */
__attribute__((always_inline)) static inline uint64_t NAME(unpool_row_3x3)(const uint16_t *restrict m,
                                                                            const T *restrict g, T *restrict top,
                                                                            T *restrict mid, T *restrict bottom,
                                                                            int64_t row) {
    typedef T oct_vec __attribute__((vector_size(8 * sizeof(T))));
    typedef TI oct_ivec __attribute__((vector_size(8 * sizeof(T))));
    typedef uint16_t oct_masks __attribute__((vector_size(16)));
    typedef T quad_vec __attribute__((vector_size(4 * sizeof(T))));
    typedef TI quad_ivec __attribute__((vector_size(4 * sizeof(T))));
    typedef uint16_t quad_masks __attribute__((vector_size(8)));
    /* Output vector k of a step: the windows of its lanes, and the bit of each lane's tap in the window's top row. */
    static const oct_ivec tap_bit[3] = {{1, 2, 4, 1, 2, 4, 1, 2}, {4, 1, 2, 4, 1, 2, 4, 1}, {2, 4, 1, 2, 4, 1, 2, 4}};
    static const quad_ivec tap_bit4[3] = {{1, 2, 4, 1}, {2, 4, 1, 2}, {4, 1, 2, 4}};
    T *restrict const out[3] = {top, mid, bottom};
    oct_ivec any = {0};
    quad_ivec any4 = {0};
    int64_t i = 0;
    if (sizeof(T) == 8) /* 4 windows, 12 pixels (three 32-byte vectors) of each row */
        for (; i + 4 <= row; i += 4) {
            quad_vec gq;
            quad_masks mb;
            memcpy(&gq, g + i, sizeof gq);
            memcpy(&mb, m + i, sizeof mb);
            const quad_ivec mq = __builtin_convertvector(mb, quad_ivec);
            any4 |= mq;
            const quad_vec gv[3] = {__builtin_shufflevector(gq, gq, 0, 0, 0, 1), __builtin_shufflevector(gq, gq, 1, 1, 2, 2),
                                    __builtin_shufflevector(gq, gq, 2, 3, 3, 3)};
            const quad_ivec mv[3] = {__builtin_shufflevector(mq, mq, 0, 0, 0, 1), __builtin_shufflevector(mq, mq, 1, 1, 2, 2),
                                     __builtin_shufflevector(mq, mq, 2, 3, 3, 3)};
            UNROLL for (int r = 0; r < 3; r++)
                UNROLL for (int k = 0; k < 3; k++) {
                    const quad_vec v = (quad_vec)((quad_ivec)gv[k] & ((mv[k] & (tap_bit4[k] << (3 * r))) != 0));
                    memcpy(out[r] + 3 * i + 4 * k, &v, sizeof v);
                }
        }
    for (; sizeof(T) == 4 && i + 8 <= row; i += 8) {
        oct_vec gq;
        oct_masks mb;
        memcpy(&gq, g + i, sizeof gq);
        memcpy(&mb, m + i, sizeof mb);
        const oct_ivec mq = __builtin_convertvector(mb, oct_ivec);
        any |= mq;
        const oct_vec gv[3] = {__builtin_shufflevector(gq, gq, 0, 0, 0, 1, 1, 1, 2, 2),
                               __builtin_shufflevector(gq, gq, 2, 3, 3, 3, 4, 4, 4, 5),
                               __builtin_shufflevector(gq, gq, 5, 5, 6, 6, 6, 7, 7, 7)};
        const oct_ivec mv[3] = {__builtin_shufflevector(mq, mq, 0, 0, 0, 1, 1, 1, 2, 2),
                                __builtin_shufflevector(mq, mq, 2, 3, 3, 3, 4, 4, 4, 5),
                                __builtin_shufflevector(mq, mq, 5, 5, 6, 6, 6, 7, 7, 7)};
        for (int r = 0; r < 3; r++)
            for (int k = 0; k < 3; k++) {
                const oct_vec v = (oct_vec)((oct_ivec)gv[k] & ((mv[k] & (tap_bit[k] << (3 * r))) != 0));
                memcpy(out[r] + 3 * i + 8 * k, &v, sizeof v);
            }
    }
    uint64_t seen = 0;
    for (int l = 0; l < 8; l++) seen |= (uint64_t)any[l];
    for (int l = 0; l < 4; l++) seen |= (uint64_t)any4[l];
    for (; i < row; i++) {
        const uint32_t bits = m[i];
        seen |= bits;
        for (int t = 0; t < 3; t++) {
            top[3 * i + t] = bits >> t & 1 ? g[i] : 0;
            mid[3 * i + t] = bits >> (t + 3) & 1 ? g[i] : 0;
            bottom[3 * i + t] = bits >> (t + 6) & 1 ? g[i] : 0;
        }
    }
    return seen;
}

/* The backward pass of a map whose windows sit side by side (direct path, stride = kernel along every
 * axis): each covered pixel lies in one window, so it is written once, the window's gradient when its
 * mask names it and 0 otherwise, with no zeroing pass and no read (zero_uncovered does the rest).
 * Returns the OR of the map's masks (for the caller's check of bits past the window). */
__attribute__((always_inline)) static inline uint64_t NAME(unpool_map)(const sbx_conv_plan *p, const void *mm,
                                                                        const T *restrict gm, T *restrict gxm) {
    const int last = p->shape.ndim - 1;
    const int64_t O = p->shape.out_size, row = p->shape.out[last], kl = p->shape.kernel[last], K = p->shape.kernel_size;
    const int mb = mask_bytes(K);
    uint64_t seen = 0;
    for (int64_t q = 0; q < O; q += row) {
        if (K == 4 && kl == 2) { /* 2 x 2 windows (byte masks): a window row's pixel rows in one pass */
            T *gx0 = gxm + p->base[q];
            seen |= NAME(unpool_row_2x2)((const uint8_t *)mm + q, gm + q, gx0 + p->delta[0], gx0 + p->delta[2], row);
            continue;
        }
        if (K == 9 && kl == 3) { /* 3 x 3 windows (16-bit masks), the same way */
            T *gx0 = gxm + p->base[q];
            seen |= NAME(unpool_row_3x3)((const uint16_t *)mm + q, gm + q, gx0 + p->delta[0], gx0 + p->delta[3],
                                         gx0 + p->delta[6], row);
            continue;
        }
        for (int64_t i0 = 0; i0 < row; i0 += 64) { /* the masks widened to 64 bits, 64 windows at a time */
            const int64_t n = row - i0 < 64 ? row - i0 : 64;
            const T *restrict gq = gm + q + i0;
            uint64_t w[64];
            mask_widen(mm, mb, q + i0, n, w);
            for (int64_t i = 0; i < n; i++) seen |= w[i];
            for (int64_t r = 0; r < K; r += kl) {
                T *restrict dst = gxm + p->base[q] + p->delta[r] + kl * i0;
                if (kl == 2) {
                    for (int64_t i = 0; i < n; i++) {
                        const uint32_t bits = (uint32_t)(w[i] >> r);
                        dst[2 * i] = bits & 1 ? gq[i] : 0;
                        dst[2 * i + 1] = bits & 2 ? gq[i] : 0;
                    }
                    continue;
                }
                if (kl == 3) {
                    for (int64_t i = 0; i < n; i++) {
                        const uint32_t bits = (uint32_t)(w[i] >> r);
                        dst[3 * i] = bits & 1 ? gq[i] : 0;
                        dst[3 * i + 1] = bits & 2 ? gq[i] : 0;
                        dst[3 * i + 2] = bits & 4 ? gq[i] : 0;
                    }
                    continue;
                }
                for (int64_t t = 0; t < kl; t++)
                    for (int64_t i = 0; i < n; i++) dst[i * kl + t] = (w[i] >> (r + t)) & 1 ? gq[i] : 0;
            }
        }
    }
    return seen;
}

/* unpool_map compiled for 256-bit vectors at most (short rows, as pool_map) and for 512-bit ones. */
SBX_CLONES_256 static uint64_t NAME(unpool_map_short)(const sbx_conv_plan *p, const void *mm,
                                                      const T *restrict gm, T *restrict gxm) {
    return NAME(unpool_map)(p, mm, gm, gxm);
}
SBX_CLONES static uint64_t NAME(unpool_map_long)(const sbx_conv_plan *p, const void *mm,
                                                 const T *restrict gm, T *restrict gxm) {
    return NAME(unpool_map)(p, mm, gm, gxm);
}

/* Zeroes the pixels of a map that no window covers (i_d >= out_d kernel_d along some axis d), a line
 * along the last axis at a time. */
static void NAME(zero_uncovered)(const sbx_conv_plan *p, T *gxm) {
    const sbx_conv_shape *s = &p->shape;
    const int last = s->ndim - 1;
    const int64_t w = s->in[last], covered = s->out[last] * s->kernel[last];
    int64_t i[SBX_MAX_NDIM] = {0};
    for (T *line = gxm;; line += w) {
        int outside = 0;
        for (int d = 0; d < last; d++) outside |= i[d] >= s->out[d] * s->kernel[d];
        for (int64_t j = outside ? 0 : covered; j < w; j++) line[j] = 0;
        int d = last - 1; /* the next line */
        while (d >= 0 && ++i[d] == s->in[d]) i[d--] = 0;
        if (d < 0) return;
    }
}

/* Whether the windows of a direct-path plan sit side by side without overlap (stride = kernel along
 * every axis), so that each pixel lies in at most one window (see unpool_map). */
static int NAME(tiles)(const sbx_conv_plan *p) {
    if (!p->base) return 0;
    for (int d = 0; d < p->shape.ndim; d++)
        if (p->shape.stride[d] != p->shape.kernel[d]) return 0;
    return 1;
}

/* The backward pass from masks: each window's gradient goes to the taps its mask names. Every map's
 * block of gx is written (or zeroed, then added to) by the thread that fills it (gx arrives unfilled).
 * Returns 1 when some mask names a tap past the window (those bits are not followed). */
static int NAME(pool_backward_mask)(const sbx_conv_plan *p, int64_t batch, const void *mask, const T *g, T *gx,
                                    int nt) {
    const int64_t O = p->shape.out_size, C = p->shape.channels, K = p->shape.kernel_size, in = p->shape.in_size;
    const int64_t spatial = in / C, maps = batch * C;
    const int mb = mask_bytes(K);
    const uint64_t taps = K < 64 ? ((uint64_t)1 << K) - 1 : ~(uint64_t)0;
    const int tiled = NAME(tiles)(p);
    int bad = 0, covered = 1; /* covered: the windows cover every pixel */
    for (int d = 0; d < p->shape.ndim; d++) covered &= p->shape.out[d] * p->shape.kernel[d] == p->shape.in[d];
#pragma omp parallel for num_threads(nt) schedule(static) reduction(| : bad)
    for (int64_t map = 0; map < maps; map++) {
        const int64_t b = map / C, c = map % C;
        const char *mm = (const char *)mask + map * O * mb;
        const T *gm = g + map * O;
        T *gxb = gx + b * in;
        if (tiled) {
            const uint64_t seen = p->shape.out[p->shape.ndim - 1] * (int64_t)sizeof(T) >= 128 /* rows of 32 floats */
                                      ? NAME(unpool_map_long)(p, mm, gm, gxb + c * spatial)
                                      : NAME(unpool_map_short)(p, mm, gm, gxb + c * spatial);
            if (!covered) NAME(zero_uncovered)(p, gxb + c * spatial);
            bad |= (seen & ~taps) != 0;
            continue;
        }
        uint64_t past = 0;
        for (int64_t o = 0; o < O; o++) past |= mask_get(mm, mb, o) & ~taps;
        bad |= past != 0;
        memset(gxb + c * spatial, 0, (size_t)spatial * sizeof(T));
        for (int64_t o = 0; o < O; o++)
            for (uint64_t bits = mask_get(mm, mb, o) & taps; bits; bits &= bits - 1) {
                const int l = __builtin_ctzll(bits);
                gxb[p->base ? c * spatial + p->base[o] + p->delta[l] : p->gather[o * p->width + c * K + l]] += gm[o];
            }
    }
    return bad;
}
