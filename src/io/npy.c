/* NumPy .npy files. The layout follows numpy's own description (numpy/lib/format.py, "NEP 1"):
 * the magic "\x93NUMPY", a major and a minor version byte, the header length (2 bytes little-endian
 * in version 1.0, 4 bytes in 2.0 and 3.0), then an ASCII (3.0: UTF-8) Python dict literal with the
 * keys 'descr', 'fortran_order' and 'shape', padded with spaces and a newline so that the data
 * starts at a multiple of 64 bytes. */
#define _POSIX_C_SOURCE 200809L /* fileno, strcasecmp */
#include <ctype.h>
#include <string.h>
#include <sys/stat.h>

#include "io/internal.h"
#include "sparsebox/io.h"

#define MAX_HEADER (1 << 20) /* numpy itself refuses headers above 10000 bytes by default */

static const char *const descrs[SBX_NUM_DTYPES] = {
    [SBX_FLOAT32] = "<f4", [SBX_FLOAT64] = "<f8", [SBX_INT8] = "|i1",   [SBX_INT16] = "<i2",
    [SBX_INT32] = "<i4",   [SBX_INT64] = "<i8",   [SBX_UINT8] = "|u1",  [SBX_UINT16] = "<u2",
    [SBX_UINT32] = "<u4",  [SBX_UINT64] = "<u8",  [SBX_BOOL] = "|b1",
};

typedef struct {
    const char *path;
    const char *s; /* the header text, NUL-terminated */
    size_t i;
} parser;

static sbx_status bad(const parser *p, const char *what) {
    return sbx__error(SBX_ERR_FORMAT, "'%s': malformed .npy header: %s at offset %zu of \"%.80s\"", p->path, what,
                      p->i, p->s);
}

static void skip_space(parser *p) {
    while (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r') p->i++;
}

/* A quoted Python string into buf (no escapes: none occur in the keys and descrs we accept). */
static sbx_status parse_string(parser *p, char *buf, size_t cap) {
    char q = p->s[p->i];
    if (q != '\'' && q != '"') return bad(p, "expected a quoted string");
    size_t n = 0;
    p->i++;
    while (p->s[p->i] != q) {
        if (p->s[p->i] == '\0') return bad(p, "unterminated string");
        if (n + 1 >= cap) return bad(p, "string too long");
        buf[n++] = p->s[p->i++];
    }
    buf[n] = '\0';
    p->i++;
    return SBX_OK;
}

static sbx_status parse_shape(parser *p, int *ndim, int64_t *shape) {
    if (p->s[p->i] != '(') return bad(p, "expected '(' to start the shape");
    p->i++;
    *ndim = 0;
    for (;;) {
        skip_space(p);
        if (p->s[p->i] == ')') break;
        if (!isdigit((unsigned char)p->s[p->i])) return bad(p, "expected a non-negative integer in the shape");
        int64_t v = 0;
        while (isdigit((unsigned char)p->s[p->i])) {
            if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, p->s[p->i] - '0', &v))
                return sbx__error(SBX_ERR_OVERFLOW, "'%s': a .npy shape entry overflows int64", p->path);
            p->i++;
        }
        if (p->s[p->i] == 'L') p->i++; /* Python 2 long literal */
        if (*ndim == SBX_MAX_NDIM)
            return sbx__error(SBX_ERR_UNSUPPORTED, "'%s': .npy array has more than %d dimensions", p->path,
                              SBX_MAX_NDIM);
        shape[(*ndim)++] = v;
        skip_space(p);
        if (p->s[p->i] == ',') {
            p->i++;
        } else if (p->s[p->i] != ')') {
            return bad(p, "expected ',' or ')' in the shape");
        }
    }
    p->i++;
    return SBX_OK;
}

static sbx_status parse_descr(const parser *p, const char *d, sbx_dtype *dtype, int *swap) {
    char order = d[0];
    if (order != '<' && order != '>' && order != '|' && order != '=')
        return sbx__error(SBX_ERR_UNSUPPORTED, "'%s': .npy descr '%s' is not a plain numeric type", p->path, d);
    for (int t = 0; t < SBX_NUM_DTYPES; t++)
        if (strcmp(d + 1, descrs[t] + 1) == 0) {
            *dtype = (sbx_dtype)t;
            *swap = order == '>' && sbx_dtype_size(*dtype) > 1;
            return SBX_OK;
        }
    return sbx__error(SBX_ERR_UNSUPPORTED,
                      "'%s': .npy descr '%s' is not supported (float32/64, int8-64, uint8-64 and bool are)", p->path,
                      d);
}

static sbx_status parse_header(parser *p, sbx_dtype *dtype, int *swap, int *fortran, int *ndim, int64_t *shape) {
    int seen_descr = 0, seen_order = 0, seen_shape = 0;
    char key[32], descr[32];
    skip_space(p);
    if (p->s[p->i] != '{') return bad(p, "expected '{'");
    p->i++;
    for (;;) {
        skip_space(p);
        if (p->s[p->i] == '}') break;
        SBX_CHECK(parse_string(p, key, sizeof key));
        skip_space(p);
        if (p->s[p->i] != ':') return bad(p, "expected ':'");
        p->i++;
        skip_space(p);
        if (strcmp(key, "descr") == 0 && !seen_descr) {
            if (p->s[p->i] == '[')
                return sbx__error(SBX_ERR_UNSUPPORTED, "'%s': structured .npy arrays are not supported", p->path);
            SBX_CHECK(parse_string(p, descr, sizeof descr));
            SBX_CHECK(parse_descr(p, descr, dtype, swap));
            seen_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !seen_order) {
            if (strncmp(p->s + p->i, "True", 4) == 0) {
                *fortran = 1;
                p->i += 4;
            } else if (strncmp(p->s + p->i, "False", 5) == 0) {
                *fortran = 0;
                p->i += 5;
            } else {
                return bad(p, "fortran_order must be True or False");
            }
            seen_order = 1;
        } else if (strcmp(key, "shape") == 0 && !seen_shape) {
            SBX_CHECK(parse_shape(p, ndim, shape));
            seen_shape = 1;
        } else {
            return bad(p, "unknown or repeated key");
        }
        skip_space(p);
        if (p->s[p->i] == ',') {
            p->i++;
        } else if (p->s[p->i] != '}') {
            return bad(p, "expected ',' or '}'");
        }
    }
    p->i++;
    skip_space(p);
    if (p->s[p->i] != '\0') return bad(p, "text after the closing '}'");
    if (!seen_descr || !seen_order || !seen_shape) return bad(p, "missing one of 'descr', 'fortran_order', 'shape'");
    return SBX_OK;
}

static void byte_swap(void *data, int64_t n, size_t es) {
    unsigned char *b = data;
    for (int64_t k = 0; k < n; k++, b += es)
        for (size_t i = 0; i < es / 2; i++) {
            unsigned char t = b[i];
            b[i] = b[es - 1 - i];
            b[es - 1 - i] = t;
        }
}

/* Reorders column-major src into row-major dst. */
static void from_fortran(void *dst, const void *src, int ndim, const int64_t *shape, int64_t n, size_t es) {
    int64_t idx[SBX_MAX_NDIM] = {0}, fstride[SBX_MAX_NDIM], off = 0;
    for (int d = 0; d < ndim; d++) fstride[d] = d == 0 ? 1 : fstride[d - 1] * shape[d - 1];
    for (int64_t k = 0; k < n; k++) {
        memcpy((char *)dst + (size_t)k * es, (const char *)src + (size_t)off * es, es);
        for (int d = ndim - 1; d >= 0; d--) { /* advance the C-order odometer */
            off += fstride[d];
            if (++idx[d] < shape[d]) break;
            off -= fstride[d] * shape[d];
            idx[d] = 0;
        }
    }
}

static sbx_status read_exact(FILE *f, void *buf, size_t n, const char *path, const char *what) {
    if (n > 0 && fread(buf, 1, n, f) != n)
        return sbx__error(SBX_ERR_FORMAT, "'%s': .npy file is truncated in its %s (%zu bytes expected)", path, what, n);
    return SBX_OK;
}

static sbx_status read_body(FILE *f, const char *path, sbx_array **out) {
    unsigned char pre[12]; /* magic, version, and a header length of up to 4 bytes */
    char *text = NULL;
    sbx_array *a = NULL;
    void *tmp = NULL;
    SBX_CHECK(read_exact(f, pre, 8, path, "magic string"));
    if (memcmp(pre, "\x93NUMPY", 6) != 0) return sbx__error(SBX_ERR_FORMAT, "'%s' is not a .npy file (bad magic string)", path);
    if (pre[6] < 1 || pre[6] > 3)
        return sbx__error(SBX_ERR_UNSUPPORTED, "'%s': .npy format version %d.%d is not supported (1.0 to 3.0 are)", path,
                          pre[6], pre[7]);
    size_t lenbytes = pre[6] == 1 ? 2 : 4, hlen = 0;
    SBX_CHECK(read_exact(f, pre + 8, lenbytes, path, "header length"));
    for (size_t i = 0; i < lenbytes; i++) hlen |= (size_t)pre[8 + i] << (8 * i);
    if (hlen > MAX_HEADER)
        return sbx__error(SBX_ERR_FORMAT, "'%s': .npy header length %zu is above the limit of %d bytes", path, hlen,
                          MAX_HEADER);
    SBX_CHECK(sbx__alloc((int64_t)hlen + 1, 1, &text, "npy header"));
    sbx_status st = read_exact(f, text, hlen, path, "header");
    if (st == SBX_OK && memchr(text, '\0', hlen)) st = sbx__error(SBX_ERR_FORMAT, "'%s': .npy header holds a NUL byte", path);
    sbx_dtype dtype = SBX_FLOAT64;
    int swap = 0, fortran = 0, ndim = 0;
    int64_t shape[SBX_MAX_NDIM] = {0}, n = 0;
    parser p = {path, text, 0};
    if (st == SBX_OK) st = parse_header(&p, &dtype, &swap, &fortran, &ndim, shape);
    sbx__free(text);
    SBX_CHECK(st);
    if ((st = sbx_shape_numel(ndim, shape, &n)) != SBX_OK) /* the message names the file too */
        return sbx__error(st, "'%s': .npy header: %s", path, sbx_last_error());
    size_t es = sbx_dtype_size(dtype);
    /* Compare with what the file holds before allocating, so a short file claiming a huge shape fails
     * cleanly. */
    struct stat sb;
    long pos = ftell(f);
    int64_t bytes;
    if (sbx_mul_i64(n, (int64_t)es, &bytes) != SBX_OK)
        return sbx__error(SBX_ERR_OVERFLOW, "'%s': .npy shape of %lld elements overflows the byte count", path,
                          (long long)n);
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && pos >= 0 && (int64_t)sb.st_size - pos != bytes)
        return sbx__error(SBX_ERR_FORMAT, "'%s': .npy data is %lld bytes but the header's shape and dtype need %lld",
                          path, (long long)((int64_t)sb.st_size - pos), (long long)bytes);
    SBX_CHECK(sbx_array_create(dtype, ndim, shape, &a));
    st = read_exact(f, a->data, (size_t)bytes, path, "data");
    if (st == SBX_OK && fortran && ndim > 1) {
        st = sbx__alloc(n, es, &tmp, "npy Fortran-order data");
        if (st == SBX_OK) {
            memcpy(tmp, a->data, (size_t)bytes);
            from_fortran(a->data, tmp, ndim, shape, n, es);
            sbx__free(tmp);
        }
    }
    if (st != SBX_OK) {
        sbx_array_free(a);
        return st;
    }
    if (swap) byte_swap(a->data, n, es);
    *out = a;
    return SBX_OK;
}

sbx_status sbx_npy_read(const char *path, sbx_array **out) {
    FILE *f;
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_npy_read: out is NULL");
    SBX_CHECK(sbx__open(path, "rb", &f));
    sbx_status st = read_body(f, path, out);
    fclose(f);
    return st;
}

sbx_status sbx_npy_write(const char *path, const sbx_array *a) {
    char header[32 + 24 * SBX_MAX_NDIM], shape[24 * SBX_MAX_NDIM + 4];
    int64_t n;
    FILE *f;
    if (!a) return sbx__error(SBX_ERR_ARG, "array is NULL");
    if (!sbx__dtype_valid(a->dtype)) return sbx__error(SBX_ERR_ARG, "array has invalid dtype %d", (int)a->dtype);
    SBX_CHECK(sbx_shape_numel(a->ndim, a->shape, &n));
    if (n > 0 && !a->data) return sbx__error(SBX_ERR_ARG, "array has %lld elements but data is NULL", (long long)n);
    size_t len = 0;
    shape[len++] = '(';
    for (int d = 0; d < a->ndim; d++)
        len += (size_t)snprintf(shape + len, sizeof shape - len, d + 1 < a->ndim ? "%lld, " : "%lld", (long long)a->shape[d]);
    len += (size_t)snprintf(shape + len, sizeof shape - len, a->ndim == 1 ? ",)" : ")");
    int h = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descrs[a->dtype], shape);
    /* Version 1.0 (2-byte length, 10-byte preamble); pad with spaces, end with '\n', align to 64. */
    size_t total = 10 + (size_t)h + 1, pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)h + pad + 1;
    SBX_CHECK(sbx__open(path, "wb", &f));
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    fwrite(pre, 1, sizeof pre, f);
    fwrite(header, 1, (size_t)h, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    if (n > 0) fwrite(a->data, sbx_dtype_size(a->dtype), (size_t)n, f);
    return sbx__finish_write(f, path, SBX_OK);
}
