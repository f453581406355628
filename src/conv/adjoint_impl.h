/* The image gradient of the convolution without the gather path: with the feature maps in the
 * vector lanes (maps_lanes), or as a direct convolution of the padded output gradient with the flipped
 * kernels (adjoint_by_image).
 * Included by layer_kernels.h once per element type (the parameters are listed there), after
 * vector_impl.h. Every output element is computed by one thread in an order fixed by the shapes
 * alone, so results do not depend on the thread count. */

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
#if SBX_VEC_BYTES == 64
#define IR 4 /* positions per step */
#define IS 5 /* taps per step */
#else /* 16 registers: 12 accumulators, 3 weights, a broadcast */
#define IR 4
#define IS 3
#endif

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
                UNROLL for (int r = 0; r < IR; r++) gr[r] = gb + (o0 + r < O ? o0 + r : O - 1); /* past O: dropped */
                const T *kn = kt + (v * N * Kp + l0) * L;
                NAME(vec) acc[IR][IS];
                UNROLL for (int r = 0; r < IR; r++)
                    UNROLL for (int t = 0; t < IS; t++) acc[r][t] = (NAME(vec)){0};
                for (int64_t n = 0; n < N; n++, kn += Kp * L) {
                    NAME(vec) kv[IS];
                    UNROLL for (int t = 0; t < IS; t++) memcpy(&kv[t], kn + t * L, sizeof kv[t]);
                    UNROLL for (int r = 0; r < IR; r++) {
                        const T w = gr[r][n * O];
                        UNROLL for (int t = 0; t < IS; t++) acc[r][t] += kv[t] * w;
                    }
                }
                /* Where each sum goes: its pixel, or past O or K the sink. */
                const int nr = O - o0 < IR ? (int)(O - o0) : IR, nt = K - l0 < IS ? (int)(K - l0) : IS;
                T *at[IR][IS];
                UNROLL for (int r = 0; r < IR; r++)
                    UNROLL for (int t = 0; t < IS; t++)
                        at[r][t] = r < nr && t < nt ? buf + (base[o0 + r] + delta[l0 + t]) * cp + v * L : sink;
                UNROLL for (int r = 0; r < IR; r++)
                    UNROLL for (int t = 0; t < IS; t++) {
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
            UNROLL for (int64_t i = 0; i < L; i++) memcpy(&tile[i], buf + (q0 + i) * cp + v * L, sizeof tile[i]);
            NAME(transpose_tile)(tile);
            UNROLL for (int64_t i = 0; i < L; i++)
                if (i < maps) memcpy(gxb + (v * L + i) * spatial + q0, &tile[i], sizeof tile[i]);
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

/* For the image gradient through p->adjoint: the output gradient g with every map padded by
 * kernel - 1 on both sides of every axis (gpad zeroed), and the kernels flipped with their roles
 * swapped, kflip[c][n * K + l] = k[n][c * K + K - 1 - l] (rows past C left zero), laid out as
 * pack_kernels lays out the forward pass's kernels. */
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
            for (int64_t l = 0; l < K; l++) /* row c, tap n * K + l, as pack_kernels lays them out */
                kflip[c / NB * NB * N * K + (n * K + l) * NB + c % NB] = k[(n * C + c) * K + K - 1 - l];
}
