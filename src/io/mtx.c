/* Matrix Market files, after the format's definition (Boisvert, Pozo, Remington, "The Matrix Market
 * Exchange Formats: Initial Design", NISTIR 5935, 1996): a banner
 * "%%MatrixMarket matrix <coordinate|array> <real|integer|pattern|complex> <general|symmetric|...>",
 * comment lines starting with '%', a size line ("M N NNZ" or "M N"), then one entry per line:
 * "i j [value]" with 1-based indices, or for arrays one value per line in column-major order
 * (symmetric arrays list the lower triangle only). */
#define _POSIX_C_SOURCE 200809L /* fileno, strcasecmp */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/internal.h"
#include "sparse/internal.h"
#include "sparsebox/io.h"

#define LINE_MAX_LEN 1024

typedef struct {
    FILE *f;
    const char *path;
    int64_t line; /* number of the line last read */
    char buf[LINE_MAX_LEN];
} reader;

/* The next line that is not a comment or blank; 0 at end of file. Lines longer than the buffer
 * are an error unless they are comments. */
static sbx_status next_line(reader *r, int *got, int keep_comments) {
    for (;;) {
        if (!fgets(r->buf, sizeof r->buf, r->f)) {
            if (ferror(r->f)) return sbx__error(SBX_ERR_IO, "'%s': read error after line %lld", r->path, (long long)r->line);
            *got = 0;
            return SBX_OK;
        }
        r->line++;
        size_t len = strlen(r->buf);
        int whole = len > 0 && r->buf[len - 1] == '\n';
        if (!whole && !feof(r->f)) {
            if (r->buf[0] != '%')
                return sbx__error(SBX_ERR_FORMAT, "'%s': line %lld is longer than %d characters", r->path,
                                  (long long)r->line, LINE_MAX_LEN - 2);
            int c; /* skip the rest of a long comment */
            while ((c = fgetc(r->f)) != EOF && c != '\n') {
            }
        }
        if (r->buf[0] == '%' && !keep_comments) continue;
        const char *s = r->buf;
        while (isspace((unsigned char)*s)) s++;
        if (*s == '\0') continue;
        *got = 1;
        return SBX_OK;
    }
}

static sbx_status bad_line(const reader *r, const char *what) {
    return sbx__error(SBX_ERR_FORMAT, "'%s': line %lld: %s", r->path, (long long)r->line, what);
}

/* A decimal int64 at *s, advancing s; fails on no digits or overflow. */
static int parse_i64(char **s, int64_t *v) {
    char *end;
    errno = 0;
    long long x = strtoll(*s, &end, 10);
    if (end == *s || errno == ERANGE) return 0;
    *s = end;
    *v = x;
    return 1;
}

static int parse_f64(char **s, double *v) {
    char *end;
    double x = strtod(*s, &end);
    if (end == *s) return 0;
    *s = end;
    *v = x;
    return 1;
}

static int at_end(const char *s) {
    while (isspace((unsigned char)*s)) s++;
    return *s == '\0';
}

static sbx_status read_header(reader *r, sbx_mtx_header *h) {
    char banner[5][32];
    int got;
    SBX_CHECK(next_line(r, &got, 1));
    if (!got) return sbx__error(SBX_ERR_FORMAT, "'%s' is empty, not a Matrix Market file", r->path);
    if (sscanf(r->buf, "%31s %31s %31s %31s %31s", banner[0], banner[1], banner[2], banner[3], banner[4]) != 5 ||
        strcmp(banner[0], "%%MatrixMarket") != 0)
        return sbx__error(SBX_ERR_FORMAT, "'%s': line 1 is not a '%%%%MatrixMarket matrix <format> <field> <symmetry>' banner",
                          r->path);
    if (strcasecmp(banner[1], "matrix") != 0)
        return sbx__error(SBX_ERR_UNSUPPORTED, "'%s': Matrix Market object '%s' is not supported (only 'matrix')",
                          r->path, banner[1]);
    if (strcasecmp(banner[2], "coordinate") == 0) {
        h->coordinate = 1;
    } else if (strcasecmp(banner[2], "array") == 0) {
        h->coordinate = 0;
    } else {
        return sbx__error(SBX_ERR_FORMAT, "'%s': Matrix Market format '%s' is neither coordinate nor array", r->path,
                          banner[2]);
    }
    if (strcasecmp(banner[3], "real") == 0 || strcasecmp(banner[3], "double") == 0) {
        h->field = SBX_MTX_REAL;
    } else if (strcasecmp(banner[3], "integer") == 0) {
        h->field = SBX_MTX_INTEGER;
    } else if (strcasecmp(banner[3], "pattern") == 0 && h->coordinate) {
        h->field = SBX_MTX_PATTERN;
    } else {
        return sbx__error(SBX_ERR_UNSUPPORTED, "'%s': Matrix Market field '%s' is not supported with %s (real, "
                          "integer and, for coordinate, pattern are)", r->path, banner[3], banner[2]);
    }
    if (strcasecmp(banner[4], "general") == 0) {
        h->symmetry = SBX_MTX_GENERAL;
    } else if (strcasecmp(banner[4], "symmetric") == 0) {
        h->symmetry = SBX_MTX_SYMMETRIC;
    } else if (strcasecmp(banner[4], "skew-symmetric") == 0) {
        h->symmetry = SBX_MTX_SKEW_SYMMETRIC;
    } else {
        return sbx__error(SBX_ERR_UNSUPPORTED, "'%s': Matrix Market symmetry '%s' is not supported (general, "
                          "symmetric and skew-symmetric are)", r->path, banner[4]);
    }
    SBX_CHECK(next_line(r, &got, 0));
    if (!got) return sbx__error(SBX_ERR_FORMAT, "'%s': the size line is missing", r->path);
    char *s = r->buf;
    int64_t entries = 0;
    if (!parse_i64(&s, &h->nrows) || !parse_i64(&s, &h->ncols) || (h->coordinate && !parse_i64(&s, &entries)) ||
        !at_end(s))
        return bad_line(r, h->coordinate ? "the size line must be 'rows columns entries' (integers in int64)"
                                         : "the size line must be 'rows columns' (integers in int64)");
    if (h->nrows < 0 || h->ncols < 0 || entries < 0)
        return sbx__error(SBX_ERR_FORMAT, "'%s': line %lld: negative size %lld x %lld with %lld entries", r->path,
                          (long long)r->line, (long long)h->nrows, (long long)h->ncols, (long long)entries);
    if (h->symmetry != SBX_MTX_GENERAL && h->nrows != h->ncols)
        return sbx__error(SBX_ERR_FORMAT, "'%s': a %s matrix must be square, not %lld x %lld", r->path, banner[4],
                          (long long)h->nrows, (long long)h->ncols);
    /* Most entries a file may list: every cell, or the lower triangle (with or without diagonal). */
    int64_t cells;
    if (sbx_mul_i64(h->nrows, h->ncols, &cells) != SBX_OK)
        return sbx__error(SBX_ERR_OVERFLOW, "'%s': matrix size %lld x %lld overflows int64", r->path,
                          (long long)h->nrows, (long long)h->ncols);
    int64_t tri = 0; /* n(n+1)/2, for the square symmetric kinds only, where it fits since n * n does */
    if (h->symmetry != SBX_MTX_GENERAL)
        tri = h->nrows % 2 == 0 ? h->nrows / 2 * (h->nrows + 1) : (h->nrows + 1) / 2 * h->nrows;
    int64_t limit = h->symmetry == SBX_MTX_GENERAL ? cells : h->symmetry == SBX_MTX_SYMMETRIC ? tri : tri - h->nrows;
    if (!h->coordinate) entries = limit;
    if (entries > limit)
        return sbx__error(SBX_ERR_FORMAT, "'%s': %lld entries declared, more than the %lld cells a %lld x %lld %s matrix "
                          "can list", r->path, (long long)entries, (long long)limit, (long long)h->nrows,
                          (long long)h->ncols, banner[4]);
    h->entries = entries;
    return SBX_OK;
}

/* Entries as read, before compression. */
typedef struct {
    int64_t *row, *col;
    void *val; /* int64_t (integer field) or double */
    int64_t n, cap;
    sbx_dtype dtype;
} coo;

static void coo_free(coo *c) {
    sbx__free(c->row);
    sbx__free(c->col);
    sbx__free(c->val);
}

static sbx_status coo_push(coo *c, int64_t i, int64_t j, int64_t iv, double dv) {
    if (c->n == c->cap) {
        int64_t cap = c->cap < 1024 ? 1024 : c->cap * 2;
        SBX_CHECK(sbx__grow(cap, sizeof(int64_t), &c->row, "Matrix Market rows"));
        SBX_CHECK(sbx__grow(cap, sizeof(int64_t), &c->col, "Matrix Market columns"));
        SBX_CHECK(sbx__grow(cap, 8, &c->val, "Matrix Market values"));
        c->cap = cap;
    }
    c->row[c->n] = i;
    c->col[c->n] = j;
    if (c->dtype == SBX_INT64)
        ((int64_t *)c->val)[c->n] = iv;
    else
        ((double *)c->val)[c->n] = dv;
    c->n++;
    return SBX_OK;
}

static sbx_status read_entries(reader *r, const sbx_mtx_header *h, coo *c) {
    int got;
    int64_t i = 0, j = 0; /* 0-based position of the next array entry */
    if (!h->coordinate && h->symmetry == SBX_MTX_SKEW_SYMMETRIC) i = 1;
    c->dtype = h->field == SBX_MTX_INTEGER ? SBX_INT64 : SBX_FLOAT64;
    for (int64_t e = 0; e < h->entries; e++) {
        SBX_CHECK(next_line(r, &got, 0));
        if (!got)
            return sbx__error(SBX_ERR_FORMAT, "'%s': the file ends after %lld of the %lld entries it declares", r->path,
                              (long long)e, (long long)h->entries);
        char *s = r->buf;
        int64_t iv = 1;
        double dv = 1.0;
        if (h->coordinate) {
            if (!parse_i64(&s, &i) || !parse_i64(&s, &j)) return bad_line(r, "expected 'row column' indices");
            if (i < 1 || i > h->nrows || j < 1 || j > h->ncols)
                return sbx__error(SBX_ERR_FORMAT, "'%s': line %lld: entry (%lld, %lld) is outside the %lld x %lld matrix "
                                  "(indices are 1-based)", r->path, (long long)r->line, (long long)i, (long long)j,
                                  (long long)h->nrows, (long long)h->ncols);
            if ((h->symmetry == SBX_MTX_SYMMETRIC && i < j) || (h->symmetry == SBX_MTX_SKEW_SYMMETRIC && i <= j))
                return sbx__error(SBX_ERR_FORMAT, "'%s': line %lld: entry (%lld, %lld) is not in the lower triangle that a "
                                  "%s file lists", r->path, (long long)r->line, (long long)i, (long long)j,
                                  h->symmetry == SBX_MTX_SYMMETRIC ? "symmetric" : "skew-symmetric");
            i--;
            j--;
        }
        if (h->field == SBX_MTX_INTEGER && !parse_i64(&s, &iv)) return bad_line(r, "expected an integer value in int64");
        if (h->field == SBX_MTX_REAL && !parse_f64(&s, &dv)) return bad_line(r, "expected a real value");
        if (!at_end(s)) return bad_line(r, "unexpected text after the entry");
        SBX_CHECK(coo_push(c, i, j, iv, dv));
        if (h->symmetry != SBX_MTX_GENERAL && i != j) {
            int skew = h->symmetry == SBX_MTX_SKEW_SYMMETRIC;
            if (skew && iv == INT64_MIN) return bad_line(r, "the mirrored value -(-2^63) overflows int64");
            SBX_CHECK(coo_push(c, j, i, skew ? -iv : iv, skew ? -dv : dv));
        }
        if (!h->coordinate && ++i == h->nrows) { /* next array position, column-major */
            j++;
            i = h->symmetry == SBX_MTX_GENERAL ? 0 : h->symmetry == SBX_MTX_SYMMETRIC ? j : j + 1;
        }
    }
    SBX_CHECK(next_line(r, &got, 0));
    if (got)
        return sbx__error(SBX_ERR_FORMAT, "'%s': line %lld: more entries than the %lld the size line declares", r->path,
                          (long long)r->line, (long long)h->entries);
    return SBX_OK;
}

/* Opens path, reads its header and entries. */
static sbx_status read_file(const char *path, sbx_mtx_header *h, coo *c) {
    reader *r;
    SBX_CHECK(sbx__alloc(1, sizeof *r, &r, "Matrix Market reader"));
    sbx_status st = sbx__open(path, "r", &r->f);
    if (st == SBX_OK) {
        r->path = path;
        st = read_header(r, h);
        if (st == SBX_OK && c) st = read_entries(r, h, c);
        fclose(r->f);
    }
    sbx__free(r);
    return st;
}

sbx_status sbx_mtx_read_header(const char *path, sbx_mtx_header *out) {
    sbx_mtx_header h;
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_mtx_read_header: out is NULL");
    SBX_CHECK(read_file(path, &h, NULL));
    *out = h;
    return SBX_OK;
}

/* Compresses the entries into format by a counting sort on the major index, then sorts each line
 * and sums duplicates. */
static sbx_status compress(const sbx_mtx_header *h, const coo *c, sbx_format format, sbx_sparse **out) {
    sbx_sparse *m;
    SBX_CHECK(sbx_sparse_create(format, c->dtype, h->nrows, h->ncols, c->n, &m));
    const int64_t *key = format == SBX_CSR ? c->row : c->col, *other = format == SBX_CSR ? c->col : c->row;
    int64_t major = sbx_sparse_major(m), *ip = m->indptr;
    for (int64_t e = 0; e < c->n; e++) ip[key[e] + 1]++;
    for (int64_t k = 0; k < major; k++) ip[k + 1] += ip[k];
    for (int64_t e = 0; e < c->n; e++) {
        int64_t d = ip[key[e]]++;
        m->indices[d] = other[e];
        memcpy((char *)m->data + d * 8, (const char *)c->val + e * 8, 8);
    }
    memmove(ip + 1, ip, (size_t)major * sizeof(int64_t));
    ip[0] = 0;
    sbx_status st = sbx_sparse_sum_duplicates(m);
    if (st == SBX_OK && !h->coordinate) st = sbx_sparse_eliminate_zeros(m);
    if (st != SBX_OK) {
        sbx_sparse_free(m);
        return st;
    }
    *out = m;
    return SBX_OK;
}

sbx_status sbx_mtx_read(const char *path, sbx_format format, sbx_sparse **out) {
    sbx_mtx_header h;
    coo c = {0};
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_mtx_read: out is NULL");
    if (format != SBX_CSR && format != SBX_CSC)
        return sbx__error(SBX_ERR_ARG, "format %d is neither SBX_CSR nor SBX_CSC", (int)format);
    sbx_status st = read_file(path, &h, &c);
    if (st == SBX_OK) st = compress(&h, &c, format, out);
    coo_free(&c);
    return st;
}

sbx_status sbx_mtx_read_dense(const char *path, sbx_array **out) {
    sbx_mtx_header h;
    coo c = {0};
    sbx_array *a = NULL;
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_mtx_read_dense: out is NULL");
    sbx_status st = read_file(path, &h, &c);
    if (st == SBX_OK) {
        int64_t shape[2] = {h.nrows, h.ncols};
        st = sbx_array_create(c.dtype, 2, shape, &a);
    }
    if (st == SBX_OK) {
        for (int64_t e = 0; e < c.n; e++) sbx__accumulate(a->data, c.row[e] * h.ncols + c.col[e], c.val, e, c.dtype);
        *out = a;
    }
    coo_free(&c);
    return st;
}

static void write_value(FILE *f, const sbx_sparse *m, int64_t p) {
    const void *d = m->data;
    switch (m->dtype) {
    case SBX_FLOAT32: fprintf(f, "%.9g\n", (double)((const float *)d)[p]); break;
    case SBX_FLOAT64: fprintf(f, "%.17g\n", ((const double *)d)[p]); break;
    case SBX_UINT64: fprintf(f, "%llu\n", (unsigned long long)((const uint64_t *)d)[p]); break;
    case SBX_INT64: fprintf(f, "%lld\n", (long long)((const int64_t *)d)[p]); break;
    default: fprintf(f, "%lld\n", (long long)sbx__get_f64(d, m->dtype, p)); break; /* exact below 2^53 */
    }
}

sbx_status sbx_mtx_write(const char *path, const sbx_sparse *m) {
    FILE *f;
    SBX_CHECK(sbx_sparse_validate_structure(m));
    int real = m->dtype == SBX_FLOAT32 || m->dtype == SBX_FLOAT64;
    SBX_CHECK(sbx__open(path, "w", &f));
    fprintf(f, "%%%%MatrixMarket matrix coordinate %s general\n%lld %lld %lld\n", real ? "real" : "integer",
            (long long)m->nrows, (long long)m->ncols, (long long)m->nnz);
    int64_t major = sbx_sparse_major(m);
    for (int64_t k = 0; k < major; k++)
        for (int64_t p = m->indptr[k]; p < m->indptr[k + 1]; p++) {
            int64_t r = m->format == SBX_CSR ? k : m->indices[p], c = m->format == SBX_CSR ? m->indices[p] : k;
            fprintf(f, "%lld %lld ", (long long)(r + 1), (long long)(c + 1));
            write_value(f, m, p);
        }
    return sbx__finish_write(f, path, SBX_OK);
}
