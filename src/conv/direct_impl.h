/* The direct convolution: outputs summed in vector registers from contiguous runs of the image,
 * without gathered patches.
 * Included by layer_kernels.h once per element type (the parameters are listed there), after
 * vector_impl.h. Every output element is computed by one thread in an order fixed by the shapes
 * alone, so results do not depend on the thread count. */

/* The direct convolution (valid mode, stride 1 along the last axis): no gathered patches. For a
 * row of outputs along the last axis, NB kernels and 2 vectors of positions at a time, every tap j
 * adds a contiguous run of the image times a kernel weight into 2 x NB vector accumulators, which
 * stay in registers. kp: the kernels as pack_kernels lays them out. */
#define LANES (LANES_T)

/* The kernels as the direct kernel reads them: blocks of NB kernels (rows), each block tap by tap,
 * the NB weights of a tap side by side: kernel n's tap j at (n / NB) * NB * W + j * NB + n % NB, rows
 * past N zero (kp zeroed). A step's weights are then one run, not NB rows W apart (fewer pointers in
 * the loop). kp for block n0 is kp + n0 * W. */
static void NAME(pack_kernels)(const T *k, int64_t N, int64_t W, T *kp) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < W; j++) kp[n / NB * NB * W + j * NB + n % NB] = k[n * W + j];
}

/* Two vectors of outputs for nb kernels. Plain (packed = 0): those at y[0] read the runs at
 * x[0] + taps[j], those at y[1] the runs at x[1] + taps[j] (the next vector of the row, or the same
 * place of another row). Packed (1): vector 0 joins the half vectors at x[0] and x[1] (its outputs
 * split to y[0] and y[1]), vector 1 those at x[2] and x[3] (to y[2], y[3]); the halves are joined in
 * registers (through memory they stall). Strided (2): as packed, each half vector being the even
 * lanes of the whole vector at x[i] + taps2[j] (stride 2 along the row; its last lane, one past the
 * half's last pixel, is read and left). */
__attribute__((always_inline)) static inline void NAME(two_vectors_at)(const sbx_conv_plan *p, const T *const *x,
                                                                       int packed, const T *restrict kp, const T *bias,
                                                                       T *const *y, int64_t nb, int64_t O) {
    typedef T half_vec __attribute__((vector_size(SBX_VEC_BYTES / 2)));
    const int64_t W = p->width, *restrict taps = packed == 2 ? p->taps2 : p->taps;
    NAME(vec) a0[NB], a1[NB];
    UNROLL for (int n = 0; n < NB; n++) a0[n] = a1[n] = (NAME(vec)){0}; /* in registers (an initialiser was a memset) */
    for (int64_t j = 0; j < W; j++) {
        NAME(vec) v0, v1;
        if (packed == 2) {
            NAME(vec) w0, w1, w2, w3;
            memcpy(&w0, x[0] + taps[j], sizeof w0);
            memcpy(&w1, x[1] + taps[j], sizeof w1);
            memcpy(&w2, x[2] + taps[j], sizeof w2);
            memcpy(&w3, x[3] + taps[j], sizeof w3);
            v0 = __builtin_shufflevector(w0, w1, EVEN_LANES);
            v1 = __builtin_shufflevector(w2, w3, EVEN_LANES);
        } else if (packed) {
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
        UNROLL for (int n = 0; n < NB; n++) {
            const T w = kp[j * NB + n];
            a0[n] += v0 * w;
            a1[n] += v1 * w;
        }
    }
    UNROLL for (int n = 0; n < NB; n++) if (n < nb) {
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
        UNROLL for (int n = 0; n < NB; n++) a0[n] = (NAME(vec)){0};
        for (int64_t j = 0; j < W; j++) {
            NAME(vec) x0;
            memcpy(&x0, xq + taps[j] + i0, sizeof x0);
            UNROLL for (int n = 0; n < NB; n++) a0[n] += x0 * kp[j * NB + n];
        }
        UNROLL for (int n = 0; n < NB; n++) if (n < nb) {
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
    const int64_t L = LANES_T;
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
    const int64_t L = LANES_T, full = row / L * L, h = row - L / 2;
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
                                                int64_t row, int64_t O, int strided) {
    const int64_t H = LANES_T / 2;
    const T *xs[4];
    T *ys[4];
    int filled = 0;
    for (int64_t r = r0; r < r0 + here; r++)
        for (int64_t at = 0, done = 0; !done; at = row - H) {
            done = at == row - H;
            xs[filled] = xb + p->base[r * row] + (strided ? 2 * at : at);
            ys[filled] = yb + r * row + at;
            if (++filled == 4 || (done && r + 1 == r0 + here)) {
                for (int v = filled; v < 4; v++) {
                    xs[v] = xs[filled - 1];
                    ys[v] = ys[filled - 1];
                }
                if (strided)
                    NAME(two_vectors_at)(p, xs, 2, kp, bias, ys, nb, O);
                else
                    NAME(two_vectors_at)(p, xs, 1, kp, bias, ys, nb, O);
                filled = 0;
            }
        }
}

/* Few kernels (at most FEW_KERNELS: an image gradient's adjoint over a few input maps, or a forward
 * pass of few kernels): FEW_VECTORS vectors (layers.c) of
 * outputs per step for those kernels, rather than NB kernels of which most would be padding. Plain
 * (packed = 0): x[v], y[v] are vector v's image run and outputs; packed (rows narrower than a vector):
 * vector v joins the half vectors at x[2v] and x[2v + 1], its outputs split to y[2v] and y[2v + 1].
 * Each output sums the same terms in the same order as two_vectors_at, so the bits are the same. */
#define FEW_KERNELS 4
__attribute__((always_inline)) static inline void NAME(four_vectors_at)(const sbx_conv_plan *p, const T *const *x,
                                                                        int packed, const T *restrict kp,
                                                                        const T *bias, T *const *y, int64_t nb,
                                                                        int64_t O) {
    typedef T half_vec __attribute__((vector_size(SBX_VEC_BYTES / 2)));
    const int64_t W = p->width, *restrict taps = p->taps;
    NAME(vec) a[FEW_VECTORS][FEW_KERNELS];
    UNROLL for (int v = 0; v < FEW_VECTORS; v++)
        UNROLL for (int n = 0; n < FEW_KERNELS; n++) a[v][n] = (NAME(vec)){0};
    for (int64_t j = 0; j < W; j++) {
        NAME(vec) xv[FEW_VECTORS];
        UNROLL for (int v = 0; v < FEW_VECTORS; v++)
            if (packed) {
                half_vec h0, h1;
                memcpy(&h0, x[2 * v] + taps[j], sizeof h0);
                memcpy(&h1, x[2 * v + 1] + taps[j], sizeof h1);
                xv[v] = __builtin_shufflevector(h0, h1, LOW_LANES, HIGH_LANES);
            } else {
                memcpy(&xv[v], x[v] + taps[j], sizeof xv[v]);
            }
        UNROLL for (int n = 0; n < FEW_KERNELS; n++) {
            const T w = kp[j * NB + n];
            UNROLL for (int v = 0; v < FEW_VECTORS; v++) a[v][n] += xv[v] * w;
        }
    }
    UNROLL for (int n = 0; n < FEW_KERNELS; n++) if (n < nb)
        UNROLL for (int v = 0; v < FEW_VECTORS; v++) {
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

/* One or two kernels (nb <= 2): PAIR_VECTORS vectors per step, x[v] and y[v] as four_vectors',
 * plain; the same sums in the same order. */
#define PAIR_VECTORS (2 * FEW_VECTORS)
SBX_CLONES static void NAME(pair_vectors)(const sbx_conv_plan *p, const T *const *x, const T *restrict kp,
                                          const T *bias, T *const *y, int64_t nb, int64_t O) {
    const int64_t W = p->width, *restrict taps = p->taps;
    NAME(vec) a[PAIR_VECTORS][2];
    UNROLL for (int v = 0; v < PAIR_VECTORS; v++) a[v][0] = a[v][1] = (NAME(vec)){0};
    for (int64_t j = 0; j < W; j++) {
        const T w0 = kp[j * NB], w1 = kp[j * NB + 1];
        UNROLL for (int v = 0; v < PAIR_VECTORS; v++) {
            NAME(vec) xv;
            memcpy(&xv, x[v] + taps[j], sizeof xv);
            a[v][0] += xv * w0;
            a[v][1] += xv * w1;
        }
    }
    UNROLL for (int n = 0; n < 2; n++) if (n < nb)
        UNROLL for (int v = 0; v < PAIR_VECTORS; v++) {
            a[v][n] += bias ? bias[n] : 0;
            memcpy(y[v] + n * O, &a[v][n], sizeof a[v][n]);
        }
}

/* The rows of an item for few kernels: their vectors (the last of a row ending at its end)
 * FEW_VECTORS at a time (PAIR_VECTORS for one or two kernels), or for rows narrower than a vector
 * their half vectors (as direct_rows_narrow) 2 x FEW_VECTORS at a time; a last group of fewer filled
 * up by repeating its last vector (the same outputs again). */
static void NAME(few_kernels_rows)(const sbx_conv_plan *p, const T *xb, const T *kp, const T *bias, T *yb, int64_t r0,
                                   int64_t here, int64_t nb, int64_t row, int64_t O) {
    const int64_t L = LANES_T;
    const int narrow = row < L, pair = !narrow && nb <= 2;
    const int per = narrow ? 2 * FEW_VECTORS : pair ? PAIR_VECTORS : FEW_VECTORS; /* slots per step */
    const int64_t w = narrow ? L / 2 : L;             /* a slot's lanes */
    const T *xs[2 * FEW_VECTORS];
    T *ys[2 * FEW_VECTORS];
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
                else if (pair)
                    NAME(pair_vectors)(p, xs, kp, bias, ys, nb, O);
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
 * vectors: 4 of them (2 x FEW_VECTORS for few kernels), one per row of half a vector, else two. */
static int64_t NAME(direct_group)(const sbx_conv_plan *p) {
    const int64_t L = LANES_T, row = p->shape.out[p->shape.ndim - 1];
    if (row < L) return (p->nkern <= FEW_KERNELS ? 2 * FEW_VECTORS : 4) / (row == L / 2 ? 1 : 2);
    const int packed = row % L != 0 && row % L <= L / 2;
    return packed ? 4 : 2;
}

/* Output rows r0 .. r0 + here - 1 of one image (xb its input, yb its output maps). */
static void NAME(direct_item)(const sbx_conv_plan *p, const T *xb, const T *kp, const T *bias, T *yb_image, int64_t r0,
                              int64_t here) {
    const int64_t O = p->shape.out_size, N = p->nkern, row = p->shape.out[p->shape.ndim - 1];
    const int64_t L = LANES_T;
    if (N <= FEW_KERNELS) {
        NAME(few_kernels_rows)(p, xb, kp, bias, yb_image, r0, here, N, row, O);
        return;
    }
    for (int64_t n0 = 0; n0 < N; n0 += NB) {
        const int64_t nb = N - n0 < NB ? N - n0 : NB;
        const T *kn = kp + n0 * p->width, *bn = bias ? bias + n0 : NULL;
        T *yb = yb_image + n0 * O;
        /* The next block's output lines, asked for now: they are scattered (a run of rows per kernel),
         * and waiting on them one at a time doubled the time of a float64 forward pass on one thread
         * (config b: 2.1-5 ms against 1.1 on two) once the outputs outgrow the caches. Not for rows
         * narrower than a vector (a line or two a kernel): there the asking cost more than it saved
         * (configs a and b at stride 2, float32, one thread [Zen 5]: 3-5 %). */
        for (int64_t n = n0 + NB; row >= L && n < n0 + 2 * NB && n < N; n++) {
            const T *at = yb_image + n * O + r0 * row;
            for (int64_t i = 0; i < here * row; i += L) __builtin_prefetch(at + i, 1, 3);
            __builtin_prefetch(at + here * row - 1, 1, 3);
        }
        if (row < L) {
            NAME(direct_rows_narrow)(p, xb, kn, bn, yb, r0, here, nb, row, O, p->taps2 != NULL);
            continue;
        }
        /* A last block of FEW_KERNELS kernels or fewer (32 kernels in blocks of 6: 2 left; 64: 4) takes the
         * few kernels' steps (FEW_VECTORS vectors by 4 kernels, PAIR_VECTORS by 2) on its part of the same
         * packing: two vectors by NB kernels spent up to two thirds of their products on the padding.
         * The same sums in the same order. */
        if (nb <= FEW_KERNELS) {
            NAME(few_kernels_rows)(p, xb, kn, bn, yb, r0, here, nb, row, O);
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

/* The direct convolution of batch images. x holds p's images, read as they are; or, with from set,
 * the images of the plan from, p being from->phased: each thread rearranges the image of its item
 * into its buffer in work (`pitch` elements a thread) when the image changes, so that the rearranged
 * image is read from the thread's own caches (items run in static chunks: an image about once a
 * thread). This takes nt rearranged images of memory where a pass over the batch first took batch of
 * them, at the same speed (config b at stride 2, float32, one thread: 0.235-0.244 ms either way).
 * With p->taps2 (strided loads, which read one element past a row's last pixel: past the array in the
 * last image's last row) the last image is read from a copy in the buffer, a vector of zeros after it. */
static void NAME(conv_direct)(const sbx_conv_plan *p, const sbx_conv_plan *from, int64_t batch, const T *x,
                              const T *kp, const T *bias, T *y, T *work, int64_t pitch, int nt) {
    const int64_t O = p->shape.out_size, N = p->nkern, row = p->shape.out[p->shape.ndim - 1];
    const int64_t in = from ? from->shape.in_size : p->shape.in_size, L = LANES_T;
    const int64_t rows = O / row, group = NAME(direct_group)(p);
    const int64_t steps = (rows + group - 1) / group, items = batch * steps;
#pragma omp parallel num_threads(nt)
    {
        T *buf = from || p->taps2 ? work + (int64_t)sbx__thread() * pitch : NULL;
        int64_t held = -1; /* the image in buf */
#pragma omp for schedule(static)
        for (int64_t item = 0; item < items; item++) {
            const int64_t b = item / steps, r0 = (item % steps) * group;
            const int copy = from || (p->taps2 && b == batch - 1);
            if (copy && held != b) {
                if (from) {
                    sbx__phased_image(from, x + b * in, buf);
                } else {
                    memcpy(buf, x + b * in, (size_t)in * sizeof(T));
                    memset(buf + in, 0, (size_t)L * sizeof(T));
                }
                held = b;
            }
            NAME(direct_item)(p, copy ? buf : x + b * in, kp, bias, y + b * N * O, r0,
                              rows - r0 < group ? rows - r0 : group);
        }
    }
}
