/* Convolution, local connections and max pooling: forward and backward, executed from a plan.
 * The _into functions (layers.h) check their arguments and write into output arrays the caller made,
 * with a workspace of their own, running the typed kernels of layer_kernels.h; the public entry points
 * allocate the outputs and call them. */
#include <cblas.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* The kernels' vector: SBX_VEC_BYTES bytes. This file is compiled for 64 (one AVX-512 register, or
 * two AVX2 ones in the x86-64-v3 clones, or four SSE ones) and, where the compiler can target
 * x86-64-v3, a second time by layers_avx2.c for 32 (one AVX2 register): the register blocks below are
 * sized for 32 and for 16 vector registers, and target_clones cannot change a type or a constant per
 * clone. The 64-byte build's entry points hand the work to the 32-byte build on CPUs with AVX2 and
 * FMA but not AVX-512 (use_avx2). Each build gives the same bits at every thread count; the two
 * differ in the last bits wherever their blocks sum in another order (sums across the lanes; the
 * image gradient's maps_lanes, whose tap blocks differ), as the clones of one build do. */
#ifndef SBX_VEC_BYTES
#define SBX_VEC_BYTES 64
#endif
#if SBX_VEC_BYTES == 32 /* the second build: its entry points take other names, its code no clones */
#define sbx__conv_forward_into sbx__conv_forward_into_avx2
#define sbx__conv_backward_into sbx__conv_backward_into_avx2
#define sbx__local_forward_into sbx__local_forward_into_avx2
#define sbx__local_backward_into sbx__local_backward_into_avx2
#endif
#include "conv/layers.h"
#include "sparse/internal.h"
#if SBX_VEC_BYTES == 32
#undef SBX_CLONES
#define SBX_CLONES
#endif

/* Before the loops of a register block: unrolled whole, so that its vectors stay in registers. Left as
 * loops (3 or 6 of them with 32-byte vectors) they went through the stack, and reloading a vector
 * stored in halves stalled (82 % of config b's image gradient, float32, perf annotate [Zen 3]). */
#define UNROLL _Pragma("GCC unroll 16")
#define BLOCK 8 /* (image, tile) steps per kernel-gradient partial sum */
#define KG 8    /* blocks of JB taps per pass over the images (kgrad_block) */
/* Pooling prefetches images of more than SBX__STREAM_BYTES (layers.h) POOL_AHEAD bytes ahead
 * (pool_map). Pool p3's images [Zen 5, 1 thread, mean of 400 calls]:
 * 16 MiB float64 0.90-1.49 -> 0.49-0.72 ms, 12 MiB 0.75-0.97 -> 0.74-0.79, 10 MiB the same within
 * noise, 8 MiB float32 0.39-0.49 -> 0.46-0.61, 4 MiB 0.13-0.18 -> 0.19-0.23 (4 and 16 KB ahead did no
 * better than 8). */
#define POOL_AHEAD 8192
#if SBX_VEC_BYTES == 64 /* 32 vector registers (AVX-512) */
#define NB 8 /* kernels per block of the direct convolution: 2 x NB vector accumulators */
#define KB 4 /* the direct kernel gradient's register block: KB kernels x JB taps (4 x 5 measured */
#define JB 5 /* best of 4x4, 4x5, 4x6, 5x4, 8x2, 2x8, 3x8 on configs a, b, c) */
#define KJ 8 /* taps per item of kgrad_lanes: 2 x KJ vector accumulators */
#define FEW_VECTORS 4 /* vectors per step for few kernels (four_vectors_at): FEW_VECTORS x 4 accumulators */
#else /* 16 (AVX2): the same blocks with their accumulators and operands in 16 registers */
#define NB 6
#define KB 3
#define JB 4
#define KJ 6
#define FEW_VECTORS 3
#endif

/* The calling thread's number in the library's parallel loop, after making the CBLAS calls it is
 * about to make single-threaded: the loops already use every thread, and OpenBLAS's OpenMP build
 * sizes its own team from the caller's omp_get_max_threads(). (Left to itself, a BLAS team inside
 * every small product made some products 50x slower here.) */
static int blas_thread(void) {
#ifdef _OPENMP
    omp_set_num_threads(1);
    return omp_get_thread_num();
#else
    return 0;
#endif
}

#if SBX_VEC_BYTES == 64 /* pooling's: see the end */
/* A tap mask is the narrowest unsigned integer with a bit per tap: 1, 2, 4 or 8 bytes (mb). */
static int mask_bytes(int64_t taps) { return taps <= 8 ? 1 : taps <= 16 ? 2 : taps <= 32 ? 4 : 8; }
static inline uint64_t mask_get(const void *m, int mb, int64_t i) {
    switch (mb) {
    case 1: return ((const uint8_t *)m)[i];
    case 2: return ((const uint16_t *)m)[i];
    case 4: return ((const uint32_t *)m)[i];
    default: return ((const uint64_t *)m)[i];
    }
}
/* w[0 .. n-1] = masks at .. at + n - 1, as 64-bit values. */
static inline void mask_widen(const void *m, int mb, int64_t at, int64_t n, uint64_t *w) {
    switch (mb) {
    case 1: for (int64_t i = 0; i < n; i++) w[i] = ((const uint8_t *)m)[at + i]; break;
    case 2: for (int64_t i = 0; i < n; i++) w[i] = ((const uint16_t *)m)[at + i]; break;
    case 4: for (int64_t i = 0; i < n; i++) w[i] = ((const uint32_t *)m)[at + i]; break;
    default: memcpy(w, (const uint64_t *)m + at, (size_t)n * sizeof *w);
    }
}
static inline void mask_put(void *m, int mb, int64_t i, uint64_t bits) {
    switch (mb) {
    case 1: ((uint8_t *)m)[i] = (uint8_t)bits; break;
    case 2: ((uint16_t *)m)[i] = (uint16_t)bits; break;
    case 4: ((uint32_t *)m)[i] = (uint32_t)bits; break;
    default: ((uint64_t *)m)[i] = bits;
    }
}
#endif

#define T float
#define TI int32_t /* the integer of T's width, for lane masks */
#define NAME(x) x##_f32
#define GEMM cblas_sgemm
#if SBX_VEC_BYTES == 64
#define LOW_LANES 0, 1, 2, 3, 4, 5, 6, 7 /* the lanes of half a vector */
#define HIGH_LANES 8, 9, 10, 11, 12, 13, 14, 15
#define EVEN_LANES 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30 /* of two vectors, one after the other */
/* F(h, i) for every lane i, and the stages h of an in-register transpose (kgrad_lanes) */
#define EACH_LANE(F, h) F(h, 0), F(h, 1), F(h, 2), F(h, 3), F(h, 4), F(h, 5), F(h, 6), F(h, 7), F(h, 8), F(h, 9), \
                        F(h, 10), F(h, 11), F(h, 12), F(h, 13), F(h, 14), F(h, 15)
#define TRANSPOSE_STAGES(S) S(8) S(4) S(2) S(1)
#define PAIR_LANES 0, 0, 1, 1, 2, 2, 3, 3 /* each lane of a quarter vector twice (unpool_row_2x2) */
#define PAIR_BITS(a, b) a, b, a, b, a, b, a, b
#else
#define LOW_LANES 0, 1, 2, 3
#define HIGH_LANES 4, 5, 6, 7
#define EVEN_LANES 0, 2, 4, 6, 8, 10, 12, 14
#define EACH_LANE(F, h) F(h, 0), F(h, 1), F(h, 2), F(h, 3), F(h, 4), F(h, 5), F(h, 6), F(h, 7)
#define TRANSPOSE_STAGES(S) S(4) S(2) S(1)
#endif
#include "conv/layer_kernels.h"
#define T double
#define TI int64_t
#define NAME(x) x##_f64
#define GEMM cblas_dgemm
#if SBX_VEC_BYTES == 64
#define LOW_LANES 0, 1, 2, 3
#define HIGH_LANES 4, 5, 6, 7
#define EVEN_LANES 0, 2, 4, 6, 8, 10, 12, 14
#define EACH_LANE(F, h) F(h, 0), F(h, 1), F(h, 2), F(h, 3), F(h, 4), F(h, 5), F(h, 6), F(h, 7)
#define TRANSPOSE_STAGES(S) S(4) S(2) S(1)
#define PAIR_LANES 0, 0, 1, 1
#define PAIR_BITS(a, b) a, b, a, b
#else
#define LOW_LANES 0, 1
#define HIGH_LANES 2, 3
#define EVEN_LANES 0, 2, 4, 6
#define EACH_LANE(F, h) F(h, 0), F(h, 1), F(h, 2), F(h, 3)
#define TRANSPOSE_STAGES(S) S(2) S(1)
#endif
#include "conv/layer_kernels.h"

/* Which build runs (see the top): the 32-byte one on CPUs with AVX2 and FMA but not AVX-512, unless
 * sbx__layers_vector_bytes chose. Not in the 32-byte build, nor where there is none (TO_AVX2). */
#if SBX_VEC_BYTES == 64 && defined(SBX_LAYERS_AVX2)
static int chosen_bytes; /* 0: by the CPU */
static int avx2_cpu(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
static int use_avx2(void) {
    return chosen_bytes ? chosen_bytes == 32 : avx2_cpu() && !__builtin_cpu_supports("avx512f");
}
int sbx__layers_vector_bytes(int bytes) {
    if (bytes == 64 || bytes == 0 || (bytes == 32 && avx2_cpu())) chosen_bytes = bytes;
    return use_avx2() ? 32 : 64;
}
#define TO_AVX2(f, ...) \
    if (use_avx2()) return f##_avx2(__VA_ARGS__)
#elif SBX_VEC_BYTES == 64
int sbx__layers_vector_bytes(int bytes) {
    (void)bytes;
    return 64;
}
#define TO_AVX2(f, ...)
#else
#define TO_AVX2(f, ...)
#endif

/* Threads for a loop over `items` each costing about `work` operations. */
static int threads_for(int64_t items, int64_t work) {
    int t = sbx__threads();
    if (items < t) t = items > 1 ? (int)items : 1;
    return items * work < 50000 ? 1 : t;
}

static sbx_status local_workspace(const sbx_conv_plan *p, int64_t batch, int forward, int grad_images,
                                  int grad_weights, int nt, void **values, int64_t **offsets);

/* Zeroes an output whose kernel adds into it. */
static void zero_array(sbx_array *a) {
    const int64_t n = sbx_array_numel(a);
    if (n > 0) memset(a->data, 0, (size_t)n * sbx_dtype_size(a->dtype));
}

/* Local connections: kerns is the vector of all weights, bias one per output unit. */
static int64_t local_weights(const sbx_conv_plan *p) { return p->width * p->nkern * p->shape.out_size; }

/* The inputs of a convolution or local-connections execution: a plan of the kind, images (their
 * number into *batch), kerns, the bias when given, and grad_out for a backward pass. */
static sbx_status layer_inputs(const sbx_conv_plan *p, sbx__plan_kind kind, const sbx_array *images,
                               const sbx_array *kerns, const sbx_array *bias, int backward, const sbx_array *grad_out,
                               int64_t *batch) {
    SBX_CHECK(sbx__layer_plan(p, kind));
    SBX_CHECK(sbx__layer_array(p, images, "images", -1, p->shape.in_size, batch));
    const int64_t U = p->nkern * p->shape.out_size;
    if (kind == PLAN_CONV)
        SBX_CHECK(sbx__layer_array(p, kerns, "kerns", p->nkern, p->width, NULL));
    else
        SBX_CHECK(sbx__layer_array(p, kerns, "kerns", 0, -local_weights(p), NULL));
    if (bias) SBX_CHECK(sbx__layer_array(p, bias, "bias", 0, kind == PLAN_CONV ? -p->nkern : -U, NULL));
    if (backward) SBX_CHECK(sbx__layer_array(p, grad_out, "grad_out", *batch, U, NULL));
    return SBX_OK;
}

/* An array the caller made for an output: of the plan's dtype and rows x cols (cols < 0: a vector of
 * -cols), and none of the arrays of others (the inputs, and the outputs checked before it), which
 * the kernels read or write while they write it. */
static sbx_status layer_output(const sbx_conv_plan *p, const sbx_array *a, const char *name, int64_t rows,
                               int64_t cols, const sbx_array *const *others, int nothers) {
    SBX_CHECK(sbx__layer_array(p, a, name, rows, cols, NULL));
    for (int i = 0; i < nothers; i++)
        if (others[i] && (others[i] == a || (a->data && others[i]->data == a->data)))
            return sbx__error(SBX_ERR_ARG, "%s shares its data with an input or another output; an output needs an "
                              "array of its own", name);
    return SBX_OK;
}

/* The original's path (SBX_ALGO_CSR, SBX_ALGO_CSC): the patches of a block of images as images . M^T
 * by the structured dot (p->patches is M^T), then each image's output as kernels . patches^T. Blocks
 * of about PATCH_BYTES of patches; each patch value and each output are computed alike in any block
 * and by any thread, so the bits depend on neither. */
static sbx_status patch_forward(const sbx_conv_plan *p, int64_t batch, const sbx_array *images, const sbx_array *kerns,
                                const sbx_array *bias, sbx_array *out) {
    const int64_t PATCH_BYTES = 32 << 20, es = (int64_t)sbx_dtype_size(p->dtype), O = p->shape.out_size;
    const int64_t W = p->width, N = p->nkern, R = p->patches->ncols, in = p->shape.in_size;
    int64_t block = R > PATCH_BYTES / es ? 1 : PATCH_BYTES / (R * es), count;
    if (block > batch) block = batch;
    void *P = NULL;
    if (sbx_mul_i64(block, R, &count) != SBX_OK)
        return sbx__error(SBX_ERR_OVERFLOW, "the patch buffer's size overflows int64");
    SBX_CHECK(sbx__alloc_raw(count, (size_t)es, &P, "patch buffer"));
    const int f32 = p->dtype == SBX_FLOAT32;
    sbx_status st = SBX_OK;
    for (int64_t b0 = 0; st == SBX_OK && b0 < batch; b0 += block) {
        const int64_t n = batch - b0 < block ? batch - b0 : block;
        sbx_array x = {.dtype = p->dtype, .ndim = 2, .shape = {n, in}, .data = (char *)images->data + b0 * in * es};
        sbx_array c = {.dtype = p->dtype, .ndim = 2, .shape = {n, R}, .data = P};
        st = sbx__dense_dot_sparse_into(&x, p->patches, &c);
        if (st != SBX_OK) break;
        const int nt = threads_for(n, N * O * W);
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            (void)blas_thread();
            const int64_t b = b0 + i;
            if (f32) {
                float *yb = (float *)out->data + b * N * O;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)O, (int)W, 1, kerns->data, (int)W,
                            (const float *)P + i * R, (int)W, 0, yb, (int)O);
                for (int64_t k = 0; bias && k < N; k++)
                    for (int64_t o = 0; o < O; o++) yb[k * O + o] += ((const float *)bias->data)[k];
            } else {
                double *yb = (double *)out->data + b * N * O;
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)O, (int)W, 1, kerns->data, (int)W,
                            (const double *)P + i * R, (int)W, 0, yb, (int)O);
                for (int64_t k = 0; bias && k < N; k++)
                    for (int64_t o = 0; o < O; o++) yb[k * O + o] += ((const double *)bias->data)[k];
            }
        }
    }
    sbx__free(P);
    return st;
}

sbx_status sbx__conv_forward_into(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                                  const sbx_array *bias, sbx_array *out) {
    TO_AVX2(sbx__conv_forward_into, p, images, kerns, bias, out);
    int64_t batch;
    void *work = NULL;
    SBX_CHECK(layer_inputs(p, PLAN_CONV, images, kerns, bias, 0, NULL, &batch));
    const sbx_array *in[3] = {images, kerns, bias};
    SBX_CHECK(layer_output(p, out, "out", batch, p->nkern * p->shape.out_size, in, 3));
    int64_t ws;
    int nt = threads_for(batch * p->tiles, p->nkern * p->tile * p->width);
    sbx_status st = SBX_OK;
    if (sbx_mul_i64(p->tile * p->width, nt, &ws) != SBX_OK)
        st = sbx__error(SBX_ERR_OVERFLOW, "convolution workspace size overflows");
    if (st == SBX_OK) st = sbx__alloc_raw(ws, sbx_dtype_size(p->dtype), &work, "convolution workspace");
    if (st == SBX_OK && batch > 0 && p->patches) {
        st = patch_forward(p, batch, images, kerns, bias, out);
    } else if (st == SBX_OK && batch > 0 && p->algo == SBX_ALGO_DIRECT) { /* the direct kernel, kernels packed */
        const int64_t padded = (p->nkern + NB - 1) / NB * NB, es = (int64_t)sbx_dtype_size(p->dtype);
        /* full mode and strides: rearranged images, or at stride 2 with rows narrower than a vector the
         * images as they are through strided loads (p->taps2; not for few kernels, whose loop has no
         * strided loads). With 32-byte vectors the rows of taps2 are a vector or more, and the
         * rearranged images measured faster (config a at stride 2, float32, 1 thread [Zen 3]: 0.33 ms,
         * against 0.42 by strided loads) */
        const int strided = p->taps2 && p->nkern > FEW_KERNELS && p->shape.out[p->shape.ndim - 1] < SBX_VEC_BYTES / es;
        const sbx_conv_plan *d = p->phased && !strided ? p->phased : p;
        const int64_t row = d->shape.out[d->shape.ndim - 1];
        void *kp = NULL, *xr = NULL;
        /* the per-thread image buffers, whole vectors apart (with a vector to spare) */
        const int64_t L = SBX_VEC_BYTES / es;
        int64_t pitch = 0, xn = 0;
        nt = threads_for(batch * (d->shape.out_size / row), p->nkern * row * p->width);
        st = sbx__alloc(padded * p->width, (size_t)es, &kp, "padded kernels");
        if (st == SBX_OK && p->phased) {
            if (sbx_add_i64(d->shape.in_size, 2 * L - 1, &pitch) != SBX_OK ||
                sbx_mul_i64(pitch / L * L, nt, &xn) != SBX_OK)
                st = sbx__error(SBX_ERR_OVERFLOW, "the image buffers' size overflows int64");
            pitch = pitch / L * L;
        }
        if (st == SBX_OK && p->phased) st = sbx__alloc_raw(xn, (size_t)es, &xr, "image buffers");
        if (st == SBX_OK) {
            const sbx_conv_plan *from = d == p->phased ? p : NULL;
            const void *b = bias ? bias->data : NULL;
            if (p->dtype == SBX_FLOAT32) {
                pack_kernels_f32(kerns->data, p->nkern, p->width, kp);
                conv_direct_f32(d, from, batch, images->data, kp, b, out->data, xr, pitch, nt);
            } else {
                pack_kernels_f64(kerns->data, p->nkern, p->width, kp);
                conv_direct_f64(d, from, batch, images->data, kp, b, out->data, xr, pitch, nt);
            }
        }
        sbx__free(xr);
        sbx__free(kp);
    } else if (st == SBX_OK && p->gather && batch >= SBX_VEC_BYTES / (int64_t)sbx_dtype_size(p->dtype) &&
               p->nkern * p->shape.out_size * (int64_t)sbx_dtype_size(p->dtype) % 4096 != 0) {
        /* A vector of images or more: the register block of local connections (local_impl.h). It
         * writes 16 output rows at a time, nkern * out_size apart: at a multiple of 4 KiB they share
         * cache sets, and the gather path measured faster (full mode over 1 x 28 x 28, 32 kernels
         * 5 x 5: 2.9 against 3.6 ms in float64); elsewhere the blocks measured 1.3-3x faster in
         * float32 (configs a, b at stride 2, b in full mode, 16 x 8 x 8 maps). */
        int64_t *offs = NULL;
        void *blocks = NULL;
        nt = threads_for(p->shape.out_size, p->nkern * p->width * batch);
        st = local_workspace(p, batch, 1, 0, 0, nt, &blocks, &offs);
        if (st == SBX_OK && p->dtype == SBX_FLOAT32)
            local_forward_f32(p, batch, images->data, kerns->data, bias ? bias->data : NULL, out->data, blocks, offs, nt,
                              1);
        else if (st == SBX_OK)
            local_forward_f64(p, batch, images->data, kerns->data, bias ? bias->data : NULL, out->data, blocks, offs, nt,
                              1);
        sbx__free(blocks);
        sbx__free(offs);
    } else if (st == SBX_OK && batch > 0) {
        if (p->dtype == SBX_FLOAT32)
            conv_forward_f32(p, batch, images->data, kerns->data, bias ? bias->data : NULL, out->data, work, nt);
        else
            conv_forward_f64(p, batch, images->data, kerns->data, bias ? bias->data : NULL, out->data, work, nt);
    }
    sbx__free(work);
    return st;
}

/* The image gradient of a stride-1 convolution through its adjoint plan: the direct kernel over the
 * padded output gradient (valid mode; full mode needs no padding) with the flipped kernels. */
static sbx_status adjoint_gradient(const sbx_conv_plan *p, int64_t batch, const void *k, const void *g, void *gx) {
    const sbx_conv_plan *a = p->adjoint;
    const int64_t es = (int64_t)sbx_dtype_size(p->dtype), rows = (a->nkern + NB - 1) / NB * NB;
    const int nt = threads_for(batch * (a->shape.out_size / a->shape.out[a->shape.ndim - 1]),
                               a->nkern * a->shape.out[a->shape.ndim - 1] * a->width);
    /* Valid mode pads the output gradient: an image at a time into per-thread buffers when there are
     * images enough for every thread (adjoint_by_image), else the whole batch at once. */
    const int valid = p->shape.mode == SBX_CONV_VALID, by_image = valid && batch >= 2 * (int64_t)nt;
    void *gpad = NULL, *kflip = NULL;
    int64_t n;
    sbx_status st = SBX_OK;
    if (valid) {
        if (sbx_mul_i64(by_image ? nt : batch, a->shape.in_size, &n) != SBX_OK)
            return sbx__error(SBX_ERR_OVERFLOW, "the padded output gradient's size overflows int64");
        st = sbx__alloc(n, (size_t)es, &gpad, "padded output gradient"); /* zeroed: pad_map writes the rows */
    }
    if (st == SBX_OK) st = sbx__alloc(rows * a->width, (size_t)es, &kflip, "flipped kernels");
    if (st == SBX_OK) {
        const void *src = gpad ? gpad : g;
        if (p->dtype == SBX_FLOAT32) {
            flip_kernels_f32(p, k, kflip);
            if (by_image) {
                adjoint_by_image_f32(p, batch, g, kflip, gx, gpad, nt);
            } else {
                if (gpad) pad_grad_f32(p, batch, g, gpad, nt);
                conv_direct_f32(a, NULL, batch, src, kflip, NULL, gx, NULL, 0, nt);
            }
        } else {
            flip_kernels_f64(p, k, kflip);
            if (by_image) {
                adjoint_by_image_f64(p, batch, g, kflip, gx, gpad, nt);
            } else {
                if (gpad) pad_grad_f64(p, batch, g, gpad, nt);
                conv_direct_f64(a, NULL, batch, src, kflip, NULL, gx, NULL, 0, nt);
            }
        }
    }
    sbx__free(gpad);
    sbx__free(kflip);
    return st;
}

/* The image gradient with the maps in the lanes (plans with maps_lanes): the kernels transposed for
 * it, then every image. Workspace: nt buffers (maps_lanes_buffer), then the transposed kernels,
 * aligned to 64 bytes. */
static sbx_status maps_lanes_gradient(const sbx_conv_plan *p, int64_t batch, const void *k, const void *g, void *gx) {
    const int f32 = p->dtype == SBX_FLOAT32;
    const int64_t es = (int64_t)sbx_dtype_size(p->dtype), L = SBX_VEC_BYTES / es, C = p->shape.channels;
    const int64_t buffer = f32 ? maps_lanes_buffer_f32(p) : maps_lanes_buffer_f64(p);
    const int64_t taps = f32 ? maps_lanes_taps_f32(p) : maps_lanes_taps_f64(p);
    const int nt = threads_for(batch, p->nkern * p->shape.out_size * p->width);
    int64_t kt_count, count;
    void *work = NULL;
    if (sbx_mul_i64(p->nkern, taps, &kt_count) != SBX_OK ||
        sbx_mul_i64(kt_count, (C + L - 1) / L * L, &kt_count) != SBX_OK || sbx_mul_i64(buffer, nt, &count) != SBX_OK ||
        sbx_add_i64(count, kt_count + 64 / es, &count) != SBX_OK) /* room to align to 64 bytes */
        return sbx__error(SBX_ERR_OVERFLOW, "image gradient workspace size overflows");
    SBX_CHECK(sbx__alloc_raw(count, (size_t)es, &work, "image gradient workspace"));
    char *bufs = (char *)(((uintptr_t)work + 63) & ~(uintptr_t)63), *kt = bufs + (size_t)(nt * buffer * es);
    if (f32) {
        maps_lanes_kernels_f32(p, k, (float *)kt);
        maps_lanes_f32(p, batch, g, (const float *)kt, gx, (float *)bufs, nt);
    } else {
        maps_lanes_kernels_f64(p, k, (double *)kt);
        maps_lanes_f64(p, batch, g, (const double *)kt, gx, (double *)bufs, nt);
    }
    sbx__free(work);
    return SBX_OK;
}

sbx_status sbx__conv_backward_into(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                                   const sbx_array *grad_out, sbx_array *grad_images, sbx_array *grad_kerns,
                                   sbx_array *grad_bias) {
    TO_AVX2(sbx__conv_backward_into, p, images, kerns, grad_out, grad_images, grad_kerns, grad_bias);
    int64_t batch;
    void *work = NULL, *partial = NULL;
    SBX_CHECK(layer_inputs(p, PLAN_CONV, images, kerns, NULL, 1, grad_out, &batch));
    const sbx_array *seen[5] = {images, kerns, grad_out, grad_images, grad_kerns};
    if (grad_images) SBX_CHECK(layer_output(p, grad_images, "grad_images", batch, p->shape.in_size, seen, 3));
    if (grad_kerns) SBX_CHECK(layer_output(p, grad_kerns, "grad_kerns", p->nkern, p->width, seen, 4));
    if (grad_bias) SBX_CHECK(layer_output(p, grad_bias, "grad_bias", 0, -p->nkern, seen, 5));
    const int64_t N = p->nkern, W = p->width, nblocks = (batch * p->tiles + BLOCK - 1) / BLOCK;
    int nt = threads_for(batch * p->tiles, N * p->tile * W);
    int64_t ws = 0, ps = 0;
    sbx_status st = SBX_OK;
    /* Each gradient's path. The gather path adds into its gradients; the others write theirs whole.
     * The workspace and the partial sums serve only the gather path. */
    const int f32 = p->dtype == SBX_FLOAT32;
    const int64_t es = (int64_t)sbx_dtype_size(p->dtype), L = SBX_VEC_BYTES / es, O = p->shape.out_size;
    const int64_t row = p->shape.out[p->shape.ndim - 1];
    const int lanes_images = grad_images && p->maps_lanes && batch > 0;
    const int adjoint_images = grad_images && p->adjoint && batch > 0;
    const int gather_images = grad_images && !lanes_images && !adjoint_images;
    /* The kernel gradient in the lanes from a vector of kernels on, or for rows narrower than a
     * vector (which kgrad_block does not take; there it measured faster than the gather path at any
     * kernel count: 0.34 ms against 0.55 for 2 kernels over the demo's 16 x 12 x 12 maps), when the
     * per-thread buffer fits. */
    /* Full mode and strides along the last axis: the same paths over the rearranged images (phased.c),
     * whose plan has the taps these paths read, in place of gather + small GEMMs per tile. Both
     * gradients, one thread [Zen 5]: config a in full mode 4.8-4.9 -> 2.9-3.0 ms in float32, 5.8-5.9 ->
     * 4.9-5.2 in float64; b in full mode 4.7-5.0 -> 2.0-2.7 and 9.9-10.3 -> 7.2-7.6; at stride 2 a
     * 0.49 -> 0.41 and b 0.62 -> 0.56 in float32. kgp: the plan the kernel gradient runs. */
    const sbx_conv_plan *kgp = p->taps ? p : p->phased;
    const int lanes_kerns = grad_kerns && kgp && kgp->taps && batch > 0 && (N >= L || row < L) &&
                            O <= SBX__LANES_BUFFER / (2 * L * es);
    const int direct_kerns = grad_kerns && kgp && kgp->taps && batch > 0 && !lanes_kerns && row >= L;
    const int gather_kerns = grad_kerns && !lanes_kerns && !direct_kerns;
    const void *x = images->data; /* the images the kernel gradient reads: rearranged ones for p->phased */
    void *xr = NULL;
    if (gather_images) zero_array(grad_images);
    if (gather_kerns) zero_array(grad_kerns);
    if (sbx_mul_i64(p->tile * W, nt, &ws) != SBX_OK || sbx_mul_i64(nblocks, N * W, &ps) != SBX_OK)
        st = sbx__error(SBX_ERR_OVERFLOW, "convolution workspace size overflows");
    if (st == SBX_OK && (gather_images || gather_kerns))
        st = sbx__alloc_raw(ws, sbx_dtype_size(p->dtype), &work, "convolution workspace");
    if (st == SBX_OK && gather_kerns) st = sbx__alloc(ps, sbx_dtype_size(p->dtype), &partial, "kernel gradient partials");
    if (st == SBX_OK && lanes_images)
        st = maps_lanes_gradient(p, batch, kerns->data, grad_out->data, grad_images->data);
    if (st == SBX_OK && adjoint_images) /* the image gradient as a direct convolution */
        st = adjoint_gradient(p, batch, kerns->data, grad_out->data, grad_images->data);
    if (st == SBX_OK && kgp != p && (lanes_kerns || direct_kerns)) {
        int64_t xn = 0;
        if (sbx_mul_i64(batch, kgp->shape.in_size, &xn) != SBX_OK)
            st = sbx__error(SBX_ERR_OVERFLOW, "the rearranged images' size overflows int64");
        if (st == SBX_OK) st = sbx__alloc_raw(xn, (size_t)es, &xr, "rearranged images");
        if (st == SBX_OK) sbx__phased_images(p, batch, images->data, xr, threads_for(batch, kgp->shape.in_size));
        x = xr;
    }
    if (st == SBX_OK && lanes_kerns) {
        /* The kernel gradient with the kernels in the lanes; its workspace: a buffer of O x 2L per
         * thread, then every item's sums (KJ x 2L). */
        const int64_t items = f32 ? lanes_items_count_f32(kgp) : lanes_items_count_f64(kgp);
        const int nt_lanes = threads_for(items, KJ * 2 * L * batch * O);
        int64_t count;
        void *work_lanes = NULL;
        if (sbx_mul_i64(items, KJ * 2 * L, &count) != SBX_OK ||
            sbx_add_i64(count, nt_lanes * O * 2 * L, &count) != SBX_OK)
            st = sbx__error(SBX_ERR_OVERFLOW, "kernel gradient workspace size overflows");
        else
            st = sbx__alloc_raw(count, (size_t)es, &work_lanes, "kernel gradient workspace");
        const void *g = grad_out->data;
        if (st == SBX_OK && f32) kgrad_lanes_f32(kgp, batch, x, g, grad_kerns->data, work_lanes, nt_lanes);
        if (st == SBX_OK && !f32) kgrad_lanes_f64(kgp, batch, x, g, grad_kerns->data, work_lanes, nt_lanes);
        sbx__free(work_lanes);
    }
    if (st == SBX_OK && direct_kerns) { /* by the direct kernel */
        int nk = threads_for((N + KB - 1) / KB * ((W + JB - 1) / JB), KB * JB * batch * p->shape.out_size);
        /* The flat stretch where it applies. Its sums run in another order than the rows', so a
         * failed allocation is an error, not a quiet change of path (results would then depend on
         * memory). */
        void *gflat = NULL;
        if (f32 ? kgrad_flat_f32(kgp, batch, x, nt) : kgrad_flat_f64(kgp, batch, x, nt)) {
            int64_t count = 0;
            const int64_t per_map = (kgp->shape.out[0] - 1) * kgp->shape.in[1];
            if (sbx_mul_i64(batch * N, per_map, &count) != SBX_OK)
                st = sbx__error(SBX_ERR_OVERFLOW, "the flat output gradient's size overflows int64");
            else
                st = sbx__alloc_raw(count, sbx_dtype_size(p->dtype), &gflat, "flat output gradient");
            if (st == SBX_OK && f32) flatten_grad_f32(kgp, batch, grad_out->data, gflat, nt);
            if (st == SBX_OK && !f32) flatten_grad_f64(kgp, batch, grad_out->data, gflat, nt);
        }
        if (st == SBX_OK && f32)
            kgrad_direct_f32(kgp, batch, x, grad_out->data, gflat, grad_kerns->data, nk);
        else if (st == SBX_OK)
            kgrad_direct_f64(kgp, batch, x, grad_out->data, gflat, grad_kerns->data, nk);
        sbx__free(gflat);
    }
    if (st == SBX_OK && (gather_images || gather_kerns)) {
        void *gx = gather_images ? grad_images->data : NULL, *gk = gather_kerns ? grad_kerns->data : NULL;
        if (f32)
            conv_backward_f32(p, batch, images->data, kerns->data, grad_out->data, gx, gk, work, partial, nt);
        else
            conv_backward_f64(p, batch, images->data, kerns->data, grad_out->data, gx, gk, work, partial, nt);
    }
    if (st == SBX_OK && grad_bias) {
        const int nb = threads_for(N, batch * O);
        if (f32)
            bias_grad_f32(p, batch, grad_out->data, grad_bias->data, nb);
        else
            bias_grad_f64(p, batch, grad_out->data, grad_bias->data, nb);
    }
    sbx__free(xr);
    sbx__free(work);
    sbx__free(partial);
    return st;
}

/* The workspace of a local-connections pass: values of the plan's dtype and offsets (local_impl.h). */
static sbx_status local_workspace(const sbx_conv_plan *p, int64_t batch, int forward, int grad_images,
                                  int grad_weights, int nt, void **values, int64_t **offsets) {
    int64_t nv = 0, no = 0;
    SBX_CHECK(p->dtype == SBX_FLOAT32 ? local_work_f32(p, batch, forward, grad_images, grad_weights, nt, &nv, &no)
                                      : local_work_f64(p, batch, forward, grad_images, grad_weights, nt, &nv, &no));
    SBX_CHECK(sbx__alloc_raw(nv, sbx_dtype_size(p->dtype), values, "local connections workspace"));
    sbx_status st = sbx__alloc_raw(no, sizeof(int64_t), offsets, "local connections workspace");
    if (st != SBX_OK) {
        sbx__free(*values);
        *values = NULL;
    }
    return st;
}

sbx_status sbx__local_forward_into(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                                   const sbx_array *bias, sbx_array *out) {
    TO_AVX2(sbx__local_forward_into, p, images, kerns, bias, out);
    int64_t batch, *offs = NULL;
    void *work = NULL;
    SBX_CHECK(layer_inputs(p, PLAN_LOCAL, images, kerns, bias, 0, NULL, &batch));
    const sbx_array *in[3] = {images, kerns, bias};
    SBX_CHECK(layer_output(p, out, "out", batch, p->nkern * p->shape.out_size, in, 3));
    if (batch == 0) return SBX_OK;
    const int nt = threads_for(p->shape.out_size, p->nkern * p->width * batch);
    SBX_CHECK(local_workspace(p, batch, 1, 0, 0, nt, &work, &offs));
    if (p->dtype == SBX_FLOAT32)
        local_forward_f32(p, batch, images->data, kerns->data, bias ? bias->data : NULL, out->data, work, offs, nt, 0);
    else
        local_forward_f64(p, batch, images->data, kerns->data, bias ? bias->data : NULL, out->data, work, offs, nt, 0);
    sbx__free(work);
    sbx__free(offs);
    return SBX_OK;
}

sbx_status sbx__local_backward_into(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                                    const sbx_array *grad_out, sbx_array *grad_images, sbx_array *grad_kerns,
                                    sbx_array *grad_bias) {
    TO_AVX2(sbx__local_backward_into, p, images, kerns, grad_out, grad_images, grad_kerns, grad_bias);
    int64_t batch;
    SBX_CHECK(layer_inputs(p, PLAN_LOCAL, images, kerns, NULL, 1, grad_out, &batch));
    const int64_t U = p->nkern * p->shape.out_size;
    const sbx_array *seen[5] = {images, kerns, grad_out, grad_images, grad_kerns};
    if (grad_images) SBX_CHECK(layer_output(p, grad_images, "grad_images", batch, p->shape.in_size, seen, 3));
    if (grad_kerns) SBX_CHECK(layer_output(p, grad_kerns, "grad_kerns", 0, -local_weights(p), seen, 4));
    if (grad_bias) SBX_CHECK(layer_output(p, grad_bias, "grad_bias", 0, -U, seen, 5));
    if (batch == 0) { /* sums of nothing */
        if (grad_kerns) zero_array(grad_kerns);
        if (grad_bias) zero_array(grad_bias);
        return SBX_OK;
    }
    int64_t *offs = NULL;
    void *work = NULL;
    void *gx = grad_images ? grad_images->data : NULL, *gk = grad_kerns ? grad_kerns->data : NULL;
    void *gb = grad_bias ? grad_bias->data : NULL;
    const int nt = threads_for(p->shape.out_size, p->nkern * p->width * batch);
    SBX_CHECK(local_workspace(p, batch, 0, gx != NULL, gk != NULL, nt, &work, &offs));
    if (grad_bias) zero_array(grad_bias); /* added into; the other gradients are written whole */
    if (p->dtype == SBX_FLOAT32)
        local_backward_f32(p, batch, images->data, kerns->data, grad_out->data, gx, gk, gb, work, offs, nt);
    else
        local_backward_f64(p, batch, images->data, kerns->data, grad_out->data, gx, gk, gb, work, offs, nt);
    sbx__free(work);
    sbx__free(offs);
    return SBX_OK;
}

#if SBX_VEC_BYTES == 64 /* once: the public entry points, and pooling (whose kernels are 256-bit) */
/* The _into functions below hand the work to the 32-byte build (layers_avx2.c) when use_avx2 says so. */
/* A new rows x cols array of the plan's dtype into *out (untouched on failure), unfilled: the _into
 * functions write every element, zeroing first what their kernels add into. cols < 0 makes a vector
 * of rows. */
static sbx_status new_output(const sbx_conv_plan *p, int64_t rows, int64_t cols, sbx_array **out) {
    int64_t shape[2] = {rows, cols};
    return sbx__array_new(p->dtype, cols < 0 ? 1 : 2, cols < 0 ? &rows : shape, 0, out);
}

static void free_all(sbx_array **a, int n) {
    for (int i = 0; i < n; i++) {
        sbx_array_free(a[i]);
        a[i] = NULL;
    }
}

/* The wrappers' ending: *out = a on success, else a freed (and *out untouched). */
static sbx_status hand_over(sbx_status st, sbx_array *a, sbx_array **out) {
    if (st != SBX_OK) {
        sbx_array_free(a);
        return st;
    }
    *out = a;
    return SBX_OK;
}

sbx_status sbx_conv_forward(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                            const sbx_array *bias, sbx_array **out) {
    int64_t batch;
    sbx_array *y = NULL;
    SBX_CHECK(layer_inputs(p, PLAN_CONV, images, kerns, bias, 0, NULL, &batch));
    if (!out) return sbx__error(SBX_ERR_ARG, "out is NULL");
    SBX_CHECK(new_output(p, batch, p->nkern * p->shape.out_size, &y));
    return hand_over(sbx__conv_forward_into(p, images, kerns, bias, y), y, out);
}

/* The backward wrappers: a new unfilled array for each gradient asked for, then the _into function. */
static sbx_status backward_wrapper(const sbx_conv_plan *p, sbx__plan_kind kind, const sbx_array *images,
                                   const sbx_array *kerns, const sbx_array *grad_out, sbx_array **grad_images,
                                   sbx_array **grad_kerns, sbx_array **grad_bias) {
    int64_t batch;
    sbx_array *res[3] = {NULL, NULL, NULL};
    SBX_CHECK(layer_inputs(p, kind, images, kerns, NULL, 1, grad_out, &batch));
    const int local = kind == PLAN_LOCAL;
    sbx_status st = SBX_OK;
    if (grad_images) st = new_output(p, batch, p->shape.in_size, &res[0]);
    if (st == SBX_OK && grad_kerns)
        st = local ? new_output(p, local_weights(p), -1, &res[1]) : new_output(p, p->nkern, p->width, &res[1]);
    if (st == SBX_OK && grad_bias) st = new_output(p, local ? p->nkern * p->shape.out_size : p->nkern, -1, &res[2]);
    if (st == SBX_OK)
        st = (local ? sbx__local_backward_into : sbx__conv_backward_into)(p, images, kerns, grad_out, res[0], res[1],
                                                                          res[2]);
    if (st != SBX_OK) {
        free_all(res, 3);
        return st;
    }
    if (grad_images) *grad_images = res[0];
    if (grad_kerns) *grad_kerns = res[1];
    if (grad_bias) *grad_bias = res[2];
    return SBX_OK;
}

sbx_status sbx_conv_backward(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                             const sbx_array *grad_out, sbx_array **grad_images, sbx_array **grad_kerns,
                             sbx_array **grad_bias) {
    return backward_wrapper(p, PLAN_CONV, images, kerns, grad_out, grad_images, grad_kerns, grad_bias);
}

sbx_status sbx_local_forward(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                             const sbx_array *bias, sbx_array **out) {
    int64_t batch;
    sbx_array *y = NULL;
    SBX_CHECK(layer_inputs(p, PLAN_LOCAL, images, kerns, bias, 0, NULL, &batch));
    if (!out) return sbx__error(SBX_ERR_ARG, "out is NULL");
    SBX_CHECK(new_output(p, batch, p->nkern * p->shape.out_size, &y));
    return hand_over(sbx__local_forward_into(p, images, kerns, bias, y), y, out);
}

sbx_status sbx_local_backward(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                              const sbx_array *grad_out, sbx_array **grad_images, sbx_array **grad_kerns,
                              sbx_array **grad_bias) {
    return backward_wrapper(p, PLAN_LOCAL, images, kerns, grad_out, grad_images, grad_kerns, grad_bias);
}

/* A tap mask array: of the mask dtype for the plan's windows, batch x width. */
static sbx_status mask_array(const sbx_conv_plan *p, const sbx_array *mask, int64_t batch, int64_t width,
                             const char *from) {
    const sbx_dtype mt = sbx__pool_mask_dtype(p->shape.kernel_size);
    if (!mask || mask->dtype != mt || mask->ndim != 2 || mask->shape[0] != batch || mask->shape[1] != width ||
        (batch * width > 0 && !mask->data))
        return sbx__error(SBX_ERR_ARG, "mask must be a %s array of %lld x %lld%s", sbx_dtype_name(mt),
                          (long long)batch, (long long)width, from);
    return SBX_OK;
}

sbx_status sbx_pool_forward(const sbx_conv_plan *p, const sbx_array *images, sbx_array **out) {
    int64_t batch;
    sbx_array *y = NULL;
    SBX_CHECK(sbx__layer_plan(p, PLAN_POOL));
    SBX_CHECK(sbx__layer_array(p, images, "images", -1, p->shape.in_size, &batch));
    if (!out) return sbx__error(SBX_ERR_ARG, "out is NULL");
    SBX_CHECK(new_output(p, batch, p->shape.channels * p->shape.out_size, &y));
    int nt = threads_for(batch * p->shape.channels, p->shape.out_size * p->shape.kernel_size); /* a map a step */
    const int64_t most = SBX__STREAM_BYTES / (int64_t)sbx_dtype_size(p->dtype) / p->shape.in_size; /* no overflow */
    const int stream = batch > most;
    if (p->dtype == SBX_FLOAT32)
        pool_forward_f32(p, batch, images->data, y->data, stream, nt);
    else
        pool_forward_f64(p, batch, images->data, y->data, stream, nt);
    *out = y;
    return SBX_OK;
}

sbx_status sbx_pool_backward(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *grad_out,
                             sbx_array **grad_images) {
    int64_t batch;
    sbx_array *gx = NULL;
    SBX_CHECK(sbx__layer_plan(p, PLAN_POOL));
    SBX_CHECK(sbx__layer_array(p, images, "images", -1, p->shape.in_size, &batch));
    SBX_CHECK(sbx__layer_array(p, grad_out, "grad_out", batch, p->shape.channels * p->shape.out_size, NULL));
    if (!grad_images) return sbx__error(SBX_ERR_ARG, "grad_images is NULL");
    const int64_t shape[2] = {batch, p->shape.in_size};
    SBX_CHECK(sbx__array_new(p->dtype, 2, shape, 1, &gx)); /* zeroed: the kernel adds into it */
    int nt = threads_for(batch * p->shape.channels, p->shape.out_size * p->shape.kernel_size); /* a map a step */
    void *work = NULL;
    sbx_status st = sbx__alloc_raw(nt * p->shape.out[p->shape.ndim - 1], sbx_dtype_size(p->dtype), &work, "pooling workspace");
    if (st != SBX_OK) {
        sbx_array_free(gx);
        return st;
    }
    if (p->dtype == SBX_FLOAT32)
        pool_backward_f32(p, batch, images->data, grad_out->data, gx->data, work, nt);
    else
        pool_backward_f64(p, batch, images->data, grad_out->data, gx->data, work, nt);
    sbx__free(work);
    *grad_images = gx;
    return SBX_OK;
}

sbx_dtype sbx__pool_mask_dtype(int64_t taps) {
    const int mb = mask_bytes(taps);
    return mb == 1 ? SBX_UINT8 : mb == 2 ? SBX_UINT16 : mb == 4 ? SBX_UINT32 : SBX_UINT64;
}

/* The inputs of sbx_pool_forward_mask (outputs: whether both output pointers are set), *batch from
 * images. */
static sbx_status pool_mask_inputs(const sbx_conv_plan *p, const sbx_array *images, int outputs, int64_t *batch) {
    SBX_CHECK(sbx__layer_plan(p, PLAN_POOL));
    SBX_CHECK(sbx__layer_array(p, images, "images", -1, p->shape.in_size, batch));
    if (!outputs) return sbx__error(SBX_ERR_ARG, "out or mask is NULL");
    if (p->shape.kernel_size > 64)
        return sbx__error(SBX_ERR_UNSUPPORTED, "pool windows of %lld taps: a mask holds at most 64 (use sbx_pool_backward)",
                          (long long)p->shape.kernel_size);
    return SBX_OK;
}

sbx_status sbx__pool_forward_mask_into(const sbx_conv_plan *p, const sbx_array *images, sbx_array *out,
                                       sbx_array *mask) {
    int64_t batch;
    SBX_CHECK(pool_mask_inputs(p, images, out && mask, &batch));
    const int64_t width = p->shape.channels * p->shape.out_size;
    const sbx_array *seen[2] = {images, out};
    SBX_CHECK(layer_output(p, out, "out", batch, width, seen, 1));
    SBX_CHECK(mask_array(p, mask, batch, width, ""));
    for (int i = 0; i < 2; i++)
        if (seen[i] == mask || (mask->data && seen[i]->data == mask->data))
            return sbx__error(SBX_ERR_ARG, "mask shares its data with images or out; it needs an array of its own");
    int nt = threads_for(batch * p->shape.channels, p->shape.out_size * p->shape.kernel_size);
    if (p->dtype == SBX_FLOAT32)
        pool_forward_mask_f32(p, batch, images->data, out->data, mask->data, nt);
    else
        pool_forward_mask_f64(p, batch, images->data, out->data, mask->data, nt);
    return SBX_OK;
}

sbx_status sbx_pool_forward_mask(const sbx_conv_plan *p, const sbx_array *images, sbx_array **out, sbx_array **mask) {
    int64_t batch;
    sbx_array *y = NULL, *m = NULL;
    SBX_CHECK(pool_mask_inputs(p, images, out && mask, &batch));
    const int64_t shape[2] = {batch, p->shape.channels * p->shape.out_size};
    sbx_status st = new_output(p, batch, shape[1], &y);
    if (st == SBX_OK) st = sbx__array_new(sbx__pool_mask_dtype(p->shape.kernel_size), 2, shape, 0, &m);
    if (st == SBX_OK) st = sbx__pool_forward_mask_into(p, images, y, m);
    if (st != SBX_OK) {
        sbx_array_free(y);
        sbx_array_free(m);
        return st;
    }
    *out = y;
    *mask = m;
    return SBX_OK;
}

/* The inputs of sbx_pool_backward_mask, *batch from grad_out. */
static sbx_status pool_unmask_inputs(const sbx_conv_plan *p, const sbx_array *mask, const sbx_array *grad_out,
                                     int64_t *batch) {
    SBX_CHECK(sbx__layer_plan(p, PLAN_POOL));
    const int64_t width = p->shape.channels * p->shape.out_size;
    SBX_CHECK(sbx__layer_array(p, grad_out, "grad_out", -1, width, batch));
    return mask_array(p, mask, *batch, width, " (from sbx_pool_forward_mask)");
}

sbx_status sbx__pool_backward_mask_into(const sbx_conv_plan *p, const sbx_array *mask, const sbx_array *grad_out,
                                        sbx_array *grad_images) {
    int64_t batch;
    SBX_CHECK(pool_unmask_inputs(p, mask, grad_out, &batch));
    const sbx_array *seen[2] = {mask, grad_out};
    SBX_CHECK(layer_output(p, grad_images, "grad_images", batch, p->shape.in_size, seen, 2));
    const int64_t K = p->shape.kernel_size;
    int nt = threads_for(batch * p->shape.channels, p->shape.out_size);
    const int bad = p->dtype == SBX_FLOAT32
                        ? pool_backward_mask_f32(p, batch, mask->data, grad_out->data, grad_images->data, nt)
                        : pool_backward_mask_f64(p, batch, mask->data, grad_out->data, grad_images->data, nt);
    if (bad) { /* the kernel found a bit past the window (and did not follow it): name the first */
        const int mb = mask_bytes(K);
        int64_t i = 0;
        while (!(mask_get(mask->data, mb, i) >> K)) i++;
        return sbx__error(SBX_ERR_ARG, "mask element %lld = %llu names a tap past the window's %lld", (long long)i,
                          (unsigned long long)mask_get(mask->data, mb, i), (long long)K);
    }
    return SBX_OK;
}

sbx_status sbx_pool_backward_mask(const sbx_conv_plan *p, const sbx_array *mask, const sbx_array *grad_out,
                                  sbx_array **grad_images) {
    int64_t batch;
    sbx_array *gx = NULL;
    SBX_CHECK(pool_unmask_inputs(p, mask, grad_out, &batch));
    if (!grad_images) return sbx__error(SBX_ERR_ARG, "grad_images is NULL");
    SBX_CHECK(new_output(p, batch, p->shape.in_size, &gx)); /* written map by map by the kernel */
    return hand_over(sbx__pool_backward_mask_into(p, mask, grad_out, gx), gx, grad_images);
}
#endif
