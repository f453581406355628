/* Unit tests of sparsebox's sparse matrices (include/sparsebox/sparse.h): creation, copies, casts and
 * transposes; validation and its messages; dense round trips; CSR <-> CSC conversion; the in-place
 * clean-ups; structured dot products against a reference; thread-count independence; and every
 * allocation-failure path of the main operations (walked one allocation at a time). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "sparsebox/sparse.h"

/* Under AddressSanitizer an allocation too large to satisfy returns NULL, as malloc does, instead of
 * aborting the process: the out-of-memory path of a truly huge request is then testable there too. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

/* ------------------------------------------------------------------------------------------------
 * Deterministic random numbers: splitmix64, seeded by each test so that tests do not depend on order.
 * ---------------------------------------------------------------------------------------------- */

static uint64_t rng_state;

static void rng_seed(uint64_t seed) { rng_state = seed; }

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in [0, n); 0 when n <= 0. */
static int64_t rng_below(int64_t n) { return n <= 0 ? 0 : (int64_t)(rng_next() % (uint64_t)n); }

/* Uniform in [0, 1), 53 random bits. */
static double rng_unit(void) { return (double)(rng_next() >> 11) * 0x1.0p-53; }

/* ------------------------------------------------------------------------------------------------
 * Assertions that report the caller's line and the library's message.
 * ---------------------------------------------------------------------------------------------- */

#define CHECK_OK(expr) check_ok_at((expr), #expr, __FILE__, __LINE__)

static void check_ok_at(sbx_status st, const char *expr, const char *file, int line) {
    if (st == SBX_OK) return;
    print_error("%s returned %d (%s): '%s'\n", expr, (int)st, sbx_status_str(st), sbx_last_error());
    _fail(file, line);
}

/* The status must be `want` and sbx_last_error() must contain every one of the words that follow. */
#define CHECK_ERR(expr, want, ...) \
    check_err_at((expr), (want), #expr, __FILE__, __LINE__, __VA_ARGS__, (const char *)NULL)

static void check_err_at(sbx_status st, sbx_status want, const char *expr, const char *file, int line, ...) {
    const char *msg = sbx_last_error();
    if (st != want) {
        print_error("%s returned %d (%s), expected %d (%s); message '%s'\n", expr, (int)st, sbx_status_str(st),
                    (int)want, sbx_status_str(want), msg);
        _fail(file, line);
        return;
    }
    va_list ap;
    va_start(ap, line);
    for (const char *word = va_arg(ap, const char *); word; word = va_arg(ap, const char *)) {
        if (!strstr(msg, word)) {
            va_end(ap);
            print_error("%s: message '%s' does not contain '%s'\n", expr, msg, word);
            _fail(file, line);
            return;
        }
    }
    va_end(ap);
}

static void *xcalloc(int64_t n, size_t size) {
    void *p = calloc(n > 0 ? (size_t)n : 1, size ? size : 1);
    assert_non_null(p);
    return p;
}

/* Every test ends with the allocation hook off and the default thread count, even after a failure. */
static int reset(void **state) {
    (void)state;
    sbx__alloc_fail_at(0);
    sbx_set_num_threads(0);
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Elements of any dtype, handled independently of the library.
 * ---------------------------------------------------------------------------------------------- */

static int is_float(sbx_dtype t) { return t == SBX_FLOAT32 || t == SBX_FLOAT64; }

static size_t esz(sbx_dtype t) { return sbx_dtype_size(t); }

static sbx_format other_format(sbx_format f) { return f == SBX_CSR ? SBX_CSC : SBX_CSR; }

static const char *line_word(sbx_format f) { return f == SBX_CSR ? "row" : "column"; }

/* The w low bytes of an integer element as an unsigned number (zero-extended). */
static uint64_t load_bits(const unsigned char *p, size_t w) {
    uint8_t a;
    uint16_t b;
    uint32_t c;
    uint64_t d;
    switch (w) {
    case 1: memcpy(&a, p, 1); return a;
    case 2: memcpy(&b, p, 2); return b;
    case 4: memcpy(&c, p, 4); return c;
    default: memcpy(&d, p, 8); return d;
    }
}

/* Stores v modulo 2^(8w) into an integer element of w bytes. */
static void store_bits(unsigned char *p, size_t w, uint64_t v) {
    uint8_t a = (uint8_t)v;
    uint16_t b = (uint16_t)v;
    uint32_t c = (uint32_t)v;
    switch (w) {
    case 1: memcpy(p, &a, 1); break;
    case 2: memcpy(p, &b, 2); break;
    case 4: memcpy(p, &c, 4); break;
    default: memcpy(p, &v, 8); break;
    }
}

static double get_f64(const void *data, sbx_dtype t, int64_t i) {
    switch (t) {
    case SBX_FLOAT32: return ((const float *)data)[i];
    case SBX_FLOAT64: return ((const double *)data)[i];
    case SBX_INT8: return ((const int8_t *)data)[i];
    case SBX_INT16: return ((const int16_t *)data)[i];
    case SBX_INT32: return ((const int32_t *)data)[i];
    case SBX_INT64: return (double)((const int64_t *)data)[i];
    case SBX_UINT8: return ((const uint8_t *)data)[i];
    case SBX_UINT16: return ((const uint16_t *)data)[i];
    case SBX_UINT32: return ((const uint32_t *)data)[i];
    case SBX_UINT64: return (double)((const uint64_t *)data)[i];
    case SBX_BOOL: return ((const uint8_t *)data)[i] != 0;
    }
    return 0.0;
}

/* Stores v, which the caller picks representable in t (or any value for the float types). */
static void set_f64(void *data, sbx_dtype t, int64_t i, double v) {
    switch (t) {
    case SBX_FLOAT32: ((float *)data)[i] = (float)v; break;
    case SBX_FLOAT64: ((double *)data)[i] = v; break;
    case SBX_INT8: ((int8_t *)data)[i] = (int8_t)v; break;
    case SBX_INT16: ((int16_t *)data)[i] = (int16_t)v; break;
    case SBX_INT32: ((int32_t *)data)[i] = (int32_t)v; break;
    case SBX_INT64: ((int64_t *)data)[i] = (int64_t)v; break;
    case SBX_UINT8: ((uint8_t *)data)[i] = (uint8_t)v; break;
    case SBX_UINT16: ((uint16_t *)data)[i] = (uint16_t)v; break;
    case SBX_UINT32: ((uint32_t *)data)[i] = (uint32_t)v; break;
    case SBX_UINT64: ((uint64_t *)data)[i] = (uint64_t)v; break;
    case SBX_BOOL: ((uint8_t *)data)[i] = v != 0.0; break;
    }
}

/* Not zero, as numpy sees it: NaN is not zero, -0.0 is. */
static int is_nonzero(const void *data, sbx_dtype t, int64_t i) {
    if (is_float(t)) return get_f64(data, t, i) != 0.0;
    size_t w = esz(t);
    return load_bits((const unsigned char *)data + (size_t)i * w, w) != 0;
}

/* Same value: floats compare with == except that NaN matches NaN; other types bit for bit. */
static int elem_same(const void *a, int64_t i, const void *b, int64_t j, sbx_dtype t) {
    if (is_float(t)) {
        double x = get_f64(a, t, i), y = get_f64(b, t, j);
        return (isnan(x) && isnan(y)) || x == y;
    }
    size_t w = esz(t);
    return memcmp((const char *)a + (size_t)i * w, (const char *)b + (size_t)j * w, w) == 0;
}

/* dst[i] += src[j] with numpy's rules: integers wrap, bool is or-ed. */
static void ref_add(void *dst, int64_t i, const void *src, int64_t j, sbx_dtype t) {
    size_t w = esz(t);
    unsigned char *d = (unsigned char *)dst + (size_t)i * w;
    const unsigned char *s = (const unsigned char *)src + (size_t)j * w;
    if (t == SBX_FLOAT32) {
        ((float *)dst)[i] += ((const float *)src)[j];
    } else if (t == SBX_FLOAT64) {
        ((double *)dst)[i] += ((const double *)src)[j];
    } else if (t == SBX_BOOL) {
        *d = (unsigned char)(*d != 0 || *s != 0);
    } else {
        store_bits(d, w, load_bits(d, w) + load_bits(s, w));
    }
}

/* A random value at element i: nonzero, except that with `special` some are explicit zeros (-0.0 for
 * floats half the time) and some floats are NaN. Floats lie in [-1, 1); integers use every bit. */
static void put_random(void *data, sbx_dtype t, int64_t i, int special) {
    size_t w = esz(t);
    unsigned char *p = (unsigned char *)data + (size_t)i * w;
    if (special && rng_below(6) == 0) {
        memset(p, 0, w);
        if (is_float(t) && rng_below(2)) set_f64(data, t, i, -0.0);
        return;
    }
    if (special && is_float(t) && rng_below(6) == 0) {
        set_f64(data, t, i, NAN);
        return;
    }
    if (is_float(t)) {
        double v = rng_unit() * 2.0 - 1.0;
        set_f64(data, t, i, v != 0.0 ? v : 0.5);
    } else if (t == SBX_BOOL) {
        *p = 1;
    } else {
        uint64_t mask = w == 8 ? UINT64_MAX : (UINT64_C(1) << (8 * w)) - 1, r;
        do r = rng_next();
        while ((r & mask) == 0);
        store_bits(p, w, r);
    }
}

/* ------------------------------------------------------------------------------------------------
 * Matrices built by the tests.
 * ---------------------------------------------------------------------------------------------- */

enum { SP_UNSORTED = 1, SP_DUPS = 2, SP_SPECIAL = 4 };

/* A random matrix: each (line, index) present with probability `density`; SP_DUPS turns about a third
 * of the entries into copies of the previous index (so nnz never exceeds nrows * ncols), SP_UNSORTED
 * shuffles each line, SP_SPECIAL mixes explicit zeros and NaN into the values. */
static sbx_sparse *random_sparse(sbx_format f, sbx_dtype t, int64_t nrows, int64_t ncols, double density, int flags) {
    int64_t major = f == SBX_CSR ? nrows : ncols, minor = f == SBX_CSR ? ncols : nrows, nnz = 0;
    int64_t *ip = xcalloc(major + 1, sizeof *ip), *ix = xcalloc(major * minor, sizeof *ix);
    for (int64_t k = 0; k < major; k++) {
        int64_t start = nnz;
        for (int64_t j = 0; j < minor; j++)
            if (density >= 1.0 || rng_unit() < density) ix[nnz++] = j;
        if (flags & SP_DUPS)
            for (int64_t p = start + 1; p < nnz; p++)
                if (rng_below(3) == 0) ix[p] = ix[p - 1];
        if (flags & SP_UNSORTED)
            for (int64_t p = nnz - 1; p > start; p--) {
                int64_t q = start + rng_below(p - start + 1), tmp = ix[p];
                ix[p] = ix[q];
                ix[q] = tmp;
            }
        ip[k + 1] = nnz;
    }
    sbx_sparse *m = NULL;
    CHECK_OK(sbx_sparse_create(f, t, nrows, ncols, nnz, &m));
    memcpy(m->indptr, ip, (size_t)(major + 1) * sizeof *ip);
    if (nnz > 0) memcpy(m->indices, ix, (size_t)nnz * sizeof *ix);
    for (int64_t p = 0; p < nnz; p++) put_random(m->data, t, p, flags & SP_SPECIAL);
    free(ip);
    free(ix);
    return m;
}

/* A matrix from literal arrays; the values are given as doubles (exact in every dtype used). */
static sbx_sparse *make_sparse(sbx_format f, sbx_dtype t, int64_t nrows, int64_t ncols, int64_t nnz,
                               const int64_t *indptr, const int64_t *indices, const double *values) {
    sbx_sparse *m = NULL;
    CHECK_OK(sbx_sparse_create(f, t, nrows, ncols, nnz, &m));
    memcpy(m->indptr, indptr, (size_t)(sbx_sparse_major(m) + 1) * sizeof(int64_t));
    for (int64_t p = 0; p < nnz; p++) {
        m->indices[p] = indices[p];
        set_f64(m->data, t, p, values[p]);
    }
    return m;
}

/* The dense form (row-major, dtype of m) summed in storage order by the test's own arithmetic.
 * Needs every index in range. */
static void *ref_dense(const sbx_sparse *m) {
    unsigned char *d = xcalloc(m->nrows * m->ncols, esz(m->dtype));
    int64_t major = sbx_sparse_major(m);
    for (int64_t k = 0; k < major; k++)
        for (int64_t p = m->indptr[k]; p < m->indptr[k + 1]; p++) {
            int64_t j = m->indices[p];
            ref_add(d, m->format == SBX_CSR ? k * m->ncols + j : j * m->ncols + k, m->data, p, m->dtype);
        }
    return d;
}

#define ASSERT_DENSE_EQ(got, want, t, n, what) dense_eq_at((got), (want), (t), (n), (what), __FILE__, __LINE__)

static void dense_eq_at(const void *got, const void *want, sbx_dtype t, int64_t n, const char *what, const char *file,
                        int line) {
    for (int64_t i = 0; i < n; i++)
        if (!elem_same(got, i, want, i, t)) {
            print_error("%s: %s element %lld differs: got %.17g, want %.17g\n", what, sbx_dtype_name(t), (long long)i,
                        get_f64(got, t, i), get_f64(want, t, i));
            _fail(file, line);
            return;
        }
}

#define ASSERT_ARRAY_SHAPE(a, t, r, c) array_shape_at((a), (t), (r), (c), __FILE__, __LINE__)

static void array_shape_at(const sbx_array *a, sbx_dtype t, int64_t rows, int64_t cols, const char *file, int line) {
    if (a && a->dtype == t && a->ndim == 2 && a->shape[0] == rows && a->shape[1] == cols) return;
    if (!a)
        print_error("array is NULL, expected %s %lld x %lld\n", sbx_dtype_name(t), (long long)rows, (long long)cols);
    else
        print_error("array is %s, %d-d, %lld x %lld; expected %s %lld x %lld\n", sbx_dtype_name(a->dtype), a->ndim,
                    (long long)a->shape[0], (long long)a->shape[1], sbx_dtype_name(t), (long long)rows,
                    (long long)cols);
    _fail(file, line);
}

/* Same header and the same bytes in indptr, indices and data. */
static int sparse_same(const sbx_sparse *a, const sbx_sparse *b) {
    if (a->format != b->format || a->dtype != b->dtype || a->nrows != b->nrows || a->ncols != b->ncols ||
        a->nnz != b->nnz)
        return 0;
    if (memcmp(a->indptr, b->indptr, (size_t)(sbx_sparse_major(a) + 1) * sizeof(int64_t)) != 0) return 0;
    if (a->nnz == 0) return 1;
    return memcmp(a->indices, b->indices, (size_t)a->nnz * sizeof(int64_t)) == 0 &&
           memcmp(a->data, b->data, (size_t)a->nnz * esz(a->dtype)) == 0;
}

static int dense_same(const sbx_array *a, const sbx_array *b) {
    if (a->dtype != b->dtype || a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    int64_t n = sbx_array_numel(a);
    return n == 0 || memcmp(a->data, b->data, (size_t)n * esz(a->dtype)) == 0;
}

/* 1 when the indices of every line are non-decreasing. */
static int lines_sorted(const sbx_sparse *m) {
    int64_t major = sbx_sparse_major(m);
    for (int64_t k = 0; k < major; k++)
        for (int64_t p = m->indptr[k] + 1; p < m->indptr[k + 1]; p++)
            if (m->indices[p] < m->indices[p - 1]) return 0;
    return 1;
}

/* ------------------------------------------------------------------------------------------------
 * 1. create / free / copy / cast / transpose
 * ---------------------------------------------------------------------------------------------- */

static const int64_t small_shapes[][2] = {{0, 0}, {0, 7}, {7, 0}, {1, 1}, {3, 4}, {4, 3}, {1, 9}, {9, 1}};
#define NUM_SMALL_SHAPES (sizeof small_shapes / sizeof small_shapes[0])

static void test_format_names_and_extents(void **state) {
    (void)state;
    sbx_format f = SBX_CSC;
    assert_string_equal(sbx_format_name(SBX_CSR), "csr");
    assert_string_equal(sbx_format_name(SBX_CSC), "csc");
    assert_string_equal(sbx_format_name((sbx_format)7), "invalid");
    CHECK_OK(sbx_format_parse("csr", &f));
    assert_int_equal(f, SBX_CSR);
    CHECK_OK(sbx_format_parse("csc", &f));
    assert_int_equal(f, SBX_CSC);
    CHECK_ERR(sbx_format_parse("coo", &f), SBX_ERR_ARG, "coo");
    sbx_sparse *m = NULL;
    CHECK_OK(sbx_sparse_create(SBX_CSR, SBX_FLOAT64, 3, 5, 0, &m));
    assert_int_equal(sbx_sparse_major(m), 3);
    assert_int_equal(sbx_sparse_minor(m), 5);
    sbx_sparse_free(m);
    CHECK_OK(sbx_sparse_create(SBX_CSC, SBX_FLOAT64, 3, 5, 0, &m));
    assert_int_equal(sbx_sparse_major(m), 5);
    assert_int_equal(sbx_sparse_minor(m), 3);
    sbx_sparse_free(m);
}

static void test_create_shapes(void **state) {
    (void)state;
    for (size_t s = 0; s < NUM_SMALL_SHAPES; s++)
        for (int fi = 0; fi < 2; fi++)
            for (int ti = 0; ti < SBX_NUM_DTYPES; ti++)
                for (int full = 0; full < 2; full++) {
                    sbx_format f = (sbx_format)fi;
                    sbx_dtype t = (sbx_dtype)ti;
                    int64_t nrows = small_shapes[s][0], ncols = small_shapes[s][1], nnz = full ? nrows * ncols : 0;
                    sbx_sparse *m = NULL;
                    CHECK_OK(sbx_sparse_create(f, t, nrows, ncols, nnz, &m));
                    assert_non_null(m);
                    assert_int_equal(m->format, f);
                    assert_int_equal(m->dtype, t);
                    assert_int_equal(m->nrows, nrows);
                    assert_int_equal(m->ncols, ncols);
                    assert_int_equal(m->nnz, nnz);
                    assert_non_null(m->indptr);
                    int64_t major = sbx_sparse_major(m), minor = sbx_sparse_minor(m);
                    assert_int_equal(major, f == SBX_CSR ? nrows : ncols);
                    assert_int_equal(minor, f == SBX_CSR ? ncols : nrows);
                    for (int64_t k = 0; k <= major; k++) assert_int_equal(m->indptr[k], 0);
                    for (int64_t p = 0; p < nnz; p++) {
                        assert_int_equal(m->indices[p], 0);
                        assert_false(is_nonzero(m->data, t, p));
                    }
                    if (nnz == 0) {
                        CHECK_OK(sbx_sparse_validate(m));
                    } else {
                        /* indptr all zero does not describe nnz entries */
                        CHECK_ERR(sbx_sparse_validate(m), SBX_ERR_FORMAT, "must equal nnz");
                        /* filled in as a full matrix, it is valid */
                        for (int64_t k = 0; k < major; k++) {
                            m->indptr[k + 1] = (k + 1) * minor;
                            for (int64_t j = 0; j < minor; j++) m->indices[k * minor + j] = j;
                        }
                        CHECK_OK(sbx_sparse_validate(m));
                    }
                    sbx_sparse_free(m);
                }
    sbx_sparse_free(NULL); /* a no-op */
}

static void test_create_errors(void **state) {
    (void)state;
    sbx_sparse *m = NULL;
    CHECK_ERR(sbx_sparse_create(SBX_CSR, SBX_FLOAT64, 2, 2, 1, NULL), SBX_ERR_ARG, "out is NULL");
    CHECK_ERR(sbx_sparse_create(SBX_CSR, SBX_FLOAT64, -1, 2, 0, &m), SBX_ERR_ARG, "negative", "nrows -1");
    CHECK_ERR(sbx_sparse_create(SBX_CSC, SBX_FLOAT64, 2, -3, 0, &m), SBX_ERR_ARG, "negative", "ncols -3");
    CHECK_ERR(sbx_sparse_create(SBX_CSR, SBX_INT8, 2, 2, -5, &m), SBX_ERR_ARG, "negative", "nnz -5");
    CHECK_ERR(sbx_sparse_create(SBX_CSR, SBX_FLOAT64, INT64_MIN, INT64_MIN, INT64_MIN, &m), SBX_ERR_ARG, "negative");
    CHECK_ERR(sbx_sparse_create(SBX_CSR, SBX_FLOAT64, 3, 4, 13, &m), SBX_ERR_ARG, "nnz 13");
    CHECK_ERR(sbx_sparse_create(SBX_CSC, SBX_FLOAT64, 0, 5, 1, &m), SBX_ERR_ARG, "nnz 1");
    CHECK_ERR(sbx_sparse_create(SBX_CSR, SBX_FLOAT64, 5, 0, 1, &m), SBX_ERR_ARG, "nnz 1");
    CHECK_ERR(sbx_sparse_create((sbx_format)2, SBX_FLOAT64, 2, 2, 0, &m), SBX_ERR_ARG, "format 2");
    CHECK_ERR(sbx_sparse_create((sbx_format)-1, SBX_FLOAT64, 2, 2, 0, &m), SBX_ERR_ARG, "format");
    CHECK_ERR(sbx_sparse_create(SBX_CSR, (sbx_dtype)SBX_NUM_DTYPES, 2, 2, 0, &m), SBX_ERR_ARG, "dtype 11");
    CHECK_ERR(sbx_sparse_create(SBX_CSR, (sbx_dtype)-1, 2, 2, 0, &m), SBX_ERR_ARG, "dtype");
    assert_null(m);

    /* nrows * ncols overflows int64, so any nnz passes the count rule; the allocation of a huge nnz
     * must then fail cleanly, with an error status. */
    const int64_t big = INT64_C(1) << 62;
    const struct {
        sbx_format f;
        int64_t nrows, ncols, nnz;
    } huge[] = {
        {SBX_CSR, 2, big, INT64_MAX}, {SBX_CSR, 2, big, big / 2},  {SBX_CSC, big, 2, INT64_MAX},
        {SBX_CSC, big, 2, big / 2},   {SBX_CSR, big, big, big},    {SBX_CSC, big, big, INT64_MAX},
        {SBX_CSR, INT64_MAX, INT64_MAX, INT64_MAX}, {SBX_CSC, INT64_MAX, INT64_MAX, INT64_MAX},
        {SBX_CSR, INT64_MAX, 1, 0},   {SBX_CSC, 1, INT64_MAX, 0},
        /* 8 PiB of indices: the byte count fits, the allocation itself fails */
        {SBX_CSR, 2, big, INT64_C(1) << 50}, {SBX_CSC, big, 2, INT64_C(1) << 50},
    };
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        sbx_status st = sbx_sparse_create(huge[i].f, SBX_FLOAT64, huge[i].nrows, huge[i].ncols, huge[i].nnz, &m);
        if (st != SBX_ERR_OVERFLOW && st != SBX_ERR_NOMEM) {
            print_error("case %zu: status %d (%s), expected an overflow or out-of-memory error; message '%s'\n", i,
                        (int)st, sbx_status_str(st), sbx_last_error());
            fail();
        }
        assert_null(m);
    }
}

static void test_copy(void **state) {
    (void)state;
    rng_seed(101);
    for (size_t s = 0; s < NUM_SMALL_SHAPES; s++)
        for (int ti = 0; ti < SBX_NUM_DTYPES; ti++)
            for (int flags = 0; flags < 8; flags++) {
                sbx_format f = (sbx_format)(flags & 1);
                sbx_sparse *m = random_sparse(f, (sbx_dtype)ti, small_shapes[s][0], small_shapes[s][1],
                                              flags & 4 ? 1.0 : 0.4, flags & (SP_UNSORTED | SP_DUPS | SP_SPECIAL));
                sbx_sparse *c = NULL;
                CHECK_OK(sbx_sparse_copy(m, &c));
                assert_true(sparse_same(m, c));
                assert_ptr_not_equal(c, m);
                assert_ptr_not_equal(c->indptr, m->indptr);
                if (m->nnz > 0) {
                    assert_ptr_not_equal(c->indices, m->indices);
                    assert_ptr_not_equal(c->data, m->data);
                }
                sbx_sparse_free(c);
                sbx_sparse_free(m);
            }

    /* nnz = 0 with NULL indices and data, as the header allows */
    int64_t indptr[4] = {0, 0, 0, 0};
    sbx_sparse bare = {SBX_CSR, SBX_INT16, 3, 2, 0, indptr, NULL, NULL};
    sbx_sparse *c = NULL;
    CHECK_OK(sbx_sparse_copy(&bare, &c));
    assert_true(sparse_same(&bare, c));
    CHECK_OK(sbx_sparse_validate(c));
    sbx_sparse_free(c);

    c = NULL;
    CHECK_ERR(sbx_sparse_copy(NULL, &c), SBX_ERR_ARG, "matrix is NULL");
    CHECK_ERR(sbx_sparse_copy(&bare, NULL), SBX_ERR_ARG, "out is NULL");
    indptr[2] = 1;
    CHECK_ERR(sbx_sparse_copy(&bare, &c), SBX_ERR_FORMAT, "indptr");
    assert_null(c);
}

static void test_cast(void **state) {
    (void)state;
    static const int64_t ip[3] = {0, 3, 5}, ix[5] = {0, 2, 3, 1, 3};
    static const double v[5] = {1.0, -2.0, 3.0, 0.0, 4.0};
    sbx_sparse *m = make_sparse(SBX_CSR, SBX_FLOAT64, 2, 4, 5, ip, ix, v), *c = NULL;

    /* every value fits int8: the structure is copied, the values converted */
    CHECK_OK(sbx_sparse_cast(m, SBX_INT8, &c));
    assert_int_equal(c->dtype, SBX_INT8);
    assert_int_equal(c->format, SBX_CSR);
    assert_int_equal(c->nrows, 2);
    assert_int_equal(c->ncols, 4);
    assert_int_equal(c->nnz, 5);
    assert_memory_equal(c->indptr, ip, sizeof ip);
    assert_memory_equal(c->indices, ix, sizeof ix);
    for (int p = 0; p < 5; p++) assert_int_equal(((const int8_t *)c->data)[p], (int8_t)v[p]);
    sbx_sparse_free(c);
    c = NULL;

    /* -2 is not a uint8, 1.5 not an int32, 1e300 not a float32: no silent conversion */
    CHECK_ERR(sbx_sparse_cast(m, SBX_UINT8, &c), SBX_ERR_ARG, "element 1", "-2", "uint8");
    assert_null(c);
    ((double *)m->data)[2] = 1.5;
    CHECK_ERR(sbx_sparse_cast(m, SBX_INT32, &c), SBX_ERR_ARG, "element 2", "1.5", "int32");
    ((double *)m->data)[4] = 1e300;
    CHECK_ERR(sbx_sparse_cast(m, SBX_FLOAT32, &c), SBX_ERR_ARG, "element 4", "float32");
    assert_null(c);

    /* bool: nonzero becomes 1, and the explicit zero stays a stored 0 */
    CHECK_OK(sbx_sparse_cast(m, SBX_BOOL, &c));
    static const uint8_t want_bool[5] = {1, 1, 1, 0, 1};
    assert_memory_equal(c->data, want_bool, 5);
    sbx_sparse *back = NULL;
    CHECK_OK(sbx_sparse_cast(c, SBX_FLOAT32, &back));
    for (int p = 0; p < 5; p++) assert_true(((const float *)back->data)[p] == (float)want_bool[p]);
    sbx_sparse_free(back);
    sbx_sparse_free(c);
    c = NULL;

    /* uint64 max rounds to float64 but does not fit int64 */
    static const int64_t ip1[2] = {0, 1}, ix1[1] = {0};
    static const double one[1] = {1.0};
    sbx_sparse *u = make_sparse(SBX_CSC, SBX_UINT64, 1, 1, 1, ip1, ix1, one);
    ((uint64_t *)u->data)[0] = UINT64_MAX;
    CHECK_OK(sbx_sparse_cast(u, SBX_FLOAT64, &c));
    assert_true(((const double *)c->data)[0] == 18446744073709551616.0);
    sbx_sparse_free(c);
    c = NULL;
    CHECK_ERR(sbx_sparse_cast(u, SBX_INT64, &c), SBX_ERR_ARG, "18446744073709551615", "int64");
    sbx_sparse_free(u);

    /* empty shapes cast to every dtype */
    for (size_t s = 0; s < 3; s++)
        for (int ti = 0; ti < SBX_NUM_DTYPES; ti++) {
            sbx_sparse *e = NULL, *ec = NULL;
            CHECK_OK(sbx_sparse_create(SBX_CSC, SBX_FLOAT32, small_shapes[s][0], small_shapes[s][1], 0, &e));
            CHECK_OK(sbx_sparse_cast(e, (sbx_dtype)ti, &ec));
            assert_int_equal(ec->dtype, ti);
            assert_int_equal(ec->nnz, 0);
            CHECK_OK(sbx_sparse_validate(ec));
            sbx_sparse_free(ec);
            sbx_sparse_free(e);
        }

    c = NULL;
    CHECK_ERR(sbx_sparse_cast(m, (sbx_dtype)11, &c), SBX_ERR_ARG, "dtype 11");
    CHECK_ERR(sbx_sparse_cast(NULL, SBX_INT8, &c), SBX_ERR_ARG, "matrix is NULL");
    CHECK_ERR(sbx_sparse_cast(m, SBX_FLOAT64, NULL), SBX_ERR_ARG, "out is NULL");
    assert_null(c);
    sbx_sparse_free(m);
}

static void test_transpose(void **state) {
    (void)state;
    rng_seed(202);
    for (size_t s = 0; s < NUM_SMALL_SHAPES; s++)
        for (int ti = 0; ti < SBX_NUM_DTYPES; ti++)
            for (int fi = 0; fi < 2; fi++) {
                sbx_format f = (sbx_format)fi;
                sbx_dtype t = (sbx_dtype)ti;
                int64_t nr = small_shapes[s][0], nc = small_shapes[s][1];
                sbx_sparse *m = random_sparse(f, t, nr, nc, 0.5, ti % 2 ? SP_UNSORTED | SP_DUPS : 0), *tr = NULL;
                CHECK_OK(sbx_sparse_transpose(m, &tr));
                assert_int_equal(tr->format, other_format(f));
                assert_int_equal(tr->dtype, t);
                assert_int_equal(tr->nrows, nc);
                assert_int_equal(tr->ncols, nr);
                assert_int_equal(tr->nnz, m->nnz);
                /* the arrays are copied unchanged */
                assert_memory_equal(tr->indptr, m->indptr, (size_t)(sbx_sparse_major(m) + 1) * sizeof(int64_t));
                if (m->nnz > 0) {
                    assert_memory_equal(tr->indices, m->indices, (size_t)m->nnz * sizeof(int64_t));
                    assert_memory_equal(tr->data, m->data, (size_t)m->nnz * esz(t));
                }
                unsigned char *dm = ref_dense(m), *dt = ref_dense(tr);
                for (int64_t i = 0; i < nr; i++)
                    for (int64_t j = 0; j < nc; j++)
                        assert_true(elem_same(dm, i * nc + j, dt, j * nr + i, t));
                free(dm);
                free(dt);
                sbx_sparse_free(tr);
                sbx_sparse_free(m);
            }
    sbx_sparse *tr = NULL;
    CHECK_ERR(sbx_sparse_transpose(NULL, &tr), SBX_ERR_ARG, "matrix is NULL");
    int64_t indptr[3] = {0, 0, 0};
    sbx_sparse bare = {SBX_CSR, SBX_FLOAT64, 2, 2, 0, indptr, NULL, NULL};
    CHECK_ERR(sbx_sparse_transpose(&bare, NULL), SBX_ERR_ARG, "out is NULL");
    assert_null(tr);
}

/* ------------------------------------------------------------------------------------------------
 * 2. validate and validate_structure: one test per violation
 * ---------------------------------------------------------------------------------------------- */

/* A valid 3 x 4 CSR matrix, or the 4 x 3 CSC matrix with the same arrays:
 *   line 0: indices 0, 3 (positions 0, 1); line 1: empty; line 2: indices 0, 1, 3 (positions 2, 3, 4).
 * The struct points into itself: never copy a fixture by value. */
typedef struct {
    sbx_sparse m;
    int64_t indptr[4];
    int64_t indices[5];
    double data[5];
} fixture;

static void fixture_init(fixture *x, sbx_format f) {
    static const int64_t ip[4] = {0, 2, 2, 5}, ix[5] = {0, 3, 0, 1, 3};
    memcpy(x->indptr, ip, sizeof ip);
    memcpy(x->indices, ix, sizeof ix);
    for (int i = 0; i < 5; i++) x->data[i] = 1.0 + i;
    x->m.format = f;
    x->m.dtype = SBX_FLOAT64;
    x->m.nrows = f == SBX_CSR ? 3 : 4;
    x->m.ncols = f == SBX_CSR ? 4 : 3;
    x->m.nnz = 5;
    x->m.indptr = x->indptr;
    x->m.indices = x->indices;
    x->m.data = x->data;
}

static void test_validate_accepts_valid(void **state) {
    (void)state;
    for (int fi = 0; fi < 2; fi++) {
        fixture x;
        fixture_init(&x, (sbx_format)fi);
        CHECK_OK(sbx_sparse_validate(&x.m));
        CHECK_OK(sbx_sparse_validate_structure(&x.m));
        /* nnz = 0 with NULL indices and data is allowed */
        memset(x.indptr, 0, sizeof x.indptr);
        x.m.nnz = 0;
        x.m.indices = NULL;
        x.m.data = NULL;
        CHECK_OK(sbx_sparse_validate(&x.m));
        CHECK_OK(sbx_sparse_validate_structure(&x.m));
    }
}

static void test_validate_indptr_start(void **state) {
    (void)state;
    for (int fi = 0; fi < 2; fi++) {
        fixture x;
        fixture_init(&x, (sbx_format)fi);
        x.indptr[0] = 1;
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_FORMAT, "indptr[0] = 1");
        CHECK_ERR(sbx_sparse_validate_structure(&x.m), SBX_ERR_FORMAT, "indptr[0] = 1");
    }
}

static void test_validate_indptr_decreasing(void **state) {
    (void)state;
    for (int fi = 0; fi < 2; fi++) {
        fixture x;
        char where[32];
        fixture_init(&x, (sbx_format)fi);
        x.indptr[1] = 3; /* {0, 3, 2, 5}: decreases from line 1 to line 2 */
        snprintf(where, sizeof where, "%s 1", line_word((sbx_format)fi));
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_FORMAT, "decreases", where, "indptr[2] = 2");
        CHECK_ERR(sbx_sparse_validate_structure(&x.m), SBX_ERR_FORMAT, "decreases", where, "indptr[2] = 2");
    }
}

static void test_validate_indptr_end(void **state) {
    (void)state;
    for (int fi = 0; fi < 2; fi++) {
        fixture x;
        fixture_init(&x, (sbx_format)fi);
        x.indptr[3] = 4;
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_FORMAT, "indptr[3] = 4", "nnz = 5");
        CHECK_ERR(sbx_sparse_validate_structure(&x.m), SBX_ERR_FORMAT, "indptr[3] = 4", "nnz = 5");
        x.indptr[3] = 6;
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_FORMAT, "indptr[3] = 6", "nnz = 5");
        CHECK_ERR(sbx_sparse_validate_structure(&x.m), SBX_ERR_FORMAT, "indptr[3] = 6", "nnz = 5");
    }
}

static void test_validate_index_negative(void **state) {
    (void)state;
    for (int fi = 0; fi < 2; fi++) {
        fixture x;
        char where[32];
        fixture_init(&x, (sbx_format)fi);
        x.indices[3] = -1;
        snprintf(where, sizeof where, "%s 2", line_word((sbx_format)fi));
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_FORMAT, "index -1", "position 3", where, "[0, 4)");
        CHECK_ERR(sbx_sparse_validate_structure(&x.m), SBX_ERR_FORMAT, "index -1", "position 3", where);
        x.indices[3] = INT64_MIN;
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_FORMAT, "-9223372036854775808", "position 3");
    }
}

static void test_validate_index_too_large(void **state) {
    (void)state;
    for (int fi = 0; fi < 2; fi++) {
        fixture x;
        char where[32];
        fixture_init(&x, (sbx_format)fi);
        x.indices[1] = 4; /* the minor extent is 4 in both formats */
        snprintf(where, sizeof where, "%s 0", line_word((sbx_format)fi));
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_FORMAT, "index 4", "position 1", where, "[0, 4)");
        CHECK_ERR(sbx_sparse_validate_structure(&x.m), SBX_ERR_FORMAT, "index 4", "position 1", where);
        x.indices[1] = INT64_MAX;
        CHECK_ERR(sbx_sparse_validate_structure(&x.m), SBX_ERR_FORMAT, "9223372036854775807", "position 1");
        /* position 2 opens line 2, right after the empty line 1: the message must name line 2 */
        fixture_init(&x, (sbx_format)fi);
        x.indices[2] = 7;
        snprintf(where, sizeof where, "%s 2", line_word((sbx_format)fi));
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_FORMAT, "index 7", "position 2", where);
    }
}

static void test_validate_unsorted(void **state) {
    (void)state;
    for (int fi = 0; fi < 2; fi++) {
        fixture x;
        char where[32];
        fixture_init(&x, (sbx_format)fi);
        x.indices[2] = 1; /* line 2: 1, 0, 3 */
        x.indices[3] = 0;
        snprintf(where, sizeof where, "%s 2", line_word((sbx_format)fi));
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_FORMAT, "unsorted", "position 3", where);
        CHECK_OK(sbx_sparse_validate_structure(&x.m));
    }
}

static void test_validate_duplicate(void **state) {
    (void)state;
    for (int fi = 0; fi < 2; fi++) {
        fixture x;
        char where[32];
        fixture_init(&x, (sbx_format)fi);
        x.indices[3] = 3; /* line 2: 0, 3, 3 */
        snprintf(where, sizeof where, "%s 2", line_word((sbx_format)fi));
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_FORMAT, "duplicate", "position 4", where);
        CHECK_OK(sbx_sparse_validate_structure(&x.m));
    }
}

static void test_validate_null_indptr(void **state) {
    (void)state;
    for (int fi = 0; fi < 2; fi++) {
        fixture x;
        fixture_init(&x, (sbx_format)fi);
        x.m.indptr = NULL;
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_ARG, "indptr", "NULL");
        CHECK_ERR(sbx_sparse_validate_structure(&x.m), SBX_ERR_ARG, "indptr", "NULL");
        x.m.nnz = 0;
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_ARG, "indptr", "NULL");
    }
}

static void test_validate_null_indices(void **state) {
    (void)state;
    for (int fi = 0; fi < 2; fi++) {
        fixture x;
        fixture_init(&x, (sbx_format)fi);
        x.m.indices = NULL;
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_ARG, "nnz 5", "NULL");
        CHECK_ERR(sbx_sparse_validate_structure(&x.m), SBX_ERR_ARG, "nnz 5", "NULL");
        x.m.indices = x.indices;
        x.m.data = NULL;
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_ARG, "nnz 5", "NULL");
        CHECK_ERR(sbx_sparse_validate_structure(&x.m), SBX_ERR_ARG, "nnz 5", "NULL");
    }
}

static void test_validate_header(void **state) {
    (void)state;
    CHECK_ERR(sbx_sparse_validate(NULL), SBX_ERR_ARG, "NULL");
    CHECK_ERR(sbx_sparse_validate_structure(NULL), SBX_ERR_ARG, "NULL");
    for (int fi = 0; fi < 2; fi++) {
        fixture x;
        fixture_init(&x, (sbx_format)fi);
        x.m.nrows = -3;
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_ARG, "negative", "nrows -3");
        fixture_init(&x, (sbx_format)fi);
        x.m.ncols = -4;
        CHECK_ERR(sbx_sparse_validate_structure(&x.m), SBX_ERR_ARG, "negative", "ncols -4");
        fixture_init(&x, (sbx_format)fi);
        x.m.nnz = -1;
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_ARG, "negative", "nnz -1");
        fixture_init(&x, (sbx_format)fi);
        x.m.format = (sbx_format)7;
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_ARG, "format 7");
        fixture_init(&x, (sbx_format)fi);
        x.m.dtype = (sbx_dtype)42;
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_ARG, "dtype 42");
        /* 5 entries cannot fit in 1 x 4 (CSR) or 4 x 1 (CSC) */
        fixture_init(&x, (sbx_format)fi);
        if (fi == SBX_CSR)
            x.m.nrows = 1;
        else
            x.m.ncols = 1;
        CHECK_ERR(sbx_sparse_validate(&x.m), SBX_ERR_FORMAT, "nnz 5");
        CHECK_ERR(sbx_sparse_validate_structure(&x.m), SBX_ERR_FORMAT, "nnz 5");
    }
}

/* ------------------------------------------------------------------------------------------------
 * 3. from_dense / to_dense
 * ---------------------------------------------------------------------------------------------- */

static void check_from_dense_to_dense(const sbx_array *a, sbx_format f) {
    sbx_dtype t = a->dtype;
    int64_t nr = a->shape[0], nc = a->shape[1], count = 0;
    char what[96];
    snprintf(what, sizeof what, "%s %s %lld x %lld", sbx_dtype_name(t), sbx_format_name(f), (long long)nr,
             (long long)nc);
    for (int64_t i = 0; i < nr * nc; i++) count += is_nonzero(a->data, t, i);
    sbx_sparse *m = NULL;
    CHECK_OK(sbx_sparse_from_dense(a, f, &m));
    assert_int_equal(m->format, f);
    assert_int_equal(m->dtype, t);
    assert_int_equal(m->nrows, nr);
    assert_int_equal(m->ncols, nc);
    assert_int_equal(m->nnz, count);
    CHECK_OK(sbx_sparse_validate(m));
    /* Line by line, the stored entries are exactly the nonzeros in order, bit for bit (NaN included). */
    int64_t major = sbx_sparse_major(m), minor = sbx_sparse_minor(m), p = 0;
    size_t w = esz(t);
    for (int64_t k = 0; k < major; k++) {
        assert_int_equal(m->indptr[k], p);
        for (int64_t j = 0; j < minor; j++) {
            int64_t cell = f == SBX_CSR ? k * nc + j : j * nc + k;
            if (!is_nonzero(a->data, t, cell)) continue;
            assert_true(p < m->nnz);
            assert_int_equal(m->indices[p], j);
            assert_memory_equal((const char *)m->data + (size_t)p * w, (const char *)a->data + (size_t)cell * w, w);
            p++;
        }
    }
    assert_int_equal(m->indptr[major], p);
    sbx_array *d = NULL;
    CHECK_OK(sbx_sparse_to_dense(m, &d));
    ASSERT_ARRAY_SHAPE(d, t, nr, nc);
    ASSERT_DENSE_EQ(d->data, a->data, t, nr * nc, what);
    sbx_array_free(d);
    sbx_sparse_free(m);
}

static void test_dense_round_trip(void **state) {
    (void)state;
    rng_seed(303);
    static const int64_t shapes[][2] = {{0, 0}, {0, 5}, {5, 0}, {1, 1}, {1, 9}, {9, 1}, {4, 6}, {13, 17}, {32, 31}};
    for (int ti = 0; ti < SBX_NUM_DTYPES; ti++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0] + 6; s++) {
            sbx_dtype t = (sbx_dtype)ti;
            int64_t shape[2];
            if (s < sizeof shapes / sizeof shapes[0]) {
                shape[0] = shapes[s][0];
                shape[1] = shapes[s][1];
            } else {
                shape[0] = rng_below(41);
                shape[1] = rng_below(41);
            }
            sbx_array *a = NULL;
            CHECK_OK(sbx_array_create(t, 2, shape, &a));
            /* about half zeros (including -0.0), some NaN, the rest random */
            double zeros = s % 3 == 0 ? 1.0 : s % 3 == 1 ? 0.5 : 0.1;
            for (int64_t i = 0; i < shape[0] * shape[1]; i++) {
                if (rng_unit() < zeros)
                    memset((char *)a->data + (size_t)i * esz(t), 0, esz(t));
                else
                    put_random(a->data, t, i, 0);
                if (is_float(t) && rng_below(10) == 0) set_f64(a->data, t, i, rng_below(2) ? NAN : -0.0);
            }
            if (is_float(t) && shape[0] * shape[1] > 0) set_f64(a->data, t, 0, NAN); /* at least one NaN */
            for (int fi = 0; fi < 2; fi++) check_from_dense_to_dense(a, (sbx_format)fi);
            sbx_array_free(a);
        }
}

static void test_dense_errors(void **state) {
    (void)state;
    int64_t shape[3] = {2, 3, 4};
    sbx_array *a1 = NULL, *a3 = NULL, *a2 = NULL;
    CHECK_OK(sbx_array_create(SBX_FLOAT64, 1, shape, &a1));
    CHECK_OK(sbx_array_create(SBX_FLOAT64, 3, shape, &a3));
    CHECK_OK(sbx_array_create(SBX_FLOAT64, 2, shape, &a2));
    sbx_sparse *m = NULL;
    CHECK_ERR(sbx_sparse_from_dense(NULL, SBX_CSR, &m), SBX_ERR_ARG, "NULL");
    CHECK_ERR(sbx_sparse_from_dense(a2, SBX_CSR, NULL), SBX_ERR_ARG, "out is NULL");
    CHECK_ERR(sbx_sparse_from_dense(a1, SBX_CSR, &m), SBX_ERR_ARG, "1 dimensions");
    CHECK_ERR(sbx_sparse_from_dense(a3, SBX_CSC, &m), SBX_ERR_ARG, "3 dimensions");
    CHECK_ERR(sbx_sparse_from_dense(a2, (sbx_format)9, &m), SBX_ERR_ARG, "format 9");
    sbx_array bad = {SBX_FLOAT64, 2, {-1, 3, 0, 0, 0, 0, 0, 0}, NULL};
    CHECK_ERR(sbx_sparse_from_dense(&bad, SBX_CSR, &m), SBX_ERR_ARG, "negative");
    bad.shape[0] = 2;
    bad.dtype = (sbx_dtype)13;
    CHECK_ERR(sbx_sparse_from_dense(&bad, SBX_CSR, &m), SBX_ERR_ARG, "dtype 13");
    bad.dtype = SBX_INT8;
    CHECK_ERR(sbx_sparse_from_dense(&bad, SBX_CSR, &m), SBX_ERR_ARG, "6 elements", "NULL");
    assert_null(m);
    sbx_array *d = NULL;
    CHECK_ERR(sbx_sparse_to_dense(NULL, &d), SBX_ERR_ARG, "NULL");
    CHECK_OK(sbx_sparse_from_dense(a2, SBX_CSR, &m));
    CHECK_ERR(sbx_sparse_to_dense(m, NULL), SBX_ERR_ARG, "out is NULL");
    assert_null(d);
    sbx_sparse_free(m);

    /* empty matrices whose dense form cannot exist: an error status, not a crash */
    const struct {
        sbx_format f;
        int64_t nrows, ncols;
    } huge[] = {{SBX_CSR, 2, INT64_C(1) << 62}, {SBX_CSC, INT64_C(1) << 62, 2}, {SBX_CSR, 2, INT64_C(1) << 61},
                {SBX_CSR, 2, INT64_C(1) << 50}, {SBX_CSC, INT64_C(1) << 50, 2}};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        m = NULL;
        CHECK_OK(sbx_sparse_create(huge[i].f, SBX_FLOAT64, huge[i].nrows, huge[i].ncols, 0, &m));
        CHECK_OK(sbx_sparse_validate(m));
        sbx_status st = sbx_sparse_to_dense(m, &d);
        if (st != SBX_ERR_OVERFLOW && st != SBX_ERR_NOMEM) {
            print_error("case %zu: status %d (%s), expected an overflow or out-of-memory error; message '%s'\n", i,
                        (int)st, sbx_status_str(st), sbx_last_error());
            fail();
        }
        assert_null(d);
        sbx_sparse_free(m);
    }
    sbx_array_free(a1);
    sbx_array_free(a2);
    sbx_array_free(a3);
}

/* ------------------------------------------------------------------------------------------------
 * 4. convert CSR <-> CSC
 * ---------------------------------------------------------------------------------------------- */

static void check_convert(sbx_sparse *m, int flags) {
    char what[128];
    snprintf(what, sizeof what, "convert %s %s %lld x %lld nnz %lld flags %d", sbx_dtype_name(m->dtype),
             sbx_format_name(m->format), (long long)m->nrows, (long long)m->ncols, (long long)m->nnz, flags);
    sbx_dtype t = m->dtype;
    int64_t n = m->nrows * m->ncols;
    sbx_sparse *snapshot = NULL, *c = NULL, *back = NULL;
    CHECK_OK(sbx_sparse_copy(m, &snapshot));
    void *want = ref_dense(m);
    sbx_array *d = NULL;
    CHECK_OK(sbx_sparse_to_dense(m, &d));
    ASSERT_ARRAY_SHAPE(d, t, m->nrows, m->ncols);
    ASSERT_DENSE_EQ(d->data, want, t, n, what);
    sbx_array_free(d);

    CHECK_OK(sbx_sparse_convert(m, other_format(m->format), &c));
    assert_true(sparse_same(m, snapshot)); /* the input is untouched */
    assert_int_equal(c->format, other_format(m->format));
    assert_int_equal(c->dtype, t);
    assert_int_equal(c->nrows, m->nrows);
    assert_int_equal(c->ncols, m->ncols);
    assert_int_equal(c->nnz, m->nnz); /* duplicates kept */
    CHECK_OK(sbx_sparse_validate_structure(c));
    assert_true(lines_sorted(c));
    if (!(flags & SP_DUPS)) CHECK_OK(sbx_sparse_validate(c));
    d = NULL;
    CHECK_OK(sbx_sparse_to_dense(c, &d));
    ASSERT_DENSE_EQ(d->data, want, t, n, what);
    sbx_array_free(d);

    /* and back: the original when it was sorted and unique, else still the same dense matrix */
    CHECK_OK(sbx_sparse_convert(c, m->format, &back));
    assert_true(lines_sorted(back));
    if (!(flags & (SP_DUPS | SP_UNSORTED))) assert_true(sparse_same(back, m));
    void *again = ref_dense(back);
    ASSERT_DENSE_EQ(again, want, t, n, what);
    free(again);
    sbx_sparse_free(back);
    back = NULL;

    /* to the same format: a copy */
    CHECK_OK(sbx_sparse_convert(c, c->format, &back));
    assert_true(sparse_same(back, c));
    sbx_sparse_free(back);
    sbx_sparse_free(c);
    sbx_sparse_free(snapshot);
    free(want);
}

static void test_convert_random(void **state) {
    (void)state;
    rng_seed(404);
    static const int64_t shapes[][2] = {{0, 0}, {0, 6}, {6, 0}, {1, 1}, {1, 8}, {8, 1}, {2, 2}, {5, 7}, {7, 5}, {16, 16}};
    static const double densities[] = {0.0, 0.1, 0.5, 1.0};
    static const int variants[] = {0, SP_UNSORTED, SP_UNSORTED | SP_DUPS, SP_DUPS | SP_SPECIAL, SP_SPECIAL};
    const size_t nshapes = sizeof shapes / sizeof shapes[0];
    for (size_t s = 0; s < nshapes + 10; s++) {
        int64_t nr = s < nshapes ? shapes[s][0] : 1 + rng_below(30), nc = s < nshapes ? shapes[s][1] : 1 + rng_below(30);
        for (int ti = 0; ti < SBX_NUM_DTYPES; ti++)
            for (int fi = 0; fi < 2; fi++)
                for (size_t di = 0; di < sizeof densities / sizeof densities[0]; di++)
                    for (size_t vi = 0; vi < sizeof variants / sizeof variants[0]; vi++) {
                        sbx_sparse *m = random_sparse((sbx_format)fi, (sbx_dtype)ti, nr, nc, densities[di], variants[vi]);
                        check_convert(m, variants[vi]);
                        sbx_sparse_free(m);
                    }
    }
}

/* Empty rows and columns next to full ones, by hand: CSR 4 x 5 with rows 0 and 2 empty. */
static void test_convert_by_hand(void **state) {
    (void)state;
    static const int64_t ip[5] = {0, 0, 3, 3, 7}, ix[7] = {4, 0, 2, 4, 3, 1, 4};
    static const double v[7] = {1, 2, 3, 4, 5, 6, 7};
    sbx_sparse *m = make_sparse(SBX_CSR, SBX_FLOAT64, 4, 5, 7, ip, ix, v), *c = NULL;
    CHECK_OK(sbx_sparse_convert(m, SBX_CSC, &c));
    /* column 0: row 1 (2); column 1: row 3 (6); column 2: row 1 (3); column 3: row 3 (5);
     * column 4: rows 1 (1), 3 (4), 3 (7) */
    static const int64_t want_ip[6] = {0, 1, 2, 3, 4, 7}, want_ix[7] = {1, 3, 1, 3, 1, 3, 3};
    static const double want_v[7] = {2, 6, 3, 5, 1, 4, 7};
    assert_memory_equal(c->indptr, want_ip, sizeof want_ip);
    assert_memory_equal(c->indices, want_ix, sizeof want_ix);
    assert_memory_equal(c->data, want_v, sizeof want_v);
    sbx_sparse_free(c);
    sbx_sparse_free(m);
}

static void test_convert_errors(void **state) {
    (void)state;
    for (int fi = 0; fi < 2; fi++) {
        fixture x;
        char where[32];
        sbx_sparse *c = NULL;
        sbx_array *d = NULL;
        fixture_init(&x, (sbx_format)fi);
        x.indices[1] = 4;
        snprintf(where, sizeof where, "%s 0", line_word((sbx_format)fi));
        CHECK_ERR(sbx_sparse_convert(&x.m, other_format((sbx_format)fi), &c), SBX_ERR_FORMAT, "index 4", "position 1",
                  where);
        CHECK_ERR(sbx_sparse_to_dense(&x.m, &d), SBX_ERR_FORMAT, "index 4", "position 1", where);
        x.indices[1] = 3;
        x.indices[4] = -2;
        snprintf(where, sizeof where, "%s 2", line_word((sbx_format)fi));
        CHECK_ERR(sbx_sparse_convert(&x.m, other_format((sbx_format)fi), &c), SBX_ERR_FORMAT, "index -2", "position 4",
                  where);
        CHECK_ERR(sbx_sparse_to_dense(&x.m, &d), SBX_ERR_FORMAT, "index -2", "position 4", where);
        x.indices[4] = INT64_MAX;
        CHECK_ERR(sbx_sparse_convert(&x.m, other_format((sbx_format)fi), &c), SBX_ERR_FORMAT, "9223372036854775807");
        CHECK_ERR(sbx_sparse_to_dense(&x.m, &d), SBX_ERR_FORMAT, "9223372036854775807");
        x.indices[4] = 3;
        x.indptr[2] = 1;
        CHECK_ERR(sbx_sparse_convert(&x.m, other_format((sbx_format)fi), &c), SBX_ERR_FORMAT, "indptr");
        CHECK_ERR(sbx_sparse_to_dense(&x.m, &d), SBX_ERR_FORMAT, "indptr");
        x.indptr[2] = 2;
        CHECK_ERR(sbx_sparse_convert(&x.m, (sbx_format)5, &c), SBX_ERR_ARG, "format 5");
        CHECK_ERR(sbx_sparse_convert(&x.m, SBX_CSR, NULL), SBX_ERR_ARG, "out is NULL");
        CHECK_ERR(sbx_sparse_convert(NULL, SBX_CSR, &c), SBX_ERR_ARG, "NULL");
        assert_null(c);
        assert_null(d);
    }
}

/* ------------------------------------------------------------------------------------------------
 * 5. sort_indices, sum_duplicates, eliminate_zeros
 * ---------------------------------------------------------------------------------------------- */

static void test_sort_indices_by_hand(void **state) {
    (void)state;
    /* line 0: 3 1 3 0 1 with values 10 20 30 40 50; line 1: 2 2 0 with 60 70 80; line 2 empty */
    static const int64_t ip[4] = {0, 5, 8, 8}, ix[8] = {3, 1, 3, 0, 1, 2, 2, 0};
    static const double v[8] = {10, 20, 30, 40, 50, 60, 70, 80};
    static const int64_t want_ix[8] = {0, 1, 1, 3, 3, 0, 2, 2};
    static const double want_v[8] = {40, 20, 50, 10, 30, 80, 60, 70};
    for (int fi = 0; fi < 2; fi++) {
        /* 3 lines of 4 positions: CSR 3 x 4 or CSC 4 x 3 */
        sbx_sparse *m = make_sparse((sbx_format)fi, SBX_FLOAT64, fi == SBX_CSR ? 3 : 4, fi == SBX_CSR ? 4 : 3, 8, ip,
                                    ix, v);
        CHECK_OK(sbx_sparse_sort_indices(m));
        assert_int_equal(m->nnz, 8);
        assert_memory_equal(m->indptr, ip, sizeof ip);
        assert_memory_equal(m->indices, want_ix, sizeof want_ix);
        assert_memory_equal(m->data, want_v, sizeof want_v);
        CHECK_OK(sbx_sparse_validate_structure(m));
        sbx_sparse_free(m);
    }
}

static void test_sort_indices_random_stable(void **state) {
    (void)state;
    rng_seed(505);
    for (int round = 0; round < 60; round++) {
        sbx_format f = (sbx_format)(round & 1);
        int64_t nr = rng_below(25), nc = rng_below(25);
        double density = round % 4 == 0 ? 1.0 : rng_unit();
        sbx_sparse *m = random_sparse(f, SBX_INT64, nr, nc, density, SP_UNSORTED | (round % 3 ? SP_DUPS : 0));
        for (int64_t p = 0; p < m->nnz; p++) ((int64_t *)m->data)[p] = p; /* data = original position */
        sbx_sparse *orig = NULL;
        CHECK_OK(sbx_sparse_copy(m, &orig));
        CHECK_OK(sbx_sparse_sort_indices(m));
        assert_int_equal(m->nnz, orig->nnz);
        assert_memory_equal(m->indptr, orig->indptr, (size_t)(sbx_sparse_major(m) + 1) * sizeof(int64_t));
        CHECK_OK(sbx_sparse_validate_structure(m));
        if (!(round % 3)) CHECK_OK(sbx_sparse_validate(m));
        int64_t major = sbx_sparse_major(m);
        const int64_t *pos = m->data;
        for (int64_t k = 0; k < major; k++)
            for (int64_t q = m->indptr[k]; q < m->indptr[k + 1]; q++) {
                /* the entry came from the same line, with its index */
                assert_true(pos[q] >= orig->indptr[k] && pos[q] < orig->indptr[k + 1]);
                assert_int_equal(orig->indices[pos[q]], m->indices[q]);
                if (q > m->indptr[k]) {
                    assert_true(m->indices[q - 1] <= m->indices[q]);
                    if (m->indices[q - 1] == m->indices[q]) assert_true(pos[q - 1] < pos[q]); /* stable */
                }
            }
        /* every original position appears once */
        unsigned char *seen = xcalloc(m->nnz, 1);
        for (int64_t q = 0; q < m->nnz; q++) {
            assert_false(seen[pos[q]]);
            seen[pos[q]] = 1;
        }
        free(seen);
        /* sorting a sorted matrix changes nothing */
        sbx_sparse *sorted = NULL;
        CHECK_OK(sbx_sparse_copy(m, &sorted));
        CHECK_OK(sbx_sparse_sort_indices(m));
        assert_true(sparse_same(m, sorted));
        sbx_sparse_free(sorted);
        sbx_sparse_free(orig);
        sbx_sparse_free(m);
    }
    fixture x;
    fixture_init(&x, SBX_CSR);
    x.indices[0] = 9;
    CHECK_ERR(sbx_sparse_sort_indices(&x.m), SBX_ERR_FORMAT, "index 9", "position 0");
    CHECK_ERR(sbx_sparse_sort_indices(NULL), SBX_ERR_ARG, "NULL");
}

/* One line (a 1 x ncols CSR matrix): sum_duplicates must give want_ix / want_v. */
static void check_sum_dup_line(sbx_dtype t, int64_t ncols, int64_t nnz, const int64_t *ix, const double *v,
                               int64_t want_nnz, const int64_t *want_ix, const double *want_v) {
    int64_t ip[2] = {0, nnz};
    sbx_sparse *m = make_sparse(SBX_CSR, t, 1, ncols, nnz, ip, ix, v);
    CHECK_OK(sbx_sparse_sum_duplicates(m));
    assert_int_equal(m->nnz, want_nnz);
    assert_int_equal(m->indptr[0], 0);
    assert_int_equal(m->indptr[1], want_nnz);
    CHECK_OK(sbx_sparse_validate(m));
    unsigned char *want = xcalloc(want_nnz, esz(t));
    for (int64_t p = 0; p < want_nnz; p++) {
        assert_int_equal(m->indices[p], want_ix[p]);
        set_f64(want, t, p, want_v[p]);
    }
    ASSERT_DENSE_EQ(m->data, want, t, want_nnz, sbx_dtype_name(t));
    free(want);
    sbx_sparse_free(m);
}

static void test_sum_duplicates_by_hand(void **state) {
    (void)state;
    {
        static const int64_t ix[5] = {3, 1, 3, 1, 0}, wix[3] = {0, 1, 3};
        static const double v[5] = {1, 2, 4, 8, 16}, wv[3] = {16, 10, 5};
        check_sum_dup_line(SBX_FLOAT64, 5, 5, ix, v, 3, wix, wv);
        check_sum_dup_line(SBX_FLOAT32, 5, 5, ix, v, 3, wix, wv);
        check_sum_dup_line(SBX_INT32, 5, 5, ix, v, 3, wix, wv);
    }
    { /* bool: or-ed, never 2; a false entry stays stored */
        static const int64_t ix[6] = {2, 2, 0, 4, 4, 1}, wix[4] = {0, 1, 2, 4};
        static const double v[6] = {0, 1, 0, 1, 1, 0}, wv[4] = {0, 0, 1, 1};
        check_sum_dup_line(SBX_BOOL, 6, 6, ix, v, 4, wix, wv);
    }
    { /* integers wrap like numpy */
        static const int64_t ix[4] = {2, 0, 2, 2}, wix[2] = {0, 2};
        static const double u8[4] = {250, 1, 10, 0}, wu8[2] = {1, 4};
        check_sum_dup_line(SBX_UINT8, 4, 4, ix, u8, 2, wix, wu8);
        static const double i8[4] = {127, 1, 1, 0}, wi8[2] = {1, -128};
        check_sum_dup_line(SBX_INT8, 4, 4, ix, i8, 2, wix, wi8);
        static const double i16[4] = {-32768, 5, -1, 0}, wi16[2] = {5, 32767};
        check_sum_dup_line(SBX_INT16, 4, 4, ix, i16, 2, wix, wi16);
        static const double u16[4] = {65535, 7, 2, 0}, wu16[2] = {7, 1};
        check_sum_dup_line(SBX_UINT16, 4, 4, ix, u16, 2, wix, wu16);
        static const double u32[4] = {4294967295.0, 7, 3, 0}, wu32[2] = {7, 2};
        check_sum_dup_line(SBX_UINT32, 4, 4, ix, u32, 2, wix, wu32);
        static const double i32[4] = {2147483647.0, 7, 1, 0}, wi32[2] = {7, -2147483648.0};
        check_sum_dup_line(SBX_INT32, 4, 4, ix, i32, 2, wix, wi32);
    }
    { /* 64-bit wrap, written bit for bit */
        static const int64_t ip[2] = {0, 3}, ix[3] = {1, 1, 1};
        static const double zero[3] = {0, 0, 0};
        sbx_sparse *m = make_sparse(SBX_CSR, SBX_UINT64, 1, 3, 3, ip, ix, zero);
        ((uint64_t *)m->data)[0] = UINT64_MAX;
        ((uint64_t *)m->data)[1] = 2;
        ((uint64_t *)m->data)[2] = 5;
        CHECK_OK(sbx_sparse_sum_duplicates(m));
        assert_int_equal(m->nnz, 1);
        assert_int_equal(((uint64_t *)m->data)[0], 6);
        sbx_sparse_free(m);
        m = make_sparse(SBX_CSC, SBX_INT64, 3, 1, 3, ip, ix, zero);
        ((int64_t *)m->data)[0] = INT64_MAX;
        ((int64_t *)m->data)[1] = 1;
        ((int64_t *)m->data)[2] = 0;
        CHECK_OK(sbx_sparse_sum_duplicates(m));
        assert_int_equal(m->nnz, 1);
        assert_true(((int64_t *)m->data)[0] == INT64_MIN);
        sbx_sparse_free(m);
    }
    { /* several lines, empty ones in between: CSC 3 x 4 */
        static const int64_t ip[5] = {0, 3, 3, 5, 5}, ix[5] = {2, 0, 2, 1, 1};
        static const double v[5] = {1, 2, 3, 4, 5};
        sbx_sparse *m = make_sparse(SBX_CSC, SBX_FLOAT64, 3, 4, 5, ip, ix, v);
        CHECK_OK(sbx_sparse_sum_duplicates(m));
        static const int64_t want_ip[5] = {0, 2, 2, 3, 3}, want_ix[3] = {0, 2, 1};
        static const double want_v[3] = {2, 4, 9};
        assert_int_equal(m->nnz, 3);
        assert_memory_equal(m->indptr, want_ip, sizeof want_ip);
        assert_memory_equal(m->indices, want_ix, sizeof want_ix);
        assert_memory_equal(m->data, want_v, sizeof want_v);
        sbx_sparse_free(m);
    }
    fixture x;
    fixture_init(&x, SBX_CSC);
    x.indices[2] = -1;
    CHECK_ERR(sbx_sparse_sum_duplicates(&x.m), SBX_ERR_FORMAT, "index -1");
}

static void test_sum_duplicates_random(void **state) {
    (void)state;
    rng_seed(606);
    for (int ti = 0; ti < SBX_NUM_DTYPES; ti++)
        for (int round = 0; round < 12; round++) {
            sbx_format f = (sbx_format)(round & 1);
            int64_t nr = rng_below(20), nc = rng_below(20);
            int flags = (round & 2 ? SP_UNSORTED : 0) | SP_DUPS | (round % 3 == 0 ? SP_SPECIAL : 0);
            sbx_sparse *m = random_sparse(f, (sbx_dtype)ti, nr, nc, round % 5 == 0 ? 1.0 : rng_unit(), flags);
            void *before = ref_dense(m);
            int64_t nnz = m->nnz;
            CHECK_OK(sbx_sparse_sum_duplicates(m));
            CHECK_OK(sbx_sparse_validate(m));
            assert_true(m->nnz <= nnz);
            void *after = ref_dense(m);
            ASSERT_DENSE_EQ(after, before, (sbx_dtype)ti, nr * nc, "sum_duplicates");
            free(before);
            free(after);
            sbx_sparse_free(m);
        }
}

static void test_eliminate_zeros_by_hand(void **state) {
    (void)state;
    /* CSR 3 x 5: row 0 {0, NaN, -0.0, 1.5, 0}, row 1 {0, 0}, row 2 {7} */
    static const int64_t ip[4] = {0, 5, 7, 8}, ix[8] = {4, 0, 1, 2, 3, 1, 0, 2};
    const double v[8] = {0.0, NAN, -0.0, 1.5, 0.0, 0.0, 0.0, 7.0};
    sbx_sparse *m = make_sparse(SBX_CSR, SBX_FLOAT64, 3, 5, 8, ip, ix, v);
    CHECK_OK(sbx_sparse_eliminate_zeros(m));
    static const int64_t want_ip[4] = {0, 2, 2, 3}, want_ix[3] = {0, 2, 2};
    assert_int_equal(m->nnz, 3);
    assert_memory_equal(m->indptr, want_ip, sizeof want_ip);
    assert_memory_equal(m->indices, want_ix, sizeof want_ix);
    assert_true(isnan(((double *)m->data)[0]));
    assert_true(((double *)m->data)[1] == 1.5);
    assert_true(((double *)m->data)[2] == 7.0);
    sbx_sparse_free(m);

    /* every dtype: zeros go, the order of the rest is kept (also unsorted, with duplicates) */
    rng_seed(707);
    for (int ti = 0; ti < SBX_NUM_DTYPES; ti++)
        for (int round = 0; round < 8; round++) {
            sbx_dtype t = (sbx_dtype)ti;
            sbx_sparse *r = random_sparse((sbx_format)(round & 1), t, rng_below(15), rng_below(15), 0.6,
                                          SP_SPECIAL | (round & 2 ? SP_UNSORTED | SP_DUPS : 0));
            for (int64_t p = 0; p < r->nnz; p++)
                if (rng_below(4) == 0) memset((char *)r->data + (size_t)p * esz(t), 0, esz(t));
            int64_t major = sbx_sparse_major(r), kept = 0;
            int64_t *wip = xcalloc(major + 1, sizeof *wip), *wix = xcalloc(r->nnz, sizeof *wix);
            unsigned char *wv = xcalloc(r->nnz, esz(t));
            for (int64_t k = 0; k < major; k++) {
                for (int64_t p = r->indptr[k]; p < r->indptr[k + 1]; p++)
                    if (is_nonzero(r->data, t, p)) {
                        wix[kept] = r->indices[p];
                        memcpy(wv + (size_t)kept * esz(t), (char *)r->data + (size_t)p * esz(t), esz(t));
                        kept++;
                    }
                wip[k + 1] = kept;
            }
            CHECK_OK(sbx_sparse_eliminate_zeros(r));
            assert_int_equal(r->nnz, kept);
            assert_memory_equal(r->indptr, wip, (size_t)(major + 1) * sizeof *wip);
            if (kept > 0) {
                assert_memory_equal(r->indices, wix, (size_t)kept * sizeof *wix);
                assert_memory_equal(r->data, wv, (size_t)kept * esz(t));
            }
            CHECK_OK(sbx_sparse_validate_structure(r));
            free(wip);
            free(wix);
            free(wv);
            sbx_sparse_free(r);
        }
    fixture x;
    fixture_init(&x, SBX_CSR);
    x.indptr[3] = 9;
    CHECK_ERR(sbx_sparse_eliminate_zeros(&x.m), SBX_ERR_FORMAT, "indptr[3] = 9");
    CHECK_ERR(sbx_sparse_eliminate_zeros(NULL), SBX_ERR_ARG, "NULL");
}

/* The in-place functions work in the arrays of a matrix the caller built: they never free or replace
 * them (AddressSanitizer would flag a free of these stack arrays). */
static void test_in_place_on_caller_arrays(void **state) {
    (void)state;
    int64_t indptr[4] = {0, 4, 4, 7}, indices[7] = {3, 1, 3, 0, 2, 0, 2};
    double data[7] = {1, 2, 4, 8, 16, 32, 64};
    sbx_sparse m = {SBX_CSR, SBX_FLOAT64, 3, 4, 7, indptr, indices, data};

    CHECK_OK(sbx_sparse_sort_indices(&m));
    assert_ptr_equal(m.indptr, indptr);
    assert_ptr_equal(m.indices, indices);
    assert_ptr_equal(m.data, data);
    static const int64_t sorted_ix[7] = {0, 1, 3, 3, 0, 2, 2};
    static const double sorted_v[7] = {8, 2, 1, 4, 32, 16, 64};
    assert_memory_equal(indices, sorted_ix, sizeof sorted_ix);
    assert_memory_equal(data, sorted_v, sizeof sorted_v);

    /* unsorted again, then sum_duplicates (which sorts first) */
    static const int64_t ix0[7] = {3, 1, 3, 0, 2, 0, 2};
    static const double v0[7] = {1, 2, 4, 8, 16, 32, 64};
    memcpy(indices, ix0, sizeof ix0);
    memcpy(data, v0, sizeof v0);
    CHECK_OK(sbx_sparse_sum_duplicates(&m));
    assert_ptr_equal(m.indptr, indptr);
    assert_ptr_equal(m.indices, indices);
    assert_ptr_equal(m.data, data);
    static const int64_t sum_ip[4] = {0, 3, 3, 5}, sum_ix[5] = {0, 1, 3, 0, 2};
    static const double sum_v[5] = {8, 2, 5, 32, 80};
    assert_int_equal(m.nnz, 5);
    assert_memory_equal(indptr, sum_ip, sizeof sum_ip);
    assert_memory_equal(indices, sum_ix, sizeof sum_ix);
    assert_memory_equal(data, sum_v, sizeof sum_v);
    CHECK_OK(sbx_sparse_validate(&m));

    data[1] = 0.0;
    data[3] = -0.0;
    CHECK_OK(sbx_sparse_eliminate_zeros(&m));
    assert_ptr_equal(m.indptr, indptr);
    assert_ptr_equal(m.indices, indices);
    assert_ptr_equal(m.data, data);
    static const int64_t el_ip[4] = {0, 2, 2, 3}, el_ix[3] = {0, 3, 2};
    static const double el_v[3] = {8, 5, 80};
    assert_int_equal(m.nnz, 3);
    assert_memory_equal(indptr, el_ip, sizeof el_ip);
    assert_memory_equal(indices, el_ix, sizeof el_ix);
    assert_memory_equal(data, el_v, sizeof el_v);

    /* no entries, no indices or data arrays at all */
    int64_t empty_ip[3] = {0, 0, 0};
    sbx_sparse e = {SBX_CSC, SBX_UINT8, 5, 2, 0, empty_ip, NULL, NULL};
    CHECK_OK(sbx_sparse_sort_indices(&e));
    CHECK_OK(sbx_sparse_sum_duplicates(&e));
    CHECK_OK(sbx_sparse_eliminate_zeros(&e));
    assert_int_equal(e.nnz, 0);
    assert_null(e.indices);
    assert_null(e.data);
    assert_ptr_equal(e.indptr, empty_ip);
    CHECK_OK(sbx_sparse_validate(&e));
}

/* ------------------------------------------------------------------------------------------------
 * 6. Structured dot products
 * ---------------------------------------------------------------------------------------------- */

static sbx_array *random_dense(sbx_dtype t, int64_t rows, int64_t cols) {
    int64_t shape[2] = {rows, cols};
    sbx_array *a = NULL;
    CHECK_OK(sbx_array_create(t, 2, shape, &a));
    for (int64_t i = 0; i < rows * cols; i++) set_f64(a->data, t, i, rng_unit() * 2.0 - 1.0);
    return a;
}

/* Dense double forms of a sparse matrix: values summed, and the sums of absolute values. */
static void sparse_f64(const sbx_sparse *m, double *val, double *absval) {
    int64_t major = sbx_sparse_major(m);
    for (int64_t k = 0; k < major; k++)
        for (int64_t p = m->indptr[k]; p < m->indptr[k + 1]; p++) {
            int64_t j = m->indices[p], cell = m->format == SBX_CSR ? k * m->ncols + j : j * m->ncols + k;
            double v = get_f64(m->data, m->dtype, p);
            val[cell] += v;
            absval[cell] += fabs(v);
        }
}

static void dense_f64(const sbx_array *a, double *val, double *absval) {
    int64_t n = sbx_array_numel(a);
    for (int64_t i = 0; i < n; i++) {
        val[i] = get_f64(a->data, a->dtype, i);
        absval[i] = fabs(val[i]);
    }
}

/* c must equal a (m x k) times b (k x n), given as dense double forms with their absolute values:
 * per element |got - want| <= rel * sum_p |a_ip| |b_pj|, rel = 1e-12 (float64) or 1e-5 (float32).
 * The reference is the plain triple loop (p outermost, skipping zeros). */
#define CHECK_PRODUCT(a, aa, b, ba, m, k, n, c, t, what) \
    check_product_at((a), (aa), (b), (ba), (m), (k), (n), (c), (t), (what), __FILE__, __LINE__)

static void check_product_at(const double *a, const double *aa, const double *b, const double *ba, int64_t m,
                             int64_t k, int64_t n, const sbx_array *c, sbx_dtype t, const char *what, const char *file,
                             int line) {
    array_shape_at(c, t, m, n, file, line);
    double *want = xcalloc(m * n, sizeof *want), *bound = xcalloc(m * n, sizeof *bound);
    int64_t *rows = xcalloc(m, sizeof *rows), *cols = xcalloc(n, sizeof *cols);
    for (int64_t p = 0; p < k; p++) {
        int64_t nr = 0, nc = 0;
        for (int64_t i = 0; i < m; i++)
            if (aa[i * k + p] != 0.0) rows[nr++] = i;
        for (int64_t j = 0; j < n; j++)
            if (ba[p * n + j] != 0.0) cols[nc++] = j;
        for (int64_t r = 0; r < nr; r++)
            for (int64_t q = 0; q < nc; q++) {
                int64_t i = rows[r], j = cols[q];
                want[i * n + j] += a[i * k + p] * b[p * n + j];
                bound[i * n + j] += aa[i * k + p] * ba[p * n + j];
            }
    }
    double rel = t == SBX_FLOAT64 ? 1e-12 : 1e-5;
    for (int64_t i = 0; i < m * n; i++) {
        double got = get_f64(c->data, t, i);
        if (!(fabs(got - want[i]) <= rel * bound[i])) {
            print_error("%s: element (%lld, %lld) = %.17g, want %.17g (tolerance %.3g)\n", what, (long long)(i / n),
                        (long long)(i % n), got, want[i], rel * bound[i]);
            free(want), free(bound), free(rows), free(cols);
            _fail(file, line);
            return;
        }
    }
    free(want);
    free(bound);
    free(rows);
    free(cols);
}

static void dot_case(int64_t m, int64_t k, int64_t n, double density, sbx_dtype t, sbx_format f, int flags) {
    char what[160];
    double *a = xcalloc(m * k, sizeof(double)), *aa = xcalloc(m * k, sizeof(double));
    double *b = xcalloc(k * n, sizeof(double)), *ba = xcalloc(k * n, sizeof(double));
    sbx_array *c = NULL;

    /* sparse (m x k) times dense (k x n) */
    snprintf(what, sizeof what, "sparse_dot_dense %s %s %lldx%lld * %lldx%lld density %g flags %d", sbx_dtype_name(t),
             sbx_format_name(f), (long long)m, (long long)k, (long long)k, (long long)n, density, flags);
    sbx_sparse *sa = random_sparse(f, t, m, k, density, flags);
    sbx_array *db = random_dense(t, k, n);
    sparse_f64(sa, a, aa);
    dense_f64(db, b, ba);
    CHECK_OK(sbx_sparse_dot_dense(sa, db, &c));
    CHECK_PRODUCT(a, aa, b, ba, m, k, n, c, t, what);
    sbx_array_free(c);
    sbx_array_free(db);
    sbx_sparse_free(sa);

    /* dense (m x k) times sparse (k x n) */
    snprintf(what, sizeof what, "dense_dot_sparse %s %s %lldx%lld * %lldx%lld density %g flags %d", sbx_dtype_name(t),
             sbx_format_name(f), (long long)m, (long long)k, (long long)k, (long long)n, density, flags);
    memset(b, 0, (size_t)(k * n) * sizeof(double));
    memset(ba, 0, (size_t)(k * n) * sizeof(double));
    sbx_array *da = random_dense(t, m, k);
    sbx_sparse *sb = random_sparse(f, t, k, n, density, flags);
    dense_f64(da, a, aa);
    sparse_f64(sb, b, ba);
    c = NULL;
    CHECK_OK(sbx_dense_dot_sparse(da, sb, &c));
    CHECK_PRODUCT(a, aa, b, ba, m, k, n, c, t, what);
    sbx_array_free(c);
    sbx_array_free(da);
    sbx_sparse_free(sb);
    free(a);
    free(aa);
    free(b);
    free(ba);
}

static void test_dot_random(void **state) {
    (void)state;
    rng_seed(808);
    static const int64_t dims[] = {0, 1, 2, 3, 7, 17, 64, 65};
    static const double densities[] = {0.0, 0.05, 0.3, 1.0};
    static const int variants[] = {0, SP_UNSORTED, SP_UNSORTED | SP_DUPS, SP_DUPS};
    const int nd = (int)(sizeof dims / sizeof dims[0]);
    /* Every (m, k, n) combination and density, twice (float32 and float64); the format and the index
     * order (sorted, unsorted, with duplicates) cycle with the case number. */
    int64_t index = 0;
    for (int mi = 0; mi < nd; mi++)
        for (int ki = 0; ki < nd; ki++)
            for (int ni = 0; ni < nd; ni++)
                for (size_t di = 0; di < sizeof densities / sizeof densities[0]; di++)
                    for (int ti = 0; ti < 2; ti++) {
                        index++;
                        sbx_dtype t = ti ? SBX_FLOAT64 : SBX_FLOAT32;
                        sbx_format f = (sbx_format)((index >> 1) & 1);
                        int flags = variants[(index >> 2) % 4];
                        dot_case(dims[mi], dims[ki], dims[ni], densities[di], t, f, flags);
                    }
}

static void test_dot_errors(void **state) {
    (void)state;
    rng_seed(909);
    for (int fi = 0; fi < 2; fi++) {
        sbx_format f = (sbx_format)fi;
        sbx_sparse *a = random_sparse(f, SBX_FLOAT64, 3, 5, 0.6, 0); /* 3 x 5 */
        sbx_sparse *b = random_sparse(f, SBX_FLOAT64, 3, 2, 0.6, 0); /* 3 x 2 */
        sbx_array *d52 = random_dense(SBX_FLOAT64, 5, 2), *d43 = random_dense(SBX_FLOAT64, 4, 3);
        sbx_array *d42 = random_dense(SBX_FLOAT64, 4, 2);
        sbx_array *f52 = random_dense(SBX_FLOAT32, 5, 2), *f43 = random_dense(SBX_FLOAT32, 4, 3);
        sbx_array *c = NULL;

        /* NULL arguments */
        CHECK_ERR(sbx_sparse_dot_dense(NULL, d52, &c), SBX_ERR_ARG, "NULL");
        CHECK_ERR(sbx_sparse_dot_dense(a, NULL, &c), SBX_ERR_ARG, "dense b", "NULL");
        CHECK_ERR(sbx_sparse_dot_dense(a, d52, NULL), SBX_ERR_ARG, "out is NULL");
        CHECK_ERR(sbx_dense_dot_sparse(NULL, b, &c), SBX_ERR_ARG, "dense a", "NULL");
        CHECK_ERR(sbx_dense_dot_sparse(d43, NULL, &c), SBX_ERR_ARG, "NULL");
        CHECK_ERR(sbx_dense_dot_sparse(d43, b, NULL), SBX_ERR_ARG, "out is NULL");

        /* dtype mismatch between the operands */
        CHECK_ERR(sbx_sparse_dot_dense(a, f52, &c), SBX_ERR_ARG, "float32", "float64");
        CHECK_ERR(sbx_dense_dot_sparse(f43, b, &c), SBX_ERR_ARG, "float32", "float64");

        /* non-float dtypes, even when both operands agree */
        for (int ti = SBX_INT8; ti < SBX_NUM_DTYPES; ti++) {
            sbx_dtype t = (sbx_dtype)ti;
            sbx_sparse *ia = NULL, *ib = NULL;
            sbx_array *i52 = NULL, *i43 = NULL;
            int64_t s52[2] = {5, 2}, s43[2] = {4, 3};
            CHECK_OK(sbx_sparse_cast(a, SBX_BOOL, &ia)); /* any structure; values are irrelevant */
            sbx_sparse *tmp = NULL;
            CHECK_OK(sbx_sparse_cast(ia, t, &tmp));
            sbx_sparse_free(ia);
            ia = tmp;
            CHECK_OK(sbx_sparse_cast(b, SBX_BOOL, &tmp));
            CHECK_OK(sbx_sparse_cast(tmp, t, &ib));
            sbx_sparse_free(tmp);
            CHECK_OK(sbx_array_create(t, 2, s52, &i52));
            CHECK_OK(sbx_array_create(t, 2, s43, &i43));
            CHECK_ERR(sbx_sparse_dot_dense(ia, i52, &c), SBX_ERR_ARG, sbx_dtype_name(t), "float32 or float64");
            CHECK_ERR(sbx_dense_dot_sparse(i43, ib, &c), SBX_ERR_ARG, sbx_dtype_name(t), "float32 or float64");
            sbx_array_free(i52);
            sbx_array_free(i43);
            sbx_sparse_free(ia);
            sbx_sparse_free(ib);
        }

        /* inner-dimension mismatch */
        CHECK_ERR(sbx_sparse_dot_dense(a, d42, &c), SBX_ERR_ARG, "4 rows", "5 columns");
        CHECK_ERR(sbx_dense_dot_sparse(d42, b, &c), SBX_ERR_ARG, "2 columns", "3 rows");

        /* dense operand not 2-d */
        int64_t shape[3] = {5, 2, 1};
        sbx_array *v1 = NULL, *v3 = NULL, *v0 = NULL;
        CHECK_OK(sbx_array_create(SBX_FLOAT64, 1, shape, &v1));
        CHECK_OK(sbx_array_create(SBX_FLOAT64, 3, shape, &v3));
        CHECK_OK(sbx_array_create(SBX_FLOAT64, 0, shape, &v0));
        CHECK_ERR(sbx_sparse_dot_dense(a, v1, &c), SBX_ERR_ARG, "dense b", "1 dimensions");
        CHECK_ERR(sbx_sparse_dot_dense(a, v3, &c), SBX_ERR_ARG, "dense b", "3 dimensions");
        CHECK_ERR(sbx_dense_dot_sparse(v1, b, &c), SBX_ERR_ARG, "dense a", "1 dimensions");
        CHECK_ERR(sbx_dense_dot_sparse(v0, b, &c), SBX_ERR_ARG, "dense a", "0 dimensions");
        sbx_array_free(v1);
        sbx_array_free(v3);
        sbx_array_free(v0);

        /* dense operand with elements but no data */
        void *saved = d52->data;
        d52->data = NULL;
        CHECK_ERR(sbx_sparse_dot_dense(a, d52, &c), SBX_ERR_ARG, "dense b", "NULL");
        d52->data = saved;

        /* out-of-range index in the sparse operand */
        if (a->nnz > 0 && b->nnz > 0) {
            int64_t ka = a->indices[0], kb = b->indices[b->nnz - 1];
            a->indices[0] = sbx_sparse_minor(a);
            CHECK_ERR(sbx_sparse_dot_dense(a, d52, &c), SBX_ERR_FORMAT, "outside", "position 0");
            a->indices[0] = -1;
            CHECK_ERR(sbx_sparse_dot_dense(a, d52, &c), SBX_ERR_FORMAT, "index -1", "position 0");
            a->indices[0] = ka;
            b->indices[b->nnz - 1] = 1000;
            CHECK_ERR(sbx_dense_dot_sparse(d43, b, &c), SBX_ERR_FORMAT, "index 1000");
            b->indices[b->nnz - 1] = INT64_MIN;
            CHECK_ERR(sbx_dense_dot_sparse(d43, b, &c), SBX_ERR_FORMAT, "-9223372036854775808");
            b->indices[b->nnz - 1] = kb;
        } else {
            fail_msg("random operands came out empty (%lld, %lld)", (long long)a->nnz, (long long)b->nnz);
        }
        /* huge but empty extents: (3 x 2^62, no entries) times (2^62 x 0), (0 x 2^62) times (2^62 x 3) */
        {
            const int64_t big = INT64_C(1) << 62;
            int64_t s_right[2] = {big, 0}, s_left[2] = {0, big};
            sbx_sparse *hl = NULL, *hr = NULL;
            sbx_array *dr = NULL, *dl = NULL;
            CHECK_OK(sbx_sparse_create(SBX_CSR, SBX_FLOAT64, 3, big, 0, &hl));
            CHECK_OK(sbx_sparse_create(SBX_CSC, SBX_FLOAT64, big, 3, 0, &hr));
            CHECK_OK(sbx_array_create(SBX_FLOAT64, 2, s_right, &dr));
            CHECK_OK(sbx_array_create(SBX_FLOAT64, 2, s_left, &dl));
            CHECK_OK(sbx_sparse_dot_dense(hl, dr, &c));
            ASSERT_ARRAY_SHAPE(c, SBX_FLOAT64, 3, 0);
            sbx_array_free(c);
            c = NULL;
            CHECK_OK(sbx_dense_dot_sparse(dl, hr, &c));
            ASSERT_ARRAY_SHAPE(c, SBX_FLOAT64, 0, 3);
            sbx_array_free(c);
            c = NULL;
            sbx_array_free(dr);
            sbx_array_free(dl);
            sbx_sparse_free(hl);
            sbx_sparse_free(hr);
        }

        /* broken indptr */
        a->indptr[1] = a->nnz + 1;
        CHECK_ERR(sbx_sparse_dot_dense(a, d52, &c), SBX_ERR_FORMAT, "indptr");
        assert_null(c);

        sbx_array_free(d52);
        sbx_array_free(d43);
        sbx_array_free(d42);
        sbx_array_free(f52);
        sbx_array_free(f43);
        sbx_sparse_free(a);
        sbx_sparse_free(b);
    }
}

/* Operands without elements may have NULL arrays, as the headers allow ("NULL allowed when nnz == 0",
 * "may be NULL when numel == 0"). */
static void test_null_arrays_when_empty(void **state) {
    (void)state;
    int64_t ip1[1] = {0}, ip4[4] = {0, 0, 0, 0};
    sbx_sparse rows3 = {SBX_CSR, SBX_FLOAT64, 3, 0, 0, ip4, NULL, NULL}; /* 3 x 0 */
    sbx_sparse cols0 = {SBX_CSC, SBX_FLOAT64, 3, 0, 0, ip1, NULL, NULL}; /* 3 x 0 */
    sbx_sparse full = {SBX_CSR, SBX_FLOAT64, 3, 4, 0, ip4, NULL, NULL};  /* 3 x 4, no entries */
    sbx_array d04 = {SBX_FLOAT64, 2, {0, 4, 0, 0, 0, 0, 0, 0}, NULL};
    sbx_array *c = NULL;

    /* (3 x 0 sparse) times (0 x 4 dense without data): zeros */
    CHECK_OK(sbx_sparse_dot_dense(&rows3, &d04, &c));
    ASSERT_ARRAY_SHAPE(c, SBX_FLOAT64, 3, 4);
    for (int i = 0; i < 12; i++) assert_true(((double *)c->data)[i] == 0.0);
    sbx_array_free(c);
    c = NULL;
    CHECK_OK(sbx_sparse_dot_dense(&cols0, &d04, &c));
    ASSERT_ARRAY_SHAPE(c, SBX_FLOAT64, 3, 4);
    for (int i = 0; i < 12; i++) assert_true(((double *)c->data)[i] == 0.0);
    sbx_array_free(c);

    sbx_sparse *m = NULL;
    CHECK_OK(sbx_sparse_from_dense(&d04, SBX_CSC, &m));
    assert_int_equal(m->nnz, 0);
    assert_int_equal(m->nrows, 0);
    assert_int_equal(m->ncols, 4);
    sbx_sparse_free(m);

    sbx_sparse *out = NULL;
    CHECK_OK(sbx_sparse_convert(&full, SBX_CSC, &out));
    assert_int_equal(out->nnz, 0);
    CHECK_OK(sbx_sparse_validate(out));
    sbx_sparse_free(out);
    out = NULL;
    CHECK_OK(sbx_sparse_transpose(&full, &out));
    assert_int_equal(out->nrows, 4);
    CHECK_OK(sbx_sparse_validate(out));
    sbx_sparse_free(out);
    out = NULL;
    CHECK_OK(sbx_sparse_cast(&full, SBX_UINT16, &out));
    assert_int_equal(out->dtype, SBX_UINT16);
    sbx_sparse_free(out);
    sbx_array *d = NULL;
    CHECK_OK(sbx_sparse_to_dense(&full, &d));
    ASSERT_ARRAY_SHAPE(d, SBX_FLOAT64, 3, 4);
    for (int i = 0; i < 12; i++) assert_true(((double *)d->data)[i] == 0.0);
    sbx_array_free(d);
}

/* A dense operand with no elements but a nonzero extent, and data NULL (allowed: numel == 0), in each
 * of the four kernels. Listed last: under UndefinedBehaviorSanitizer (-fno-sanitize-recover) the
 * library's pointer arithmetic on that NULL (NULL + 0) stops the whole executable. */
static void test_dot_empty_dense_without_data(void **state) {
    (void)state;
    int64_t ip1[1] = {0}, ip5[5] = {0, 0, 0, 0, 0}, ip6[6] = {0, 1, 2, 3, 4, 5}, ix[5] = {0, 1, 2, 0, 1};
    double v[5] = {1, 2, 3, 4, 5};
    sbx_array d30 = {SBX_FLOAT64, 2, {3, 0, 0, 0, 0, 0, 0, 0}, NULL}; /* 3 x 0 */
    sbx_array d50 = {SBX_FLOAT64, 2, {5, 0, 0, 0, 0, 0, 0, 0}, NULL}; /* 5 x 0 */
    sbx_array *c = NULL;

    /* (3 x 0 dense) times (0 x 4 sparse): 3 x 4 zeros */
    sbx_sparse csc04 = {SBX_CSC, SBX_FLOAT64, 0, 4, 0, ip5, NULL, NULL};
    CHECK_OK(sbx_dense_dot_sparse(&d30, &csc04, &c));
    ASSERT_ARRAY_SHAPE(c, SBX_FLOAT64, 3, 4);
    for (int i = 0; i < 12; i++) assert_true(((double *)c->data)[i] == 0.0);
    sbx_array_free(c);
    c = NULL;
    sbx_sparse csr04 = {SBX_CSR, SBX_FLOAT64, 0, 4, 0, ip1, NULL, NULL};
    CHECK_OK(sbx_dense_dot_sparse(&d30, &csr04, &c));
    ASSERT_ARRAY_SHAPE(c, SBX_FLOAT64, 3, 4);
    for (int i = 0; i < 12; i++) assert_true(((double *)c->data)[i] == 0.0);
    sbx_array_free(c);
    c = NULL;

    /* (3 x 5 sparse, 5 entries) times (5 x 0 dense): 3 x 0; (5 x 3 sparse) times (3 x 0 dense): 5 x 0 */
    sbx_sparse csc35 = {SBX_CSC, SBX_FLOAT64, 3, 5, 5, ip6, ix, v};
    CHECK_OK(sbx_sparse_dot_dense(&csc35, &d50, &c));
    ASSERT_ARRAY_SHAPE(c, SBX_FLOAT64, 3, 0);
    sbx_array_free(c);
    c = NULL;
    sbx_sparse csr53 = {SBX_CSR, SBX_FLOAT64, 5, 3, 5, ip6, ix, v};
    CHECK_OK(sbx_sparse_dot_dense(&csr53, &d30, &c));
    ASSERT_ARRAY_SHAPE(c, SBX_FLOAT64, 5, 0);
    sbx_array_free(c);
}

/* ------------------------------------------------------------------------------------------------
 * 7. Thread-count independence
 * ---------------------------------------------------------------------------------------------- */

static void test_dot_thread_count_independent(void **state) {
    (void)state;
    rng_seed(1010);
    for (int ti = 0; ti < 2; ti++)
        for (int fi = 0; fi < 2; fi++) {
            sbx_dtype t = ti ? SBX_FLOAT64 : SBX_FLOAT32;
            sbx_format f = (sbx_format)fi;
            sbx_sparse *s = random_sparse(f, t, 2000, 300, 0.05, 0);
            sbx_array *right = random_dense(t, 300, 33), *left = random_dense(t, 33, 2000);
            sbx_array *c1 = NULL, *c2 = NULL, *e1 = NULL, *e2 = NULL;

            sbx_set_num_threads(1);
            assert_int_equal(sbx_get_num_threads(), 1);
            CHECK_OK(sbx_sparse_dot_dense(s, right, &c1));
            CHECK_OK(sbx_dense_dot_sparse(left, s, &e1));
            sbx_set_num_threads(2);
            assert_int_equal(sbx_get_num_threads(), 2);
            CHECK_OK(sbx_sparse_dot_dense(s, right, &c2));
            CHECK_OK(sbx_dense_dot_sparse(left, s, &e2));
            sbx_set_num_threads(0);

            ASSERT_ARRAY_SHAPE(c1, t, 2000, 33);
            ASSERT_ARRAY_SHAPE(c2, t, 2000, 33);
            ASSERT_ARRAY_SHAPE(e1, t, 33, 300);
            ASSERT_ARRAY_SHAPE(e2, t, 33, 300);
            assert_memory_equal(c1->data, c2->data, (size_t)(2000 * 33) * esz(t));
            assert_memory_equal(e1->data, e2->data, (size_t)(33 * 300) * esz(t));

            /* and the two-thread results are right */
            double *a = xcalloc(2000 * 300, sizeof(double)), *aa = xcalloc(2000 * 300, sizeof(double));
            double *b = xcalloc(300 * 33, sizeof(double)), *ba = xcalloc(300 * 33, sizeof(double));
            double *l = xcalloc(33 * 2000, sizeof(double)), *la = xcalloc(33 * 2000, sizeof(double));
            sparse_f64(s, a, aa);
            dense_f64(right, b, ba);
            dense_f64(left, l, la);
            CHECK_PRODUCT(a, aa, b, ba, 2000, 300, 33, c2, t, "threaded sparse_dot_dense");
            CHECK_PRODUCT(l, la, a, aa, 33, 2000, 300, e2, t, "threaded dense_dot_sparse");
            free(a);
            free(aa);
            free(b);
            free(ba);
            free(l);
            free(la);
            sbx_array_free(c1);
            sbx_array_free(c2);
            sbx_array_free(e1);
            sbx_array_free(e2);
            sbx_array_free(right);
            sbx_array_free(left);
            sbx_sparse_free(s);
        }
    sbx_set_num_threads(0);
}

/* Arrays of 4 MiB and more take the allocator's other path (mapped blocks, kept for reuse after a
 * free) outside sanitizer builds: conversions and products whose arrays are that large, repeated so
 * that freed blocks come back, must still give zero-filled results where zeros are due. */
static void test_large_blocks(void **state) {
    (void)state;
    rng_seed(1515);
    const int64_t nr = 1100, nc = 1000;
    sbx_sparse *m = random_sparse(SBX_CSR, SBX_FLOAT64, nr, nc, 0.5, 0);
    assert_true(m->nnz * 8 >= INT64_C(4) << 20);
    void *want = ref_dense(m);
    int64_t shape[2] = {nr, nc};
    for (int round = 0; round < 2; round++) {
        /* leave a dirty block of the dense size behind */
        sbx_array *junk = NULL;
        CHECK_OK(sbx_array_create(SBX_FLOAT64, 2, shape, &junk));
        for (int64_t i = 0; i < nr * nc; i++) ((double *)junk->data)[i] = 1.0 + (double)round;
        sbx_array_free(junk);

        sbx_sparse *c = NULL, *back = NULL;
        sbx_array *d = NULL;
        CHECK_OK(sbx_sparse_convert(m, SBX_CSC, &c));
        CHECK_OK(sbx_sparse_validate(c));
        CHECK_OK(sbx_sparse_to_dense(c, &d));
        ASSERT_ARRAY_SHAPE(d, SBX_FLOAT64, nr, nc);
        ASSERT_DENSE_EQ(d->data, want, SBX_FLOAT64, nr * nc, "to_dense of a large CSC matrix");
        sbx_array_free(d);
        CHECK_OK(sbx_sparse_convert(c, SBX_CSR, &back));
        assert_true(sparse_same(back, m));
        sbx_sparse_free(c);
        sbx_sparse_free(back);
        d = NULL;
        CHECK_OK(sbx_sparse_to_dense(m, &d));
        ASSERT_DENSE_EQ(d->data, want, SBX_FLOAT64, nr * nc, "to_dense of a large CSR matrix");
        sbx_array_free(d);
        sbx_sparse *copy = NULL;
        CHECK_OK(sbx_sparse_copy(m, &copy));
        assert_true(sparse_same(copy, m));
        sbx_sparse_free(copy);
    }
    free(want);
    sbx_sparse_free(m);

    /* products whose 6000 x 100 float64 result (4.8 MB) lands in a block freed dirty just before */
    for (int fi = 0; fi < 2; fi++) {
        sbx_format f = (sbx_format)fi;
        int64_t rows = 6000, inner = 10, cols = 100, out_shape[2] = {rows, cols};
        sbx_sparse *s = random_sparse(f, SBX_FLOAT64, rows, inner, 0.1, 0);
        sbx_array *b = random_dense(SBX_FLOAT64, inner, cols), *junk = NULL, *c = NULL;
        CHECK_OK(sbx_array_create(SBX_FLOAT64, 2, out_shape, &junk));
        for (int64_t i = 0; i < rows * cols; i++) ((double *)junk->data)[i] = 3.0;
        sbx_array_free(junk);
        CHECK_OK(sbx_sparse_dot_dense(s, b, &c));
        double *a = xcalloc(rows * inner, sizeof(double)), *aa = xcalloc(rows * inner, sizeof(double));
        double *bd = xcalloc(inner * cols, sizeof(double)), *ba = xcalloc(inner * cols, sizeof(double));
        sparse_f64(s, a, aa);
        dense_f64(b, bd, ba);
        CHECK_PRODUCT(a, aa, bd, ba, rows, inner, cols, c, SBX_FLOAT64, "large sparse_dot_dense");
        sbx_array_free(c);

        /* and from the left: (100 x 6000 dense) times (6000 x 10 sparse) is small, (100 x 10) times
         * the transpose is large */
        sbx_sparse *st = NULL;
        CHECK_OK(sbx_sparse_transpose(s, &st)); /* 10 x 6000 */
        sbx_array *l = random_dense(SBX_FLOAT64, cols, inner);
        double *ld = xcalloc(cols * inner, sizeof(double)), *la = xcalloc(cols * inner, sizeof(double));
        double *t = xcalloc(inner * rows, sizeof(double)), *ta = xcalloc(inner * rows, sizeof(double));
        dense_f64(l, ld, la);
        sparse_f64(st, t, ta);
        int64_t left_shape[2] = {cols, rows};
        CHECK_OK(sbx_array_create(SBX_FLOAT64, 2, left_shape, &junk));
        for (int64_t i = 0; i < rows * cols; i++) ((double *)junk->data)[i] = 5.0;
        sbx_array_free(junk);
        c = NULL;
        CHECK_OK(sbx_dense_dot_sparse(l, st, &c));
        CHECK_PRODUCT(ld, la, t, ta, cols, inner, rows, c, SBX_FLOAT64, "large dense_dot_sparse");
        sbx_array_free(c);
        free(a);
        free(aa);
        free(bd);
        free(ba);
        free(ld);
        free(la);
        free(t);
        free(ta);
        sbx_array_free(l);
        sbx_array_free(b);
        sbx_sparse_free(st);
        sbx_sparse_free(s);
    }
}

/* ------------------------------------------------------------------------------------------------
 * 8. Allocation-failure walks: fail the 1st, 2nd, ... allocation until the operation succeeds.
 * ---------------------------------------------------------------------------------------------- */

typedef struct {
    sbx_sparse *m;                /* sparse input (changed in place by in-place operations on success) */
    const sbx_sparse *m_snapshot; /* what m must still be after a failure */
    sbx_array *d;                 /* dense input */
    const sbx_array *d_snapshot;
    sbx_sparse *out_m; /* outputs, NULL before each attempt */
    sbx_array *out_d;
} walk_ctx;

typedef sbx_status (*walk_op)(walk_ctx *w);

/* What the outputs hold before each attempt: a failing call must leave them untouched. */
static sbx_sparse sentinel_sparse;
static sbx_array sentinel_array;

#define ALLOC_WALK(op, w) alloc_walk_at((op), (w), #op, __FILE__, __LINE__)

/* Returns the step k at which op succeeded (it then made exactly k - 1 allocations). */
static int64_t alloc_walk_at(walk_op op, walk_ctx *w, const char *name, const char *file, int line) {
    int64_t k;
    sbx_status st = SBX_OK;
    /* the arrays of the input, which no function may free or replace */
    const void *indptr = w->m ? (const void *)w->m->indptr : NULL, *indices = w->m ? (const void *)w->m->indices : NULL;
    const void *data = w->m ? w->m->data : NULL;
    for (k = 1; k <= 1000; k++) {
        w->out_m = &sentinel_sparse;
        w->out_d = &sentinel_array;
        sbx__alloc_fail_at(k);
        st = op(w);
        if (st == SBX_OK) break;
        sbx__alloc_fail_at(0);
        const char *why = NULL;
        if (st != SBX_ERR_NOMEM)
            why = "the status is not SBX_ERR_NOMEM";
        else if (!strstr(sbx_last_error(), "cannot allocate"))
            why = "the message does not say 'cannot allocate'";
        else if (w->out_m != &sentinel_sparse || w->out_d != &sentinel_array)
            why = "an output was written";
        else if (w->m && (w->m->indptr != indptr || w->m->indices != indices || w->m->data != data))
            why = "the input's arrays were replaced";
        else if (w->m && !sparse_same(w->m, w->m_snapshot))
            why = "the sparse input changed";
        else if (w->d && !dense_same(w->d, w->d_snapshot))
            why = "the dense input changed";
        if (why) {
            print_error("%s, allocation %lld failing: %s (status %d, message '%s')\n", name, (long long)k, why,
                        (int)st, sbx_last_error());
            _fail(file, line);
            return k;
        }
    }
    int64_t made = sbx__alloc_fail_at(0);
    if (w->out_m == &sentinel_sparse) w->out_m = NULL;
    if (w->out_d == &sentinel_array) w->out_d = NULL;
    if (w->m && (w->m->indptr != indptr || w->m->indices != indices || w->m->data != data)) {
        print_error("%s: the input's arrays were replaced\n", name);
        _fail(file, line);
    }
    if (st != SBX_OK || k < 2 || made != k - 1) {
        print_error("%s: succeeded at step %lld (status %d) after %lld allocations; expected at least 2 steps\n", name,
                    (long long)k, (int)st, (long long)made);
        _fail(file, line);
    }
    return k;
}

static sbx_status op_convert(walk_ctx *w) { return sbx_sparse_convert(w->m, other_format(w->m->format), &w->out_m); }
static sbx_status op_copy(walk_ctx *w) { return sbx_sparse_copy(w->m, &w->out_m); }
static sbx_status op_transpose(walk_ctx *w) { return sbx_sparse_transpose(w->m, &w->out_m); }
static sbx_status op_cast(walk_ctx *w) { return sbx_sparse_cast(w->m, SBX_FLOAT32, &w->out_m); }
static sbx_status op_from_dense_csr(walk_ctx *w) { return sbx_sparse_from_dense(w->d, SBX_CSR, &w->out_m); }
static sbx_status op_from_dense_csc(walk_ctx *w) { return sbx_sparse_from_dense(w->d, SBX_CSC, &w->out_m); }
static sbx_status op_to_dense(walk_ctx *w) { return sbx_sparse_to_dense(w->m, &w->out_d); }
static sbx_status op_sum_duplicates(walk_ctx *w) { return sbx_sparse_sum_duplicates(w->m); }
static sbx_status op_sort_indices(walk_ctx *w) { return sbx_sparse_sort_indices(w->m); }
static sbx_status op_sparse_dot_dense(walk_ctx *w) { return sbx_sparse_dot_dense(w->m, w->d, &w->out_d); }
static sbx_status op_dense_dot_sparse(walk_ctx *w) { return sbx_dense_dot_sparse(w->d, w->m, &w->out_d); }

/* A walk context for m (and d), with snapshots taken while no allocation is made to fail. */
static walk_ctx walk_begin(sbx_sparse *m, sbx_array *d) {
    walk_ctx w = {m, NULL, d, NULL, NULL, NULL};
    sbx_sparse *ms = NULL;
    sbx_array *ds = NULL;
    if (m) CHECK_OK(sbx_sparse_copy(m, &ms));
    if (d) CHECK_OK(sbx_array_copy(d, &ds));
    w.m_snapshot = ms;
    w.d_snapshot = ds;
    return w;
}

static void walk_end(walk_ctx *w) {
    sbx_sparse_free(w->out_m);
    sbx_array_free(w->out_d);
    sbx_sparse_free((sbx_sparse *)w->m_snapshot);
    sbx_array_free((sbx_array *)w->d_snapshot);
}

static void test_alloc_walk_convert_copy(void **state) {
    (void)state;
    rng_seed(1111);
    for (int fi = 0; fi < 2; fi++) {
        sbx_sparse *m = random_sparse((sbx_format)fi, SBX_FLOAT64, 9, 7, 0.4, SP_UNSORTED | SP_DUPS);
        void *want = ref_dense(m);

        walk_ctx w = walk_begin(m, NULL);
        ALLOC_WALK(op_convert, &w);
        CHECK_OK(sbx_sparse_validate_structure(w.out_m));
        void *got = ref_dense(w.out_m);
        ASSERT_DENSE_EQ(got, want, SBX_FLOAT64, 63, "convert after the walk");
        free(got);
        walk_end(&w);

        w = walk_begin(m, NULL);
        ALLOC_WALK(op_copy, &w);
        assert_true(sparse_same(w.out_m, m));
        walk_end(&w);

        w = walk_begin(m, NULL);
        ALLOC_WALK(op_transpose, &w);
        assert_int_equal(w.out_m->nrows, 7);
        walk_end(&w);

        w = walk_begin(m, NULL);
        ALLOC_WALK(op_cast, &w);
        assert_int_equal(w.out_m->dtype, SBX_FLOAT32);
        walk_end(&w);

        free(want);
        sbx_sparse_free(m);
    }
}

static void test_alloc_walk_dense(void **state) {
    (void)state;
    rng_seed(1212);
    int64_t shape[2] = {6, 5};
    sbx_array *d = NULL;
    CHECK_OK(sbx_array_create(SBX_INT32, 2, shape, &d));
    for (int64_t i = 0; i < 30; i++)
        if (rng_below(2)) put_random(d->data, SBX_INT32, i, 0);

    walk_ctx w = walk_begin(NULL, d);
    ALLOC_WALK(op_from_dense_csr, &w);
    CHECK_OK(sbx_sparse_validate(w.out_m));
    walk_end(&w);
    w = walk_begin(NULL, d);
    ALLOC_WALK(op_from_dense_csc, &w);
    CHECK_OK(sbx_sparse_validate(w.out_m));
    sbx_sparse *m = w.out_m;
    w.out_m = NULL;
    walk_end(&w);

    /* to_dense of the result, with duplicates added in */
    m->indices[1] = m->indices[0];
    w = walk_begin(m, NULL);
    ALLOC_WALK(op_to_dense, &w);
    void *want = ref_dense(m);
    ASSERT_DENSE_EQ(w.out_d->data, want, SBX_INT32, 30, "to_dense after the walk");
    free(want);
    walk_end(&w);
    sbx_sparse_free(m);
    sbx_array_free(d);
}

static void test_alloc_walk_sum_duplicates(void **state) {
    (void)state;
    rng_seed(1313);
    for (int fi = 0; fi < 2; fi++) {
        sbx_sparse *m = random_sparse((sbx_format)fi, SBX_UINT8, 8, 9, 0.5, SP_UNSORTED | SP_DUPS);
        assert_false(lines_sorted(m));
        void *want = ref_dense(m);
        walk_ctx w = walk_begin(m, NULL);
        ALLOC_WALK(op_sum_duplicates, &w);
        CHECK_OK(sbx_sparse_validate(m));
        void *got = ref_dense(m);
        ASSERT_DENSE_EQ(got, want, SBX_UINT8, 72, "sum_duplicates after the walk");
        free(got);
        free(want);
        walk_end(&w);
        sbx_sparse_free(m);

        m = random_sparse((sbx_format)fi, SBX_FLOAT32, 8, 9, 0.5, SP_UNSORTED | SP_DUPS);
        w = walk_begin(m, NULL);
        ALLOC_WALK(op_sort_indices, &w);
        assert_true(lines_sorted(m));
        walk_end(&w);
        sbx_sparse_free(m);
    }
}

/* The same walk on a matrix whose arrays the caller owns: never freed or replaced, on failure or success. */
static void test_alloc_walk_caller_arrays(void **state) {
    (void)state;
    rng_seed(1616);
    sbx_sparse *lib = random_sparse(SBX_CSC, SBX_INT16, 10, 8, 0.5, SP_UNSORTED | SP_DUPS);
    int64_t *indptr = xcalloc(9, sizeof *indptr), *indices = xcalloc(lib->nnz, sizeof *indices);
    int16_t *data = xcalloc(lib->nnz, sizeof *data);
    memcpy(indptr, lib->indptr, 9 * sizeof *indptr);
    memcpy(indices, lib->indices, (size_t)lib->nnz * sizeof *indices);
    memcpy(data, lib->data, (size_t)lib->nnz * sizeof *data);
    sbx_sparse m = {SBX_CSC, SBX_INT16, 10, 8, lib->nnz, indptr, indices, data};
    void *want = ref_dense(&m);
    walk_ctx w = walk_begin(&m, NULL);
    ALLOC_WALK(op_sum_duplicates, &w);
    CHECK_OK(sbx_sparse_validate(&m));
    void *got = ref_dense(&m);
    ASSERT_DENSE_EQ(got, want, SBX_INT16, 80, "sum_duplicates on caller arrays");
    walk_end(&w);
    free(got);
    free(want);
    free(indptr);
    free(indices);
    free(data);
    sbx_sparse_free(lib);
}

static void test_alloc_walk_dot(void **state) {
    (void)state;
    rng_seed(1414);
    for (int fi = 0; fi < 2; fi++) {
        sbx_sparse *m = random_sparse((sbx_format)fi, SBX_FLOAT64, 7, 6, 0.5, SP_UNSORTED | SP_DUPS);
        sbx_array *right = random_dense(SBX_FLOAT64, 6, 4), *left = random_dense(SBX_FLOAT64, 3, 7);
        walk_ctx w = walk_begin(m, right);
        ALLOC_WALK(op_sparse_dot_dense, &w);
        ASSERT_ARRAY_SHAPE(w.out_d, SBX_FLOAT64, 7, 4);
        walk_end(&w);
        w = walk_begin(m, left);
        ALLOC_WALK(op_dense_dot_sparse, &w);
        ASSERT_ARRAY_SHAPE(w.out_d, SBX_FLOAT64, 3, 6);
        walk_end(&w);
        sbx_array_free(right);
        sbx_array_free(left);
        sbx_sparse_free(m);
    }
}

#define TEST(f) cmocka_unit_test_teardown(f, reset)

/* An optional argument runs only the tests whose names match it (a cmocka pattern, e.g. "test_dot*"). */
int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        TEST(test_format_names_and_extents),
        TEST(test_create_shapes),
        TEST(test_create_errors),
        TEST(test_copy),
        TEST(test_cast),
        TEST(test_transpose),
        TEST(test_validate_accepts_valid),
        TEST(test_validate_indptr_start),
        TEST(test_validate_indptr_decreasing),
        TEST(test_validate_indptr_end),
        TEST(test_validate_index_negative),
        TEST(test_validate_index_too_large),
        TEST(test_validate_unsorted),
        TEST(test_validate_duplicate),
        TEST(test_validate_null_indptr),
        TEST(test_validate_null_indices),
        TEST(test_validate_header),
        TEST(test_dense_round_trip),
        TEST(test_dense_errors),
        TEST(test_convert_random),
        TEST(test_convert_by_hand),
        TEST(test_convert_errors),
        TEST(test_sort_indices_by_hand),
        TEST(test_sort_indices_random_stable),
        TEST(test_sum_duplicates_by_hand),
        TEST(test_sum_duplicates_random),
        TEST(test_eliminate_zeros_by_hand),
        TEST(test_in_place_on_caller_arrays),
        TEST(test_dot_random),
        TEST(test_dot_errors),
        TEST(test_null_arrays_when_empty),
        TEST(test_dot_thread_count_independent),
        TEST(test_large_blocks),
        TEST(test_alloc_walk_convert_copy),
        TEST(test_alloc_walk_dense),
        TEST(test_alloc_walk_sum_duplicates),
        TEST(test_alloc_walk_caller_arrays),
        TEST(test_alloc_walk_dot),
        TEST(test_dot_empty_dense_without_data), /* last: see the test */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
