/* The direct kernel for full-mode convolutions and for strides along the last axis: the images are
 * rearranged into those of a valid-mode convolution with stride 1 along the last axis, which the
 * direct kernel runs (internal.h, `phased`).
 *
 * Full mode pads every axis d by kernel[d] - 1 zeros on both sides. A stride s along the last axis
 * splits that axis into s phases: phase q of map c holds the pixels s * u + q, as map c * s + q. The
 * original tap (c, i_0, .., i_last) then reads map c * s + i_last % s at i_last / s along the last
 * axis, with stride 1: output x's tap reads pixel s * x + i_last = s * (x + i_last / s) + i_last % s.
 * Only the original taps are summed (no zero taps), in their original order, so the kernels need no
 * rearranging. */
#include <string.h>

#include "conv/internal.h"

sbx_status sbx__phased_create(sbx_conv_plan *p) {
    const sbx_conv_shape *s = &p->shape;
    const int last = s->ndim - 1;
    const int64_t st = s->stride[last], kp = (s->kernel[last] + st - 1) / st;
    const int full = s->mode == SBX_CONV_FULL;
    int64_t in[SBX_MAX_NDIM], kernel[SBX_MAX_NDIM], stride[SBX_MAX_NDIM], maps;
    for (int d = 0; d < s->ndim; d++) {
        const int64_t pad = full ? s->kernel[d] - 1 : 0;
        kernel[d] = s->kernel[d];
        stride[d] = s->stride[d];
        if (__builtin_add_overflow(s->in[d], 2 * pad, &in[d]))
            return sbx__error(SBX_ERR_OVERFLOW, "the padded image's extent overflows int64");
    }
    in[last] = s->out[last] + kp - 1; /* the phases' extent: exactly what the outputs read */
    kernel[last] = kp;
    stride[last] = 1;
    if (sbx_mul_i64(s->channels, st, &maps) != SBX_OK)
        return sbx__error(SBX_ERR_OVERFLOW, "channels %lld x stride %lld overflows int64", (long long)s->channels,
                          (long long)st);
    sbx_conv_plan *a;
    SBX_CHECK(sbx__alloc(1, sizeof *a, &a, "convolution plan"));
    sbx_status status = sbx_conv_shape_make(s->ndim, maps, in, kernel, stride, SBX_CONV_VALID, &a->shape);
    /* Its outputs are p's: along d < last, the span in + 2 pad - kernel + 1 is full mode's (pad
     * kernel - 1) or valid mode's (pad 0); along the last axis, the phases' extent gives out. */
    a->kind = PLAN_CONV;
    a->nkern = p->nkern;
    a->dtype = p->dtype;
    a->width = p->width;
    if (status == SBX_OK) status = sbx__direct_tables(a, 0);
    if (status == SBX_OK) status = sbx__alloc_raw(a->width, sizeof(int64_t), &a->taps, "convolution plan");
    if (status != SBX_OK) {
        sbx_conv_plan_free(a);
        return status;
    }
    /* The taps: tap j = (c, l) of the original kernels, l's coordinates along each axis. */
    const int64_t spatial = a->shape.in_size / maps;
    int64_t istride[SBX_MAX_NDIM];
    for (int d = last; d >= 0; d--) istride[d] = d == last ? 1 : istride[d + 1] * in[d + 1];
    for (int64_t j = 0; j < a->width; j++) {
        const int64_t l = j % s->kernel_size, tl = l % s->kernel[last];
        int64_t rest = l / s->kernel[last], at = tl / st;
        for (int d = last - 1; d >= 0; d--) {
            at += rest % s->kernel[d] * istride[d];
            rest /= s->kernel[d];
        }
        a->taps[j] = (j / s->kernel_size * st + tl % st) * spatial + at;
    }
    p->phased = a;
    return SBX_OK;
}

/* Even elements of a run: o[u] = r[2 u] for 0 <= u < n, reading r[0 .. 2n - 2] only. A vector of
 * outputs joins the even lanes of the vector at r + 2u and the odd lanes of the one at r + 2u + L - 1
 * (L lanes), which end at r[2u + 2L - 2]: no read past the run. */
#define EVEN_RUN(T, NAME, L, ...)                                                                     \
    static inline void NAME(T *restrict o, const T *restrict r, int64_t n) {                          \
        typedef T vec __attribute__((vector_size(64)));                                               \
        int64_t u = 0;                                                                                \
        for (; u + (L) <= n; u += (L)) {                                                              \
            vec v0, v1;                                                                               \
            memcpy(&v0, r + 2 * u, sizeof v0);                                                        \
            memcpy(&v1, r + 2 * u + (L) - 1, sizeof v1);                                              \
            const vec e = __builtin_shufflevector(v0, v1, __VA_ARGS__);                               \
            memcpy(o + u, &e, sizeof e);                                                              \
        }                                                                                             \
        for (; u < n; u++) o[u] = r[2 * u];                                                           \
    }
EVEN_RUN(float, even_run_f32, 16, 0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21, 23, 25, 27, 29, 31)
EVEN_RUN(double, even_run_f64, 8, 0, 2, 4, 6, 9, 11, 13, 15)

/* The rearranged maps of one source map: phase q's row r is dst[u] = src[st * u + q - pad] for the u
 * whose pixel is inside the source row, zero outside; a row outside the source (padding) is zeros.
 * The inside is a plain strided copy (contiguous for stride 1, even_run for stride 2) without a test
 * per pixel. Phase by phase, each with its span worked out once; the source rows' coordinates along
 * the axes before the last are counted up row by row. (Divisions per row, and gcc's vectorised loops
 * with their set-up on rows of 16, were 16 % of a stride-2 forward pass: config b, float32, 1 thread.) */
#define PHASE_MAP(T, NAME, EVEN)                                                                      \
    SBX_CLONES static void NAME(const sbx_conv_plan *p, const T *restrict map, T *restrict y) {       \
        const sbx_conv_shape *s = &p->shape, *a = &p->phased->shape;                                  \
        const int last = s->ndim - 1, full = s->mode == SBX_CONV_FULL;                                \
        const int64_t st = s->stride[last], n = s->in[last], m = a->in[last];                         \
        const int64_t pad = full ? s->kernel[last] - 1 : 0, rows = a->in_size / a->channels / m;      \
        for (int64_t q = 0; q < st; q++) {                                                            \
            /* the u with 0 <= st * u + q - pad < n: from ceil((pad - q) / st), below                 \
             * ceil((n + pad - q) / st), within [0, m) */                                             \
            int64_t hi = (n + pad - q + st - 1) / st, lo = pad > q ? (pad - q + st - 1) / st : 0;     \
            if (hi > m) hi = m;                                                                       \
            if (lo > hi) lo = hi;                                                                     \
            int64_t at[SBX_MAX_NDIM] = {0};                                                           \
            for (int64_t r = 0; r < rows; r++) {                                                      \
                T *restrict o = y + (q * rows + r) * m;                                               \
                int inside = 1;                                                                       \
                int64_t off = 0, stride = n;                                                          \
                for (int d = last - 1; d >= 0; d--) {                                                 \
                    const int64_t c = at[d] - (full ? s->kernel[d] - 1 : 0);                          \
                    inside &= c >= 0 && c < s->in[d];                                                 \
                    off += c * stride;                                                                \
                    stride *= s->in[d];                                                               \
                }                                                                                     \
                for (int d = last - 1; d >= 0 && ++at[d] == a->in[d]; d--) at[d] = 0;                 \
                const int64_t b0 = inside ? lo : m, b1 = inside ? hi : m;                             \
                const T *restrict src = map + off + q - pad;                                          \
                for (int64_t u = 0; u < b0; u++) o[u] = 0;                                            \
                if (st == 1)                                                                          \
                    memcpy(o + b0, src + b0, (size_t)(b1 - b0) * sizeof(T));                          \
                else if (st == 2)                                                                     \
                    EVEN(o + b0, src + 2 * b0, b1 - b0);                                              \
                else                                                                                  \
                    for (int64_t u = b0; u < b1; u++) o[u] = src[st * u];                             \
                for (int64_t u = b1; u < m; u++) o[u] = 0;                                            \
            }                                                                                         \
        }                                                                                             \
    }
PHASE_MAP(float, phase_map_f32, even_run_f32)
PHASE_MAP(double, phase_map_f64, even_run_f64)

static void phase_maps(const sbx_conv_plan *p, const void *x, void *y, int64_t first, int64_t count) {
    const sbx_conv_shape *s = &p->shape;
    const int64_t spatial = s->in_size / s->channels, maps = p->phased->shape.in_size / s->channels;
    for (int64_t i = first; i < first + count; i++) {
        if (p->dtype == SBX_FLOAT32)
            phase_map_f32(p, (const float *)x + i * spatial, (float *)y + i * maps);
        else
            phase_map_f64(p, (const double *)x + i * spatial, (double *)y + i * maps);
    }
}

void sbx__phased_image(const sbx_conv_plan *p, const void *x, void *y) { phase_maps(p, x, y, 0, p->shape.channels); }

void sbx__phased_images(const sbx_conv_plan *p, int64_t batch, const void *x, void *y, int nt) {
    const int64_t items = batch * p->shape.channels;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t item = 0; item < items; item++) phase_maps(p, x, y, item, 1);
}
