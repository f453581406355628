/* Tests of the .npy and Matrix Market readers and writers, with many malformed files. */
#define _POSIX_C_SOURCE 200809L /* getpid */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/internal.h"
#include "sparsebox.h"

static char tmpdir[512];

/* A path in the test's scratch folder. */
static const char *path_of(const char *name) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

static const char *write_bytes(const char *name, const void *bytes, size_t n) {
    const char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    return p;
}

static const char *write_text(const char *name, const char *text) { return write_bytes(name, text, strlen(text)); }

static void expect_error(sbx_status got, sbx_status want, const char *needle) {
    if (got != want) fail_msg("status %d (%s), wanted %d; message: %s", got, sbx_status_str(got), want, sbx_last_error());
    if (!strstr(sbx_last_error(), needle)) fail_msg("message '%s' lacks '%s'", sbx_last_error(), needle);
}

/* A .npy file from a header dict and raw data: version `major`, header padded to 64 bytes. */
static const char *npy_file(const char *name, int major, const char *dict, const void *data, size_t n) {
    unsigned char buf[4096];
    size_t pre = major == 1 ? 10 : 12, h = strlen(dict);
    size_t total = pre + h + 1, pad = (64 - total % 64) % 64, hlen = h + pad + 1;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) buf[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + pre, dict, h);
    memset(buf + pre + h, ' ', pad);
    buf[pre + h + pad] = '\n';
    assert_true(pre + hlen + n <= sizeof buf);
    if (n) memcpy(buf + pre + hlen, data, n);
    return write_bytes(name, buf, pre + hlen + n);
}

/* --- .npy --------------------------------------------------------------------------------- */

static void test_npy_round_trip_all_dtypes(void **state) {
    (void)state;
    for (int t = 0; t < SBX_NUM_DTYPES; t++)
        for (int ndim = 0; ndim <= SBX_MAX_NDIM; ndim++) {
            int64_t shape[SBX_MAX_NDIM];
            for (int d = 0; d < ndim; d++) shape[d] = ndim > 4 ? 2 : d + 2;
            sbx_array *a, *b;
            assert_int_equal(sbx_array_create((sbx_dtype)t, ndim, shape, &a), SBX_OK);
            unsigned char *bytes = a->data;
            size_t nbytes = (size_t)sbx_array_numel(a) * sbx_dtype_size(a->dtype);
            for (size_t i = 0; i < nbytes; i++) bytes[i] = (unsigned char)(i * 37 + 11);
            if (t == SBX_BOOL)
                for (size_t i = 0; i < nbytes; i++) bytes[i] &= 1;
            const char *p = path_of("rt.npy");
            assert_int_equal(sbx_npy_write(p, a), SBX_OK);
            assert_int_equal(sbx_npy_read(p, &b), SBX_OK);
            assert_int_equal(b->dtype, t);
            assert_int_equal(b->ndim, ndim);
            assert_memory_equal(b->shape, a->shape, sizeof a->shape);
            if (nbytes) assert_memory_equal(b->data, a->data, nbytes);
            sbx_array_free(a);
            sbx_array_free(b);
            /* The data starts on a 64-byte boundary, as numpy writes it. */
            FILE *f = fopen(p, "rb");
            unsigned char pre[10];
            assert_int_equal(fread(pre, 1, 10, f), 10);
            fclose(f);
            assert_int_equal((10 + pre[8] + 256 * pre[9]) % 64, 0);
        }
}

static void test_npy_versions_2_and_3(void **state) {
    (void)state;
    const int32_t v[3] = {1, -2, 3};
    sbx_array *a;
    for (int major = 2; major <= 3; major++) {
        const char *p = npy_file("v.npy", major, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", v, sizeof v);
        assert_int_equal(sbx_npy_read(p, &a), SBX_OK);
        assert_int_equal(a->dtype, SBX_INT32);
        assert_memory_equal(a->data, v, sizeof v);
        sbx_array_free(a);
    }
}

static void test_npy_big_endian_is_swapped(void **state) {
    (void)state;
    const unsigned char be[8] = {0x3f, 0xf0, 0, 0, 0, 0, 0, 0}; /* 1.0 as a big-endian double */
    const unsigned char be16[4] = {0x01, 0x02, 0xff, 0xfe};
    sbx_array *a;
    assert_int_equal(sbx_npy_read(npy_file("be.npy", 1, "{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }", be, 8), &a), SBX_OK);
    assert_true(((double *)a->data)[0] == 1.0);
    sbx_array_free(a);
    assert_int_equal(sbx_npy_read(npy_file("be16.npy", 1, "{'descr': '>i2', 'fortran_order': False, 'shape': (2,), }", be16, 4), &a), SBX_OK);
    assert_int_equal(((int16_t *)a->data)[0], 0x0102);
    assert_int_equal(((int16_t *)a->data)[1], -2);
    sbx_array_free(a);
}

static void test_npy_fortran_order_is_reordered(void **state) {
    (void)state;
    /* A 2 x 3 x 2 array whose C-order elements are 0..11, stored column-major. */
    int64_t f[12];
    for (int i = 0, k = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int l = 0; l < 2; l++, k++) f[i + 2 * j + 6 * l] = k;
    sbx_array *a;
    const char *p = npy_file("f.npy", 1, "{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3, 2), }", f, sizeof f);
    assert_int_equal(sbx_npy_read(p, &a), SBX_OK);
    for (int k = 0; k < 12; k++) assert_int_equal(((int64_t *)a->data)[k], k);
    sbx_array_free(a);
}

static void test_npy_write_errors(void **state) {
    (void)state;
    sbx_array a = {SBX_FLOAT64, 1, {4}, NULL};
    expect_error(sbx_npy_write(path_of("w.npy"), &a), SBX_ERR_ARG, "data is NULL");
    expect_error(sbx_npy_write(path_of("w.npy"), NULL), SBX_ERR_ARG, "NULL");
    double d[4] = {0};
    a.data = d;
    expect_error(sbx_npy_write("/nonexistent-dir/w.npy", &a), SBX_ERR_IO, "/nonexistent-dir/w.npy");
    a.shape[0] = -4;
    expect_error(sbx_npy_write(path_of("w.npy"), &a), SBX_ERR_ARG, "negative");
}

/* Reading `p` fails with `want` and a message holding `needle`; nothing is returned. */
static void npy_fails(const char *p, sbx_status want, const char *needle) {
    sbx_array *a = NULL;
    expect_error(sbx_npy_read(p, &a), want, needle);
    assert_null(a);
}

static void npy_dict_fails(const char *dict, sbx_status want, const char *needle) {
    static const unsigned char data[64];
    npy_fails(npy_file("bad.npy", 1, dict, data, 8), want, needle);
}

static void test_npy_bad_files(void **state) {
    (void)state;
    npy_fails(path_of("does-not-exist.npy"), SBX_ERR_IO, "does-not-exist.npy");
    npy_fails(write_bytes("empty.npy", "", 0), SBX_ERR_FORMAT, "truncated in its magic");
    npy_fails(write_bytes("magic.npy", "\x93NUMPX\x01\x00\x10\x00", 10), SBX_ERR_FORMAT, "bad magic");
    npy_fails(write_bytes("ver.npy", "\x93NUMPY\x04\x00\x10\x00", 10), SBX_ERR_UNSUPPORTED, "version 4.0");
    npy_fails(write_bytes("hlen.npy", "\x93NUMPY\x01\x00\x10", 9), SBX_ERR_FORMAT, "header length");
    npy_fails(write_bytes("hbig.npy", "\x93NUMPY\x02\x00\x00\x00\x00\x10", 12), SBX_ERR_FORMAT, "above the limit");
    npy_fails(write_bytes("hshort.npy", "\x93NUMPY\x01\x00\x40\x00{'descr'", 18), SBX_ERR_FORMAT, "truncated in its header");
    npy_fails(write_bytes("nul.npy", "\x93NUMPY\x01\x00\x04\x00{\0}\n", 14), SBX_ERR_FORMAT, "NUL");
}

static void test_npy_bad_headers(void **state) {
    (void)state;
    npy_dict_fails("['descr', '<f8']", SBX_ERR_FORMAT, "expected '{'");
    npy_dict_fails("{'descr': '<f8', 'fortran_order': False}", SBX_ERR_FORMAT, "missing");
    npy_dict_fails("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'extra': 1}", SBX_ERR_FORMAT, "unknown or repeated key");
    npy_dict_fails("{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (1,)}", SBX_ERR_FORMAT, "repeated");
    npy_dict_fails("{'descr': '<c16', 'fortran_order': False, 'shape': (1,)}", SBX_ERR_UNSUPPORTED, "'<c16'");
    npy_dict_fails("{'descr': '|O', 'fortran_order': False, 'shape': (1,)}", SBX_ERR_UNSUPPORTED, "'|O'");
    npy_dict_fails("{'descr': '<U8', 'fortran_order': False, 'shape': (1,)}", SBX_ERR_UNSUPPORTED, "'<U8'");
    npy_dict_fails("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,)}", SBX_ERR_UNSUPPORTED, "structured");
    npy_dict_fails("{'descr': '<f8', 'fortran_order': maybe, 'shape': (1,)}", SBX_ERR_FORMAT, "True or False");
    npy_dict_fails("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}", SBX_ERR_FORMAT, "non-negative integer");
    npy_dict_fails("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,)}", SBX_ERR_OVERFLOW, "overflows int64");
    npy_dict_fails("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}", SBX_ERR_OVERFLOW, "overflows");
    npy_dict_fails("{'descr': '<f8', 'fortran_order': False, 'shape': (1152921504606846976,)}", SBX_ERR_OVERFLOW, "byte count");
    npy_dict_fails("{'descr': '<f8', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", SBX_ERR_UNSUPPORTED, "more than 8 dimensions");
    npy_dict_fails("{'descr': '<f8', 'fortran_order': False, 'shape': (1 2)}", SBX_ERR_FORMAT, "expected ',' or ')'");
    npy_dict_fails("{'descr' '<f8', 'fortran_order': False, 'shape': (1,)}", SBX_ERR_FORMAT, "expected ':'");
    npy_dict_fails("{'descr': '<f8, 'fortran_order': False, 'shape': (1,)}", SBX_ERR_UNSUPPORTED, "'<f8, '");
    npy_dict_fails("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)} x", SBX_ERR_FORMAT, "after the closing");
    npy_dict_fails("{'descr': '<f8' 'fortran_order': False, 'shape': (1,)}", SBX_ERR_FORMAT, "expected ',' or '}'");
    npy_dict_fails("{'descr': '<f8', 'fortran_order': False, 'shape': (1,", SBX_ERR_FORMAT, "malformed .npy header");
}

static void test_npy_data_size_mismatch(void **state) {
    (void)state;
    const double d[4] = {1, 2, 3, 4};
    npy_fails(npy_file("short.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }", d, sizeof d),
              SBX_ERR_FORMAT, "need 40");
    npy_fails(npy_file("long.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", d, sizeof d),
              SBX_ERR_FORMAT, "data is 32 bytes");
    /* A huge claimed shape in a tiny file fails before anything is allocated. */
    npy_fails(npy_file("huge.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000, 1000), }", d, 8),
              SBX_ERR_FORMAT, "need 8000000000000");
}

/* --- Matrix Market -------------------------------------------------------------------------- */

/* A random m x n matrix of dtype in format with about density * m * n entries. */
static sbx_sparse *random_sparse(sbx_format format, sbx_dtype dtype, int64_t m, int64_t n, double density,
                                 uint64_t seed) {
    int64_t shape[2] = {m, n};
    sbx_array *a;
    sbx_sparse *s;
    assert_int_equal(sbx_array_create(SBX_FLOAT64, 2, shape, &a), SBX_OK);
    for (int64_t i = 0; i < m * n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(seed >> 11) / 9007199254740992.0;
        ((double *)a->data)[i] = u < density ? floor((u / density) * 200.0) - 100.0 + (dtype <= SBX_FLOAT64 ? 0.25 : 0) : 0;
        if (dtype == SBX_BOOL || dtype >= SBX_UINT8) ((double *)a->data)[i] = fabs(((double *)a->data)[i]) > 0 ? (dtype == SBX_BOOL ? 1 : fabs(((double *)a->data)[i])) : 0;
    }
    sbx_array *c;
    assert_int_equal(sbx_array_cast(a, dtype, &c), SBX_OK);
    assert_int_equal(sbx_sparse_from_dense(c, format, &s), SBX_OK);
    sbx_array_free(a);
    sbx_array_free(c);
    return s;
}

static void assert_same_sparse(const sbx_sparse *a, const sbx_sparse *b) {
    assert_int_equal(a->format, b->format);
    assert_int_equal(a->nrows, b->nrows);
    assert_int_equal(a->ncols, b->ncols);
    assert_int_equal(a->nnz, b->nnz);
    assert_memory_equal(a->indptr, b->indptr, (size_t)(sbx_sparse_major(a) + 1) * sizeof(int64_t));
    if (a->nnz) assert_memory_equal(a->indices, b->indices, (size_t)a->nnz * sizeof(int64_t));
}

static void test_mtx_round_trip(void **state) {
    (void)state;
    const sbx_dtype dtypes[] = {SBX_FLOAT64, SBX_FLOAT32, SBX_INT32, SBX_INT64, SBX_UINT8, SBX_BOOL};
    const int64_t shapes[][2] = {{7, 5}, {1, 1}, {0, 3}, {4, 0}, {30, 40}};
    for (size_t t = 0; t < sizeof dtypes / sizeof dtypes[0]; t++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int f = 0; f < 2; f++) {
                sbx_sparse *m = random_sparse((sbx_format)f, dtypes[t], shapes[s][0], shapes[s][1], 0.3, 1 + t * 10 + s);
                sbx_sparse *back, *cast;
                assert_int_equal(sbx_mtx_write(path_of("rt.mtx"), m), SBX_OK);
                assert_int_equal(sbx_mtx_read(path_of("rt.mtx"), (sbx_format)f, &back), SBX_OK);
                assert_same_sparse(m, back);
                /* Values come back as float64 (real) or int64 (integer): equal after the cast back. */
                assert_int_equal(back->dtype, dtypes[t] <= SBX_FLOAT64 ? SBX_FLOAT64 : SBX_INT64);
                assert_int_equal(sbx_sparse_cast(back, dtypes[t], &cast), SBX_OK);
                if (m->nnz) assert_memory_equal(cast->data, m->data, (size_t)m->nnz * sbx_dtype_size(m->dtype));
                sbx_sparse_free(m);
                sbx_sparse_free(back);
                sbx_sparse_free(cast);
            }
}

static void test_mtx_storage_order(void **state) {
    (void)state;
    /* [[0 1 2] [3 0 4]]: CSC lists column by column. */
    const double v[6] = {0, 1, 2, 3, 0, 4};
    int64_t shape[2] = {2, 3};
    sbx_array *a;
    sbx_sparse *m;
    assert_int_equal(sbx_array_create(SBX_FLOAT64, 2, shape, &a), SBX_OK);
    memcpy(a->data, v, sizeof v);
    assert_int_equal(sbx_sparse_from_dense(a, SBX_CSC, &m), SBX_OK);
    assert_int_equal(sbx_mtx_write(path_of("order.mtx"), m), SBX_OK);
    char text[256] = {0};
    FILE *f = fopen(path_of("order.mtx"), "r");
    assert_true(fread(text, 1, sizeof text - 1, f) > 0);
    fclose(f);
    assert_string_equal(text, "%%MatrixMarket matrix coordinate real general\n2 3 4\n2 1 3\n1 2 1\n1 3 2\n2 3 4\n");
    sbx_array_free(a);
    sbx_sparse_free(m);
}

static void test_mtx_symmetric_pattern_array(void **state) {
    (void)state;
    sbx_array *d;
    sbx_sparse *m;
    /* Symmetric: the lower triangle mirrored. */
    const char *p = write_text("sym.mtx", "%%MatrixMarket matrix coordinate real symmetric\n% a comment\n\n3 3 3\n1 1 2.5\n3 1 -1\n3 2 7\n");
    assert_int_equal(sbx_mtx_read_dense(p, &d), SBX_OK);
    const double sym[9] = {2.5, 0, -1, 0, 0, 7, -1, 7, 0};
    assert_memory_equal(d->data, sym, sizeof sym);
    sbx_array_free(d);
    assert_int_equal(sbx_mtx_read(p, SBX_CSR, &m), SBX_OK);
    assert_int_equal(m->nnz, 5);
    assert_int_equal(sbx_sparse_validate(m), SBX_OK);
    sbx_sparse_free(m);
    /* Skew-symmetric integers: mirrored with the sign changed. */
    p = write_text("skew.mtx", "%%MatrixMarket matrix coordinate integer skew-symmetric\n2 2 1\n2 1 5\n");
    assert_int_equal(sbx_mtx_read_dense(p, &d), SBX_OK);
    assert_int_equal(d->dtype, SBX_INT64);
    const int64_t skew[4] = {0, -5, 5, 0};
    assert_memory_equal(d->data, skew, sizeof skew);
    sbx_array_free(d);
    /* Pattern: ones; duplicates are summed. */
    p = write_text("pat.mtx", "%%MatrixMarket matrix coordinate pattern general\n2 2 3\n1 2\n2 1\n1 2\n");
    assert_int_equal(sbx_mtx_read(p, SBX_CSC, &m), SBX_OK);
    assert_int_equal(m->nnz, 2);
    assert_true(((double *)m->data)[0] == 1.0 && ((double *)m->data)[1] == 2.0);
    sbx_sparse_free(m);
    /* Array, column-major; symmetric arrays list the lower triangle. Zeros are not stored as entries. */
    p = write_text("arr.mtx", "%%MatrixMarket matrix array real general\n2 3\n1\n2\n0\n4\n5\n6\n");
    assert_int_equal(sbx_mtx_read_dense(p, &d), SBX_OK);
    const double arr[6] = {1, 0, 5, 2, 4, 6};
    assert_memory_equal(d->data, arr, sizeof arr);
    sbx_array_free(d);
    assert_int_equal(sbx_mtx_read(p, SBX_CSR, &m), SBX_OK);
    assert_int_equal(m->nnz, 5);
    sbx_sparse_free(m);
    p = write_text("arrsym.mtx", "%%MatrixMarket matrix array integer symmetric\n2 2\n1\n2\n3\n");
    assert_int_equal(sbx_mtx_read_dense(p, &d), SBX_OK);
    const int64_t arrsym[4] = {1, 2, 2, 3};
    assert_memory_equal(d->data, arrsym, sizeof arrsym);
    sbx_array_free(d);
    sbx_mtx_header h;
    assert_int_equal(sbx_mtx_read_header(p, &h), SBX_OK);
    assert_int_equal(h.coordinate, 0);
    assert_int_equal(h.symmetry, SBX_MTX_SYMMETRIC);
    assert_int_equal(h.entries, 3);
    /* A tall general array whose n(n+1)/2 does not fit int64 though n x 2 does (found by tests/fuzz/fuzz_mtx:
     * the triangle was computed for every kind, overflowing; UBSan sees it). */
    p = write_text("tall.mtx", "%%MatrixMarket matrix array real general\n55555555555552 2\n1\n");
    assert_int_equal(sbx_mtx_read_header(p, &h), SBX_OK);
    assert_true(h.nrows == 55555555555552 && h.entries == 111111111111104);
}

static void mtx_fails(const char *text, sbx_status want, const char *needle) {
    sbx_sparse *m = NULL;
    sbx_array *d = NULL;
    const char *p = write_text("bad.mtx", text);
    expect_error(sbx_mtx_read(p, SBX_CSR, &m), want, needle);
    assert_null(m);
    expect_error(sbx_mtx_read_dense(p, &d), want, needle);
    assert_null(d);
}

static void test_mtx_bad_headers(void **state) {
    (void)state;
    sbx_sparse *m = NULL;
    expect_error(sbx_mtx_read(path_of("missing.mtx"), SBX_CSR, &m), SBX_ERR_IO, "missing.mtx");
    mtx_fails("", SBX_ERR_FORMAT, "empty");
    mtx_fails("%%MatrixMarket matrix coordinate real\n1 1 0\n", SBX_ERR_FORMAT, "banner");
    mtx_fails("%MatrixMarket matrix coordinate real general\n1 1 0\n", SBX_ERR_FORMAT, "banner");
    mtx_fails("%%MatrixMarket vector coordinate real general\n1 1 0\n", SBX_ERR_UNSUPPORTED, "'vector'");
    mtx_fails("%%MatrixMarket matrix sparse real general\n1 1 0\n", SBX_ERR_FORMAT, "'sparse'");
    mtx_fails("%%MatrixMarket matrix coordinate complex general\n1 1 0\n", SBX_ERR_UNSUPPORTED, "'complex'");
    mtx_fails("%%MatrixMarket matrix array pattern general\n1 1\n", SBX_ERR_UNSUPPORTED, "'pattern'");
    mtx_fails("%%MatrixMarket matrix coordinate real hermitian\n1 1 0\n", SBX_ERR_UNSUPPORTED, "'hermitian'");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n% only comments\n", SBX_ERR_FORMAT, "size line is missing");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n3 3\n", SBX_ERR_FORMAT, "rows columns entries");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n3 x 1\n", SBX_ERR_FORMAT, "line 2");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n3 3 1 7\n", SBX_ERR_FORMAT, "size line");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n-3 3 1\n", SBX_ERR_FORMAT, "negative size -3");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n3 3 -1\n", SBX_ERR_FORMAT, "-1 entries");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n2 3 7\n", SBX_ERR_FORMAT, "7 entries declared");
    mtx_fails("%%MatrixMarket matrix coordinate real symmetric\n3 3 7\n", SBX_ERR_FORMAT, "more than the 6");
    mtx_fails("%%MatrixMarket matrix coordinate real symmetric\n2 3 1\n", SBX_ERR_FORMAT, "square");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n4294967296 4294967296 1\n", SBX_ERR_OVERFLOW, "overflows int64");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n99999999999999999999 1 1\n", SBX_ERR_FORMAT, "int64");
}

static void test_mtx_bad_bodies(void **state) {
    (void)state;
    mtx_fails("%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1.0\n", SBX_ERR_FORMAT, "after 1 of the 2 entries");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n3 3 1\n1 1 1.0\n2 2 2.0\n", SBX_ERR_FORMAT, "more entries");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n3 3 1\n0 1 1.0\n", SBX_ERR_FORMAT, "(0, 1) is outside");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n3 3 1\n1 4 1.0\n", SBX_ERR_FORMAT, "(1, 4) is outside");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n3 3 1\n1 1\n", SBX_ERR_FORMAT, "real value");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n3 3 1\n1 1 abc\n", SBX_ERR_FORMAT, "line 3");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n3 3 1\n1 1 1.0 2.0\n", SBX_ERR_FORMAT, "unexpected text");
    mtx_fails("%%MatrixMarket matrix coordinate real general\n3 3 1\n1\n", SBX_ERR_FORMAT, "'row column'");
    mtx_fails("%%MatrixMarket matrix coordinate integer general\n3 3 1\n1 1 1.5\n", SBX_ERR_FORMAT, "unexpected text");
    mtx_fails("%%MatrixMarket matrix coordinate integer general\n3 3 1\n1 1 9223372036854775808\n", SBX_ERR_FORMAT, "integer value in int64");
    mtx_fails("%%MatrixMarket matrix coordinate real symmetric\n3 3 1\n1 2 1.0\n", SBX_ERR_FORMAT, "lower triangle");
    mtx_fails("%%MatrixMarket matrix coordinate real skew-symmetric\n3 3 1\n2 2 1.0\n", SBX_ERR_FORMAT, "lower triangle");
    mtx_fails("%%MatrixMarket matrix coordinate integer skew-symmetric\n2 2 1\n2 1 -9223372036854775808\n", SBX_ERR_FORMAT, "overflows int64");
    mtx_fails("%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n", SBX_ERR_FORMAT, "after 3 of the 4");
    char longline[2100];
    memset(longline, ' ', sizeof longline);
    const char *head = "%%MatrixMarket matrix coordinate real general\n1 1 1\n1 1 1.0";
    memcpy(longline, head, strlen(head));
    longline[sizeof longline - 2] = '\n';
    longline[sizeof longline - 1] = '\0';
    mtx_fails(longline, SBX_ERR_FORMAT, "longer than");
}

static void test_mtx_long_comment_and_huge_declared_nnz(void **state) {
    (void)state;
    /* A comment longer than the line buffer is skipped. */
    char text[3000];
    int n = snprintf(text, sizeof text, "%%%%MatrixMarket matrix coordinate real general\n%%");
    memset(text + n, 'c', 2500);
    strcpy(text + n + 2500, "\n1 1 1\n1 1 3.5\n");
    sbx_sparse *m;
    assert_int_equal(sbx_mtx_read(write_text("longcomment.mtx", text), SBX_CSR, &m), SBX_OK);
    assert_true(((double *)m->data)[0] == 3.5);
    sbx_sparse_free(m);
    /* A file declaring 10^12 entries but holding one fails without allocating for 10^12. */
    mtx_fails("%%MatrixMarket matrix coordinate real general\n1000000 1000000 1000000000000\n1 1 1\n", SBX_ERR_FORMAT,
              "after 1 of the 1000000000000");
}

static void test_mtx_write_errors(void **state) {
    (void)state;
    int64_t ip[3] = {0, 1, 5}; /* indptr ends at 5 but nnz is 1 */
    int64_t ix[1] = {0};
    double v[1] = {1};
    sbx_sparse m = {SBX_CSR, SBX_FLOAT64, 2, 2, 1, ip, ix, v};
    expect_error(sbx_mtx_write(path_of("w.mtx"), &m), SBX_ERR_FORMAT, "indptr[2] = 5");
    assert_int_equal(access(path_of("w.mtx"), F_OK), -1); /* nothing written */
    ip[2] = 1;
    expect_error(sbx_mtx_write("/nonexistent-dir/w.mtx", &m), SBX_ERR_IO, "nonexistent-dir");
    expect_error(sbx_mtx_write(path_of("w.mtx"), NULL), SBX_ERR_ARG, "NULL");
}

static void test_io_allocation_failures(void **state) {
    (void)state;
    const char *p = write_text("af.mtx", "%%MatrixMarket matrix coordinate real symmetric\n3 3 2\n3 1 -1\n2 2 7\n");
    int64_t k;
    for (k = 1;; k++) {
        sbx_sparse *m = NULL;
        sbx__alloc_fail_at(k);
        sbx_status st = sbx_mtx_read(p, SBX_CSC, &m);
        sbx__alloc_fail_at(0);
        if (st == SBX_OK) {
            sbx_sparse_free(m);
            break;
        }
        assert_int_equal(st, SBX_ERR_NOMEM);
        assert_null(m);
    }
    assert_true(k > 4);
    const double d[2] = {1, 2};
    p = npy_file("af.npy", 1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 1), }", d, sizeof d);
    for (k = 1;; k++) {
        sbx_array *a = NULL;
        sbx__alloc_fail_at(k);
        sbx_status st = sbx_npy_read(p, &a);
        sbx__alloc_fail_at(0);
        if (st == SBX_OK) {
            sbx_array_free(a);
            break;
        }
        assert_int_equal(st, SBX_ERR_NOMEM);
        assert_null(a);
    }
    assert_true(k > 3);
}

int main(void) {
    const char *base = getenv("SBX_TEST_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/io-%d", base ? base : "/tmp", (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmpdir);
    if (system(cmd) != 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npy_round_trip_all_dtypes),
        cmocka_unit_test(test_npy_versions_2_and_3),
        cmocka_unit_test(test_npy_big_endian_is_swapped),
        cmocka_unit_test(test_npy_fortran_order_is_reordered),
        cmocka_unit_test(test_npy_write_errors),
        cmocka_unit_test(test_npy_bad_files),
        cmocka_unit_test(test_npy_bad_headers),
        cmocka_unit_test(test_npy_data_size_mismatch),
        cmocka_unit_test(test_mtx_round_trip),
        cmocka_unit_test(test_mtx_storage_order),
        cmocka_unit_test(test_mtx_symmetric_pattern_array),
        cmocka_unit_test(test_mtx_bad_headers),
        cmocka_unit_test(test_mtx_bad_bodies),
        cmocka_unit_test(test_mtx_long_comment_and_huge_declared_nnz),
        cmocka_unit_test(test_mtx_write_errors),
        cmocka_unit_test(test_io_allocation_failures),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) return 1;
    return failed;
}
