/* The gather path of the convolution: im2row (the patches of a tile of output positions) and its
 * adjoint, and the forward pass and both gradients as gather + GEMM.
 * Included by layer_kernels.h once per element type (the parameters are listed there), after
 * vector_impl.h. Every output element is computed by one thread in an order fixed by the shapes
 * alone, so results do not depend on the thread count. */

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
