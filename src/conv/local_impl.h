/* The typed kernels of local connections (unshared weights), included by layer_kernels.h once per
 * element type after vector_impl.h.
 *
 * A local layer is a small matrix product per output position o: its outputs (batch x nkern) are
 * the patches of position o (batch x width) times the weights of o (width x nkern), the weight of
 * kernel n and tap j = c * K + l at w[((c * N + n) * O + o) * K + l]. Each product is too small for
 * a BLAS call per position to pay, so one register block (lc_block below) serves the forward pass
 * and both gradients, reading the weights where they are (or, in the forward pass when several blocks
 * of images read them, an item's copy, tap-major) and the rest laid out for it:
 *  - the images transposed, xt: row i holds pixel i of every image, Bp = batch rounded up to a
 *    vector (the padding zero), and a last row of zeros that taps outside the image (full mode) read;
 *  - the forward pass's outputs transposed likewise (yt, U x Bp, U = nkern * O), transposed back at
 *    the end;
 *  - for the image gradient, the output gradient transposed (gt, U x Bp) and the image gradient
 *    summed transposed (gxt, as xt);
 *  - for the weight gradient, the output gradient of each position as batch rows of nkern (gp,
 *    O x batch x NP, nkern padded to a vector with zeros).
 * Every output element is written by one thread and summed in an order fixed by the shapes alone:
 * results do not depend on the thread count. */

/* A product for the register block: acc[r][v] = sum over k < depth of s(r, k) * u(k, v), with
 *   s(r, k) = s[(roffs ? roffs[r] : r * sr) + (soffs ? soffs[k] : k * ss)]  (broadcast),
 *   u(k, v) = the vector at u + v * LANES_T + (uoffs ? uoffs[k] : k * us),
 * and row r of the result going to d + v * LANES_T + (doffs ? doffs[r] : r * ds), added to what is
 * there when add, skipped where doffs[r] < 0. */
typedef struct {
    int64_t depth;
    const T *s;
    int64_t sr, ss;
    const int64_t *roffs, *soffs;
    const T *u;
    int64_t us;
    const int64_t *uoffs;
    T *d;
    int64_t ds;
    const int64_t *doffs;
    int add;
} NAME(lc_product);

/* Rows r0 .. r0 + rows - 1 (rows <= R) and vectors v0 .. v0 + BV - 1 of a product, in R x BV
 * accumulators. Rows past `rows` repeat the last row's operand (their sums are dropped). */
#define LC_BLOCK(BV, R)                                                                                             \
    SBX_CLONES static void NAME(lc_block_##BV##_##R)(const NAME(lc_product) *a, int64_t r0, int64_t v0,             \
                                                     int64_t rows) {                                                \
        const int64_t depth = a->depth, ss = a->ss, us = a->us, *restrict soffs = a->soffs;                         \
        const int64_t *restrict uoffs = a->uoffs;                                                                   \
        const T *sp[R], *restrict u = a->u + v0 * LANES_T;                                                          \
        UNROLL for (int r = 0; r < R; r++) {                                                                        \
            const int64_t rr = r0 + (r < rows ? r : rows - 1);                                                      \
            sp[r] = a->s + (a->roffs ? a->roffs[rr] : rr * a->sr);                                                  \
        }                                                                                                           \
        NAME(vec) acc[R][BV];                                                                                       \
        UNROLL for (int r = 0; r < R; r++)                                                                          \
            UNROLL for (int v = 0; v < BV; v++) acc[r][v] = (NAME(vec)){0};                                         \
        for (int64_t k = 0; k < depth; k++) {                                                                       \
            const T *uk = u + (uoffs ? uoffs[k] : k * us);                                                          \
            const int64_t sk = soffs ? soffs[k] : k * ss;                                                           \
            NAME(vec) x[BV];                                                                                        \
            UNROLL for (int v = 0; v < BV; v++) memcpy(&x[v], uk + v * LANES_T, sizeof x[v]);                       \
            UNROLL for (int r = 0; r < R; r++) {                                                                    \
                const T w = sp[r][sk];                                                                              \
                UNROLL for (int v = 0; v < BV; v++) acc[r][v] += x[v] * w;                                          \
            }                                                                                                       \
        }                                                                                                           \
        UNROLL for (int r = 0; r < R; r++) if (r < rows) {                                                        \
            const int64_t at = a->doffs ? a->doffs[r0 + r] : (r0 + r) * a->ds;                                      \
            if (at < 0) continue;                                                                                   \
            T *dr = a->d + v0 * LANES_T + at;                                                                       \
            UNROLL for (int v = 0; v < BV; v++) {                                                                   \
                NAME(vec) out = acc[r][v];                                                                          \
                if (a->add) {                                                                                       \
                    NAME(vec) old;                                                                                  \
                    memcpy(&old, dr + v * LANES_T, sizeof old);                                                     \
                    out += old;                                                                                     \
                }                                                                                                   \
                memcpy(dr + v * LANES_T, &out, sizeof out);                                                         \
            }                                                                                                       \
        }                                                                                                           \
    }
/* Blocks of 1 to LC_VECTORS vectors; R rows in 24 accumulators at most of the 32 vector registers
 * (12 of 16 with 32-byte vectors), and shorter blocks for the last rows, so that few rows are
 * computed only to be dropped. */
#if SBX_VEC_BYTES == 64
#define LC_VECTORS 4
LC_BLOCK(4, 6)
LC_BLOCK(4, 3)
LC_BLOCK(3, 8)
LC_BLOCK(3, 4)
LC_BLOCK(2, 12)
LC_BLOCK(2, 8)
LC_BLOCK(2, 4)
LC_BLOCK(1, 24)
LC_BLOCK(1, 16)
LC_BLOCK(1, 8)
#define LC_BLOCKS                                                                                 \
    {{NAME(lc_block_1_24), NAME(lc_block_1_16), NAME(lc_block_1_8)},                              \
     {NAME(lc_block_2_12), NAME(lc_block_2_8), NAME(lc_block_2_4)},                               \
     {NAME(lc_block_3_8), NAME(lc_block_3_4), NULL},                                              \
     {NAME(lc_block_4_6), NAME(lc_block_4_3), NULL}}
#define LC_HEIGHTS {{24, 16, 8}, {12, 8, 4}, {8, 4, 0}, {6, 3, 0}}
#else
#define LC_VECTORS 3
LC_BLOCK(3, 4)
LC_BLOCK(3, 2)
LC_BLOCK(2, 6)
LC_BLOCK(2, 4)
LC_BLOCK(2, 2)
LC_BLOCK(1, 12)
LC_BLOCK(1, 8)
LC_BLOCK(1, 4)
#define LC_BLOCKS                                                                                 \
    {{NAME(lc_block_1_12), NAME(lc_block_1_8), NAME(lc_block_1_4)},                               \
     {NAME(lc_block_2_6), NAME(lc_block_2_4), NAME(lc_block_2_2)},                                \
     {NAME(lc_block_3_4), NAME(lc_block_3_2), NULL}}
#define LC_HEIGHTS {{12, 8, 4}, {6, 4, 2}, {4, 2, 0}}
#endif
#undef LC_BLOCK

/* Rows r0 .. r1 - 1 and vectors v0 .. v1 - 1 of a product: blocks of LC_VECTORS vectors and the
 * ones left, each over its rows in full blocks and then the shortest block that holds the rows left. */
static void NAME(lc_run)(const NAME(lc_product) *a, int64_t r0, int64_t r1, int64_t v0, int64_t v1) {
    typedef void (*block)(const NAME(lc_product) *, int64_t, int64_t, int64_t);
    static const block blocks[LC_VECTORS][3] = LC_BLOCKS;
    static const int64_t heights[LC_VECTORS][3] = LC_HEIGHTS;
    for (int64_t v = v0; v < v1; v += LC_VECTORS) {
        const int bv = v1 - v < LC_VECTORS ? (int)(v1 - v) : LC_VECTORS;
        for (int64_t r = r0; r < r1;) {
            const int64_t left = r1 - r;
            int pick = 0;
            for (int i = 1; i < 3 && heights[bv - 1][i] > 0; i++)
                if (heights[bv - 1][i] >= left) pick = i;
            const int64_t h = heights[bv - 1][pick], take = left < h ? left : h;
            blocks[bv - 1][pick](a, r, v, take);
            r += take;
        }
    }
}
#undef LC_BLOCKS
#undef LC_HEIGHTS

/* dst[c * ds + r] = src[r * ss + c] for r0 <= r < r1 and c0 <= c < c1: whole L x L tiles transposed in
 * registers, the edges element by element. */
SBX_CLONES static void NAME(lc_transpose)(const T *restrict src, int64_t ss, int64_t r0, int64_t r1, int64_t c0,
                                          int64_t c1, T *restrict dst, int64_t ds) {
    const int64_t L = LANES_T;
    int64_t r = r0;
    for (; r + L <= r1; r += L) {
        int64_t c = c0;
        for (; c + L <= c1; c += L) {
            NAME(vec) v[LANES_T];
            UNROLL for (int64_t i = 0; i < L; i++) memcpy(&v[i], src + (r + i) * ss + c, sizeof v[i]);
            NAME(transpose_tile)(v);
            UNROLL for (int64_t i = 0; i < L; i++) memcpy(dst + (c + i) * ds + r, &v[i], sizeof v[i]);
        }
        for (; c < c1; c++)
            for (int64_t i = 0; i < L; i++) dst[c * ds + r + i] = src[(r + i) * ss + c];
    }
    for (int64_t c = c0; c < c1 && r < r1; c++)
        for (int64_t i = r; i < r1; i++) dst[c * ds + i] = src[i * ss + c];
}

/* The transpose of the rows x cols matrix src into dst, with zeros in rows .. rpad - 1 of every
 * column, in tiles over nt threads. */
static void NAME(lc_transpose_all)(const T *src, int64_t ss, int64_t rows, int64_t rpad, int64_t cols, T *dst,
                                   int64_t ds, int nt) {
    enum { RT = 64, CT = 256 };
    const int64_t rt = (rows + RT - 1) / RT, ct = (cols + CT - 1) / CT;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t t = 0; t < rt * ct; t++) {
        const int64_t r0 = t / ct * RT, c0 = t % ct * CT;
        const int64_t r1 = r0 + RT < rows ? r0 + RT : rows, c1 = c0 + CT < cols ? c0 + CT : cols;
        NAME(lc_transpose)(src, ss, r0, r1, c0, c1, dst, ds);
        if (r1 == rows && rows < rpad)
            for (int64_t c = c0; c < c1; c++) memset(dst + c * ds + rows, 0, (size_t)(rpad - rows) * sizeof(T));
    }
}

/* xt ((in + 1) x Bp): the images transposed, padded with zero images, and a last row of zeros. */
static void NAME(lc_images)(const sbx_conv_plan *p, int64_t batch, int64_t Bp, const T *x, T *xt, int nt) {
    const int64_t in = p->shape.in_size;
    NAME(lc_transpose_all)(x, in, batch, Bp, in, xt, Bp, nt);
    memset(xt + in * Bp, 0, (size_t)Bp * sizeof(T));
}

/* offs[j] = Bp times the input row of tap j at position o; for taps outside the image, the zero row
 * (in) when outside >= 0, else -1. */
static void NAME(lc_offsets)(const sbx_conv_plan *p, int64_t o, int64_t Bp, int64_t outside, int64_t *offs) {
    const int64_t W = p->width, *g = p->gather + o * W;
    for (int64_t j = 0; j < W; j++) offs[j] = g[j] >= 0 ? g[j] * Bp : outside < 0 ? -1 : outside * Bp;
}

/* taps[j] = where the weight of tap j = c * K + l is, from that of tap 0 of the same kernel and
 * position: c * N * O * K + l. */
static void NAME(lc_weight_taps)(const sbx_conv_plan *p, int64_t *taps) {
    const int64_t K = p->shape.kernel_size, NOK = p->nkern * p->shape.out_size * K;
    for (int64_t j = 0; j < p->width; j++) taps[j] = j / K * NOK + j % K;
}

/* Asks for the unshared weights of position o: K at each of the rows (map, kernel) pairs, into L2 (locality
 * 1), not L1: a position's weights are rows scattered runs of K (config b: 192 runs of 72 bytes, about 25
 * KiB with their lines), so two positions ahead in L1 crowded a 32 KiB L1 (Zen 4) out of the images and
 * outputs being worked on, and the weight loads stalled (perf annotate; config b float64 forward, one
 * thread: 7.8-10.0 ms into L1, 5.3-5.8 into L2 three positions ahead). */
static inline void NAME(lc_weights_ahead)(const T *w, int64_t rows, int64_t O, int64_t K, int64_t o) {
    for (int64_t r = 0; r < rows; r++) {
        const T *at = w + (r * O + o) * K;
        for (int64_t i = 0; i < K; i += LANES_T) __builtin_prefetch(at + i, 0, 1);
        __builtin_prefetch(at + K - 1, 0, 1);
    }
}

/* The rows along the first axis of the image gradient's tiles of output positions: tiles two apart
 * read disjoint input rows (a kernel's extent or more), and about 16 tiles in all, so that the even
 * and then the odd ones keep threads busy. Fixed by the shape, and so is the order of the sums. */
static int64_t NAME(lc_tile_rows)(const sbx_conv_plan *p) {
    const int64_t rows = (p->shape.out[0] + 15) / 16;
    return rows > p->shape.kernel[0] ? rows : p->shape.kernel[0];
}

/* Positions per item of the forward pass and the weight gradient: a tile's worth of outputs
 * transposed in the item's own buffer, so that the transposes stay in the caches. */
#define LC_POSITIONS 16
#define LC_AHEAD 2 /* kernels ahead whose output lines local_forward asks for */
#define LC_WEIGHTS_AHEAD 3 /* positions ahead whose weights local_forward and the image gradient ask for */
#define LC_ITEMS 6 /* local_forward's fewest items, when the images allow */

/* How many positions ahead the unshared weights are asked for (lc_weights_ahead): LC_WEIGHTS_AHEAD,
 * or for weights of more than SBX__STREAM_BYTES (layers.h), which stream from memory every call, the
 * position about to be read, just before it: the local 3-d case (38 MB of float64 weights), one
 * thread, mean of 30-40 calls, 4-6 alternations [Zen 5]: image gradient 11.6-14.1 -> 8.0-11.0 ms,
 * forward 5.0-5.6 -> 3.1-5.0 ms; config b's 12 MB float64 the same within noise. */
static int64_t NAME(lc_ahead)(const sbx_conv_plan *p) {
    const int64_t most = SBX__STREAM_BYTES / (int64_t)sizeof(T) / p->shape.out_size; /* no overflow */
    return p->width * p->nkern > most ? 0 : LC_WEIGHTS_AHEAD;
}

/* The image gradient's vectors of images per item: 4, or fewer when that leaves threads idle. The
 * chunks may follow the thread count (their lanes are summed apart); the tiles may not. */
static int64_t NAME(lc_chunk)(const sbx_conv_plan *p, int64_t batch, int nt) {
    const int64_t L = LANES_T, nvec = (batch + L - 1) / L, rows = NAME(lc_tile_rows)(p);
    const int64_t tiles = (p->shape.out[0] + rows - 1) / rows;
    int64_t cv = 4;
    while (cv > 1 && (tiles + 1) / 2 * ((nvec + cv - 1) / cv) < 2 * nt) cv /= 2;
    return cv;
}

/* The workspace of a pass (the forward pass, or the gradients asked for) over nt threads: *values
 * elements of T and *offsets int64 (see local_forward and local_backward). */
static sbx_status NAME(local_work)(const sbx_conv_plan *p, int64_t batch, int forward, int grad_images,
                                   int grad_weights, int nt, int64_t *values, int64_t *offsets) {
    const int64_t O = p->shape.out_size, N = p->nkern, W = p->width, in = p->shape.in_size, L = LANES_T;
    const int64_t Bp = (batch + L - 1) / L * L, NP = (N + L - 1) / L * L, P = LC_POSITIONS;
    const int64_t tile = NAME(lc_tile_rows)(p) * (O / p->shape.out[0]);
    int64_t total = 0, xt, per = 0, v, xw;
    int ok = sbx_mul_i64(in + 1, Bp, &xt) == SBX_OK;
    if (ok && forward) /* xt; per thread: the outputs of an item, N x P x Bp, and its weights, P x W x N */
        ok = sbx_mul_i64(N * P, Bp, &v) == SBX_OK && sbx_mul_i64(P * W, N, &xw) == SBX_OK &&
             sbx_add_i64(v, xw, &v) == SBX_OK && sbx_add_i64(total, xt, &total) == SBX_OK &&
             sbx_add_i64(per, v, &per) == SBX_OK;
    if (ok && grad_images) /* gxt; per thread: the output gradient of a tile and chunk, N x tile x 4L */
        ok = sbx_mul_i64(N * tile, 4 * L, &v) == SBX_OK && sbx_add_i64(total, xt, &total) == SBX_OK &&
             sbx_add_i64(per, v, &per) == SBX_OK;
    if (ok && grad_weights) { /* xt; per thread: the output gradient of an item (P x batch x NP), its sums */
        int64_t sums;
        ok = sbx_mul_i64(P * batch, NP, &v) == SBX_OK && sbx_mul_i64(P * W, NP, &sums) == SBX_OK &&
             sbx_add_i64(v, sums, &v) == SBX_OK && sbx_add_i64(total, xt, &total) == SBX_OK &&
             sbx_add_i64(per, v, &per) == SBX_OK;
    }
    if (ok) ok = sbx_mul_i64(per, nt, &v) == SBX_OK && sbx_add_i64(total, v, &total) == SBX_OK;
    /* the weights' tap table, then two tap-offset tables per thread (images, and local_forward's copy
     * of the weights) */
    if (ok) ok = sbx_mul_i64(W, 2 * (int64_t)nt + 1, offsets) == SBX_OK;
    if (!ok) return sbx__error(SBX_ERR_OVERFLOW, "local connections: the workspace size overflows int64");
    *values = total;
    return SBX_OK;
}

/* y (batch x U) = the local layer of x (shared = 0: w holds a weight per position, bias one per unit)
 * or its convolution (shared = 1: w is the N x W kernels, bias one per kernel), plus bias (or NULL).
 * Items: LC_POSITIONS positions, their outputs (N x positions x Bp) transposed into y at the end of
 * the item. work: xt, then a buffer per thread; offs: the weights' tap table, then a table per
 * thread for the images and one for the copied weights. The convolution takes this path for plans
 * the direct kernel does not take (strides along the last axis, full mode, output rows under half a
 * vector) and batches of a vector or more; its weights, shared by every position, stay in the caches. */
static void NAME(local_forward)(const sbx_conv_plan *p, int64_t batch, const T *x, const T *w, const T *bias, T *y,
                                T *work, int64_t *offs, int nt, int shared) {
    const int64_t O = p->shape.out_size, K = p->shape.kernel_size, N = p->nkern, W = p->width, P = LC_POSITIONS;
    const int64_t in = p->shape.in_size, U = N * O, L = LANES_T, Bp = (batch + L - 1) / L * L, C = p->shape.channels;
    const int64_t ahead = NAME(lc_ahead)(p);
    T *xt = work, *bufs = xt + (in + 1) * Bp;
    int64_t *taps = offs;
    NAME(lc_images)(p, batch, Bp, x, xt, nt);
    if (!shared) NAME(lc_weight_taps)(p, taps);
    /* Few position blocks (small maps): each also split into groups of kernels (6 or more, a register
     * block's height), so that there are LC_ITEMS items or more to share out (a map of 36 positions was
     * 3 blocks, 32 positions for one thread of two), dealt one at a time round the team. Every output
     * is still one sum in one lane whatever the blocks: the bits do not depend on the split. */
    const int64_t blocks = (O + P - 1) / P;
    int64_t groups = (LC_ITEMS + blocks - 1) / blocks;
    if (groups > N / 6 || nt == 1) groups = N / 6 > 1 && nt > 1 ? N / 6 : 1; /* one thread: taller blocks */
    const int64_t per = (N + groups - 1) / groups, items = blocks * groups;
    const int chunk = groups > 1 ? 1 : (int)((items + nt - 1) / nt);
#pragma omp parallel for num_threads(nt) schedule(static, chunk)
    for (int64_t item = 0; item < items; item++) {
        const int t = sbx__thread();
        int64_t *off = offs + (1 + t) * W, *woff = offs + (1 + nt + t) * W;
        T *yl = bufs + t * (N * P * Bp + P * W * N); /* yl[(n * P + q) * Bp + b]: output n of image b at o0 + q */
        T *wq = yl + N * P * Bp; /* wq[(c * np * K + q * K + l) * N + n]: tap c * K + l, kernel n, at o0 + q */
        const int64_t o0 = item / groups * P, np = O - o0 < P ? O - o0 : P;
        const int64_t n0 = item % groups * per, n1 = n0 + per < N ? n0 + per : N;
        /* Unshared weights read by more than one block of vectors: first gathered into wq, tap-major, so
         * that a block's rows at a tap are one line, not one page each (its weight loads stalled: config
         * b float64 on AVX2, 3 blocks of vectors, perf annotate), the whole item's at once: each (map,
         * kernel) run of np * K weights is read in one go, where a position at a time read 192 runs of
         * 72 bytes (config b float64, 1 thread, 100 calls: 0.73-1.12 -> 0.67-1.01 s). Same sums, other addresses. */
        const int copied = !shared && Bp / L > LC_VECTORS;
        for (int64_t c = 0; copied && c < C; c++) {
            NAME(lc_transpose)(w + (c * N * O + o0) * K, O * K, n0, n1, 0, np * K, wq + c * np * K * N, N);
            for (int64_t l = 0; l < K; l++) woff[c * K + l] = (c * np * K + l) * N;
        }
        for (int64_t q = 0; q < np; q++) {
            NAME(lc_offsets)(p, o0 + q, Bp, in, off);
            /* Unshared weights for 4 vectors of images or fewer, not copied: those of the position
             * `ahead` on (lc_ahead), K at each (map, kernel), asked for now. Read once or twice they are
             * a stream of scattered runs, and waiting on them was most of a float64 pass on one thread
             * (the 3-d case, one vector of images: 8.2-8.8 ms, 1.6 on two; 2.4 with this; config b, 4
             * vectors: 4.0 -> 2.9). */
            if (!shared && !copied && Bp <= 4 * L && o0 + q + ahead < O)
                NAME(lc_weights_ahead)(w, C * N, O, K, o0 + q + ahead);
            /* rows: the kernels (W apart when shared, else O * K), depth: the taps; vectors: the images */
            NAME(lc_product) a = {.depth = W, .s = shared ? w : w + (o0 + q) * K, .sr = shared ? W : O * K,
                                  .ss = 1, .soffs = shared ? NULL : taps, .u = xt, .uoffs = off,
                                  .d = yl + q * Bp, .ds = P * Bp};
            if (copied) {
                a.s = wq + q * K * N;
                a.sr = 1;
                a.soffs = woff;
            }
            NAME(lc_run)(&a, n0, n1, 0, Bp / L);
        }
        for (int64_t n = n0; n < n1; n++) {
            T *yn = y + n * O + o0;
            /* The destinations, np values at each image's row, are scattered lines: asking for those of
             * a kernel LC_AHEAD on while transposing this one keeps the misses in flight together (1
             * thread, float64, config b: the transposes took 3 of 5.1 ms, waiting on one line at a time). */
            if (n + LC_AHEAD < n1)
                for (int64_t b = 0; b < batch; b++) {
                    const T *at = yn + LC_AHEAD * O + b * U;
                    for (int64_t q = 0; q < np; q += 64 / (int64_t)sizeof(T)) __builtin_prefetch(at + q, 1, 3);
                    __builtin_prefetch(at + np - 1, 1, 3); /* a row's last line, when it is not aligned */
                }
            NAME(lc_transpose)(yl + n * P * Bp, Bp, 0, np, 0, batch, yn, U);
            for (int64_t b = 0; bias && b < batch; b++)
                for (int64_t q = 0; q < np; q++) yn[b * U + q] += bias[shared ? n : n * O + o0 + q];
        }
    }
}

/* The gradients of y = the local layer of x: gx (batch x in) and gw (the weights) written whole, gb
 * (U) added into; each only when not NULL. work and offs as local_work sized them. */
static void NAME(local_backward)(const sbx_conv_plan *p, int64_t batch, const T *x, const T *w, const T *g, T *gx,
                                 T *gw, T *gb, T *work, int64_t *offs, int nt) {
    const int64_t O = p->shape.out_size, K = p->shape.kernel_size, C = p->shape.channels, N = p->nkern, W = p->width;
    const int64_t in = p->shape.in_size, U = N * O, L = LANES_T, Bp = (batch + L - 1) / L * L, P = LC_POSITIONS;
    const int64_t NP = (N + L - 1) / L * L, ahead = NAME(lc_ahead)(p);
    int64_t *taps = offs;
    NAME(lc_weight_taps)(p, taps);
    if (gx) {
        /* Items: a tile of positions and a chunk of image vectors, the even tiles and then the odd;
         * the item's output gradient transposed into its buffer gl[(n * npos + q) * CL + b]. */
        const int64_t rows = NAME(lc_tile_rows)(p), slice = O / p->shape.out[0], nvec = Bp / L;
        const int64_t tiles = (p->shape.out[0] + rows - 1) / rows, cv = NAME(lc_chunk)(p, batch, nt), CL = cv * L;
        const int64_t chunks = (nvec + cv - 1) / cv;
        T *gxt = work, *bufs = gxt + (in + 1) * Bp;
        work = bufs + N * rows * slice * 4 * L * nt;
        memset(gxt, 0, (size_t)((in + 1) * Bp) * sizeof(T));
        for (int64_t phase = 0; phase < 2; phase++) {
            const int64_t items = (tiles - phase + 1) / 2 * chunks;
#pragma omp parallel for num_threads(nt) schedule(static)
            for (int64_t item = 0; item < items; item++) {
                const int t = sbx__thread();
                int64_t *off = offs + (1 + t) * W;
                T *gl = bufs + t * N * rows * slice * 4 * L;
                const int64_t tile = phase + 2 * (item / chunks), v0 = item % chunks * cv;
                const int64_t v1 = v0 + cv < nvec ? v0 + cv : nvec, o0 = tile * rows * slice;
                const int64_t o1 = (tile + 1) * rows * slice < O ? (tile + 1) * rows * slice : O, npos = o1 - o0;
                const int64_t b0 = v0 * L, nb = batch - b0 < (v1 - v0) * L ? batch - b0 : (v1 - v0) * L;
                for (int64_t n = 0; n < N; n++) {
                    T *gn = gl + n * npos * CL;
                    NAME(lc_transpose)(g + b0 * U + n * O + o0, U, 0, nb, 0, npos, gn, CL);
                    for (int64_t q = 0; q < npos && nb < CL; q++)
                        memset(gn + q * CL + nb, 0, (size_t)(CL - nb) * sizeof(T));
                }
                for (int64_t q = 0; q < npos; q++) {
                    NAME(lc_offsets)(p, o0 + q, Bp, -1, off);
                    if (o0 + q + ahead < o1) NAME(lc_weights_ahead)(w, C * N, O, K, o0 + q + ahead);
                    /* rows: the taps (added into gxt rows off[j]), depth: the kernels (a stride of O * K
                     * apart); vectors: the images of the chunk */
                    const NAME(lc_product) a = {.depth = N, .s = w + (o0 + q) * K, .roffs = taps, .ss = O * K,
                                                .u = gl + q * CL, .us = npos * CL, .d = gxt + v0 * L, .doffs = off,
                                                .add = 1};
                    NAME(lc_run)(&a, 0, W, 0, v1 - v0);
                }
            }
        }
        NAME(lc_transpose_all)(gxt, Bp, in, in, batch, gx, in, nt);
    }
    if (gw) {
        T *xt = work, *bufs = xt + (in + 1) * Bp;
        NAME(lc_images)(p, batch, Bp, x, xt, nt);
        const int64_t items = (O + P - 1) / P;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t item = 0; item < items; item++) {
            const int t = sbx__thread();
            int64_t *off = offs + (1 + t) * W;
            /* gl[(q * batch + b) * NP + n] = g[b][n * O + o0 + q]; sums[(q * W + j) * NP + n] */
            T *gl = bufs + t * (P * batch * NP + P * W * NP), *sums = gl + P * batch * NP;
            const int64_t o0 = item * P, np = O - o0 < P ? O - o0 : P;
            for (int64_t b = 0; b < batch; b++) {
                NAME(lc_transpose)(g + b * U + o0, O, 0, N, 0, np, gl + b * NP, batch * NP);
                for (int64_t q = 0; q < np && N < NP; q++)
                    memset(gl + (q * batch + b) * NP + N, 0, (size_t)(NP - N) * sizeof(T));
            }
            for (int64_t q = 0; q < np; q++) {
                NAME(lc_offsets)(p, o0 + q, Bp, in, off);
                /* rows: the taps (xt rows off[j]), depth: the images; vectors: the kernels */
                const NAME(lc_product) a = {.depth = batch, .s = xt, .roffs = off, .ss = 1, .u = gl + q * batch * NP,
                                            .us = NP, .d = sums + q * W * NP, .ds = NP};
                NAME(lc_run)(&a, 0, W, 0, NP / L);
            }
            /* The item's weights: for each position and map, the K x N block of sums (taps l, kernels n)
             * transposed to kernel n's run of K at that position. Read in order and written to C * N
             * runs at once, where picking one weight at a time read a line of the sums for each. */
            for (int64_t q = 0; q < np; q++)
                for (int64_t c = 0; c < C; c++)
                    NAME(lc_transpose)(sums + (q * W + c * K) * NP, NP, 0, K, 0, N, gw + (c * N * O + o0 + q) * K,
                                       O * K);
        }
    }
    if (gb) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t u0 = 0; u0 < U; u0 += 256) /* each unit's sum in image order */
            for (int64_t b = 0; b < batch; b++)
                for (int64_t u = u0; u < U && u < u0 + 256; u++) gb[u] += g[b * U + u];
    }
}

#undef LC_POSITIONS
#undef LC_VECTORS
