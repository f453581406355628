/* The kernel gradient of the convolution by the direct path (kgrad_block, with or without the
 * flat stretch) and with the kernels in the vector lanes (kgrad_lanes); the bias gradient.
 * Included by layer_kernels.h once per element type (the parameters are listed there), after
 * vector_impl.h. Every output element is computed by one thread in an order fixed by the shapes
 * alone, so results do not depend on the thread count. */

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
    const int64_t row = p->shape.out[p->shape.ndim - 1], L = LANES_T, vend = row / L * L;
    const int64_t stretch = gflat ? (O / row - 1) * p->shape.in[1] : 0; /* per kernel and image */
    int64_t nn[KB], jj[KG][JB];
    UNROLL for (int a = 0; a < KB; a++) nn[a] = n0 + a < N ? n0 + a : N - 1; /* past the end: the last, dropped */
    for (int t = 0; t < blocks; t++)
        UNROLL for (int c = 0; c < JB; c++) {
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
                UNROLL for (int a = 0; a < KB; a++) memcpy(&gv[a], gb + nn[a] * stretch + f, sizeof gv[a]);
                UNROLL for (int c = 0; c < JB; c++) memcpy(&xv[c], xb + jj[t][c] + f, sizeof xv[c]);
                UNROLL for (int a = 0; a < KB; a++)
                    UNROLL for (int c = 0; c < JB; c++) acc[a][c] += gv[a] * xv[c];
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
                    UNROLL for (int a = 0; a < KB; a++) memcpy(&gv[a], gq + nn[a] * O + at, sizeof gv[a]);
                    UNROLL for (int c = 0; c < JB; c++) memcpy(&xv[c], xq + jj[t][c] + at, sizeof xv[c]);
                    if (i >= vend) {
                        UNROLL for (int a = 0; a < KB; a++) gv[a] = (NAME(vec))((NAME(ivec))gv[a] & keep);
                        UNROLL for (int c = 0; c < JB; c++) xv[c] = (NAME(vec))((NAME(ivec))xv[c] & keep);
                    }
                    UNROLL for (int a = 0; a < KB; a++)
                        UNROLL for (int c = 0; c < JB; c++) acc[a][c] += gv[a] * xv[c];
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

/* The kernel gradient with the kernels in the vector lanes (plans with taps: a vector of kernels or
 * more, or output rows narrower than a vector, which have no direct forward pass when under half one):
 * gk[n][j] = sum over images b and output positions o of g[b][n][o] * x[b][base[o] + taps[j]].
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
            UNROLL for (int64_t k = 0; k < L; k++)
                if (h * L + k < nk)
                    memcpy(&v[k], g + (h * L + k) * O + o0, sizeof v[k]);
                else
                    v[k] = (NAME(vec)){0};
            NAME(transpose_tile)(v);
            UNROLL for (int64_t i = 0; i < L; i++) memcpy(gt + (o0 + i) * 2 * L + h * L, &v[i], sizeof v[i]);
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
        UNROLL for (int j = 0; j < kj; j++) {
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
                UNROLL for (int j = 0; j < KJ; j++)
                    tj[j] = p->taps[j0 + j < W ? j0 + j : W - 1]; /* past the end: dropped */
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

/* Whether kgrad_block can take the flat stretch: 2-d, stride 1 along both axes (row q of outputs starts q / row
 * image rows down), an image row of whole vectors, two output rows or more of a vector or more, and
 * every image value finite (the zeros of gflat meet image values, and 0 * inf would be NaN). */
static int NAME(kgrad_flat)(const sbx_conv_plan *p, int64_t batch, const T *x, int nt) {
    const sbx_conv_shape *s = &p->shape;
    const int64_t L = LANES_T;
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

/* The bias gradient of kernel n, sum over images b and positions o of g[b][n][o]: 4 vectors of lanes
 * over the positions (then single vectors into the first, then single values), image by image, the
 * lanes added up at the end, in an order the shape fixes. */
SBX_CLONES static T NAME(bias_grad_one)(const sbx_conv_plan *p, int64_t batch, const T *g, int64_t n) {
    const int64_t N = p->nkern, O = p->shape.out_size, L = LANES_T;
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
