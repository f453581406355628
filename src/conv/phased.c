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

/* The rows of one rearranged map set (st phases of one source map): phase q's row r is dst[u] =
 * src[st * u + q - pad] for the u whose pixel is inside the source row, zero outside; a row outside
 * the source (padding) is zeros. The inside is a plain strided copy (a contiguous one for stride 1;
 * stride 2 with a constant, so that it vectorises), without a test per pixel. at[]: the row's
 * coordinates along the axes before the last, counted up row by row (a division per row and axis was
 * a quarter of a stride-2 forward pass: config b, float32, one thread). */
/* The u of phase q with 0 <= st * u + q - pad < n (none for a padding row): from
 * ceil((pad - q) / st), below ceil((n + pad - q) / st), within [0, m). */
static inline void phase_span(int inside, int64_t q, int64_t st, int64_t pad, int64_t n, int64_t m, int64_t *b0,
                              int64_t *b1) {
    int64_t hi = inside ? (n + pad - q + st - 1) / st : 0, lo = inside && pad > q ? (pad - q + st - 1) / st : 0;
    if (hi > m) hi = m;
    *b0 = lo < hi ? lo : hi;
    *b1 = hi;
}

#define PHASE_MAP(T, NAME)                                                                            \
    SBX_CLONES static void NAME(const sbx_conv_plan *p, const T *restrict map, T *restrict y) {       \
        const sbx_conv_shape *s = &p->shape, *a = &p->phased->shape;                                  \
        const int last = s->ndim - 1, full = s->mode == SBX_CONV_FULL;                                \
        const int64_t st = s->stride[last], n = s->in[last], m = a->in[last];                         \
        const int64_t pad = full ? s->kernel[last] - 1 : 0, rows = a->in_size / a->channels / m;      \
        int64_t at[SBX_MAX_NDIM] = {0};                                                               \
        for (int64_t r = 0; r < rows; r++) {                                                          \
            int inside = 1;                                                                           \
            int64_t off = 0, stride = n;                                                              \
            for (int d = last - 1; d >= 0; d--) {                                                     \
                const int64_t c = at[d] - (full ? s->kernel[d] - 1 : 0);                              \
                inside &= c >= 0 && c < s->in[d];                                                     \
                off += c * stride;                                                                    \
                stride *= s->in[d];                                                                   \
            }                                                                                         \
            for (int64_t q = 0; q < st; q++) { /* each source row once, for all its phases */         \
                T *restrict o = y + (q * rows + r) * m;                                               \
                const T *restrict src = map + off + q - pad;                                          \
                int64_t b0, b1;                                                                       \
                phase_span(inside, q, st, pad, n, m, &b0, &b1);                                       \
                for (int64_t u = 0; u < b0; u++) o[u] = 0;                                            \
                if (st == 1) {                                                                        \
                    memcpy(o + b0, src + b0, (size_t)(b1 - b0) * sizeof(T));                          \
                } else if (st == 2) {                                                                 \
                    for (int64_t u = b0; u < b1; u++) o[u] = src[2 * u];                              \
                } else {                                                                              \
                    for (int64_t u = b0; u < b1; u++) o[u] = src[st * u];                             \
                }                                                                                     \
                for (int64_t u = b1; u < m; u++) o[u] = 0;                                            \
            }                                                                                         \
            for (int d = last - 1; d >= 0 && ++at[d] == a->in[d]; d--) at[d] = 0;                     \
        }                                                                                             \
    }
PHASE_MAP(float, phase_map_f32)
PHASE_MAP(double, phase_map_f64)

void sbx__phased_images(const sbx_conv_plan *p, int64_t batch, const void *x, void *y, int nt) {
    const sbx_conv_shape *s = &p->shape;
    const int64_t spatial = s->in_size / s->channels, maps = p->phased->shape.in_size / s->channels;
    const int64_t items = batch * s->channels;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t item = 0; item < items; item++) {
        if (p->dtype == SBX_FLOAT32)
            phase_map_f32(p, (const float *)x + item * spatial, (float *)y + item * maps);
        else
            phase_map_f64(p, (const double *)x + item * spatial, (double *)y + item * maps);
    }
}
