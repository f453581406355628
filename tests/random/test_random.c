/* Tests of the random module's behaviour: Philox4x32-10's published known answers, the cursor layout,
 * bad parameters, the sparse ops' edges and thread invariance, arrays of draws, the Op answers. The
 * distributions themselves are tested in test_fit.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "random/internal.h"
#include "sparsebox.h"

/* The known-answer vectors for philox4x32 with 10 rounds published with Random123 (kat_vectors):
 * counter, key, expected output. */
static const struct {
    uint32_t ctr[4], key[2], out[4];
} kat[] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

static void test_philox_known_answers(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        sbx_philox4x32_10(kat[i].ctr, kat[i].key, out);
        assert_memory_equal(out, kat[i].out, sizeof out);
    }
}

/* Value k of position p is word k % 4 of the block (k / 4, p, p >> 32, stream) under the seed. */
static void test_cursor_layout(void **state) {
    (void)state;
    sbx_rng rng;
    sbx_rng_cursor cur;
    const uint64_t seed = 0x0123456789abcdefULL;
    const int64_t position = 0x100000002LL;
    sbx_rng_init(&rng, seed, 7);
    assert_int_equal(sbx_rng_cursor_init(&rng, position, &cur), SBX_OK);
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)}, want[8];
    uint32_t c0[4] = {0, 2, 1, 7}, c1[4] = {1, 2, 1, 7};
    sbx_philox4x32_10(c0, key, want);
    sbx_philox4x32_10(c1, key, want + 4);
    for (int k = 0; k < 6; k++) assert_int_equal(sbx_rng_u32(&cur), want[k]);
    assert_true(sbx_rng_u64(&cur) == ((uint64_t)want[6] | (uint64_t)want[7] << 32));
    /* Every word of the batched blocks equals the single-block function's (3 batches). */
    assert_int_equal(sbx_rng_cursor_init(&rng, position, &cur), SBX_OK);
    for (uint32_t block = 0; block < 1 + 3 * SBX_RNG_BATCH; block++) {
        uint32_t ctr[4] = {block, 2, 1, 7}, out[4];
        sbx_philox4x32_10(ctr, key, out);
        for (int w = 0; w < 4; w++)
            if (sbx_rng_u32(&cur) != out[w]) fail_msg("block %u word %d differs", block, w);
    }
    /* A batch whose block counter wraps past 2^32 - 1 wraps as the single-block function's does. */
    assert_int_equal(sbx_rng_cursor_init(&rng, position, &cur), SBX_OK);
    cur.ctr[0] = 0xFFFFFFF8u;
    for (uint32_t i = 0; i < SBX_RNG_BATCH; i++) {
        uint32_t ctr[4] = {0xFFFFFFF8u + i, 2, 1, 7}, out[4];
        sbx_philox4x32_10(ctr, key, out);
        for (int w = 0; w < 4; w++)
            if (sbx_rng_u32(&cur) != out[w]) fail_msg("wrapped block %u word %d differs", ctr[0], w);
    }
    /* Cursors made 16 at a time give the same words as one by one (full and partial groups). */
    for (int count = 16, blocks = 1; count >= 5; count -= 11, blocks++) {
        sbx_rng_cursor group[SBX_RNG_BATCH], single;
        sbx__rng_cursors(&rng, position, count, blocks, group);
        for (int b = 0; b < count; b++) {
            assert_int_equal(sbx_rng_cursor_init(&rng, position + b, &single), SBX_OK);
            for (int w = 0; w < 4 * 20; w++) assert_int_equal(sbx_rng_u32(&group[b]), sbx_rng_u32(&single));
        }
    }
    /* First words of 3 batches of positions (the vector path this CPU takes) as the single-block
     * function's word 0 of block 0, across a position whose low word wraps. */
    {
        uint32_t first[3 * SBX_RNG_BATCH];
        const int64_t at = 0xFFFFFFF0LL;
        sbx__rng_first_words(&rng, at, 3 * SBX_RNG_BATCH, first);
        for (int i = 0; i < 3 * SBX_RNG_BATCH; i++) {
            const uint64_t q = (uint64_t)at + (uint64_t)i;
            uint32_t ctr[4] = {0, (uint32_t)q, (uint32_t)(q >> 32), 7}, out[4];
            sbx_philox4x32_10(ctr, key, out);
            if (first[i] != out[0]) fail_msg("first word of position %lld differs", (long long)q);
        }
    }
    /* Doubles: 53 bits from one 64-bit word, in [0, 1). */
    assert_int_equal(sbx_rng_cursor_init(&rng, 0, &cur), SBX_OK);
    for (int i = 0; i < 1000; i++) {
        double u = sbx_rng_double(&cur);
        assert_true(u >= 0.0 && u < 1.0);
    }
    /* The same (seed, stream, position) gives the same values; another stream does not. */
    sbx_rng other;
    sbx_rng_cursor a, b;
    sbx_rng_init(&other, seed, 8);
    assert_int_equal(sbx_rng_cursor_init(&rng, 5, &a), SBX_OK);
    assert_int_equal(sbx_rng_cursor_init(&other, 5, &b), SBX_OK);
    assert_true(sbx_rng_u64(&a) != sbx_rng_u64(&b));
    assert_int_equal(sbx_rng_cursor_init(&rng, -1, &a), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "position -1"));
}

static void test_bad_parameters(void **state) {
    (void)state;
    sbx_rng rng;
    sbx_rng_cursor cur;
    int64_t x = 7, counts[3] = {9, 9, 9};
    sbx_rng_init(&rng, 1, 0);
    assert_int_equal(sbx_rng_cursor_init(&rng, 0, &cur), SBX_OK);
    assert_int_equal(sbx_binomial(&cur, -1, 0.5, &x), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "n = -1"));
    assert_int_equal(sbx_binomial(&cur, 5, 1.5, &x), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "p = 1.5"));
    assert_int_equal(sbx_binomial(&cur, 5, NAN, &x), SBX_ERR_ARG);
    assert_int_equal(sbx_poisson(&cur, -1, &x), SBX_ERR_ARG);
    assert_int_equal(sbx_poisson(&cur, INFINITY, &x), SBX_ERR_ARG);
    assert_int_equal(sbx_poisson(&cur, 2e10, &x), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "outside [0, 1e+10]"));
    assert_int_equal(x, 7);
    const double bad_sum[3] = {0.5, 0.4, 0.05}, negative[3] = {0.5, -0.1, 0.6}, zeros[3] = {0, 0, 0};
    assert_int_equal(sbx_multinomial(&cur, 4, bad_sum, 3, 0, counts), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "sum to 0.95"));
    assert_int_equal(sbx_multinomial(&cur, 4, negative, 3, 1, counts), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "probs[1] = -0.1"));
    assert_int_equal(sbx_multinomial(&cur, 4, zeros, 3, 1, counts), SBX_ERR_ARG);
    assert_int_equal(counts[0], 9);
    assert_int_equal(sbx_multinomial(&cur, 4, bad_sum, 3, 1, counts), SBX_OK); /* renormalised */
    assert_int_equal(counts[0] + counts[1] + counts[2], 4);
}

/* --- sparse random matrices ------------------------------------------------------------------- */

static void same_matrix(const sbx_sparse *a, const sbx_sparse *b) {
    assert_int_equal(a->nnz, b->nnz);
    assert_memory_equal(a->indptr, b->indptr, (size_t)(sbx_sparse_major(a) + 1) * sizeof(int64_t));
    if (a->nnz) {
        assert_memory_equal(a->indices, b->indices, (size_t)a->nnz * sizeof(int64_t));
        assert_memory_equal(a->data, b->data, (size_t)a->nnz * sbx_dtype_size(a->dtype));
    }
}

static void test_sparse_binomial(void **state) {
    (void)state;
    sbx_rng rng;
    sbx_rng_init(&rng, 20261127, 1);
    /* Same bytes at 1, 2 and 8 threads (large enough to run in parallel). */
    sbx_sparse *m[3];
    const int threads[3] = {1, 2, 8};
    for (int t = 0; t < 3; t++) {
        sbx_set_num_threads(threads[t]);
        assert_int_equal(sbx_random_binomial(&rng, 5, 0.25, 6000, 300, SBX_CSR, SBX_FLOAT32, &m[t]), SBX_OK);
    }
    sbx_set_num_threads(0);
    same_matrix(m[0], m[1]);
    same_matrix(m[0], m[2]);
    assert_int_equal(sbx_sparse_validate(m[0]), SBX_OK);
    /* Density: each element is non-zero with probability 1 - 0.75^5; nnz within 6 standard deviations. */
    const double q0 = 1 - pow(0.75, 5), cells = 6000.0 * 300, sd = sqrt(cells * q0 * (1 - q0));
    assert_true(fabs((double)m[0]->nnz - cells * q0) < 6 * sd);
    /* Every value in [1, 5]; the distributions are tested in test_fit.c. */
    for (int64_t k = 0; k < m[0]->nnz; k++) assert_true(((float *)m[0]->data)[k] >= 1 && ((float *)m[0]->data)[k] <= 5);
    for (int t = 0; t < 3; t++) sbx_sparse_free(m[t]);
    /* A 10^6 x 10^6 matrix with p = 1e-7: about 10^5 entries, never a dense matrix. */
    sbx_sparse *big;
    assert_int_equal(sbx_random_binomial(&rng, 1, 1e-7, 1000000, 1000000, SBX_CSC, SBX_INT8, &big), SBX_OK);
    assert_true(fabs((double)big->nnz - 1e5) < 6 * sqrt(1e5));
    assert_int_equal(sbx_sparse_validate(big), SBX_OK);
    for (int64_t k = 0; k < big->nnz; k++) assert_int_equal(((int8_t *)big->data)[k], 1);
    sbx_sparse_free(big);
    /* Edges: p = 0, n = 0, p = 1 (dense), empty shapes. */
    sbx_sparse *e;
    assert_int_equal(sbx_random_binomial(&rng, 3, 0.0, 10, 10, SBX_CSR, SBX_INT32, &e), SBX_OK);
    assert_int_equal(e->nnz, 0);
    sbx_sparse_free(e);
    assert_int_equal(sbx_random_binomial(&rng, 3, 1.0, 4, 5, SBX_CSR, SBX_INT32, &e), SBX_OK);
    assert_int_equal(e->nnz, 20);
    for (int k = 0; k < 20; k++) assert_int_equal(((int32_t *)e->data)[k], 3);
    sbx_sparse_free(e);
    assert_int_equal(sbx_random_binomial(&rng, 3, 0.5, 0, 5, SBX_CSC, SBX_FLOAT64, &e), SBX_OK);
    assert_int_equal(e->nnz, 0);
    sbx_sparse_free(e);
    /* Tables whose P(0) = (1-p)^n underflows a double (n log(1-p) < -745; found by tests/fuzz/fuzz_random):
     * every value was 0. The mean of 2500 draws within 6 standard deviations of n p. */
    const int64_t big_n[3] = {3000, 4096, 4096};
    const double big_p[3] = {0.3, 0.5, 0.8};
    for (int c = 0; c < 3; c++) {
        assert_int_equal(sbx_random_binomial(&rng, big_n[c], big_p[c], 50, 50, SBX_CSR, SBX_FLOAT64, &e), SBX_OK);
        assert_int_equal(e->nnz, 2500);
        double mean = 0, np = (double)big_n[c] * big_p[c];
        for (int64_t k = 0; k < e->nnz; k++) mean += ((double *)e->data)[k] / 2500;
        assert_true(fabs(mean - np) < 6 * sqrt(np * (1 - big_p[c]) / 2500));
        sbx_sparse_free(e);
    }
    /* Bad arguments. */
    e = NULL;
    assert_int_equal(sbx_random_binomial(&rng, 300, 0.5, 4, 4, SBX_CSR, SBX_INT8, &e), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "do not fit int8"));
    assert_int_equal(sbx_random_binomial(&rng, 2, 0.5, 4, 4, SBX_CSR, SBX_BOOL, &e), SBX_ERR_ARG);
    assert_int_equal(sbx_random_binomial(&rng, 2, -0.5, 4, 4, SBX_CSR, SBX_INT32, &e), SBX_ERR_ARG);
    assert_int_equal(sbx_random_binomial(&rng, 2, 0.5, -4, 4, SBX_CSR, SBX_INT32, &e), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "(-4, 4)"));
    assert_null(e);
}

static void test_sparse_poisson(void **state) {
    (void)state;
    sbx_rng rng;
    sbx_rng_init(&rng, 5, 2);
    sbx_sparse *x, *y[3];
    const int threads[3] = {1, 2, 8};
    assert_int_equal(sbx_random_binomial(&rng, 1, 0.3, 3000, 100, SBX_CSR, SBX_FLOAT64, &x), SBX_OK);
    for (int64_t k = 0; k < x->nnz; k++) ((double *)x->data)[k] = 2.5; /* every mean 2.5 */
    for (int t = 0; t < 3; t++) {
        sbx_set_num_threads(threads[t]);
        assert_int_equal(sbx_random_poisson(&rng, x, &y[t]), SBX_OK);
    }
    sbx_set_num_threads(0);
    same_matrix(y[0], y[1]);
    same_matrix(y[0], y[2]);
    sbx_sparse_free(y[2]);
    assert_int_equal(sbx_sparse_validate(y[0]), SBX_OK);
    /* The zeros are gone (P(0) = exp(-2.5)); the values' law is tested in test_fit.c. */
    const double p0 = exp(-2.5), n = (double)x->nnz;
    assert_true(fabs((double)y[0]->nnz - n * (1 - p0)) < 6 * sqrt(n * p0 * (1 - p0)));
    for (int64_t k = 0; k < y[0]->nnz; k++) assert_true(((double *)y[0]->data)[k] >= 1);
    sbx_sparse_free(y[0]);
    sbx_sparse_free(y[1]);
    /* Means of every size (most below 10: the vector lanes), float32: the same bytes at 1, 2 and 8 threads. */
    sbx_sparse *x32, *z[3];
    assert_int_equal(sbx_sparse_cast(x, SBX_FLOAT32, &x32), SBX_OK);
    for (int64_t k = 0; k < x32->nnz; k++)
        ((float *)x32->data)[k] = (float)(k % 13 == 0 ? 40 + k % 3 : (k % 101) * 0.1);
    for (int t = 0; t < 3; t++) {
        sbx_set_num_threads(threads[t]);
        assert_int_equal(sbx_random_poisson(&rng, x32, &z[t]), SBX_OK);
    }
    sbx_set_num_threads(0);
    same_matrix(z[0], z[1]);
    same_matrix(z[0], z[2]);
    assert_int_equal(sbx_sparse_validate(z[0]), SBX_OK);
    for (int t = 0; t < 3; t++) sbx_sparse_free(z[t]);
    sbx_sparse_free(x32);
    /* A negative mean is an error naming the entry. */
    ((double *)x->data)[3] = -1;
    sbx_sparse *bad = NULL;
    assert_int_equal(sbx_random_poisson(&rng, x, &bad), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "stored value 3"));
    assert_null(bad);
    sbx_sparse_free(x);
}

/* The sparse Binomial keeps its values in float32, float64 and int64 directly and casts the others:
 * every dtype gives the same entries, dense lines (n 5, p 0.25) and sparse ones (p 0.01) alike, at 1
 * and 2 threads. */
static void test_sparse_binomial_dtypes(void **state) {
    (void)state;
    sbx_rng rng;
    sbx_rng_init(&rng, 31, 4);
    const sbx_dtype dtypes[4] = {SBX_FLOAT64, SBX_FLOAT32, SBX_INT64, SBX_INT32};
    const double ps[2] = {0.25, 0.01};
    for (int q = 0; q < 2; q++)
        for (int t = 1; t <= 2; t++) {
            sbx_set_num_threads(t);
            sbx_sparse *m[4];
            for (int d = 0; d < 4; d++)
                assert_int_equal(sbx_random_binomial(&rng, 5, ps[q], 300, 200, SBX_CSR, dtypes[d], &m[d]), SBX_OK);
            assert_true(m[0]->nnz > 0);
            for (int d = 1; d < 4; d++) {
                assert_int_equal(m[d]->dtype, dtypes[d]);
                assert_int_equal(m[d]->nnz, m[0]->nnz);
                assert_memory_equal(m[d]->indptr, m[0]->indptr, 301 * sizeof(int64_t));
                assert_memory_equal(m[d]->indices, m[0]->indices, (size_t)m[0]->nnz * sizeof(int64_t));
                for (int64_t k = 0; k < m[0]->nnz; k++)
                    assert_true(sbx__get_f64(m[d]->data, dtypes[d], k) == ((double *)m[0]->data)[k]);
            }
            for (int d = 0; d < 4; d++) sbx_sparse_free(m[d]);
        }
    sbx_set_num_threads(0);
}

/* Every entry of the sparse Poisson against sbx_poisson at that entry's position (entry k draws from
 * position k): the non-zero draws, in order, with their indices and lines, in every dtype that keeps
 * them (float64, float32, int64 and int32), at 1, 2 and 8 threads; rows of 0 to 40 entries (empty
 * ones too) so that lines end anywhere in a chunk of draws. */
static void test_sparse_poisson_entries(void **state) {
    (void)state;
    enum { ROWS = 600, COLS = 64 };
    sbx_rng rng;
    sbx_rng_init(&rng, 77, 1);
    sbx_sparse *x;
    int64_t nnz = 0;
    for (int r = 0; r < ROWS; r++) nnz += (r * 7) % 41;
    assert_int_equal(sbx_sparse_create(SBX_CSR, SBX_FLOAT64, ROWS, COLS, nnz, &x), SBX_OK);
    for (int r = 0, k = 0; r < ROWS; r++) {
        for (int j = 0; j < (r * 7) % 41; j++, k++) {
            x->indices[k] = j;
            ((double *)x->data)[k] = k % 17 == 0 ? 0 : k % 29 == 0 ? 30 + k % 5 : 0.05 * (k % 60);
        }
        x->indptr[r + 1] = k;
    }
    int64_t *want = malloc((size_t)nnz * sizeof *want);
    assert_non_null(want);
    const sbx_dtype dtypes[4] = {SBX_FLOAT64, SBX_FLOAT32, SBX_INT64, SBX_INT32};
    const int threads[3] = {1, 2, 8};
    for (int d = 0; d < 4; d++) {
        sbx_sparse *xd; /* x's structure, its means in dtypes[d] (whole numbers for the integer dtypes) */
        assert_int_equal(sbx_sparse_create(SBX_CSR, dtypes[d], ROWS, COLS, nnz, &xd), SBX_OK);
        memcpy(xd->indptr, x->indptr, (ROWS + 1) * sizeof(int64_t));
        memcpy(xd->indices, x->indices, (size_t)nnz * sizeof(int64_t));
        for (int64_t k = 0; k < nnz; k++) {
            const double lam = ((double *)x->data)[k];
            if (dtypes[d] == SBX_FLOAT64) ((double *)xd->data)[k] = lam;
            if (dtypes[d] == SBX_FLOAT32) ((float *)xd->data)[k] = (float)lam;
            if (dtypes[d] == SBX_INT64) ((int64_t *)xd->data)[k] = (int64_t)lam;
            if (dtypes[d] == SBX_INT32) ((int32_t *)xd->data)[k] = (int32_t)lam;
            sbx_rng_cursor cur;
            assert_int_equal(sbx_rng_cursor_init(&rng, k, &cur), SBX_OK);
            assert_int_equal(sbx_poisson(&cur, sbx__get_f64(xd->data, xd->dtype, k), &want[k]), SBX_OK);
        }
        for (int t = 0; t < 3; t++) {
            sbx_set_num_threads(threads[t]);
            sbx_sparse *y = NULL;
            assert_int_equal(sbx_random_poisson(&rng, xd, &y), SBX_OK);
            assert_int_equal(y->dtype, dtypes[d]);
            int64_t kept = 0;
            for (int r = 0; r < ROWS; r++) {
                assert_int_equal(y->indptr[r], kept);
                for (int64_t k = x->indptr[r]; k < x->indptr[r + 1]; k++) {
                    if (want[k] == 0) continue;
                    assert_true(kept < y->nnz);
                    assert_int_equal(y->indices[kept], x->indices[k]);
                    assert_true(sbx__get_f64(y->data, y->dtype, kept) == (double)want[k]);
                    kept++;
                }
            }
            assert_int_equal(y->indptr[ROWS], kept);
            assert_int_equal(y->nnz, kept);
            sbx_sparse_free(y);
        }
        sbx_sparse_free(xd);
    }
    sbx_set_num_threads(0);
    free(want);
    sbx_sparse_free(x);
}

/* The sparse Poisson's means inverted in vector lanes give the scalar sampler's values at every
 * position (means 0, tiny, below and at 10, large; a count that leaves a partial group), and
 * sbx__exp_neg, which both use, is within 2 units in the last place of exp(-lam). */
static void test_poisson_lanes(void **state) {
    (void)state;
    enum { COUNT = 20000 + 21 };
    static const double special[] = {0, 1e-300, 1e-3, 0.5, 2.5, 9.99, 10, 50, 1e4, 0x1.fffffffffffffp3};
    double *lams = malloc(COUNT * sizeof(double));
    int64_t *vector = malloc(COUNT * sizeof(int64_t)), *scalar = malloc(COUNT * sizeof(int64_t));
    uint64_t state_bits = 99;
    for (int64_t i = 0; i < COUNT; i++) {
        state_bits = state_bits * 6364136223846793005ULL + 1442695040888963407ULL;
        const double u = (double)(state_bits >> 11) * 0x1.0p-53;
        lams[i] = i % 7 == 0 ? special[(i / 7) % (sizeof special / sizeof special[0])] : 10 * u;
    }
    sbx_rng rng;
    sbx_rng_init(&rng, 77, 3);
    sbx__poisson_positions(&rng, 12345, COUNT, lams, 1, vector);
    sbx__poisson_positions(&rng, 12345, COUNT, lams, 0, scalar);
    for (int64_t i = 0; i < COUNT; i++)
        if (vector[i] != scalar[i])
            fail_msg("position %lld, lam %g: lanes %lld, scalar %lld", (long long)i, lams[i], (long long)vector[i],
                     (long long)scalar[i]);
    if (!__builtin_cpu_supports("avx512f")) print_message("no AVX-512 here: both ran the scalar sampler\n");
    for (int i = 0; i <= 100000; i++) {
        const double lam = 10.0 * i / 100000, want = exp(-lam), got = sbx__exp_neg(lam);
        if (fabs(got - want) > 2 * (nextafter(want, INFINITY) - want))
            fail_msg("exp_neg(%.17g) = %.17g, exp gives %.17g", lam, got, want);
    }
    free(lams);
    free(vector);
    free(scalar);
}

static void test_sparse_multinomial(void **state) {
    (void)state;
    sbx_rng rng;
    sbx_rng_init(&rng, 77, 0);
    /* A 4 x 5 CSR of probabilities: rows (0.2 0.8), (1), (0.1 0.2 0.3 0.4), (0.5 0.5 with a 0 stored). */
    int64_t ip[5] = {0, 2, 3, 7, 10}, ix[10] = {0, 3, 4, 0, 1, 2, 4, 0, 2, 3};
    double v[10] = {0.2, 0.8, 1, 0.1, 0.2, 0.3, 0.4, 0.5, 0, 0.5};
    sbx_sparse p = {SBX_CSR, SBX_FLOAT64, 4, 5, 10, ip, ix, v};
    int64_t nvals[4] = {3, 7, 100, 0}, one = 4;
    sbx_array n = {SBX_INT64, 1, {4}, nvals}, scalar = {SBX_INT64, 0, {0}, &one};
    sbx_sparse *out, *csc, *out_csc, *back;
    assert_int_equal(sbx_random_multinomial(&rng, &n, &p, 0, &out), SBX_OK);
    for (int r = 0; r < 4; r++) {
        double sum = 0;
        for (int64_t k = out->indptr[r]; k < out->indptr[r + 1]; k++) sum += ((double *)out->data)[k];
        assert_true(sum == (double)nvals[r]);
    }
    assert_int_equal(out->nnz, 10); /* zero counts stay stored */
    assert_true(((double *)out->data)[8] == 0);
    /* CSC is accepted: the same draws (rows are read through the CSR form). */
    assert_int_equal(sbx_sparse_convert(&p, SBX_CSC, &csc), SBX_OK);
    assert_int_equal(sbx_random_multinomial(&rng, &n, csc, 0, &out_csc), SBX_OK);
    assert_int_equal(out_csc->format, SBX_CSC);
    assert_int_equal(sbx_sparse_convert(out_csc, SBX_CSR, &back), SBX_OK);
    same_matrix(out, back);
    sbx_sparse_free(out);
    sbx_sparse_free(out_csc);
    sbx_sparse_free(back);
    /* Same bytes at 1, 2 and 8 threads on a matrix large enough to run in parallel. */
    sbx_sparse *big, *drawn[3];
    assert_int_equal(sbx_random_binomial(&rng, 1, 0.2, 5000, 50, SBX_CSR, SBX_FLOAT32, &big), SBX_OK);
    for (int64_t r = 0; r < big->nrows; r++)
        for (int64_t k = big->indptr[r]; k < big->indptr[r + 1]; k++)
            ((float *)big->data)[k] = (float)(k - big->indptr[r] + 1);
    const int threads[3] = {1, 2, 8};
    for (int t = 0; t < 3; t++) {
        sbx_set_num_threads(threads[t]);
        assert_int_equal(sbx_random_multinomial(&rng, &scalar, big, 1, &drawn[t]), SBX_OK);
    }
    sbx_set_num_threads(0);
    assert_true(big->nnz >= 20000);
    same_matrix(drawn[0], drawn[1]);
    same_matrix(drawn[0], drawn[2]);
    for (int t = 0; t < 3; t++) sbx_sparse_free(drawn[t]);
    /* Rows checked by several threads: the error names the first bad row whichever thread met it. */
    const int64_t late = big->nrows - 3, early = big->nrows / 3;
    ((float *)big->data)[big->indptr[late]] = -1;
    ((float *)big->data)[big->indptr[early] + 1] = NAN;
    for (int t = 0; t < 3; t++) {
        char want[64];
        sbx_sparse *none = NULL;
        sbx_set_num_threads(threads[t]);
        assert_int_equal(sbx_random_multinomial(&rng, &scalar, big, 1, &none), SBX_ERR_ARG);
        snprintf(want, sizeof want, "row %lld has probability nan", (long long)early);
        if (!strstr(sbx_last_error(), want)) fail_msg("%d threads: %s", threads[t], sbx_last_error());
        assert_null(none);
    }
    sbx_set_num_threads(0);
    sbx_sparse_free(big);
    /* One n for every row. */
    assert_int_equal(sbx_random_multinomial(&rng, &scalar, &p, 0, &out), SBX_OK);
    sbx_sparse_free(out);
    /* Errors naming the row. */
    out = NULL;
    v[4] = 0.25; /* row 2 sums to 1.05 */
    assert_int_equal(sbx_random_multinomial(&rng, &n, &p, 0, &out), SBX_ERR_ARG);
    if (!strstr(sbx_last_error(), "row 2 sums to 1.0")) fail_msg("message: %s", sbx_last_error());
    assert_int_equal(sbx_random_multinomial(&rng, &n, &p, 1, &out), SBX_OK); /* renormalised */
    sbx_sparse_free(out);
    out = NULL;
    v[4] = NAN;
    assert_int_equal(sbx_random_multinomial(&rng, &n, &p, 1, &out), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "row 2 has probability nan"));
    v[4] = 0.2;
    int64_t ip_empty[5] = {0, 2, 2, 6, 9};
    int64_t ix_e[9] = {0, 3, 0, 1, 2, 4, 0, 2, 3};
    double v_e[9] = {0.2, 0.8, 0.1, 0.2, 0.3, 0.4, 0.5, 0, 0.5};
    sbx_sparse pe = {SBX_CSR, SBX_FLOAT64, 4, 5, 9, ip_empty, ix_e, v_e};
    assert_int_equal(sbx_random_multinomial(&rng, &n, &pe, 0, &out), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "row 1 is empty but n = 7"));
    sbx_array wrong = {SBX_INT64, 1, {3}, nvals};
    assert_int_equal(sbx_random_multinomial(&rng, &wrong, &p, 0, &out), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "n has 3 values; it needs 1 or one per row (4)"));
    assert_null(out);
    sbx_sparse_free(csc);
}

/* Arrays of draws: element i equals the sampler's draw at position first + i, pieces equal the whole,
 * 1 thread and 8 (binomial) or 2 (Poisson) give the same bytes; dtypes and bad arguments. */
static void test_fill(void **state) {
    (void)state;
    sbx_rng rng;
    sbx_rng_init(&rng, 404, 9);
    enum { N = 20000 };
    int64_t *whole = malloc(sizeof(int64_t) * N), *two = malloc(sizeof(int64_t) * N);
    int64_t *piece = malloc(sizeof(int64_t) * N);
    sbx_array a = {SBX_INT64, 1, {N}, whole}, b = {SBX_INT64, 2, {100, N / 100}, two};
    for (int kind = 0; kind < 2; kind++) {
        sbx_set_num_threads(1);
        assert_int_equal(kind ? sbx_poisson_fill(&rng, 3.5, 7, &a) : sbx_binomial_fill(&rng, 40, 0.3, 7, &a), SBX_OK);
        sbx_set_num_threads(kind ? 2 : 8);
        assert_int_equal(kind ? sbx_poisson_fill(&rng, 3.5, 7, &b) : sbx_binomial_fill(&rng, 40, 0.3, 7, &b), SBX_OK);
        sbx_set_num_threads(0);
        assert_memory_equal(whole, two, sizeof(int64_t) * N);
        sbx_array first = {SBX_INT64, 1, {6000}, piece}, rest = {SBX_INT64, 1, {N - 6000}, piece + 6000};
        assert_int_equal(kind ? sbx_poisson_fill(&rng, 3.5, 7, &first) : sbx_binomial_fill(&rng, 40, 0.3, 7, &first),
                         SBX_OK);
        assert_int_equal(kind ? sbx_poisson_fill(&rng, 3.5, 6007, &rest)
                              : sbx_binomial_fill(&rng, 40, 0.3, 6007, &rest),
                         SBX_OK);
        assert_memory_equal(whole, piece, sizeof(int64_t) * N);
        for (int i = 0; i < N; i += 997) {
            sbx_rng_cursor cur;
            int64_t x;
            assert_int_equal(sbx_rng_cursor_init(&rng, 7 + i, &cur), SBX_OK);
            assert_int_equal(kind ? sbx_poisson(&cur, 3.5, &x) : sbx_binomial(&cur, 40, 0.3, &x), SBX_OK);
            assert_int_equal(x, whole[i]);
        }
    }
    /* Other dtypes hold the same values. */
    float f[64];
    sbx_array fa = {SBX_FLOAT32, 1, {64}, f}, wa = {SBX_INT64, 1, {64}, whole};
    assert_int_equal(sbx_binomial_fill(&rng, 40, 0.3, 0, &fa), SBX_OK);
    assert_int_equal(sbx_binomial_fill(&rng, 40, 0.3, 0, &wa), SBX_OK);
    for (int i = 0; i < 64; i++) assert_true(f[i] == (float)whole[i]);
    /* Multinomial rows: each sums to n and equals sbx_multinomial at its position. */
    const double probs[3] = {0.2, 0.5, 0.3};
    sbx_array m = {SBX_INT64, 2, {1000, 3}, whole};
    assert_int_equal(sbx_multinomial_fill(&rng, 25, probs, 3, 0, 50, &m), SBX_OK);
    for (int r = 0; r < 1000; r++) {
        int64_t counts[3];
        sbx_rng_cursor cur;
        assert_int_equal(sbx_rng_cursor_init(&rng, 50 + r, &cur), SBX_OK);
        assert_int_equal(sbx_multinomial(&cur, 25, probs, 3, 0, counts), SBX_OK);
        assert_memory_equal(counts, whole + 3 * r, sizeof counts);
    }
    /* Bad arguments: n too large for the dtype, a draw too large for it, shapes, positions, NULL. */
    int8_t small[16];
    sbx_array sa = {SBX_INT8, 1, {16}, small};
    assert_int_equal(sbx_binomial_fill(&rng, 300, 0.5, 0, &sa), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "do not fit int8"));
    assert_int_equal(sbx_poisson_fill(&rng, 500, 0, &sa), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "draws"));
    assert_int_equal(sbx_poisson_fill(&rng, -1, 0, &sa), SBX_ERR_ARG);
    assert_int_equal(sbx_binomial_fill(&rng, 3, 0.5, -1, &sa), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "first position -1"));
    assert_int_equal(sbx_binomial_fill(&rng, 3, 0.5, INT64_MAX - 3, &sa), SBX_ERR_ARG);
    assert_int_equal(sbx_binomial_fill(NULL, 3, 0.5, 0, &sa), SBX_ERR_ARG);
    assert_int_equal(sbx_multinomial_fill(&rng, 5, probs, 2, 0, 0, &m), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "rows x k = 2"));
    const double bad[3] = {0.2, 0.5, 0.2};
    assert_int_equal(sbx_multinomial_fill(&rng, 5, bad, 3, 0, 0, &m), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "sum to 0.8999"));
    /* Rows of no category: no element, but each row is a position, and the last one must exist (found by
     * tests/fuzz/fuzz_random: the positions after INT64_MAX overflowed). */
    int64_t none[1];
    sbx_array empty_rows = {SBX_INT64, 2, {3, 0}, none};
    assert_int_equal(sbx_multinomial_fill(&rng, 0, probs, 0, 0, INT64_MAX - 1, &empty_rows), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "3 rows"));
    assert_int_equal(sbx_multinomial_fill(&rng, 0, probs, 0, 0, INT64_MAX - 3, &empty_rows), SBX_OK);
    free(whole);
    free(two);
    free(piece);
}

/* The original's Op answers: inputs, gradient kinds, and infer_shape equal to the drawn shapes. */
static void test_op_answers(void **state) {
    (void)state;
    sbx_grad g = SBX_GRAD_DEFINED;
    assert_int_equal(sbx_random_op_inputs(SBX_RANDOM_BINOMIAL), 3);
    assert_int_equal(sbx_random_op_inputs(SBX_RANDOM_POISSON), 1);
    assert_int_equal(sbx_random_op_inputs(SBX_RANDOM_MULTINOMIAL), 2);
    assert_int_equal(sbx_random_op_inputs((sbx_random_op)7), 0);
    const sbx_grad binomial[3] = {SBX_GRAD_UNDEFINED, SBX_GRAD_UNDEFINED, SBX_GRAD_DISCONNECTED};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sbx_random_op_grad(SBX_RANDOM_BINOMIAL, i, &g), SBX_OK);
        assert_int_equal(g, binomial[i]);
    }
    assert_int_equal(sbx_random_op_grad(SBX_RANDOM_POISSON, 0, &g), SBX_OK);
    assert_int_equal(g, SBX_GRAD_UNDEFINED);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sbx_random_op_grad(SBX_RANDOM_MULTINOMIAL, i, &g), SBX_OK);
        assert_int_equal(g, SBX_GRAD_UNDEFINED);
    }
    assert_int_equal(sbx_random_op_grad(SBX_RANDOM_POISSON, 1, &g), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "input 1 is outside [0, 1)"));
    assert_int_equal(sbx_random_op_grad(SBX_RANDOM_BINOMIAL, -1, &g), SBX_ERR_ARG);
    assert_int_equal(sbx_random_op_grad((sbx_random_op)-1, 0, &g), SBX_ERR_ARG);
    assert_int_equal(sbx_random_op_grad(SBX_RANDOM_BINOMIAL, 0, NULL), SBX_ERR_ARG);
    /* infer_shape against the shapes the ops produce. */
    sbx_rng rng;
    sbx_rng_init(&rng, 3, 0);
    int32_t dims[2] = {7, 11};
    sbx_array shape = {SBX_INT32, 1, {2}, dims};
    int64_t got[2] = {-1, -1};
    sbx_sparse *b, *pz, *mn;
    assert_int_equal(sbx_random_op_infer_shape(SBX_RANDOM_BINOMIAL, &shape, NULL, got), SBX_OK);
    assert_int_equal(sbx_random_binomial(&rng, 3, 0.4, dims[0], dims[1], SBX_CSC, SBX_FLOAT64, &b), SBX_OK);
    assert_true(got[0] == b->nrows && got[1] == b->ncols);
    assert_int_equal(sbx_random_op_infer_shape(SBX_RANDOM_POISSON, NULL, b, got), SBX_OK);
    assert_int_equal(sbx_random_poisson(&rng, b, &pz), SBX_OK);
    assert_true(got[0] == pz->nrows && got[1] == pz->ncols);
    int64_t ip[3] = {0, 1, 3}, ix[3] = {2, 0, 4};
    double v[3] = {1, 0.5, 0.5};
    sbx_sparse p = {SBX_CSR, SBX_FLOAT64, 2, 5, 3, ip, ix, v};
    int64_t four = 4;
    sbx_array n = {SBX_INT64, 0, {0}, &four};
    assert_int_equal(sbx_random_op_infer_shape(SBX_RANDOM_MULTINOMIAL, NULL, &p, got), SBX_OK);
    assert_int_equal(sbx_random_multinomial(&rng, &n, &p, 0, &mn), SBX_OK);
    assert_true(got[0] == mn->nrows && got[1] == mn->ncols);
    sbx_sparse_free(b);
    sbx_sparse_free(pz);
    sbx_sparse_free(mn);
    /* Bad shape inputs: float dtype, wrong length, negative extent; a NULL matrix. */
    got[0] = got[1] = -1;
    double fdims[2] = {7, 11};
    int64_t three[3] = {1, 2, 3}, negative[2] = {4, -2};
    sbx_array fshape = {SBX_FLOAT64, 1, {2}, fdims}, long_shape = {SBX_INT64, 1, {3}, three},
              neg_shape = {SBX_INT64, 1, {2}, negative};
    assert_int_equal(sbx_random_op_infer_shape(SBX_RANDOM_BINOMIAL, &fshape, NULL, got), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "integer dtype"));
    assert_int_equal(sbx_random_op_infer_shape(SBX_RANDOM_BINOMIAL, &long_shape, NULL, got), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "3 values"));
    assert_int_equal(sbx_random_op_infer_shape(SBX_RANDOM_BINOMIAL, &neg_shape, NULL, got), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "shape[1] = -2"));
    assert_int_equal(sbx_random_op_infer_shape(SBX_RANDOM_POISSON, NULL, NULL, got), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "x is NULL"));
    assert_true(got[0] == -1 && got[1] == -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_cursor_layout),
        cmocka_unit_test(test_bad_parameters),
        cmocka_unit_test(test_sparse_binomial),
        cmocka_unit_test(test_sparse_poisson),
        cmocka_unit_test(test_sparse_poisson_entries),
        cmocka_unit_test(test_sparse_binomial_dtypes),
        cmocka_unit_test(test_poisson_lanes),
        cmocka_unit_test(test_sparse_multinomial),
        cmocka_unit_test(test_fill),
        cmocka_unit_test(test_op_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
