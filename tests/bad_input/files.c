/* Files for the bad-input rows, made at test time from a one-line spec (see files.h). */
#define _POSIX_C_SOURCE 200809L
#include "files.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends n bytes to the growing buffer b (capacity *cap, length *len); 0 on success. */
static int put(unsigned char **b, size_t *len, size_t *cap, const void *src, size_t n) {
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n) c *= 2;
        unsigned char *g = realloc(*b, c);
        if (!g) return -1;
        *b = g;
        *cap = c;
    }
    if (n) memcpy(*b + *len, src, n); /* src may be NULL when n is 0 */
    *len += n;
    return 0;
}

static int put_be32(unsigned char **b, size_t *len, size_t *cap, uint32_t w) {
    unsigned char x[4] = {(unsigned char)(w >> 24), (unsigned char)(w >> 16), (unsigned char)(w >> 8), (unsigned char)w};
    return put(b, len, cap, x, 4);
}

/* C-style escapes: \n \t \r \\ \0 and \xHH. */
static int unescape(const char *s, unsigned char **b, size_t *len, size_t *cap) {
    while (*s) {
        unsigned char c = (unsigned char)*s++;
        if (c == '\\' && *s) {
            char e = *s++;
            if (e == 'n') c = '\n';
            else if (e == 't') c = '\t';
            else if (e == 'r') c = '\r';
            else if (e == '0') c = 0;
            else if (e == 'x' && s[0] && s[1]) {
                char hex[3] = {s[0], s[1], 0};
                c = (unsigned char)strtoul(hex, NULL, 16);
                s += 2;
            } else c = (unsigned char)e;
        }
        if (put(b, len, cap, &c, 1)) return -1;
    }
    return 0;
}

/* The CRC-32 of PNG chunks and the Adler-32 of zlib streams (RFC 1952 and RFC 1950's definitions). */
static uint32_t crc32_of(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

static int chunk(unsigned char **b, size_t *len, size_t *cap, const char *type, const unsigned char *data, size_t n,
                 int bad_crc) {
    if (put_be32(b, len, cap, (uint32_t)n) || put(b, len, cap, type, 4) || put(b, len, cap, data, n)) return -1;
    uint32_t crc = crc32_of(*b + *len - n - 4, n + 4);
    return put_be32(b, len, cap, bad_crc ? crc ^ 1u : crc);
}

/* A PNG of W x H zero samples, colour type COLOR, bit depth DEPTH, its image data a zlib stream of
 * stored blocks (no compression needed). Options: nodata (no IDAT), rows=K (the data of K rows only),
 * badcrc (IHDR's CRC wrong). */
static int make_png(const char *spec, unsigned char **b, size_t *len, size_t *cap) {
    unsigned long w, h, color, depth;
    int nodata = strstr(spec, ":nodata") != NULL, badcrc = strstr(spec, ":badcrc") != NULL;
    if (sscanf(spec, "%lu,%lu,%lu,%lu", &w, &h, &color, &depth) != 4) return -1;
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    unsigned char ihdr[13];
    uint32_t words[2] = {(uint32_t)w, (uint32_t)h};
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++) ihdr[4 * i + k] = (unsigned char)(words[i] >> (24 - 8 * k));
    ihdr[8] = (unsigned char)depth;
    ihdr[9] = (unsigned char)color;
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    if (put(b, len, cap, sig, 8) || chunk(b, len, cap, "IHDR", ihdr, 13, badcrc)) return -1;
    if (!nodata) {
        static const int channels[7] = {1, 0, 3, 1, 2, 0, 4};
        const char *rows = strstr(spec, ":rows=");
        size_t row = 1 + (w * (color < 7 ? channels[color] : 1) * depth + 7) / 8,
               total = row * (rows ? strtoul(rows + 6, NULL, 10) : h);
        unsigned char *z = NULL;
        size_t zl = 0, zc = 0;
        unsigned char head[2] = {0x78, 0x01};
        int rc = put(&z, &zl, &zc, head, 2);
        size_t left = total;
        do { /* stored blocks of at most 65535 zero bytes */
            size_t n = left < 65535 ? left : 65535;
            unsigned char bh[5] = {(unsigned char)(left == n), (unsigned char)n, (unsigned char)(n >> 8),
                                   (unsigned char)~n, (unsigned char)(~n >> 8)};
            rc = rc || put(&z, &zl, &zc, bh, 5);
            for (size_t i = 0; i < n && !rc; i++) rc = put(&z, &zl, &zc, "", 1);
            left -= n;
        } while (left && !rc);
        /* Adler-32 of `total` zero bytes: a = 1, b = total mod 65521. */
        uint32_t adler = (uint32_t)((total % 65521) << 16 | 1);
        unsigned char a4[4] = {(unsigned char)(adler >> 24), (unsigned char)(adler >> 16), (unsigned char)(adler >> 8),
                               (unsigned char)adler};
        rc = rc || put(&z, &zl, &zc, a4, 4) || chunk(b, len, cap, "IDAT", z, zl, 0);
        free(z);
        if (rc) return -1;
    }
    return chunk(b, len, cap, "IEND", NULL, 0, 0);
}

/* A .npy file, version 1.0: the header dict text, padded with spaces and a newline to a multiple of
 * 64 bytes, then nbytes of body (bytes 0, 1, 2, ...). */
static int make_npy(const char *dict, long nbytes, unsigned char **b, size_t *len, size_t *cap) {
    size_t d = strlen(dict), hlen = 10 + d + 1;
    hlen = (hlen + 63) / 64 * 64;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen - 10), (unsigned char)((hlen - 10) >> 8)};
    if (put(b, len, cap, pre, 10) || put(b, len, cap, dict, d)) return -1;
    for (size_t i = 10 + d; i + 1 < hlen; i++)
        if (put(b, len, cap, " ", 1)) return -1;
    if (put(b, len, cap, "\n", 1)) return -1;
    for (long i = 0; i < nbytes; i++) {
        unsigned char c = (unsigned char)i;
        if (put(b, len, cap, &c, 1)) return -1;
    }
    return 0;
}

int bad_make_file(const char *spec, const char *path, char *why, size_t whysize) {
    unsigned char *b = NULL;
    size_t len = 0, cap = 0;
    int rc = -1;
    long cut = -1;
    char *body = strdup(spec);
    if (!body) goto out;
    /* A trailing "@N" keeps only the first N bytes (a file cut short). */
    char *at = strrchr(body, '@');
    if (at && at[1] >= '0' && at[1] <= '9') {
        cut = strtol(at + 1, NULL, 10);
        *at = '\0';
    }
    if (!strncmp(body, "bytes:", 6)) {
        rc = unescape(body + 6, &b, &len, &cap);
    } else if (!strncmp(body, "npy:", 4)) {
        /* npy:DESCR:SHAPE:NBYTES, e.g. npy:<f8:(2,3):48, or npy:{dict text}:NBYTES */
        char *f = body + 4, *last = strrchr(f, ':');
        if (!last) goto out;
        *last = '\0';
        long nbytes = strtol(last + 1, NULL, 10);
        char dict[512];
        if (f[0] == '{') {
            snprintf(dict, sizeof dict, "%s", f);
        } else {
            char *colon = strchr(f, ':');
            if (!colon) goto out;
            *colon = '\0';
            snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", f, colon + 1);
        }
        rc = make_npy(dict, nbytes, &b, &len, &cap);
    } else if (!strncmp(body, "png:", 4)) {
        rc = make_png(body + 4, &b, &len, &cap);
    } else if (!strncmp(body, "idx:", 4)) {
        /* idx:W1,W2,...:NBYTES: big-endian 32-bit words, then NBYTES bytes cycling 0-9 */
        char *f = body + 4, *colon = strchr(f, ':');
        long nbytes = colon ? strtol(colon + 1, NULL, 10) : 0;
        rc = 0;
        for (char *s = f; !rc && *s && *s != ':';) {
            char *end;
            unsigned long w = strtoul(s, &end, 10);
            if (end == s) {
                rc = -1;
                break;
            }
            rc = put_be32(&b, &len, &cap, (uint32_t)w);
            s = *end == ',' ? end + 1 : end;
        }
        for (long i = 0; !rc && i < nbytes; i++) {
            unsigned char c = (unsigned char)(i % 10);
            rc = put(&b, &len, &cap, &c, 1);
        }
    }
out:
    if (rc) {
        snprintf(why, whysize, "cannot make a file from spec '%s'", spec);
    } else {
        FILE *f = fopen(path, "wb");
        size_t n = cut >= 0 && (size_t)cut < len ? (size_t)cut : len;
        if (!f || fwrite(b, 1, n, f) != n) rc = -1;
        if (f && fclose(f)) rc = -1;
        if (rc) snprintf(why, whysize, "cannot write '%s'", path);
    }
    free(body);
    free(b);
    return rc;
}
