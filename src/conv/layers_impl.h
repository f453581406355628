/* The typed layer kernels, included by layers.c once per element type with T, TI (the integer of
 * T's width), NAME(x) (a suffixing macro), GEMM (cblas_sgemm or cblas_dgemm) and the lane lists
 * (LOW_LANES, HIGH_LANES, EACH_LANE, TRANSPOSE_STAGES, PAIR_LANES, PAIR_BITS) defined; undefined again
 * at the end. Every output element is computed by one thread in an order fixed by the shapes alone,
 * so results do not depend on the thread count. */

/* P (rows o0 .. o1-1 of out_size x width) for one image x: P[o][j] = x[gather[o][j]], or 0 where
 * the tap is outside the image. */
static void NAME(im2row)(const sbx_conv_plan *p, const T *restrict x, int64_t o0, int64_t o1, T *restrict P) {
    if (p->copy_runs) { /* valid mode: rows of the kernel's last axis are contiguous runs of the image */
        const int64_t C = p->shape.channels, K = p->shape.kernel_size, run = p->shape.kernel[p->shape.ndim - 1];
        const int64_t spatial = p->shape.in_size / C, *restrict delta = p->delta;
        for (int64_t o = o0; o < o1; o++)
            for (int64_t c = 0; c < C; c++) {
                const T *restrict src = x + c * spatial + p->base[o];
                T *restrict dst = P + (o - o0) * p->width + c * K;
                for (int64_t r = 0; r < K; r += run)
                    for (int64_t l = 0; l < run; l++) dst[r + l] = src[delta[r] + l];
            }
        return;
    }
    const int64_t n = (o1 - o0) * p->width, *restrict g = p->gather + o0 * p->width;
    for (int64_t i = 0; i < n; i++) P[i] = g[i] >= 0 ? x[g[i]] : (T)0;
}

/* The adjoint of im2row: x[gather[o][j]] += P[o][j]. */
static void NAME(row2im_add)(const sbx_conv_plan *p, const T *restrict P, int64_t o0, int64_t o1, T *restrict x) {
    if (p->copy_runs) { /* valid mode: contiguous runs, as in im2row */
        const int64_t C = p->shape.channels, K = p->shape.kernel_size, run = p->shape.kernel[p->shape.ndim - 1];
        const int64_t spatial = p->shape.in_size / C, *restrict delta = p->delta;
        for (int64_t o = o0; o < o1; o++)
            for (int64_t c = 0; c < C; c++) {
                T *restrict dst = x + c * spatial + p->base[o];
                const T *restrict src = P + (o - o0) * p->width + c * K;
                for (int64_t r = 0; r < K; r += run)
                    for (int64_t l = 0; l < run; l++) dst[delta[r] + l] += src[r + l];
            }
        return;
    }
    const int64_t n = (o1 - o0) * p->width, *restrict g = p->gather + o0 * p->width;
    for (int64_t i = 0; i < n; i++)
        if (g[i] >= 0) x[g[i]] += P[i];
}

/* Output positions o0 .. o1 of tile t. */
static void NAME(tile_range)(const sbx_conv_plan *p, int64_t t, int64_t *o0, int64_t *o1) {
    *o0 = t * p->tile;
    *o1 = *o0 + p->tile < p->shape.out_size ? *o0 + p->tile : p->shape.out_size;
}

/* y_b[:, tile] (nkern x rows, row stride O) = kerns (nkern x W) . P_tile^T, plus bias; one (image,
 * tile) pair per step. work: nt tiles. */
static void NAME(conv_forward)(const sbx_conv_plan *p, int64_t batch, const T *x, const T *k, const T *bias, T *y,
                               T *work, int nt) {
    const int64_t O = p->shape.out_size, W = p->width, N = p->nkern, in = p->shape.in_size, items = batch * p->tiles;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t item = 0; item < items; item++) {
        const int64_t b = item / p->tiles;
        int64_t o0, o1;
        NAME(tile_range)(p, item % p->tiles, &o0, &o1);
        T *P = work + (int64_t)blas_thread() * p->tile * W, *yb = y + b * N * O;
        NAME(im2row)(p, x + b * in, o0, o1, P);
        GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)(o1 - o0), (int)W, 1, k, (int)W, P, (int)W, 0,
             yb + o0, (int)O);
        if (bias)
            for (int64_t n = 0; n < N; n++)
                for (int64_t o = o0; o < o1; o++) yb[n * O + o] += bias[n];
    }
}

/* The direct convolution (valid mode, stride 1 along the last axis): no gathered patches. For a
 * row of outputs along the last axis, NB kernels and 2 vectors of positions at a time, every tap j
 * adds a contiguous run of the image times a kernel weight into 2 x NB vector accumulators, which
 * stay in registers. kp: the kernels padded with zero rows to a multiple of NB. */
#define LANES ((int64_t)(64 / sizeof(T)))

/* Two vectors of outputs for nb kernels. Plain (packed = 0): those at y[0] read the runs at
 * x[0] + taps[j], those at y[1] the runs at x[1] + taps[j] (the next vector of the row, or the same
 * place of another row). Packed: vector 0 joins the half vectors at x[0] and x[1] (its outputs split
 * to y[0] and y[1]), vector 1 those at x[2] and x[3] (to y[2], y[3]); the halves are joined in
 * registers (through memory they stall). */
__attribute__((always_inline)) static inline void NAME(two_vectors_at)(const sbx_conv_plan *p, const T *const *x,
                                                                       int packed, const T *restrict kp, const T *bias,
                                                                       T *const *y, int64_t nb, int64_t O) {
    typedef T half_vec __attribute__((vector_size(32)));
    const int64_t W = p->width, *restrict taps = p->taps;
    NAME(vec) a0[NB], a1[NB];
    for (int n = 0; n < NB; n++) a0[n] = a1[n] = (NAME(vec)){0}; /* in registers (an initialiser was a memset) */
    for (int64_t j = 0; j < W; j++) {
        NAME(vec) v0, v1;
        if (packed) {
            half_vec h0, h1, h2, h3;
            memcpy(&h0, x[0] + taps[j], sizeof h0);
            memcpy(&h1, x[1] + taps[j], sizeof h1);
            memcpy(&h2, x[2] + taps[j], sizeof h2);
            memcpy(&h3, x[3] + taps[j], sizeof h3);
            v0 = __builtin_shufflevector(h0, h1, LOW_LANES, HIGH_LANES);
            v1 = __builtin_shufflevector(h2, h3, LOW_LANES, HIGH_LANES);
        } else {
            memcpy(&v0, x[0] + taps[j], sizeof v0);
            memcpy(&v1, x[1] + taps[j], sizeof v1);
        }
        for (int n = 0; n < NB; n++) {
            const T w = kp[n * W + j];
            a0[n] += v0 * w;
            a1[n] += v1 * w;
        }
    }
    for (int64_t n = 0; n < nb; n++) {
        const T b = bias ? bias[n] : 0;
        a0[n] += b;
        a1[n] += b;
        if (packed) {
            const half_vec o[4] = {__builtin_shufflevector(a0[n], a0[n], LOW_LANES),
                                   __builtin_shufflevector(a0[n], a0[n], HIGH_LANES),
                                   __builtin_shufflevector(a1[n], a1[n], LOW_LANES),
                                   __builtin_shufflevector(a1[n], a1[n], HIGH_LANES)};
            for (int r = 0; r < 4; r++) memcpy(y[r] + n * O, &o[r], sizeof o[r]);
        } else {
            memcpy(y[0] + n * O, &a0[n], sizeof a0[n]);
            memcpy(y[1] + n * O, &a1[n], sizeof a1[n]);
        }
    }
}

__attribute__((always_inline)) static inline void NAME(two_vectors)(const sbx_conv_plan *p, const T *x0, const T *x1,
                                                                    const T *restrict kp, const T *bias, T *y0, T *y1,
                                                                    int64_t nb, int64_t O) {
    const T *const x[2] = {x0, x1};
    T *const y[2] = {y0, y1};
    NAME(two_vectors_at)(p, x, 0, kp, bias, y, nb, O);
}

SBX_CLONES static void NAME(direct_row)(const sbx_conv_plan *p, const T *restrict xq, const T *restrict kp,
                                        const T *bias, T *restrict yq, int64_t nb, int64_t row, int64_t O) {
    const int64_t W = p->width, *restrict taps = p->taps;
    int64_t i0 = 0;
    for (; i0 + 2 * LANES <= row; i0 += 2 * LANES)
        NAME(two_vectors)(p, xq + i0, xq + i0 + LANES, kp, bias, yq + i0, yq + i0 + LANES, nb, O);
    /* Single vectors; a last partial one is done as the vector ending at the row's end, which
     * recomputes a few outputs with the very same operations (and so the same bits). */
    for (int done = 0; !done && i0 < row;) { /* rows are a vector or more (narrower: direct_rows_narrow) */
        if (i0 + LANES > row) {
            i0 = row - LANES;
            done = 1;
        }
        NAME(vec) a0[NB];
        for (int n = 0; n < NB; n++) a0[n] = (NAME(vec)){0};
        for (int64_t j = 0; j < W; j++) {
            NAME(vec) x0;
            memcpy(&x0, xq + taps[j] + i0, sizeof x0);
            for (int n = 0; n < NB; n++) a0[n] += x0 * kp[n * W + j];
        }
        for (int64_t n = 0; n < nb; n++) {
            a0[n] += bias ? bias[n] : 0;
            memcpy(yq + n * O + i0, &a0[n], sizeof a0[n]);
        }
        i0 += LANES;
    }
}
#undef LANES

/* Two short rows at once (rows q and q2 of output, one to two vectors long): one vector of each per
 * step, so each weight serves two vectors; the last step ends at the rows' end. */
SBX_CLONES static void NAME(direct_rows2)(const sbx_conv_plan *p, const T *restrict xq, const T *restrict xq2,
                                          const T *restrict kp, const T *bias, T *restrict yq, T *restrict yq2,
                                          int64_t nb, int64_t row, int64_t O) {
    const int64_t L = (int64_t)(64 / sizeof(T));
    for (int64_t i0 = 0, done = 0; !done; i0 += L) {
        if (i0 + L >= row) {
            i0 = row - L;
            done = 1;
        }
        NAME(two_vectors)(p, xq + i0, xq2 + i0, kp, bias, yq + i0, yq2 + i0, nb, O);
    }
}

/* Four rows whose length leaves a remainder of at most half a vector (row = m L + r, 0 < r <= L/2, L
 * lanes): the full vectors of rows 0 and 1, then 2 and 3, two at a time; then the rows' last half
 * vectors (each ending at its row's end, as direct_row's last vector) packed two to a vector, so no
 * lane is spent on a half-empty vector. xs[i], ys[i]: row i's image run and outputs. */
SBX_CLONES static void NAME(direct_rows4_packed)(const sbx_conv_plan *p, const T *const *xs, const T *restrict kp,
                                                 const T *bias, T *const *ys, int64_t nb, int64_t row, int64_t O) {
    const int64_t L = (int64_t)(64 / sizeof(T)), full = row / L * L, h = row - L / 2;
    for (int r = 0; r < 4; r += 2)
        for (int64_t i0 = 0; i0 < full; i0 += L)
            NAME(two_vectors)(p, xs[r] + i0, xs[r + 1] + i0, kp, bias, ys[r] + i0, ys[r + 1] + i0, nb, O);
    const T *const xh[4] = {xs[0] + h, xs[1] + h, xs[2] + h, xs[3] + h};
    T *const yh[4] = {ys[0] + h, ys[1] + h, ys[2] + h, ys[3] + h};
    NAME(two_vectors_at)(p, xh, 1, kp, bias, yh, nb, O);
}

/* Rows narrower than a vector but half a vector or more (L/2 <= row < L, L lanes): each row is one
 * half vector (row = L/2) or two, its first and its last (they overlap: the outputs they share are
 * computed twice by the same operations, so with the same bits), packed two to a vector as
 * direct_rows4_packed packs tails. The half vectors of rows r0 .. r0 + here - 1 go 4 to a step, a
 * last step of fewer filled up by repeating its last half (the same outputs again). */
SBX_CLONES static void NAME(direct_rows_narrow)(const sbx_conv_plan *p, const T *xb, const T *restrict kp,
                                                const T *bias, T *yb, int64_t r0, int64_t here, int64_t nb,
                                                int64_t row, int64_t O) {
    const int64_t H = (int64_t)(32 / sizeof(T));
    const T *xs[4];
    T *ys[4];
    int filled = 0;
    for (int64_t r = r0; r < r0 + here; r++)
        for (int64_t at = 0, done = 0; !done; at = row - H) {
            done = at == row - H;
            xs[filled] = xb + p->base[r * row] + at;
            ys[filled] = yb + r * row + at;
            if (++filled == 4 || (done && r + 1 == r0 + here)) {
                for (int v = filled; v < 4; v++) {
                    xs[v] = xs[filled - 1];
                    ys[v] = ys[filled - 1];
                }
                NAME(two_vectors_at)(p, xs, 1, kp, bias, ys, nb, O);
                filled = 0;
            }
        }
}

/* Few kernels (at most FEW_KERNELS: an image gradient's adjoint over a few input maps, or a forward
 * pass of few kernels): four vectors of
 * outputs per step for those kernels, rather than NB kernels of which most would be padding. Plain
 * (packed = 0): x[v], y[v] are vector v's image run and outputs; packed (rows narrower than a vector):
 * vector v joins the half vectors at x[2v] and x[2v + 1], its outputs split to y[2v] and y[2v + 1].
 * Each output sums the same terms in the same order as two_vectors_at, so the bits are the same. */
#define FEW_KERNELS 4
__attribute__((always_inline)) static inline void NAME(four_vectors_at)(const sbx_conv_plan *p, const T *const *x,
                                                                        int packed, const T *restrict kp,
                                                                        const T *bias, T *const *y, int64_t nb,
                                                                        int64_t O) {
    typedef T half_vec __attribute__((vector_size(32)));
    const int64_t W = p->width, *restrict taps = p->taps;
    NAME(vec) a[4][FEW_KERNELS];
    for (int v = 0; v < 4; v++)
        for (int n = 0; n < FEW_KERNELS; n++) a[v][n] = (NAME(vec)){0};
    for (int64_t j = 0; j < W; j++) {
        NAME(vec) xv[4];
        for (int v = 0; v < 4; v++)
            if (packed) {
                half_vec h0, h1;
                memcpy(&h0, x[2 * v] + taps[j], sizeof h0);
                memcpy(&h1, x[2 * v + 1] + taps[j], sizeof h1);
                xv[v] = __builtin_shufflevector(h0, h1, LOW_LANES, HIGH_LANES);
            } else {
                memcpy(&xv[v], x[v] + taps[j], sizeof xv[v]);
            }
        for (int n = 0; n < FEW_KERNELS; n++) {
            const T w = kp[n * W + j];
            for (int v = 0; v < 4; v++) a[v][n] += xv[v] * w;
        }
    }
    for (int64_t n = 0; n < nb; n++)
        for (int v = 0; v < 4; v++) {
            a[v][n] += bias ? bias[n] : 0;
            if (packed) {
                const half_vec lo = __builtin_shufflevector(a[v][n], a[v][n], LOW_LANES);
                const half_vec hi = __builtin_shufflevector(a[v][n], a[v][n], HIGH_LANES);
                memcpy(y[2 * v] + n * O, &lo, sizeof lo);
                memcpy(y[2 * v + 1] + n * O, &hi, sizeof hi);
            } else {
                memcpy(y[v] + n * O, &a[v][n], sizeof a[v][n]);
            }
        }
}

SBX_CLONES static void NAME(four_vectors)(const sbx_conv_plan *p, const T *const *x, const T *restrict kp,
                                          const T *bias, T *const *y, int64_t nb, int64_t O) {
    NAME(four_vectors_at)(p, x, 0, kp, bias, y, nb, O);
}

SBX_CLONES static void NAME(four_vectors_packed)(const sbx_conv_plan *p, const T *const *x, const T *restrict kp,
                                                 const T *bias, T *const *y, int64_t nb, int64_t O) {
    NAME(four_vectors_at)(p, x, 1, kp, bias, y, nb, O);
}

/* The rows of an item for few kernels: their vectors (the last of a row ending at its end) four at a
 * time, or for rows narrower than a vector their half vectors (as direct_rows_narrow) eight at a
 * time; a last group of fewer filled up by repeating its last vector (the same outputs again). */
static void NAME(few_kernels_rows)(const sbx_conv_plan *p, const T *xb, const T *kp, const T *bias, T *yb, int64_t r0,
                                   int64_t here, int64_t nb, int64_t row, int64_t O) {
    const int64_t L = (int64_t)(64 / sizeof(T));
    const int narrow = row < L, per = narrow ? 8 : 4; /* slots per step */
    const int64_t w = narrow ? L / 2 : L;             /* a slot's lanes */
    const T *xs[8];
    T *ys[8];
    int filled = 0;
    for (int64_t r = r0; r < r0 + here; r++)
        for (int64_t i0 = 0, done = 0; !done; i0 += w) {
            if (i0 + w >= row) {
                i0 = row - w;
                done = 1;
            }
            xs[filled] = xb + p->base[r * row] + i0;
            ys[filled] = yb + r * row + i0;
            if (++filled == per || (done && r + 1 == r0 + here)) {
                for (int v = filled; v < per; v++) {
                    xs[v] = xs[filled - 1];
                    ys[v] = ys[filled - 1];
                }
                if (narrow)
                    NAME(four_vectors_packed)(p, xs, kp, bias, ys, nb, O);
                else
                    NAME(four_vectors)(p, xs, kp, bias, ys, nb, O);
                filled = 0;
            }
        }
}

/* Rows per item of the direct convolution: rows of a vector or more go in pairs, one vector of each
 * per step, so that every step has two vectors (the last one alone when their number is odd); rows
 * longer than whole vectors by at most half a vector go in fours (a last group of fewer rows as
 * pairs); rows narrower than a vector (half a vector or more, plan.c) as many as fill a step with half
 * vectors: 4 of them (8 for few kernels), one per row of half a vector, else two. */
static int64_t NAME(direct_group)(const sbx_conv_plan *p) {
    const int64_t L = (int64_t)(64 / sizeof(T)), row = p->shape.out[p->shape.ndim - 1];
    if (row < L) return (p->nkern <= FEW_KERNELS ? 8 : 4) / (row == L / 2 ? 1 : 2);
    const int packed = row % L != 0 && row % L <= L / 2;
    return packed ? 4 : 2;
}

/* Output rows r0 .. r0 + here - 1 of one image (xb its input, yb its output maps). */
static void NAME(direct_item)(const sbx_conv_plan *p, const T *xb, const T *kp, const T *bias, T *yb_image, int64_t r0,
                              int64_t here) {
    const int64_t O = p->shape.out_size, N = p->nkern, row = p->shape.out[p->shape.ndim - 1];
    const int64_t L = (int64_t)(64 / sizeof(T));
    if (N <= FEW_KERNELS) {
        NAME(few_kernels_rows)(p, xb, kp, bias, yb_image, r0, here, N, row, O);
        return;
    }
    for (int64_t n0 = 0; n0 < N; n0 += NB) {
        const int64_t nb = N - n0 < NB ? N - n0 : NB;
        const T *kn = kp + n0 * p->width, *bn = bias ? bias + n0 : NULL;
        T *yb = yb_image + n0 * O;
        if (row < L) {
            NAME(direct_rows_narrow)(p, xb, kn, bn, yb, r0, here, nb, row, O);
            continue;
        }
        if (here == 4) {
            const T *xs[4];
            T *ys[4];
            for (int r = 0; r < 4; r++) {
                xs[r] = xb + p->base[(r0 + r) * row];
                ys[r] = yb + (r0 + r) * row;
            }
            NAME(direct_rows4_packed)(p, xs, kn, bn, ys, nb, row, O);
            continue;
        }
        int64_t r = 0;
        for (; r + 1 < here; r += 2) /* pairs */
            NAME(direct_rows2)(p, xb + p->base[(r0 + r) * row], xb + p->base[(r0 + r + 1) * row], kn, bn,
                               yb + (r0 + r) * row, yb + (r0 + r + 1) * row, nb, row, O);
        if (r < here) NAME(direct_row)(p, xb + p->base[(r0 + r) * row], kn, bn, yb + (r0 + r) * row, nb, row, O);
    }
}

static void NAME(conv_direct)(const sbx_conv_plan *p, int64_t batch, const T *x, const T *kp, const T *bias, T *y,
                              int nt) {
    const int64_t O = p->shape.out_size, N = p->nkern, in = p->shape.in_size, row = p->shape.out[p->shape.ndim - 1];
    const int64_t rows = O / row, group = NAME(direct_group)(p);
    const int64_t steps = (rows + group - 1) / group, items = batch * steps;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t item = 0; item < items; item++) {
        const int64_t b = item / steps, r0 = (item % steps) * group;
        NAME(direct_item)(p, x + b * in, kp, bias, y + b * N * O, r0, rows - r0 < group ? rows - r0 : group);
    }
}

/* The kernel gradient by the direct kernel (valid mode, stride 1 on the last axis):
 * gk[n][j] = sum over images, rows q and positions i of g[b][n][q + i] * x[b][base[q] + taps[j] + i].
 * Each call owns KB kernels x `blocks` blocks of JB taps (at most KG), each block kept in KB x JB
 * vector accumulators (so the sums do not depend on how blocks are spread over threads), then reduced.
 * With gflat (see kgrad_flat) every row but the last runs first as one flat stretch of whole vectors:
 * gflat holds those rows at the image's row pitch with zeros past each row's end, so position f of
 * the stretch meets the image at f + taps[j] with no partial vector; the blocks share each image's
 * pass (its gradients stay in the caches), their accumulators saved between images. Then, block by
 * block, the rows left (all of them without gflat) of every image. */
SBX_CLONES static void NAME(kgrad_block)(const sbx_conv_plan *p, int64_t batch, const T *x, const T *g,
                                         const T *gflat, int64_t n0, int64_t j0, int blocks, T *gk) {
    const int64_t N = p->nkern, W = p->width, O = p->shape.out_size, in = p->shape.in_size;
    const int64_t row = p->shape.out[p->shape.ndim - 1], L = (int64_t)(64 / sizeof(T)), vend = row / L * L;
    const int64_t stretch = gflat ? (O / row - 1) * p->shape.in[1] : 0; /* per kernel and image */
    int64_t nn[KB], jj[KG][JB];
    for (int a = 0; a < KB; a++) nn[a] = n0 + a < N ? n0 + a : N - 1; /* past the end: repeat the last, dropped */
    for (int t = 0; t < blocks; t++)
        for (int c = 0; c < JB; c++) {
            const int64_t j = j0 + t * JB + c;
            jj[t][c] = j < W ? p->taps[j] : p->taps[W - 1];
        }
    /* A partial last vector is read as the vector ending at the row's end, with the lanes already
     * counted zeroed in both factors (so 0 * 0, never 0 * inf). */
    const int64_t tail = row - vend;
    NAME(ivec) keep;
    for (int64_t l = 0; l < L; l++) keep[l] = l >= L - tail ? (TI)-1 : 0;
    NAME(vec) saved[KG][KB][JB];
    memset(saved, 0, sizeof saved);
    for (int64_t b = 0; b < batch && gflat; b++)
        for (int t = 0; t < blocks; t++) {
            const T *xb = x + b * in, *gb = gflat + b * N * stretch;
            NAME(vec) acc[KB][JB];
            memcpy(acc, saved[t], sizeof acc);
            for (int64_t f = 0; f < stretch; f += L) {
                NAME(vec) gv[KB], xv[JB];
                for (int a = 0; a < KB; a++) memcpy(&gv[a], gb + nn[a] * stretch + f, sizeof gv[a]);
                for (int c = 0; c < JB; c++) memcpy(&xv[c], xb + jj[t][c] + f, sizeof xv[c]);
                for (int a = 0; a < KB; a++)
                    for (int c = 0; c < JB; c++) acc[a][c] += gv[a] * xv[c];
            }
            memcpy(saved[t], acc, sizeof acc);
        }
    for (int t = 0; t < blocks; t++) {
        NAME(vec) acc[KB][JB];
        memcpy(acc, saved[t], sizeof acc);
        for (int64_t b = 0; b < batch; b++)
            for (int64_t q = gflat ? O - row : 0; q < O; q += row) {
                const T *xq = x + b * in + p->base[q], *gq = g + b * N * O + q;
                for (int64_t i = 0; i < vend + (tail ? L : 0); i += L) { /* rows are a vector or more (layers.c) */
                    const int64_t at = i < vend ? i : row - L;
                    NAME(vec) gv[KB], xv[JB];
                    for (int a = 0; a < KB; a++) memcpy(&gv[a], gq + nn[a] * O + at, sizeof gv[a]);
                    for (int c = 0; c < JB; c++) memcpy(&xv[c], xq + jj[t][c] + at, sizeof xv[c]);
                    if (i >= vend) {
                        for (int a = 0; a < KB; a++) gv[a] = (NAME(vec))((NAME(ivec))gv[a] & keep);
                        for (int c = 0; c < JB; c++) xv[c] = (NAME(vec))((NAME(ivec))xv[c] & keep);
                    }
                    for (int a = 0; a < KB; a++)
                        for (int c = 0; c < JB; c++) acc[a][c] += gv[a] * xv[c];
                }
            }
        for (int a = 0; a < KB && n0 + a < N; a++)
            for (int c = 0; c < JB && j0 + t * JB + c < W; c++) {
                T sum = 0;
                for (int64_t l = 0; l < L; l++) sum += acc[a][c][l];
                gk[(n0 + a) * W + j0 + t * JB + c] = sum;
            }
    }
}

/* The kernel gradient with the kernels in the vector lanes (direct-path plans with a vector of kernels or
 * more): gk[n][j] = sum over images b and output positions o of g[b][n][o] * x[b][base[o] + taps[j]].
 * An item is a block of up to 2 vectors of kernels and KJ taps; per position it takes the block's
 * gradients as vectors (the gradient transposed: positions x kernels) and each tap's pixel broadcast,
 * 2 x KJ multiply-adds for 2 + KJ loads. Each sum runs over images, then positions, in order, in its
 * own lane: no reduction across lanes, and the same bits at any thread count. Each thread transposes
 * an image's gradient, for one block of kernels at a time, into its own buffer (positions x 2L), which
 * stays in its caches while the thread's items of that block pass over it. Versus kgrad_block: no
 * lanes spent on padding (the flat stretch's row pitch), no sums across lanes, and the forward
 * kernel's ratio of multiply-adds to loads; measured faster on configs a, b and c in both dtypes. */

/* gt[o * 2L + k] = g[n0 + k][o] for the kernels n0 .. n0 + nk - 1 (nk <= 2L), zero for k >= nk
 * (up to a whole vector), positions 0 .. O-1: L x L tiles transposed in registers. */
__attribute__((always_inline)) static inline void NAME(transpose_block)(const T *g, int64_t O, int64_t nk, T *gt) {
    const int64_t L = LANES_T, nv = (nk + L - 1) / L, whole = O / L * L;
    for (int64_t h = 0; h < nv; h++)
        for (int64_t o0 = 0; o0 < whole; o0 += L) {
            NAME(vec) v[LANES_T];
            for (int64_t k = 0; k < L; k++)
                if (h * L + k < nk)
                    memcpy(&v[k], g + (h * L + k) * O + o0, sizeof v[k]);
                else
                    v[k] = (NAME(vec)){0};
            NAME(transpose_tile)(v);
            for (int64_t i = 0; i < L; i++) memcpy(gt + (o0 + i) * 2 * L + h * L, &v[i], sizeof v[i]);
        }
    for (int64_t o = whole; o < O; o++)
        for (int64_t k = 0; k < nv * L; k++) gt[o * 2 * L + k] = k < nk ? g[k * O + o] : 0;
}

/* Positions 0 .. O-1 of one image for nv (1 or 2) vectors of kernels and the kj (KJ or KJ / 2) taps
 * tj: the sums acc (KJ x 2 vectors, unaligned) go on. */
__attribute__((always_inline)) static inline void NAME(lanes_pass)(const sbx_conv_plan *p, const T *xb, const T *gt,
                                                                   const int64_t *tj, int nv, int kj, T *acc) {
    const int64_t O = p->shape.out_size, L = LANES_T, *restrict base = p->base;
    NAME(vec) a[KJ][2];
    memcpy(a, acc, sizeof a);
    for (int64_t o = 0; o < O; o++) {
        const T *xo = xb + base[o];
        NAME(vec) g0, g1 = {0};
        memcpy(&g0, gt + o * 2 * L, sizeof g0);
        if (nv == 2) memcpy(&g1, gt + o * 2 * L + L, sizeof g1);
        for (int j = 0; j < kj; j++) {
            const T w = xo[tj[j]];
            a[j][0] += g0 * w;
            if (nv == 2) a[j][1] += g1 * w;
        }
    }
    memcpy(acc, a, sizeof a);
}

/* Items: blocks of 2L kernels x groups of KJ taps (item = block * groups + group). */
static int64_t NAME(lanes_items_count)(const sbx_conv_plan *p) {
    return (p->nkern + 2 * LANES_T - 1) / (2 * LANES_T) * ((p->width + KJ - 1) / KJ);
}

/* Items lo .. hi-1 over the whole batch; saved: the items' sums (KJ x 2L each), gt: this thread's
 * buffer (out_size x 2L). */
SBX_CLONES static void NAME(lanes_items)(const sbx_conv_plan *p, int64_t batch, const T *x, const T *g, int64_t lo,
                                         int64_t hi, T *saved, T *gt, T *gk) {
    const int64_t N = p->nkern, W = p->width, O = p->shape.out_size, in = p->shape.in_size, L = LANES_T;
    const int64_t groups = (W + KJ - 1) / KJ, per = KJ * 2 * L;
    memset(saved + lo * per, 0, (size_t)((hi - lo) * per) * sizeof(T));
    for (int64_t b = 0; b < batch; b++)
        for (int64_t item = lo; item < hi;) {
            const int64_t kb = item / groups, n0 = kb * 2 * L, nk = N - n0 < 2 * L ? N - n0 : 2 * L;
            const int64_t end = (kb + 1) * groups < hi ? (kb + 1) * groups : hi; /* this block's items */
            NAME(transpose_block)(g + (b * N + n0) * O, O, nk, gt);
            for (; item < end; item++) {
                int64_t tj[KJ];
                const int64_t j0 = item % groups * KJ;
                for (int j = 0; j < KJ; j++) tj[j] = p->taps[j0 + j < W ? j0 + j : W - 1]; /* past the end: dropped */
                T *acc = saved + item * per;
                const int half = W - j0 <= KJ / 2; /* a last group of at most KJ / 2 taps: a pass of half the work */
                if (nk > L && !half) NAME(lanes_pass)(p, x + b * in, gt, tj, 2, KJ, acc);
                if (nk > L && half) NAME(lanes_pass)(p, x + b * in, gt, tj, 2, KJ / 2, acc);
                if (nk <= L && !half) NAME(lanes_pass)(p, x + b * in, gt, tj, 1, KJ, acc);
                if (nk <= L && half) NAME(lanes_pass)(p, x + b * in, gt, tj, 1, KJ / 2, acc);
            }
        }
    for (int64_t item = lo; item < hi; item++) {
        const int64_t n0 = item / groups * 2 * L, j0 = item % groups * KJ;
        for (int64_t n = n0; n < N && n < n0 + 2 * L; n++)
            for (int64_t j = j0; j < W && j < j0 + KJ; j++)
                gk[n * W + j] = saved[item * per + (j - j0) * 2 * L + n - n0];
    }
}

/* work: nt buffers of out_size x 2L, then the items' sums (KJ x 2L each). */
static void NAME(kgrad_lanes)(const sbx_conv_plan *p, int64_t batch, const T *x, const T *g, T *gk, T *work, int nt) {
    const int64_t items = NAME(lanes_items_count)(p), buffer = p->shape.out_size * 2 * LANES_T;
    T *saved = work + nt * buffer;
#pragma omp parallel for num_threads(nt) schedule(static) /* by share, not thread number: the team may be smaller */
    for (int64_t t = 0; t < nt; t++) {
        const int64_t lo = items * t / nt, hi = items * (t + 1) / nt;
        if (lo < hi) NAME(lanes_items)(p, batch, x, g, lo, hi, saved, work + t * buffer, gk);
    }
}

/* The image gradient with the feature maps in the vector lanes (valid-mode plans with half a vector
 * of maps or more, plan.c): gx[b][c][base[o] + delta[l]] += sum over kernels n of g[b][n][o] *
 * k[n][c * K + l]. Per image, a step takes IR positions and IS taps: IR x IS vectors of maps, each a
 * sum over the kernels in order of a position's gradient (broadcast) times a vector of the kernels'
 * weights (kt, below): IR + IS loads for IR x IS multiply-adds, and no work on the padding of a
 * full-mode adjoint. The sums are added whole vectors at a time into the image's gradient held
 * transposed (pixels x maps, in a buffer of the thread's that stays in its caches), in an order fixed
 * by the shape (tap blocks, then positions, then within the step), and the buffer is transposed into
 * gx at the end. Padding lanes (maps past C), taps past K and positions past O are computed and
 * dropped, never added. */
#define IR 4 /* positions per step */
#define IS 5 /* taps per step */

/* Taps of the transposed kernels: K rounded up to a multiple of IS. */
static int64_t NAME(maps_lanes_taps)(const sbx_conv_plan *p) { return (p->shape.kernel_size + IS - 1) / IS * IS; }

/* A thread's buffer: the image's pixels x cp (C rounded up to whole vectors), then the sink, a
 * vector that takes the sums dropped. */
static int64_t NAME(maps_lanes_buffer)(const sbx_conv_plan *p) {
    const int64_t C = p->shape.channels, L = LANES_T;
    return (p->shape.in_size / C + 1) * ((C + L - 1) / L * L);
}

/* kt[((v * N + n) * Kp + l) * L + i] = k[n][(v L + i) K + l]: vector v of the maps of kernel n's tap
 * l, zero past the maps and past the taps (Kp from maps_lanes_taps). */
static void NAME(maps_lanes_kernels)(const sbx_conv_plan *p, const T *k, T *kt) {
    const int64_t N = p->nkern, K = p->shape.kernel_size, C = p->shape.channels, W = p->width, L = LANES_T;
    const int64_t cv = (C + L - 1) / L, Kp = NAME(maps_lanes_taps)(p);
    for (int64_t v = 0; v < cv; v++)
        for (int64_t n = 0; n < N; n++)
            for (int64_t l = 0; l < Kp; l++)
                for (int64_t i = 0; i < L; i++) {
                    const int64_t c = v * L + i;
                    kt[((v * N + n) * Kp + l) * L + i] = l < K && c < C ? k[n * W + c * K + l] : 0;
                }
}

/* One image: gb its output gradient, gxb its image gradient, buf the thread's buffer. */
SBX_CLONES static void NAME(maps_lanes_image)(const sbx_conv_plan *p, const T *restrict gb, const T *restrict kt,
                                              T *restrict buf, T *restrict gxb) {
    const int64_t N = p->nkern, O = p->shape.out_size, K = p->shape.kernel_size, C = p->shape.channels;
    const int64_t L = LANES_T, cv = (C + L - 1) / L, cp = cv * L, Kp = NAME(maps_lanes_taps)(p);
    const int64_t spatial = p->shape.in_size / C, *restrict base = p->base, *restrict delta = p->delta;
    T *sink = buf + spatial * cp;
    memset(buf, 0, (size_t)(spatial * cp) * sizeof(T));
    for (int64_t v = 0; v < cv; v++)
        for (int64_t l0 = 0; l0 < K; l0 += IS)
            for (int64_t o0 = 0; o0 < O; o0 += IR) {
                const T *gr[IR];
                for (int r = 0; r < IR; r++) gr[r] = gb + (o0 + r < O ? o0 + r : O - 1); /* past O: dropped */
                const T *kn = kt + (v * N * Kp + l0) * L;
                NAME(vec) acc[IR][IS];
                for (int r = 0; r < IR; r++)
                    for (int t = 0; t < IS; t++) acc[r][t] = (NAME(vec)){0};
                for (int64_t n = 0; n < N; n++, kn += Kp * L) {
                    NAME(vec) kv[IS];
                    for (int t = 0; t < IS; t++) memcpy(&kv[t], kn + t * L, sizeof kv[t]);
                    for (int r = 0; r < IR; r++) {
                        const T w = gr[r][n * O];
                        for (int t = 0; t < IS; t++) acc[r][t] += kv[t] * w;
                    }
                }
                /* Where each sum goes: its pixel, or past O or K the sink. */
                const int nr = O - o0 < IR ? (int)(O - o0) : IR, nt = K - l0 < IS ? (int)(K - l0) : IS;
                T *at[IR][IS];
                for (int r = 0; r < IR; r++)
                    for (int t = 0; t < IS; t++)
                        at[r][t] = r < nr && t < nt ? buf + (base[o0 + r] + delta[l0 + t]) * cp + v * L : sink;
                for (int r = 0; r < IR; r++)
                    for (int t = 0; t < IS; t++) {
                        NAME(vec) sum;
                        memcpy(&sum, at[r][t], sizeof sum);
                        sum += acc[r][t];
                        memcpy(at[r][t], &sum, sizeof sum);
                    }
            }
    const int64_t whole = spatial / L * L; /* pixels x maps back to maps x pixels, L x L tiles */
    for (int64_t v = 0; v < cv; v++) {
        const int64_t maps = C - v * L < L ? C - v * L : L;
        for (int64_t q0 = 0; q0 < whole; q0 += L) {
            NAME(vec) tile[LANES_T];
            for (int64_t i = 0; i < L; i++) memcpy(&tile[i], buf + (q0 + i) * cp + v * L, sizeof tile[i]);
            NAME(transpose_tile)(tile);
            for (int64_t i = 0; i < maps; i++) memcpy(gxb + (v * L + i) * spatial + q0, &tile[i], sizeof tile[i]);
        }
        for (int64_t q = whole; q < spatial; q++)
            for (int64_t i = 0; i < maps; i++) gxb[(v * L + i) * spatial + q] = buf[q * cp + v * L + i];
    }
}
#undef IR
#undef IS

/* The whole batch, an image per step; bufs: nt buffers (maps_lanes_buffer). */
static void NAME(maps_lanes)(const sbx_conv_plan *p, int64_t batch, const T *g, const T *kt, T *gx, T *bufs, int nt) {
    const int64_t O = p->shape.out_size, N = p->nkern, in = p->shape.in_size, buffer = NAME(maps_lanes_buffer)(p);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t b = 0; b < batch; b++)
        NAME(maps_lanes_image)(p, g + b * N * O, kt, bufs + (int64_t)sbx__thread() * buffer, gx + b * in);
}
#undef LANES_T

/* Whether kgrad_block can take the flat stretch: 2-d, stride 1 along both axes (row q of outputs starts q / row
 * image rows down), an image row of whole vectors, two output rows or more of a vector or more, and
 * every image value finite (the zeros of gflat meet image values, and 0 * inf would be NaN). */
static int NAME(kgrad_flat)(const sbx_conv_plan *p, int64_t batch, const T *x, int nt) {
    const sbx_conv_shape *s = &p->shape;
    const int64_t L = (int64_t)(64 / sizeof(T));
    if (s->ndim != 2 || s->stride[0] != 1 || s->stride[1] != 1 || s->in[1] % L != 0 || s->out[0] < 2 || s->out[1] < L)
        return 0;
    int bad = 0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(| : bad)
    for (int64_t i = 0; i < batch * s->in_size; i++) bad |= !(x[i] * 0 == 0);
    return !bad;
}

/* gflat for kgrad_block: the output gradient's rows but each map's last, at the image's row pitch,
 * zero past each row's end. */
static void NAME(flatten_grad)(const sbx_conv_plan *p, int64_t batch, const T *g, T *gflat, int nt) {
    const int64_t O = p->shape.out_size, row = p->shape.out[1], pitch = p->shape.in[1], rows = O / row - 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t map = 0; map < batch * p->nkern; map++)
        for (int64_t r = 0; r < rows; r++) {
            T *dst = gflat + (map * rows + r) * pitch;
            memcpy(dst, g + map * O + r * row, (size_t)row * sizeof(T));
            memset(dst + row, 0, (size_t)(pitch - row) * sizeof(T));
        }
}

static void NAME(kgrad_direct)(const sbx_conv_plan *p, int64_t batch, const T *x, const T *g, const T *gflat, T *gk,
                               int nt) {
    /* Blocks of taps go KG to an item on the flat stretch; the rows path measured best one at a time. */
    const int64_t per = gflat ? KG : 1, nb = (p->nkern + KB - 1) / KB, jb = (p->width + JB - 1) / JB;
    const int64_t groups = (jb + per - 1) / per;
#pragma omp parallel for num_threads(nt) schedule(dynamic, gflat ? 1 : 4)
    for (int64_t item = 0; item < nb * groups; item++) {
        const int64_t first = item % groups * per; /* the item's first block of taps */
        NAME(kgrad_block)(p, batch, x, g, gflat, item / groups * KB, first * JB,
                          (int)(jb - first < per ? jb - first : per), gk);
    }
}

/* For the image gradient through p->adjoint: the output gradient g with every map padded by
 * kernel - 1 on both sides of every axis (gpad zeroed), and the kernels flipped with their roles
 * swapped, kflip[c][n * K + l] = k[n][c * K + K - 1 - l] (rows past C left zero). */
/* One map of the output gradient (gm) into its padded place (gpm, whose padding is zero: only the
 * rows of gm are written, so a buffer zeroed once serves map after map). */
static void NAME(pad_map)(const sbx_conv_plan *p, const T *gm, T *gpm) {
    const sbx_conv_shape *s = &p->shape, *a = &p->adjoint->shape;
    const int64_t O = s->out_size, row = s->out[s->ndim - 1];
    int64_t pstride[SBX_MAX_NDIM];
    for (int d = s->ndim - 1; d >= 0; d--) pstride[d] = d == s->ndim - 1 ? 1 : pstride[d + 1] * a->in[d + 1];
    for (int64_t q = 0; q < O; q += row) {
        int64_t rest = q, at = 0;
        for (int d = s->ndim - 1; d >= 0; d--) {
            at += (rest % s->out[d] + s->kernel[d] - 1) * pstride[d];
            rest /= s->out[d];
        }
        memcpy(gpm + at, gm + q, (size_t)row * sizeof(T));
    }
}

static void NAME(pad_grad)(const sbx_conv_plan *p, int64_t batch, const T *g, T *gpad, int nt) {
    const int64_t O = p->shape.out_size, padded = p->adjoint->shape.in_size / p->adjoint->shape.channels;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t m = 0; m < batch * p->nkern; m++) NAME(pad_map)(p, g + m * O, gpad + m * padded);
}

/* The image gradient through the adjoint an image at a time: each thread pads an image's output
 * gradient into its own buffer (buf: nt images' worth), which stays in its caches while the direct
 * kernel reads it, rather than the whole batch going through memory padded. The same operations on
 * the same values as pad_grad + conv_direct, so the same bits. */
static void NAME(adjoint_by_image)(const sbx_conv_plan *p, int64_t batch, const T *g, const T *kflip, T *gx, T *buf,
                                   int nt) {
    const sbx_conv_plan *a = p->adjoint;
    const int64_t O = p->shape.out_size, N = p->nkern, image = a->shape.in_size, padded = image / N;
    const int64_t rows = a->shape.out_size / a->shape.out[a->shape.ndim - 1], group = NAME(direct_group)(a);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t b = 0; b < batch; b++) {
        T *mine = buf + (int64_t)sbx__thread() * image;
        for (int64_t n = 0; n < N; n++) NAME(pad_map)(p, g + (b * N + n) * O, mine + n * padded);
        for (int64_t r0 = 0; r0 < rows; r0 += group)
            NAME(direct_item)(a, mine, kflip, NULL, gx + b * a->nkern * a->shape.out_size, r0,
                              rows - r0 < group ? rows - r0 : group);
    }
}

static void NAME(flip_kernels)(const sbx_conv_plan *p, const T *k, T *kflip) {
    const int64_t C = p->shape.channels, N = p->nkern, K = p->shape.kernel_size;
    for (int64_t c = 0; c < C; c++)
        for (int64_t n = 0; n < N; n++)
            for (int64_t l = 0; l < K; l++) kflip[(c * N + n) * K + l] = k[(n * C + c) * K + K - 1 - l];
}

/* Gradients of the convolution.
 * Kernels: the (image, tile) steps are taken in fixed blocks of BLOCK; each block sums into its own
 * slice of `partial` (nblocks x nkern x W, zeroed), and the slices are added in block order.
 * Images: tiles two apart read disjoint input, so the even tiles of every image are done in
 * parallel, then the odd ones: each input element is summed in an order fixed by the shape.
 * work: nt blocks of one tile. */
static void NAME(conv_backward)(const sbx_conv_plan *p, int64_t batch, const T *x, const T *k, const T *g, T *gx,
                                T *gk, T *work, T *partial, int nt) {
    const int64_t O = p->shape.out_size, W = p->width, N = p->nkern, in = p->shape.in_size, items = batch * p->tiles;
    const int64_t nblocks = (items + BLOCK - 1) / BLOCK;
    if (gk) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t blk = 0; blk < nblocks; blk++) {
            T *P = work + (int64_t)blas_thread() * p->tile * W;
            for (int64_t item = blk * BLOCK; item < items && item < (blk + 1) * BLOCK; item++) {
                const int64_t b = item / p->tiles;
                int64_t o0, o1;
                NAME(tile_range)(p, item % p->tiles, &o0, &o1);
                NAME(im2row)(p, x + b * in, o0, o1, P);
                GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)W, (int)(o1 - o0), 1, g + b * N * O + o0,
                     (int)O, P, (int)W, 1, partial + blk * N * W, (int)W);
            }
        }
        for (int64_t blk = 0; blk < nblocks; blk++)
            for (int64_t i = 0; i < N * W; i++) gk[i] += partial[blk * N * W + i];
    }
    if (gx) {
        const int64_t half = (p->tiles + 1) / 2;
        for (int parity = 0; parity < 2; parity++) {
#pragma omp parallel for num_threads(nt) schedule(static)
            for (int64_t item = 0; item < batch * half; item++) {
                const int64_t b = item / half, t = 2 * (item % half) + parity;
                if (t >= p->tiles) continue;
                int64_t o0, o1;
                NAME(tile_range)(p, t, &o0, &o1);
                T *gP = work + (int64_t)blas_thread() * p->tile * W;
                GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(o1 - o0), (int)W, (int)N, 1, g + b * N * O + o0,
                     (int)O, k, (int)W, 0, gP, (int)W);
                NAME(row2im_add)(p, gP, o0, o1, gx + b * in);
            }
        }
    }
}

/* The bias gradient of kernel n, sum over images b and positions o of g[b][n][o]: 4 vectors of lanes
 * over the positions (then single vectors into the first, then single values), image by image, the
 * lanes added up at the end, in an order the shape fixes. */
SBX_CLONES static T NAME(bias_grad_one)(const sbx_conv_plan *p, int64_t batch, const T *g, int64_t n) {
    const int64_t N = p->nkern, O = p->shape.out_size, L = (int64_t)(64 / sizeof(T));
    const int64_t quad = O / (4 * L) * (4 * L), whole = O / L * L;
    NAME(vec) acc[4];
    for (int i = 0; i < 4; i++) acc[i] = (NAME(vec)){0};
    T rest = 0;
    for (int64_t b = 0; b < batch; b++) {
        const T *gn = g + (b * N + n) * O;
        int64_t o = 0;
        for (; o < quad; o += 4 * L)
            for (int i = 0; i < 4; i++) {
                NAME(vec) v;
                memcpy(&v, gn + o + i * L, sizeof v);
                acc[i] += v;
            }
        for (; o < whole; o += L) {
            NAME(vec) v;
            memcpy(&v, gn + o, sizeof v);
            acc[0] += v;
        }
        for (; o < O; o++) rest += gn[o];
    }
    T sum = 0;
    for (int i = 0; i < 4; i++)
        for (int64_t l = 0; l < L; l++) sum += acc[i][l];
    return sum + rest;
}

/* gb (nkern), written whole, a kernel per step. */
static void NAME(bias_grad)(const sbx_conv_plan *p, int64_t batch, const T *g, T *gb, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t n = 0; n < p->nkern; n++) gb[n] = NAME(bias_grad_one)(p, batch, g, n);
}

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
 * so 256-bit vectors: 512-bit loops would leave them to the scalar remainder. */
SBX_CLONES_256 static void NAME(pool_map)(const sbx_conv_plan *p, const T *xm, T *restrict ym) {
    const int64_t O = p->shape.out_size, row = p->shape.out[p->shape.ndim - 1];
    for (int64_t q = 0; q < O; q += row) NAME(pool_row)(p, xm, q, ym + q);
}

static void NAME(pool_forward)(const sbx_conv_plan *p, int64_t batch, const T *x, T *y, int nt) {
    const int64_t O = p->shape.out_size, C = p->shape.channels, in = p->shape.in_size;
    const int64_t spatial = in / C, maps = batch * C;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t map = 0; map < maps; map++) {
        const int64_t b = map / C, c = map % C;
        T *ym = y + map * O;
        if (p->base) {
            /* A row of outputs along the last axis at a time, every tap of the other axes in turn:
             * the loop over the row's outputs has no branch and no index load, so it vectorises. */
            NAME(pool_map)(p, x + b * in + c * spatial, ym);
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

/* A row of 3 x 3 windows side by side: 8 windows (24 pixels of each of their 3 rows) per step, as
 * unpool_row_2x2: each output vector takes its windows' gradients and masks by a shuffle and keeps
 * the lanes whose tap's bit is set. Returns the OR of the masks. */
__attribute__((always_inline)) static inline uint64_t NAME(unpool_row_3x3)(const uint16_t *restrict m,
                                                                            const T *restrict g, T *restrict top,
                                                                            T *restrict mid, T *restrict bottom,
                                                                            int64_t row) {
    typedef T oct_vec __attribute__((vector_size(8 * sizeof(T))));
    typedef TI oct_ivec __attribute__((vector_size(8 * sizeof(T))));
    typedef uint16_t oct_masks __attribute__((vector_size(16)));
    /* Output vector k of a step: the windows of its lanes, and the bit of each lane's tap in the window's top row. */
    static const oct_ivec tap_bit[3] = {{1, 2, 4, 1, 2, 4, 1, 2}, {4, 1, 2, 4, 1, 2, 4, 1}, {2, 4, 1, 2, 4, 1, 2, 4}};
    T *restrict const out[3] = {top, mid, bottom};
    oct_ivec any = {0};
    int64_t i = 0;
    for (; i + 8 <= row; i += 8) {
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

#undef T
#undef TI
#undef NAME
#undef GEMM
#undef LOW_LANES
#undef HIGH_LANES
#undef EACH_LANE
#undef TRANSPOSE_STAGES
#undef PAIR_LANES
#undef PAIR_BITS
