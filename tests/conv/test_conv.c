/* Tests of the convolution geometry, the patch matrix (ConvolutionIndices) and the gather table:
 * every golden case of the original, a brute-force reference in 1 to 8 dimensions, and bad input. */
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
#include <omp.h>

#include "common/golden.h"
#include "core/internal.h"
#include "sparsebox.h"

static void expect_error(sbx_status got, sbx_status want, const char *needle) {
    if (got != want) fail_msg("status %d, wanted %d; message: %s", got, want, sbx_last_error());
    if (!strstr(sbx_last_error(), needle)) fail_msg("message '%s' lacks '%s'", sbx_last_error(), needle);
}

/* Compares n int64 values with a golden array, naming the case and array on a mismatch. */
static void same_ints(const golden_case *g, const char *name, const int64_t *got, int64_t n) {
    const golden_array *a = golden_get(g, name);
    if (!a) fail_msg("%s: no array '%s'", g->path, name);
    if (a->n != n) fail_msg("%s: %s has %lld entries, expected %lld", g->path, name, (long long)n, (long long)a->n);
    for (int64_t i = 0; i < n; i++)
        if ((double)got[i] != a->v[i])
            fail_msg("%s: %s[%lld] = %lld, expected %.17g", g->path, name, (long long)i, (long long)got[i], a->v[i]);
}

static void check_golden_case(const golden_case *g) {
    int64_t inshp[3], kshp[2], step[2], nkern = 1, ws = 1;
    int inlen = golden_ints(g, "inshp", inshp, 3);
    assert_int_equal(golden_ints(g, "kshp", kshp, 2), 2);
    assert_int_equal(golden_ints(g, "strides", step, 2), 2);
    golden_ints(g, "nkern", &nkern, 1);
    golden_ints(g, "ws", &ws, 1);
    sbx_conv_mode mode;
    assert_int_equal(sbx_conv_mode_parse(golden_value(g, "mode"), &mode), SBX_OK);
    sbx_conv_shape s;
    sbx_status st = sbx_conv_shape_aesara(inlen, inshp, kshp, step, mode, &s);
    if (strcmp(golden_value(g, "expect"), "error") == 0) {
        if (st == SBX_OK) fail_msg("%s: the original raises, sparsebox accepted the shape", g->path);
        if (!strstr(sbx_last_error(), "empty output")) fail_msg("%s: message '%s'", g->path, sbx_last_error());
        return;
    }
    if (st != SBX_OK) fail_msg("%s: %s", g->path, sbx_last_error());
    sbx_sparse *m;
    sbx_array *kmap;
    st = sbx_conv_indices(&s, (int)ws, nkern, SBX_CSC, &m, ws ? NULL : &kmap);
    if (st != SBX_OK) fail_msg("%s: %s", g->path, sbx_last_error());
    int64_t shape[2] = {m->nrows, m->ncols}, outshp[2] = {s.out[0], s.out[1]};
    same_ints(g, "spmat_shape", shape, 2);
    same_ints(g, "outshp", outshp, 2);
    same_ints(g, "indptr", m->indptr, m->ncols + 1);
    same_ints(g, "indices", m->indices, m->nnz);
    same_ints(g, "data", m->data, m->nnz);
    if (!ws) {
        same_ints(g, "kmap", kmap->data, m->nnz);
        sbx_array_free(kmap);
    }
    assert_int_equal(sbx_sparse_validate(m), SBX_OK);
    sbx_sparse_free(m);
}

static void test_golden_indices(void **state) {
    (void)state;
    int n, errors = 0;
    char **paths = golden_list("ci_", &n);
    if (n == 0) fail_msg("no ci_*.txt files in %s: the golden data is missing", SBX_GOLDEN_DIR);
    for (int i = 0; i < n; i++) {
        golden_case g;
        if (golden_read(paths[i], &g) != 0) fail_msg("cannot read %s", paths[i]);
        errors += strcmp(golden_value(&g, "expect"), "error") == 0;
        check_golden_case(&g);
        golden_free(&g);
    }
    printf("checked %d golden ConvolutionIndices cases (%d of them errors in the original)\n", n, errors);
    golden_list_free(paths, n);
}

/* --- brute-force reference ------------------------------------------------------------------- */

typedef struct {
    int64_t row, col, val;
} triple;

static int by_col_row(const void *a, const void *b) {
    const triple *x = a, *y = b;
    if (x->col != y->col) return x->col < y->col ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

/* The original's loops, generalised to N-d and written plainly: for each feature map, kernel,
 * output position (raster) and tap (raster), the tap counter advances; taps inside the image give
 * an entry. Returns the entries sorted by column, then row. */
static triple *reference(const sbx_conv_shape *s, int ws, int64_t nkern, int64_t *count) {
    int nd = s->ndim;
    triple *t = malloc(sizeof *t * (size_t)(s->channels * nkern * s->out_size * s->kernel_size + 1));
    int64_t n_entries = 0, tap = 0, spatial = s->in_size / s->channels;
    for (int64_t f = 0; f < s->channels; f++)
        for (int64_t n = 0; n < nkern; n++)
            for (int64_t o = 0; o < s->out_size; o++)
                for (int64_t l = 0; l < s->kernel_size; l++, tap++) {
                    int64_t orest = o, lrest = l, pix = 0, scale = 1, inside = 1;
                    for (int d = nd - 1; d >= 0; d--) {
                        int64_t od = orest % s->out[d], td = lrest % s->kernel[d];
                        orest /= s->out[d];
                        lrest /= s->kernel[d];
                        int64_t pad = s->mode == SBX_CONV_FULL ? s->kernel[d] - 1 : 0;
                        int64_t i = od * s->stride[d] - pad + td;
                        if (i < 0 || i >= s->in[d]) inside = 0;
                        pix += i * scale;
                        scale *= s->in[d];
                    }
                    if (!inside) continue;
                    t[n_entries].col = f * spatial + pix;
                    t[n_entries].row = ws ? (o * s->channels + f) * s->kernel_size + l : n * s->out_size + o;
                    t[n_entries].val = tap + 1;
                    n_entries++;
                }
    qsort(t, (size_t)n_entries, sizeof *t, by_col_row);
    *count = n_entries;
    return t;
}

static void check_against_reference(const sbx_conv_shape *s, int ws, int64_t nkern) {
    int64_t n;
    triple *t = reference(s, ws, nkern, &n);
    sbx_sparse *m, *csr;
    sbx_array *kmap, *kmap_csr;
    assert_int_equal(sbx_conv_indices(s, ws, nkern, SBX_CSC, &m, &kmap), SBX_OK);
    assert_int_equal(m->nnz, n);
    assert_int_equal(m->nrows, ws ? s->out_size * s->channels * s->kernel_size : nkern * s->out_size);
    assert_int_equal(m->ncols, s->in_size);
    for (int64_t c = 0, p = 0; c < m->ncols; c++)
        for (; p < m->indptr[c + 1]; p++) {
            if (t[p].col != c || t[p].row != m->indices[p] || t[p].val != ((int64_t *)m->data)[p])
                fail_msg("ndim %d entry %lld: got (%lld, %lld) = %lld, expected (%lld, %lld) = %lld", s->ndim, (long long)p,
                         (long long)m->indices[p], (long long)c, (long long)((int64_t *)m->data)[p], (long long)t[p].row,
                         (long long)t[p].col, (long long)t[p].val);
            assert_true(((int64_t *)kmap->data)[p] == t[p].val - 1);
        }
    /* The CSR form is the same matrix, its kmap in CSR storage order. */
    assert_int_equal(sbx_conv_indices(s, ws, nkern, SBX_CSR, &csr, &kmap_csr), SBX_OK);
    sbx_sparse *back;
    assert_int_equal(sbx_sparse_convert(csr, SBX_CSC, &back), SBX_OK);
    assert_memory_equal(back->indptr, m->indptr, (size_t)(m->ncols + 1) * sizeof(int64_t));
    if (n) {
        assert_memory_equal(back->indices, m->indices, (size_t)n * sizeof(int64_t));
        assert_memory_equal(back->data, m->data, (size_t)n * sizeof(int64_t));
    }
    for (int64_t p = 0; p < n; p++) assert_true(((int64_t *)kmap_csr->data)[p] == ((int64_t *)csr->data)[p] - 1);
    sbx_sparse_free(back);
    sbx_sparse_free(csr);
    sbx_array_free(kmap_csr);
    /* The gather table agrees with the convolution form: row (o*C + f)*K + l reads table[o][f*K + l]. */
    if (ws) {
        sbx_array *g;
        assert_int_equal(sbx_conv_gather(s, &g), SBX_OK);
        assert_int_equal(g->shape[0], s->out_size);
        assert_int_equal(g->shape[1], s->channels * s->kernel_size);
        int64_t *want = malloc(sizeof *want * (size_t)(m->nrows + 1));
        for (int64_t r = 0; r < m->nrows; r++) want[r] = -1;
        for (int64_t p = 0; p < n; p++) want[t[p].row] = t[p].col;
        assert_memory_equal(g->data, want, (size_t)m->nrows * sizeof(int64_t));
        free(want);
        sbx_array_free(g);
    }
    sbx_sparse_free(m);
    sbx_array_free(kmap);
    free(t);
}

static uint64_t rng_state = 88172645463325252ULL;
static int64_t uniform(int64_t lo, int64_t hi) { /* in [lo, hi] */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return lo + (int64_t)(rng_state % (uint64_t)(hi - lo + 1));
}

static void test_nd_against_reference(void **state) {
    (void)state;
    int checked = 0;
    for (int ndim = 1; ndim <= SBX_MAX_NDIM; ndim++)
        for (int trial = 0; trial < (ndim <= 3 ? 60 : 20); trial++) {
            int64_t in[SBX_MAX_NDIM], k[SBX_MAX_NDIM], st[SBX_MAX_NDIM];
            int64_t limit = ndim == 1 ? 12 : ndim == 2 ? 7 : ndim == 3 ? 5 : ndim == 4 ? 3 : 2;
            for (int d = 0; d < ndim; d++) {
                in[d] = uniform(1, limit);
                k[d] = uniform(1, in[d] + 1);
                st[d] = uniform(1, 3);
            }
            sbx_conv_mode mode = (sbx_conv_mode)uniform(0, 1);
            sbx_conv_shape s;
            if (sbx_conv_shape_make(ndim, uniform(1, 3), in, k, st, mode, &s) != SBX_OK) {
                expect_error(SBX_ERR_ARG, SBX_ERR_ARG, "empty output"); /* a valid-mode kernel too large */
                continue;
            }
            check_against_reference(&s, 1, 1);
            check_against_reference(&s, 0, uniform(1, 3));
            checked++;
        }
    assert_true(checked > 100);
}

/* A 1-d and a 3-d case spelled out. */
static void test_one_and_three_d(void **state) {
    (void)state;
    sbx_conv_shape s;
    int64_t in1 = 5, k1 = 3, st1 = 2;
    assert_int_equal(sbx_conv_shape_make(1, 1, &in1, &k1, &st1, SBX_CONV_FULL, &s), SBX_OK);
    assert_int_equal(s.out[0], 4); /* ceil((5 + 3 - 1) / 2) */
    sbx_array *g;
    assert_int_equal(sbx_conv_gather(&s, &g), SBX_OK);
    /* window starts o*2 - 2: -2, 0, 2, 4 */
    const int64_t want[12] = {-1, -1, 0, 0, 1, 2, 2, 3, 4, 4, -1, -1};
    assert_memory_equal(g->data, want, sizeof want);
    sbx_array_free(g);
    int64_t in3[3] = {3, 4, 5}, k3[3] = {2, 3, 2}, st3[3] = {1, 2, 3};
    assert_int_equal(sbx_conv_shape_make(3, 2, in3, k3, st3, SBX_CONV_VALID, &s), SBX_OK);
    assert_int_equal(s.out[0], 2);
    assert_int_equal(s.out[1], 1);
    assert_int_equal(s.out[2], 2);
    assert_int_equal(s.in_size, 120);
    check_against_reference(&s, 1, 1);
    check_against_reference(&s, 0, 2);
}

/* Matrices of 200,000 entries and more are built by several threads (the first feature map's columns
 * in blocks, then the other maps in equal shares): the same entries at 1, 2 and 3 threads. The three
 * cases have 494,508, 273,600 and 369,360 entries. */
static void test_threads(void **state) {
    (void)state;
    int64_t in2[2] = {64, 64}, k2[2] = {7, 7}, in2b[2] = {60, 57}, k2b[2] = {5, 4}, st2b[2] = {1, 2};
    int64_t in3[3] = {20, 21, 22}, k3[3] = {3, 3, 3};
    sbx_conv_shape s[3];
    assert_int_equal(sbx_conv_shape_make(2, 3, in2, k2, NULL, SBX_CONV_VALID, &s[0]), SBX_OK);
    assert_int_equal(sbx_conv_shape_make(2, 2, in2b, k2b, st2b, SBX_CONV_FULL, &s[1]), SBX_OK);
    assert_int_equal(sbx_conv_shape_make(3, 2, in3, k3, NULL, SBX_CONV_VALID, &s[2]), SBX_OK);
    const int ws[3] = {1, 0, 1};
    const int64_t nkern[3] = {1, 4, 1};
    for (int i = 0; i < 3; i++) {
        sbx_sparse *m;
        assert_int_equal(sbx_conv_indices(&s[i], ws[i], nkern[i], SBX_CSC, &m, NULL), SBX_OK);
        assert_true(m->nnz >= 200000);
        sbx_sparse_free(m);
    }
    for (int threads = 1; threads <= 3; threads++) {
        sbx_set_num_threads(threads);
        for (int i = 0; i < 3; i++) check_against_reference(&s[i], ws[i], nkern[i]);
    }
    /* Called from a parallel region of the caller's, the library's regions get one thread while it asks
     * for 3 (nested regions are inactive): the shares are still all done. */
    omp_set_max_active_levels(1);
    for (int i = 0; i < 3; i++) {
        sbx_sparse *one, *nested = NULL;
        sbx_set_num_threads(1);
        assert_int_equal(sbx_conv_indices(&s[i], ws[i], nkern[i], SBX_CSC, &one, NULL), SBX_OK);
        sbx_set_num_threads(3);
        sbx_status st = SBX_OK;
#pragma omp parallel num_threads(2)
#pragma omp single
        st = sbx_conv_indices(&s[i], ws[i], nkern[i], SBX_CSC, &nested, NULL);
        assert_int_equal(st, SBX_OK);
        assert_memory_equal(one->indices, nested->indices, (size_t)one->nnz * sizeof(int64_t));
        assert_memory_equal(one->data, nested->data, (size_t)one->nnz * sizeof(int64_t));
        sbx_sparse_free(one);
        sbx_sparse_free(nested);
    }
    sbx_set_num_threads(0);
}

static void test_aesara_step_order(void **state) {
    (void)state;
    /* step (dx, dy) = (1, 2): output rows 2 apart, columns 1 apart. */
    int64_t inshp[2] = {6, 9}, kshp[2] = {2, 3}, step[2] = {1, 2};
    sbx_conv_shape s;
    assert_int_equal(sbx_conv_shape_aesara(2, inshp, kshp, step, SBX_CONV_VALID, &s), SBX_OK);
    assert_int_equal(s.stride[0], 2);
    assert_int_equal(s.stride[1], 1);
    assert_int_equal(s.out[0], 3); /* ceil(5 / 2) */
    assert_int_equal(s.out[1], 7);
    assert_int_equal(s.channels, 1);
}

static void test_bad_shapes(void **state) {
    (void)state;
    sbx_conv_shape s;
    int64_t in[2] = {4, 4}, k[2] = {5, 5}, st[2] = {3, 3}, zero[2] = {0, 1}, neg[2] = {1, -2};
    expect_error(sbx_conv_shape_make(2, 1, in, k, st, SBX_CONV_VALID, &s), SBX_ERR_ARG,
                 "kernel (5,5) with stride (3,3) gives an empty output for image (4,4)");
    expect_error(sbx_conv_shape_make(2, 1, in, zero, st, SBX_CONV_VALID, &s), SBX_ERR_ARG, "kernel shape[0] = 0");
    expect_error(sbx_conv_shape_make(2, 1, in, in, neg, SBX_CONV_VALID, &s), SBX_ERR_ARG, "stride[1] = -2");
    expect_error(sbx_conv_shape_make(2, 1, zero, in, st, SBX_CONV_FULL, &s), SBX_ERR_ARG, "image shape[0] = 0");
    expect_error(sbx_conv_shape_make(2, 0, in, in, st, SBX_CONV_FULL, &s), SBX_ERR_ARG, "channels 0");
    expect_error(sbx_conv_shape_make(0, 1, in, in, st, SBX_CONV_FULL, &s), SBX_ERR_ARG, "ndim 0");
    expect_error(sbx_conv_shape_make(9, 1, in, in, st, SBX_CONV_FULL, &s), SBX_ERR_ARG, "ndim 9");
    expect_error(sbx_conv_shape_make(2, 1, in, in, st, (sbx_conv_mode)7, &s), SBX_ERR_ARG, "mode 7");
    expect_error(sbx_conv_shape_make(2, 1, NULL, in, st, SBX_CONV_FULL, &s), SBX_ERR_ARG, "image shape is NULL");
    expect_error(sbx_conv_shape_make(2, 1, in, in, st, SBX_CONV_FULL, NULL), SBX_ERR_ARG, "NULL");
    int64_t big[3] = {INT64_MAX / 2, 4, 4}, kbig[3] = {INT64_MAX / 2, 1, 1};
    expect_error(sbx_conv_shape_make(3, 1, big, big, NULL, SBX_CONV_FULL, &s), SBX_ERR_OVERFLOW, "overflows int64");
    expect_error(sbx_conv_shape_make(3, 1, big, kbig, NULL, SBX_CONV_VALID, &s), SBX_ERR_OVERFLOW, "overflows int64");
    int64_t inshp4[4] = {1, 1, 4, 4};
    expect_error(sbx_conv_shape_aesara(4, inshp4, k, NULL, SBX_CONV_FULL, &s), SBX_ERR_ARG, "inshp has 4 entries");
    sbx_conv_mode mode;
    expect_error(sbx_conv_mode_parse("same", &mode), SBX_ERR_ARG, "'same'");
}

static void test_bad_indices_arguments(void **state) {
    (void)state;
    sbx_conv_shape s;
    sbx_sparse *m = NULL;
    int64_t in[2] = {4, 4}, k[2] = {2, 2};
    assert_int_equal(sbx_conv_shape_make(2, 1, in, k, NULL, SBX_CONV_VALID, &s), SBX_OK);
    expect_error(sbx_conv_indices(&s, 0, 0, SBX_CSC, &m, NULL), SBX_ERR_ARG, "nkern 0");
    expect_error(sbx_conv_indices(&s, 1, 2, SBX_CSC, &m, NULL), SBX_ERR_ARG, "nkern 2 with weight sharing");
    expect_error(sbx_conv_indices(&s, 2, 1, SBX_CSC, &m, NULL), SBX_ERR_ARG, "weight_sharing 2");
    expect_error(sbx_conv_indices(&s, 1, 1, (sbx_format)5, &m, NULL), SBX_ERR_ARG, "format 5");
    expect_error(sbx_conv_indices(NULL, 1, 1, SBX_CSC, &m, NULL), SBX_ERR_ARG, "shape is NULL");
    expect_error(sbx_conv_indices(&s, 1, 1, SBX_CSC, NULL, NULL), SBX_ERR_ARG, "matrix is NULL");
    assert_null(m);
    sbx_conv_shape forged = s;
    forged.out[0] = 100; /* computed fields that do not match the inputs */
    expect_error(sbx_conv_indices(&forged, 1, 1, SBX_CSC, &m, NULL), SBX_ERR_ARG, "computed fields");
    forged = s;
    forged.kernel[1] = 0;
    expect_error(sbx_conv_gather(&forged, NULL), SBX_ERR_ARG, "table is NULL");
    sbx_array *g = NULL;
    expect_error(sbx_conv_gather(&forged, &g), SBX_ERR_ARG, "kernel shape[1] = 0");
    /* A matrix whose size overflows int64 is refused before anything is allocated. */
    int64_t huge[2] = {3037000499LL, 3037000499LL}, k7[2] = {7, 7};
    assert_int_equal(sbx_conv_shape_make(2, 1, huge, k7, NULL, SBX_CONV_VALID, &s), SBX_OK);
    expect_error(sbx_conv_indices(&s, 1, 1, SBX_CSC, &m, NULL), SBX_ERR_OVERFLOW, "overflows int64");
    /* One that fits int64 but not in memory fails cleanly. */
    int64_t large[2] = {100000, 100000}, k3[2] = {3, 3};
    assert_int_equal(sbx_conv_shape_make(2, 64, large, k3, NULL, SBX_CONV_FULL, &s), SBX_OK);
    sbx_status st = sbx_conv_indices(&s, 1, 1, SBX_CSC, &m, NULL);
    assert_true(st == SBX_ERR_NOMEM || st == SBX_ERR_OVERFLOW);
    assert_null(m);
}

static void test_allocation_failures(void **state) {
    (void)state;
    sbx_conv_shape s;
    int64_t in[2] = {5, 6}, k[2] = {3, 2}, st[2] = {2, 1};
    assert_int_equal(sbx_conv_shape_make(2, 2, in, k, st, SBX_CONV_FULL, &s), SBX_OK);
    int64_t i;
    for (i = 1;; i++) {
        sbx_sparse *m = NULL;
        sbx_array *kmap = NULL;
        sbx__alloc_fail_at(i);
        sbx_status r = sbx_conv_indices(&s, 0, 2, SBX_CSR, &m, &kmap);
        sbx__alloc_fail_at(0);
        if (r == SBX_OK) {
            sbx_sparse_free(m);
            sbx_array_free(kmap);
            break;
        }
        assert_int_equal(r, SBX_ERR_NOMEM);
        assert_null(m);
    }
    assert_true(i > 6);
    for (i = 1;; i++) {
        sbx_array *g = NULL;
        sbx__alloc_fail_at(i);
        sbx_status r = sbx_conv_gather(&s, &g);
        sbx__alloc_fail_at(0);
        if (r == SBX_OK) {
            sbx_array_free(g);
            break;
        }
        assert_int_equal(r, SBX_ERR_NOMEM);
    }
    assert_true(i > 2);
}

/* --- The planner (conv.h): candidates, ESTIMATE, MEASURE and wisdom ------------------------------ */

/* A file under $SBX_TEST_TMP (else /tmp) named for this process. */
static void tmp_path(char *buf, size_t size, const char *name) {
    const char *base = getenv("SBX_TEST_TMP");
    snprintf(buf, size, "%s/conv-%d-%s", base ? base : "/tmp", (int)getpid(), name);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* The wisdom entry line of a conv plan of shape s, nkern, dtype, batch that names path a alone. */
static void entry_line(const sbx_conv_shape *s, int64_t nkern, sbx_dtype dtype, int64_t batch, sbx_algo a, char *buf,
                       size_t size) {
    int w = snprintf(buf, size, "conv %s %d %lld ", sbx_dtype_name(dtype), s->ndim, (long long)s->channels);
    const int64_t *lists[3] = {s->in, s->kernel, s->stride};
    for (int l = 0; l < 3; l++) {
        for (int d = 0; d < s->ndim; d++) w += snprintf(buf + w, size - (size_t)w, "%s%lld", d ? "," : "", (long long)lists[l][d]);
        w += snprintf(buf + w, size - (size_t)w, " ");
    }
    snprintf(buf + w, size - (size_t)w, "%s %lld %lld 1 %s 1 %s=0.5\n", sbx_conv_mode_name(s->mode), (long long)nkern,
             (long long)batch, sbx_algo_name(a), sbx_algo_name(a));
}

/* A MEASURE plan made to take path a, through wisdom naming it alone (no timing). */
static sbx_conv_plan *plan_on_path(const sbx_conv_shape *s, int64_t nkern, sbx_dtype dtype, int64_t batch, sbx_algo a) {
    char path[512], text[1024] = "sparsebox-wisdom 1\n";
    tmp_path(path, sizeof path, "path.wisdom");
    entry_line(s, nkern, dtype, batch, a, text + strlen(text), sizeof text - strlen(text));
    write_text(path, text);
    sbx_wisdom_forget();
    if (sbx_wisdom_import(path) != SBX_OK) fail_msg("import: %s", sbx_last_error());
    remove(path);
    sbx_conv_plan *p = NULL;
    if (sbx_conv_plan_create_flags(s, nkern, dtype, SBX_PLAN_MEASURE, batch, &p) != SBX_OK)
        fail_msg("plan: %s", sbx_last_error());
    sbx_plan_info info;
    assert_int_equal(sbx_conv_plan_info(p, &info), SBX_OK);
    assert_int_equal(info.algo, a);
    assert_int_equal(info.from_wisdom, 1);
    assert_true(info.seconds[0] == 0.5);
    sbx_wisdom_forget();
    return p;
}

static sbx_array *random_array(sbx_dtype dtype, int ndim, const int64_t *shape, uint64_t seed) {
    sbx_array *a;
    assert_int_equal(sbx_array_create(dtype, ndim, shape, &a), SBX_OK);
    uint64_t z = seed;
    for (int64_t i = 0; i < sbx_array_numel(a); i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        const double v = (double)(z >> 11) * 0x1.0p-53 * 2 - 1;
        if (dtype == SBX_FLOAT32)
            ((float *)a->data)[i] = (float)v;
        else
            ((double *)a->data)[i] = v;
    }
    return a;
}

static double value_at(const sbx_array *a, int64_t i) {
    return a->dtype == SBX_FLOAT32 ? ((const float *)a->data)[i] : ((const double *)a->data)[i];
}

/* Every candidate of a convolution gives the forward pass of a brute-force sum over the gather table,
 * within rounding, at 1 and 3 threads (the same bits at both). */
static void check_candidates(const sbx_conv_shape *s, int64_t nkern, sbx_dtype dtype, int want_direct) {
    const int64_t batch = 3;
    sbx_conv_plan *est;
    assert_int_equal(sbx_conv_plan_create(s, nkern, dtype, &est), SBX_OK);
    sbx_plan_info info;
    assert_int_equal(sbx_conv_plan_info(est, &info), SBX_OK);
    assert_int_equal(info.algo, want_direct ? SBX_ALGO_DIRECT : SBX_ALGO_GATHER);
    assert_int_equal(info.ncandidates, want_direct ? 4 : 3);
    assert_int_equal(info.from_wisdom, 0);
    const int64_t W = s->channels * s->kernel_size, xs[2] = {batch, s->in_size}, ks[2] = {nkern, W};
    sbx_array *x = random_array(dtype, 2, xs, 11), *k = random_array(dtype, 2, ks, 12), *bias = random_array(dtype, 1, &nkern, 13);
    sbx_array *table, *base = NULL;
    assert_int_equal(sbx_conv_gather(s, &table), SBX_OK);
    assert_int_equal(sbx_conv_forward(est, x, k, bias, &base), SBX_OK);
    const int64_t *g = table->data, O = s->out_size;
    const double tol = dtype == SBX_FLOAT32 ? 1e-5 : 1e-13;
    for (int c = 0; c < info.ncandidates; c++) {
        sbx_conv_plan *p = plan_on_path(s, nkern, dtype, batch, info.candidates[c]);
        sbx_array *y1 = NULL, *y3 = NULL;
        sbx_set_num_threads(1);
        assert_int_equal(sbx_conv_forward(p, x, k, bias, &y1), SBX_OK);
        sbx_set_num_threads(3);
        assert_int_equal(sbx_conv_forward(p, x, k, bias, &y3), SBX_OK);
        sbx_set_num_threads(0);
        assert_memory_equal(y1->data, y3->data, (size_t)sbx_array_numel(y1) * sbx_dtype_size(dtype));
        if (info.candidates[c] == info.algo) /* ESTIMATE's path, chosen through the wisdom: the same bits */
            assert_memory_equal(y1->data, base->data, (size_t)sbx_array_numel(y1) * sbx_dtype_size(dtype));
        for (int64_t b = 0; b < batch; b++)
            for (int64_t n = 0; n < nkern; n++)
                for (int64_t o = 0; o < O; o++) {
                    double sum = value_at(bias, n), mag = fabs(sum);
                    for (int64_t j = 0; j < W; j++)
                        if (g[o * W + j] >= 0) {
                            const double t = value_at(k, n * W + j) * value_at(x, b * s->in_size + g[o * W + j]);
                            sum += t;
                            mag += fabs(t);
                        }
                    const double got = value_at(y1, (b * nkern + n) * O + o);
                    if (fabs(got - sum) > tol * (1 + mag))
                        fail_msg("path %s: y[%lld][%lld][%lld] = %.17g, expected %.17g", sbx_algo_name(info.candidates[c]),
                                 (long long)b, (long long)n, (long long)o, got, sum);
                }
        sbx_array_free(y1);
        sbx_array_free(y3);
        sbx_conv_plan_free(p);
    }
    sbx_array_free(x);
    sbx_array_free(k);
    sbx_array_free(bias);
    sbx_array_free(table);
    sbx_array_free(base);
    sbx_conv_plan_free(est);
}

static void test_plan_candidates(void **state) {
    (void)state;
    const int64_t in1[2] = {12, 20}, k1[2] = {3, 3};         /* direct: rows of 18 outputs */
    const int64_t in2[2] = {9, 7}, k2[2] = {3, 2};           /* full mode */
    const int64_t in3[2] = {11, 13}, k3[2] = {3, 3}, st3[2] = {2, 1};
    const int64_t in4[2] = {10, 12}, k4[2] = {2, 3}, st4[2] = {1, 2};
    const int64_t in5[1] = {40}, k5[1] = {5};
    const int64_t in6[3] = {4, 5, 6}, k6[3] = {2, 2, 3};
    /* Strides along the last axis and full mode: the direct kernel over rearranged images (phased.c),
     * with phases of unequal tap counts (5 taps in 3 phases) and padding on every axis. */
    const int64_t in7[1] = {70}, k7[1] = {5}, st7[1] = {3};
    const int64_t in8[3] = {4, 5, 20}, k8[3] = {2, 3, 4}, st8[3] = {1, 2, 2};
    const int64_t in9[2] = {9, 30}, k9[2] = {3, 5}, st9[2] = {2, 3};
    enum { SHAPES = 9 };
    sbx_conv_shape s[SHAPES];
    assert_int_equal(sbx_conv_shape_make(2, 2, in1, k1, NULL, SBX_CONV_VALID, &s[0]), SBX_OK);
    assert_int_equal(sbx_conv_shape_make(2, 3, in2, k2, NULL, SBX_CONV_FULL, &s[1]), SBX_OK);
    assert_int_equal(sbx_conv_shape_make(2, 1, in3, k3, st3, SBX_CONV_VALID, &s[2]), SBX_OK);
    assert_int_equal(sbx_conv_shape_make(2, 2, in4, k4, st4, SBX_CONV_FULL, &s[3]), SBX_OK);
    assert_int_equal(sbx_conv_shape_make(1, 1, in5, k5, NULL, SBX_CONV_VALID, &s[4]), SBX_OK);
    assert_int_equal(sbx_conv_shape_make(3, 2, in6, k6, NULL, SBX_CONV_VALID, &s[5]), SBX_OK);
    assert_int_equal(sbx_conv_shape_make(1, 1, in7, k7, st7, SBX_CONV_VALID, &s[6]), SBX_OK);
    assert_int_equal(sbx_conv_shape_make(3, 2, in8, k8, st8, SBX_CONV_FULL, &s[7]), SBX_OK);
    assert_int_equal(sbx_conv_shape_make(2, 3, in9, k9, st9, SBX_CONV_FULL, &s[8]), SBX_OK);
    const sbx_dtype dtypes[2] = {SBX_FLOAT32, SBX_FLOAT64};
    for (int d = 0; d < 2; d++) {
        const int L = dtypes[d] == SBX_FLOAT32 ? 16 : 8;
        for (int i = 0; i < SHAPES; i++) {
            const int direct = 2 * s[i].out[s[i].ndim - 1] >= L; /* output rows of half a vector or more */
            check_candidates(&s[i], i % 2 ? 5 : 3, dtypes[d], direct);
        }
    }
}

/* Local and pooling plans have one path each; MEASURE times it and records it. */
static void test_plan_local_pool(void **state) {
    (void)state;
    const int64_t in[2] = {8, 8}, k[2] = {3, 3}, pk[2] = {2, 2};
    sbx_conv_shape s, ps;
    assert_int_equal(sbx_conv_shape_make(2, 2, in, k, NULL, SBX_CONV_VALID, &s), SBX_OK);
    assert_int_equal(sbx_conv_shape_make(2, 2, in, pk, pk, SBX_CONV_VALID, &ps), SBX_OK);
    sbx_wisdom_forget();
    sbx_conv_plan *l, *p;
    sbx_plan_info info;
    assert_int_equal(sbx_local_plan_create_flags(&s, 3, SBX_FLOAT32, SBX_PLAN_MEASURE, 2, &l), SBX_OK);
    assert_int_equal(sbx_conv_plan_info(l, &info), SBX_OK);
    assert_int_equal(info.algo, SBX_ALGO_LOCAL);
    assert_int_equal(info.ncandidates, 1);
    assert_true(info.seconds[0] > 0);
    assert_int_equal(sbx_pool_plan_create_flags(&ps, SBX_FLOAT64, SBX_PLAN_MEASURE, 2, &p), SBX_OK);
    assert_int_equal(sbx_conv_plan_info(p, &info), SBX_OK);
    assert_int_equal(info.algo, SBX_ALGO_POOL);
    assert_int_equal(sbx_wisdom_count(), 2);
    sbx_conv_plan_free(l);
    sbx_conv_plan_free(p);
    assert_int_equal(sbx_pool_plan_create_flags(&ps, SBX_FLOAT64, SBX_PLAN_MEASURE, 2, &p), SBX_OK);
    assert_int_equal(sbx_conv_plan_info(p, &info), SBX_OK);
    assert_int_equal(info.from_wisdom, 1);
    sbx_conv_plan_free(p);
    sbx_wisdom_forget();
}

/* MEASURE, export, forget, import: the second plan takes the first's choice and its very times
 * (from_wisdom set: nothing was timed). */
static void test_wisdom_round_trip(void **state) {
    (void)state;
    const int64_t in[2] = {14, 20}, k[2] = {3, 3};
    sbx_conv_shape s;
    assert_int_equal(sbx_conv_shape_make(2, 2, in, k, NULL, SBX_CONV_VALID, &s), SBX_OK);
    sbx_wisdom_forget();
    sbx_conv_plan *a, *b, *c;
    sbx_plan_info ia, ib, ic;
    assert_int_equal(sbx_conv_plan_create_flags(&s, 4, SBX_FLOAT32, SBX_PLAN_MEASURE, 4, &a), SBX_OK);
    assert_int_equal(sbx_conv_plan_info(a, &ia), SBX_OK);
    assert_int_equal(ia.from_wisdom, 0);
    assert_int_equal(ia.ncandidates, 4);
    for (int i = 0; i < ia.ncandidates; i++) {
        assert_true(ia.seconds[i] > 0);
        if (ia.candidates[i] == ia.algo)
            for (int j = 0; j < ia.ncandidates; j++) assert_true(ia.seconds[i] <= ia.seconds[j]);
    }
    assert_int_equal(sbx_wisdom_count(), 1);
    char path[512];
    tmp_path(path, sizeof path, "round.wisdom");
    assert_int_equal(sbx_wisdom_export(path), SBX_OK);
    sbx_wisdom_forget();
    assert_int_equal(sbx_wisdom_count(), 0);
    assert_int_equal(sbx_wisdom_import(path), SBX_OK);
    assert_int_equal(sbx_wisdom_count(), 1);
    assert_int_equal(sbx_conv_plan_create_flags(&s, 4, SBX_FLOAT32, SBX_PLAN_MEASURE, 4, &b), SBX_OK);
    assert_int_equal(sbx_conv_plan_info(b, &ib), SBX_OK);
    assert_int_equal(ib.from_wisdom, 1);
    assert_int_equal(ib.algo, ia.algo);
    assert_int_equal(ib.ncandidates, ia.ncandidates);
    for (int i = 0; i < ia.ncandidates; i++) {
        assert_int_equal(ib.candidates[i], ia.candidates[i]);
        assert_memory_equal(&ib.seconds[i], &ia.seconds[i], sizeof(double)); /* exactly: not timed again */
    }
    /* Another batch is another key: timed afresh. */
    assert_int_equal(sbx_conv_plan_create_flags(&s, 4, SBX_FLOAT32, SBX_PLAN_MEASURE, 2, &c), SBX_OK);
    assert_int_equal(sbx_conv_plan_info(c, &ic), SBX_OK);
    assert_int_equal(ic.from_wisdom, 0);
    assert_int_equal(sbx_wisdom_count(), 2);
    /* Exporting again, then importing over the same store, changes nothing. */
    assert_int_equal(sbx_wisdom_export(path), SBX_OK);
    assert_int_equal(sbx_wisdom_import(path), SBX_OK);
    assert_int_equal(sbx_wisdom_count(), 2);
    /* An entry naming the direct kernel for a plan that cannot take it (output rows of 4, a quarter of
     * a vector) is not used. */
    write_text(path, "sparsebox-wisdom 1\nconv float32 2 3 9,3 3,2 1,1 full 5 3 1 direct 1 direct=0.5\n");
    sbx_wisdom_forget();
    assert_int_equal(sbx_wisdom_import(path), SBX_OK);
    const int64_t fin[2] = {9, 3}, fk[2] = {3, 2};
    sbx_conv_shape fs;
    sbx_conv_plan *f;
    sbx_plan_info iff;
    assert_int_equal(sbx_conv_shape_make(2, 3, fin, fk, NULL, SBX_CONV_FULL, &fs), SBX_OK);
    assert_int_equal(sbx_conv_plan_create_flags(&fs, 5, SBX_FLOAT32, SBX_PLAN_MEASURE, 3, &f), SBX_OK);
    assert_int_equal(sbx_conv_plan_info(f, &iff), SBX_OK);
    assert_int_equal(iff.from_wisdom, 0);
    assert_int_equal(iff.ncandidates, 3);
    assert_true(iff.algo != SBX_ALGO_DIRECT);
    sbx_conv_plan_free(f);
    remove(path);
    sbx_conv_plan_free(a);
    sbx_conv_plan_free(b);
    sbx_conv_plan_free(c);
    sbx_wisdom_forget();
}

/* Bad wisdom files: an error naming the line and the field; the store left as it was. */
static void test_wisdom_bad_files(void **state) {
    (void)state;
    static const char *const good = "conv float32 2 2 14,20 3,3 1,1 valid 4 4 1 gather 2 gather=0.25 csr=0.5\n";
    static const struct {
        const char *text;
        sbx_status status;
        const char *needle;
    } cases[] = {
        {"", SBX_ERR_FORMAT, "version line missing"},
        {"sparsebox-wisdom 2\n", SBX_ERR_FORMAT, "line 1: version"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14,20 3,3 1,1 valid 4 4 1 gather 2 gather=0.25\n", SBX_ERR_FORMAT,
         "line 2: field candidate 2 is missing"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14,20 3,3 1,1 valid 4 4 1 gather 2 gather=0.25 csr=0.5", SBX_ERR_FORMAT,
         "line 2: truncated"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14,20 3,3\n", SBX_ERR_FORMAT, "line 2: field STRIDE is missing"},
        {"sparsebox-wisdom 1\nfft float32 2 2 14,20 3,3 1,1 valid 4 4 1 gather 1 gather=0.25\n", SBX_ERR_FORMAT,
         "field KIND: unknown kind 'fft'"},
        {"sparsebox-wisdom 1\nconv float16 2 2 14,20 3,3 1,1 valid 4 4 1 gather 1 gather=0.25\n", SBX_ERR_FORMAT,
         "field DTYPE"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14,2x 3,3 1,1 valid 4 4 1 gather 1 gather=0.25\n", SBX_ERR_FORMAT,
         "field IN '2x' is not an integer"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14 3,3 1,1 valid 4 4 1 gather 1 gather=0.25\n", SBX_ERR_FORMAT,
         "field IN must hold 2"},
        {"sparsebox-wisdom 1\nconv float32 9 2 14,20 3,3 1,1 valid 4 4 1 gather 1 gather=0.25\n", SBX_ERR_ARG,
         "field NDIM 9"},
        {"sparsebox-wisdom 1\nconv float32 2 2 2,20 3,3 1,1 valid 4 4 1 gather 1 gather=0.25\n", SBX_ERR_ARG,
         "line 2: fields IN, KERNEL"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14,20 3,3 1,1 same 4 4 1 gather 1 gather=0.25\n", SBX_ERR_FORMAT,
         "field MODE"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14,20 3,3 1,1 valid 0 4 1 gather 1 gather=0.25\n", SBX_ERR_ARG,
         "field NKERN 0"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14,20 3,3 1,1 valid 4 4 0 gather 1 gather=0.25\n", SBX_ERR_ARG,
         "field FLAGS 0"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14,20 3,3 1,1 valid 4 4 1 fast 1 fast=0.25\n", SBX_ERR_FORMAT,
         "field ALGO: unknown path 'fast'"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14,20 3,3 1,1 valid 4 4 1 pool 1 pool=0.25\n", SBX_ERR_FORMAT,
         "not one of a conv plan's"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14,20 3,3 1,1 valid 4 4 1 gather 1 gather=abc\n", SBX_ERR_FORMAT,
         "seconds 'abc' is not a number"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14,20 3,3 1,1 valid 4 4 1 gather 1 gather=-1\n", SBX_ERR_ARG,
         "must be finite and >= 0"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14,20 3,3 1,1 valid 4 4 1 gather 1 gather=nan\n", SBX_ERR_ARG,
         "must be finite"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14,20 3,3 1,1 valid 4 4 1 gather 1 csr=0.5\n", SBX_ERR_FORMAT,
         "not among the candidates"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14,20 3,3 1,1 valid 4 4 1 gather 2 csr=0.5 csr=0.5\n", SBX_ERR_FORMAT,
         "listed twice"},
        {"sparsebox-wisdom 1\nconv float32 2 2 14,20 3,3 1,1 valid 4 4 1 gather 1 gather=0.5 extra\n", SBX_ERR_FORMAT,
         "text after the last field"},
        {"sparsebox-wisdom 1\nconv  float32 2 2 14,20 3,3 1,1 valid 4 4 1 gather 1 gather=0.5\n", SBX_ERR_FORMAT,
         "field DTYPE is empty"},
    };
    char path[512], text[1024];
    tmp_path(path, sizeof path, "bad.wisdom");
    snprintf(text, sizeof text, "sparsebox-wisdom 1\n# a comment\n%s", good);
    write_text(path, text);
    sbx_wisdom_forget();
    assert_int_equal(sbx_wisdom_import(path), SBX_OK);
    assert_int_equal(sbx_wisdom_count(), 1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(path, cases[i].text);
        const sbx_status st = sbx_wisdom_import(path);
        if (st != cases[i].status || !strstr(sbx_last_error(), cases[i].needle))
            fail_msg("case %zu: status %d (wanted %d), message '%s' (wanted '%s')", i, st, cases[i].status,
                     sbx_last_error(), cases[i].needle);
        assert_int_equal(sbx_wisdom_count(), 1);
    }
    /* A good entry followed by a bad one: nothing of the file is taken. */
    snprintf(text, sizeof text, "sparsebox-wisdom 1\n%sconv float32 2 2 14,20 3,3 1,1 valid 5 4 1 gather 1 x=1\n",
             good);
    write_text(path, text);
    sbx_wisdom_forget();
    expect_error(sbx_wisdom_import(path), SBX_ERR_FORMAT, "line 3");
    assert_int_equal(sbx_wisdom_count(), 0);
    remove(path);
    expect_error(sbx_wisdom_import(path), SBX_ERR_IO, "cannot read wisdom file");
    expect_error(sbx_wisdom_import(NULL), SBX_ERR_ARG, "path is NULL");
    expect_error(sbx_wisdom_export(NULL), SBX_ERR_ARG, "path is NULL");
    expect_error(sbx_wisdom_export("/nonexistent-dir/w"), SBX_ERR_IO, "cannot write");
    /* Bad arguments of the planner. */
    const int64_t in[2] = {14, 20}, k[2] = {3, 3};
    sbx_conv_shape s;
    sbx_conv_plan *p = NULL;
    assert_int_equal(sbx_conv_shape_make(2, 2, in, k, NULL, SBX_CONV_VALID, &s), SBX_OK);
    expect_error(sbx_conv_plan_create_flags(&s, 4, SBX_FLOAT32, 7, 1, &p), SBX_ERR_ARG, "flags 7");
    expect_error(sbx_conv_plan_create_flags(&s, 4, SBX_FLOAT32, SBX_PLAN_MEASURE, 0, &p), SBX_ERR_ARG, "batch 0");
    expect_error(sbx_pool_plan_create_flags(&s, SBX_FLOAT32, SBX_PLAN_ESTIMATE, -1, &p), SBX_ERR_ARG, "batch -1");
    assert_null(p);
    sbx_plan_info info;
    expect_error(sbx_conv_plan_info(NULL, &info), SBX_ERR_ARG, "plan is NULL");
    sbx_algo a;
    expect_error(sbx_algo_parse("fast", &a), SBX_ERR_ARG, "'fast'");
    assert_int_equal(sbx_algo_parse("csc", &a), SBX_OK);
    assert_int_equal(a, SBX_ALGO_CSC);
    assert_string_equal(sbx_algo_name((sbx_algo)99), "invalid");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_indices),      cmocka_unit_test(test_nd_against_reference),
        cmocka_unit_test(test_one_and_three_d),     cmocka_unit_test(test_aesara_step_order),
        cmocka_unit_test(test_bad_shapes),          cmocka_unit_test(test_bad_indices_arguments),
        cmocka_unit_test(test_allocation_failures), cmocka_unit_test(test_threads),
        cmocka_unit_test(test_plan_candidates),     cmocka_unit_test(test_plan_local_pool),
        cmocka_unit_test(test_wisdom_round_trip),   cmocka_unit_test(test_wisdom_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
