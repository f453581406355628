/* The gzipped IDX reader (see idx.h). zlib's gzread also reads a file that is not gzipped as it is. */
#include "idx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#define CHUNK (1 << 20)
/* No IDX file of this data set comes near it; a header asking for more is taken as damaged rather
 * than tried. */
#define MAX_BYTES ((int64_t)1 << 34)

/* The message for zlib's error on gz (zlib's text begins with the path: left out). */
static int64_t damaged(gzFile gz, const char *path, char *err, size_t errsize) {
    int code;
    const char *why = gzerror(gz, &code);
    size_t n = strlen(path);
    if (why && !strncmp(why, path, n) && !strncmp(why + n, ": ", 2)) why += n + 2;
    snprintf(err, errsize, "%s: damaged gzip data (%s)", path, why && *why ? why : "unknown zlib error");
    return -1;
}

/* Reads up to want bytes into buf; returns the count read (short only at the end of the data), or -1
 * with a message when zlib reports the compressed stream damaged. */
static int64_t read_bytes(gzFile gz, uint8_t *buf, int64_t want, const char *path, char *err, size_t errsize) {
    int64_t got = 0;
    while (got < want) {
        int64_t ask = want - got < CHUNK ? want - got : CHUNK;
        int n = gzread(gz, buf + got, (unsigned)ask);
        if (n < 0) return damaged(gz, path, err, errsize);
        if (n == 0) break;
        got += n;
    }
    /* A gzip stream cut short reads as a short count with an error set. */
    int code = Z_OK;
    gzerror(gz, &code);
    if (code != Z_OK && code != Z_STREAM_END) return damaged(gz, path, err, errsize);
    return got;
}

static uint32_t big_endian(const uint8_t *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

static void missing_hint(const char *path, int e, char *err, size_t errsize) {
    snprintf(err, errsize,
             "cannot read %s: %s (the Fashion-MNIST files come with the Debian package " IDX_PACKAGE
             ": apt-get install " IDX_PACKAGE "; or pass --data DIR, a folder holding them)",
             path, strerror(e));
}

int idx_read(const char *path, int ndim, int64_t *dims, uint8_t **data, char *err, size_t errsize) {
    *data = NULL;
    struct stat info;
    if (stat(path, &info) != 0) {
        missing_hint(path, errno, err, errsize);
        return -1;
    }
    if (S_ISDIR(info.st_mode)) {
        snprintf(err, errsize, "%s: is a folder, not an IDX file", path);
        return -1;
    }
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        snprintf(err, errsize, "cannot open %s: %s", path, errno ? strerror(errno) : "out of memory");
        return -1;
    }
    int rc = -1;
    uint8_t *buf = NULL;
    uint8_t header[4 + 4 * 8];
    int64_t hlen = 4 + 4 * (int64_t)ndim;
    int64_t got = read_bytes(gz, header, hlen, path, err, errsize);
    if (got < 0) goto done;
    if (got < 4) {
        snprintf(err, errsize, "%s: %lld bytes, too short for an IDX file (a 4-byte magic number, then the extents)",
                 path, (long long)got);
        goto done;
    }
    const uint32_t magic = big_endian(header), expected = 0x00000800u | (uint32_t)ndim;
    if (magic != expected) {
        snprintf(err, errsize,
                 "%s: wrong magic number 0x%08X (expected 0x%08X: an IDX file of unsigned bytes with %d dimension%s)",
                 path, (unsigned)magic, (unsigned)expected, ndim, ndim == 1 ? "" : "s");
        goto done;
    }
    if (got < hlen) {
        snprintf(err, errsize, "%s: the header ends after %lld bytes; %d extents need %lld", path, (long long)got, ndim,
                 (long long)hlen);
        goto done;
    }
    int64_t want = 1;
    char shape[160] = "";
    for (int d = 0; d < ndim; d++) {
        dims[d] = big_endian(header + 4 + 4 * d);
        size_t used = strlen(shape);
        snprintf(shape + used, sizeof shape - used, "%s%lld", d ? " x " : "", (long long)dims[d]);
        want = dims[d] == 0 || want <= MAX_BYTES / dims[d] ? want * dims[d] : MAX_BYTES + 1;
    }
    if (want > MAX_BYTES) {
        snprintf(err, errsize, "%s: the header's dimensions %s ask for more than %lld bytes", path, shape,
                 (long long)MAX_BYTES);
        goto done;
    }
    /* The buffer grows with the data actually read, so a damaged header cannot make it huge. */
    int64_t cap = 0, have = 0;
    while (have < want) {
        int64_t next = cap ? 2 * cap : CHUNK;
        if (next > want) next = want;
        uint8_t *grown = realloc(buf, (size_t)(next ? next : 1));
        if (!grown) {
            snprintf(err, errsize, "%s: out of memory for %lld bytes", path, (long long)next);
            goto done;
        }
        buf = grown;
        cap = next;
        int64_t n = read_bytes(gz, buf + have, cap - have, path, err, errsize);
        if (n < 0) goto done;
        have += n;
        if (have < cap) break; /* the end of the data */
    }
    if (have < want) {
        snprintf(err, errsize, "%s: the dimensions %s need %lld bytes after the header, but the file holds only %lld",
                 path, shape, (long long)want, (long long)have);
        goto done;
    }
    /* Anything after the data means the dimensions are not the file's. */
    uint8_t extra[4096];
    int64_t more = 0, n;
    while ((n = read_bytes(gz, extra, sizeof extra, path, err, errsize)) > 0) more += n;
    if (n < 0) goto done;
    if (more) {
        snprintf(err, errsize, "%s: the dimensions %s account for %lld bytes after the header, but the file holds %lld",
                 path, shape, (long long)want, (long long)(want + more));
        goto done;
    }
    if (!buf) buf = malloc(1); /* an empty set still gets a buffer to free */
    if (!buf) {
        snprintf(err, errsize, "%s: out of memory", path);
        goto done;
    }
    *data = buf;
    buf = NULL;
    rc = 0;
done:
    free(buf);
    gzclose(gz);
    return rc;
}

int idx_load_set(const char *dir, const char *prefix, int64_t rows, int64_t cols, int classes, idx_set *out,
                 char *err, size_t errsize) {
    memset(out, 0, sizeof *out);
    char ipath[4096], lpath[4096];
    snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    int64_t idims[3], ldims[1];
    if (idx_read(ipath, 3, idims, &out->pixels, err, errsize) != 0) return -1;
    if (idx_read(lpath, 1, ldims, &out->labels, err, errsize) != 0) goto fail;
    if (idims[1] != rows || idims[2] != cols) {
        snprintf(err, errsize, "%s: images of %lld x %lld pixels; the network takes %lld x %lld", ipath,
                 (long long)idims[1], (long long)idims[2], (long long)rows, (long long)cols);
        goto fail;
    }
    if (idims[0] != ldims[0]) {
        snprintf(err, errsize, "%s holds %lld images but %s holds %lld labels", ipath, (long long)idims[0], lpath,
                 (long long)ldims[0]);
        goto fail;
    }
    for (int64_t i = 0; i < ldims[0]; i++)
        if (out->labels[i] >= classes) {
            snprintf(err, errsize, "%s: label %u of image %lld is outside 0-%d", lpath, (unsigned)out->labels[i],
                     (long long)i, classes - 1);
            goto fail;
        }
    out->count = idims[0];
    out->rows = rows;
    out->cols = cols;
    return 0;
fail:
    idx_free_set(out);
    return -1;
}

void idx_free_set(idx_set *set) {
    free(set->pixels);
    free(set->labels);
    memset(set, 0, sizeof *set);
}
