/* Convolution geometry: checking the arguments and computing the output shape. */
#include <string.h>

#include "conv/internal.h"

const char *sbx_conv_mode_name(sbx_conv_mode mode) {
    return mode == SBX_CONV_VALID ? "valid" : mode == SBX_CONV_FULL ? "full" : "invalid";
}

sbx_status sbx_conv_mode_parse(const char *name, sbx_conv_mode *out) {
    if (!name) return sbx__error(SBX_ERR_ARG, "mode name is NULL");
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_conv_mode_parse: out is NULL");
    if (strcmp(name, "valid") == 0) {
        *out = SBX_CONV_VALID;
    } else if (strcmp(name, "full") == 0) {
        *out = SBX_CONV_FULL;
    } else {
        return sbx__error(SBX_ERR_ARG, "mode '%.64s' is unknown (expected valid or full)", name);
    }
    return SBX_OK;
}

/* "(a,b,c)" into buf. */
static const char *tuple(char *buf, size_t cap, int n, const int64_t *v) {
    size_t len = 0;
    buf[len++] = '(';
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, i + 1 < n ? "%lld," : "%lld", (long long)v[i]);
    if (len + 2 <= cap) {
        buf[len++] = ')';
        buf[len] = '\0';
    }
    return buf;
}

/* Names one of the shape's vectors in messages. */
static sbx_status positive(const char *name, int ndim, const int64_t *v) {
    char b[256];
    if (!v) return sbx__error(SBX_ERR_ARG, "%s is NULL", name);
    for (int d = 0; d < ndim; d++)
        if (v[d] < 1)
            return sbx__error(SBX_ERR_ARG, "%s %s has %s[%d] = %lld; every entry must be >= 1", name,
                              tuple(b, sizeof b, ndim, v), name, d, (long long)v[d]);
    return SBX_OK;
}

sbx_status sbx_conv_shape_make(int ndim, int64_t channels, const int64_t *in, const int64_t *kernel,
                               const int64_t *stride, sbx_conv_mode mode, sbx_conv_shape *out) {
    static const int64_t ones[SBX_MAX_NDIM] = {1, 1, 1, 1, 1, 1, 1, 1};
    sbx_conv_shape s;
    char b1[256], b2[256], b3[256];
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_conv_shape_make: out is NULL");
    if (ndim < 1 || ndim > SBX_MAX_NDIM)
        return sbx__error(SBX_ERR_ARG, "ndim %d: a convolution has 1 to %d spatial dimensions", ndim, SBX_MAX_NDIM);
    if (mode != SBX_CONV_VALID && mode != SBX_CONV_FULL)
        return sbx__error(SBX_ERR_ARG, "mode %d is neither SBX_CONV_VALID nor SBX_CONV_FULL", (int)mode);
    if (channels < 1) return sbx__error(SBX_ERR_ARG, "channels %lld must be >= 1", (long long)channels);
    if (!stride) stride = ones;
    SBX_CHECK(positive("image shape", ndim, in));
    SBX_CHECK(positive("kernel shape", ndim, kernel));
    SBX_CHECK(positive("stride", ndim, stride));
    memset(&s, 0, sizeof s);
    s.ndim = ndim;
    s.channels = channels;
    s.mode = mode;
    s.out_size = s.kernel_size = 1;
    s.in_size = channels;
    for (int d = 0; d < ndim; d++) {
        int64_t span; /* in - k + 1 (valid) or in + k - 1 (full); both operands >= 1, no overflow below */
        if (mode == SBX_CONV_VALID)
            span = in[d] - kernel[d] + 1;
        else if (__builtin_add_overflow(in[d], kernel[d] - 1, &span))
            return sbx__error(SBX_ERR_OVERFLOW, "image extent %lld + kernel extent %lld overflows int64",
                              (long long)in[d], (long long)kernel[d]);
        if (span < 1)
            return sbx__error(SBX_ERR_ARG, "kernel %s with stride %s gives an empty output for image %s in valid mode",
                              tuple(b1, sizeof b1, ndim, kernel), tuple(b2, sizeof b2, ndim, stride),
                              tuple(b3, sizeof b3, ndim, in));
        s.in[d] = in[d];
        s.kernel[d] = kernel[d];
        s.stride[d] = stride[d];
        s.out[d] = span / stride[d] + (span % stride[d] != 0);
        if (sbx_mul_i64(s.out_size, s.out[d], &s.out_size) != SBX_OK ||
            sbx_mul_i64(s.kernel_size, kernel[d], &s.kernel_size) != SBX_OK ||
            sbx_mul_i64(s.in_size, in[d], &s.in_size) != SBX_OK)
            return sbx__error(SBX_ERR_OVERFLOW, "channels %lld, image %s with kernel %s: a size overflows int64",
                              (long long)channels, tuple(b1, sizeof b1, ndim, in), tuple(b2, sizeof b2, ndim, kernel));
    }
    *out = s;
    return SBX_OK;
}

sbx_status sbx_conv_shape_aesara(int inshp_len, const int64_t *inshp, const int64_t *kshp, const int64_t *step,
                                 sbx_conv_mode mode, sbx_conv_shape *out) {
    if (inshp_len != 2 && inshp_len != 3)
        return sbx__error(SBX_ERR_ARG, "inshp has %d entries; it must be (h, w) or (nfeatures, h, w)", inshp_len);
    if (!inshp || !kshp) return sbx__error(SBX_ERR_ARG, "inshp or kshp is NULL");
    int64_t stride[2] = {1, 1};
    if (step) { /* (dx, dy): dx along the width */
        stride[0] = step[1];
        stride[1] = step[0];
    }
    int64_t channels = inshp_len == 3 ? inshp[0] : 1;
    return sbx_conv_shape_make(2, channels, inshp + inshp_len - 2, kshp, stride, mode, out);
}

sbx_status sbx__conv_shape_check(const sbx_conv_shape *s) {
    sbx_conv_shape t;
    if (!s) return sbx__error(SBX_ERR_ARG, "shape is NULL");
    SBX_CHECK(sbx_conv_shape_make(s->ndim, s->channels, s->in, s->kernel, s->stride, s->mode, &t));
    if (t.in_size != s->in_size || t.out_size != s->out_size || t.kernel_size != s->kernel_size ||
        memcmp(t.out, s->out, sizeof t.out) != 0)
        return sbx__error(SBX_ERR_ARG, "shape's computed fields (out, in_size, out_size, kernel_size) do not match its "
                          "inputs: make it with sbx_conv_shape_make");
    return SBX_OK;
}
