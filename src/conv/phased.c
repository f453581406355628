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

/* One row of the rearranged images: dst[u] = src[st * u + q - pad] for the u whose pixel is inside
 * the row (n pixels), u0 <= u < u1, zero outside; src NULL: a row of padding. The inside is a plain
 * strided copy (a contiguous one for stride 1), without a test per pixel. */
#define PHASE_ROW(T)                                                                                  \
    do {                                                                                              \
        T *restrict o = dst;                                                                          \
        const T *restrict r = src;                                                                    \
        const int64_t b0 = r ? u0 : m, b1 = r ? u1 : m;                                               \
        for (int64_t u = 0; u < b0; u++) o[u] = 0;                                                    \
        if (st == 1 && b1 > b0)                                                                       \
            memcpy(o + b0, r + b0 + q - pad, (size_t)(b1 - b0) * sizeof(T));                          \
        else if (st > 1)                                                                              \
            for (int64_t u = b0; u < b1; u++) o[u] = r[st * u + q - pad];                             \
        for (int64_t u = b1; u < m; u++) o[u] = 0;                                                    \
    } while (0)

void sbx__phased_images(const sbx_conv_plan *p, int64_t batch, const void *x, void *y, int nt) {
    const sbx_conv_shape *s = &p->shape, *a = &p->phased->shape;
    const int last = s->ndim - 1, full = s->mode == SBX_CONV_FULL;
    const int64_t es = (int64_t)sbx_dtype_size(p->dtype), st = s->stride[last], n = s->in[last], m = a->in[last];
    const int64_t pad = full ? s->kernel[last] - 1 : 0, spatial = s->in_size / s->channels;
    const int64_t rows = a->in_size / a->channels / m; /* rows of a rearranged map */
    const int64_t items = batch * s->channels;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t item = 0; item < items; item++) {
        const char *map = (const char *)x + item * spatial * es;
        for (int64_t r = 0; r < rows; r++) /* each source row once, for all its phases */
            for (int64_t q = 0; q < st; q++) {
                /* the u with 0 <= st * u + q - pad < n: from ceil((pad - q) / st), below
                 * ceil((n + pad - q) / st), within [0, m) */
                int64_t u0 = pad - q > 0 ? (pad - q + st - 1) / st : 0, u1 = (n + pad - q + st - 1) / st;
                if (u1 > m) u1 = m;
                if (u0 > u1) u0 = u1;
                /* Row r's source row: its coordinates along the axes before the last, less the padding. */
                int64_t rest = r, at = 0, stride = n;
                int inside = 1;
                for (int d = last - 1; d >= 0; d--) {
                    const int64_t c = rest % a->in[d] - (full ? s->kernel[d] - 1 : 0);
                    rest /= a->in[d];
                    inside &= c >= 0 && c < s->in[d];
                    at += c * stride;
                    stride *= s->in[d];
                }
                const void *src = inside ? map + at * es : NULL;
                void *dst = (char *)y + ((item * st + q) * rows + r) * m * es;
                if (es == 4)
                    PHASE_ROW(float);
                else
                    PHASE_ROW(double);
            }
    }
}
