/* Tests of the random generator: Philox4x32-10's published known answers and the cursor layout. */
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
    /* Cursors made 16 at a time give the same words as one by one (full and partial groups). */
    for (int count = 16, blocks = 1; count >= 5; count -= 11, blocks++) {
        sbx_rng_cursor group[SBX_RNG_BATCH], single;
        sbx__rng_cursors(&rng, position, count, blocks, group);
        for (int b = 0; b < count; b++) {
            assert_int_equal(sbx_rng_cursor_init(&rng, position + b, &single), SBX_OK);
            for (int w = 0; w < 4 * 20; w++) assert_int_equal(sbx_rng_u32(&group[b]), sbx_rng_u32(&single));
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

/* --- goodness of fit ---------------------------------------------------------------------------- */

/* The regularised upper incomplete gamma function Q(a, x) (the chi-square survival function is
 * Q(df / 2, x / 2)): its power series below a + 1, its continued fraction (modified Lentz) above. */
static double gamma_q(double a, double x) {
    if (x <= 0) return 1;
    const double lead = a * log(x) - x - lgamma(a);
    if (x < a + 1) {
        double term = 1 / a, sum = term;
        for (int n = 1; n < 100000 && fabs(term) > fabs(sum) * 1e-16; n++) {
            term *= x / (a + n);
            sum += term;
        }
        return 1 - sum * exp(lead);
    }
    double b = x + 1 - a, c = 1e300, d = 1 / b, h = d;
    for (int i = 1; i < 100000; i++) {
        const double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < 1e-300) d = 1e-300;
        c = b + an / c;
        if (fabs(c) < 1e-300) c = 1e-300;
        d = 1 / d;
        const double delta = d * c;
        h *= delta;
        if (fabs(delta - 1) < 1e-15) break;
    }
    return exp(lead) * h;
}

static void test_gamma_q(void **state) { /* chi-square survival values (scipy.stats.chi2.isf) */
    (void)state;
    assert_true(fabs(gamma_q(0.5, 3.841458820694124 / 2) - 0.05) < 1e-9); /* df 1 */
    assert_true(fabs(gamma_q(5, 23.209251158954356 / 2) - 0.01) < 1e-9);   /* df 10 */
    assert_true(fabs(gamma_q(50, 149.4492527790389 / 2) - 0.001) < 1e-9);  /* df 100 */
}

typedef double (*pmf_fn)(int64_t k, const double *params);

static double binomial_pmf(int64_t k, const double *par) {
    const double n = par[0], p = par[1];
    if (k < 0 || (double)k > n) return 0;
    if (p == 0) return k == 0;
    if (p == 1) return (double)k == n;
    return exp(lgamma(n + 1) - lgamma((double)k + 1) - lgamma(n - (double)k + 1) + (double)k * log(p) +
               (n - (double)k) * log1p(-p));
}

static double poisson_pmf(int64_t k, const double *par) {
    const double lam = par[0];
    if (k < 0) return 0;
    if (lam == 0) return k == 0;
    return exp(-lam + (double)k * log(lam) - lgamma((double)k + 1));
}

typedef sbx_status (*sampler_fn)(sbx_rng_cursor *cur, const double *params, int64_t *out);
static sbx_status draw_binomial(sbx_rng_cursor *cur, const double *par, int64_t *out) {
    return sbx_binomial(cur, (int64_t)par[0], par[1], out);
}
static sbx_status draw_poisson(sbx_rng_cursor *cur, const double *par, int64_t *out) {
    return sbx_poisson(cur, par[0], out);
}

/* Chi-square test of `draws` samples against the exact pmf around `centre`: cells of at least 20
 * expected counts (tails merged), significance 1e-6. Returns the p-value. */
static double chi_square(sampler_fn draw, pmf_fn pmf, const double *par, int64_t centre, int64_t draws, uint64_t seed,
                         const char *what) {
    /* The support with mass above 1e-14, found by walking out from the centre. */
    int64_t lo = centre, hi = centre;
    while (lo > 0 && pmf(lo - 1, par) > 1e-14) lo--;
    while (pmf(hi + 1, par) > 1e-14 && hi - lo < 10000000) hi++;
    const int64_t span = hi - lo + 1;
    int64_t *cell_of = malloc(sizeof(int64_t) * (size_t)span), ncells = 0;
    double *expect = malloc(sizeof(double) * (size_t)(span + 2)), acc = 0, below = 0;
    for (int64_t k = 0; k < lo && k < 1000000; k++) below += pmf(k, par); /* the left tail joins cell 0 */
    acc = below;
    for (int64_t k = lo; k <= hi; k++) {
        acc += pmf(k, par);
        cell_of[k - lo] = ncells;
        if (acc * (double)draws >= 20) {
            expect[ncells++] = acc;
            acc = 0;
        }
    }
    if (ncells == 0) {
        expect[ncells++] = acc;
    } else {
        expect[ncells - 1] += acc; /* the last partial cell and the right tail join the last cell */
        for (int64_t k = hi; k >= lo && cell_of[k - lo] == ncells; k--) cell_of[k - lo] = ncells - 1;
    }
    double mass = 0;
    for (int64_t c = 0; c < ncells; c++) mass += expect[c];
    expect[ncells - 1] += 1 - mass > 0 ? 1 - mass : 0;
    int64_t *observed = calloc((size_t)ncells, sizeof(int64_t));
    sbx_rng rng;
    sbx_rng_init(&rng, seed, 0);
    sbx_rng_cursor cur;
    assert_int_equal(sbx_rng_cursor_init(&rng, 0, &cur), SBX_OK);
    for (int64_t i = 0; i < draws; i++) {
        int64_t x;
        if (i % 4096 == 0) assert_int_equal(sbx_rng_cursor_init(&rng, i / 4096, &cur), SBX_OK);
        assert_int_equal(draw(&cur, par, &x), SBX_OK);
        if (x < 0) fail_msg("%s: negative draw %lld", what, (long long)x);
        observed[x < lo ? 0 : x > hi ? ncells - 1 : cell_of[x - lo]]++;
    }
    double chi2 = 0;
    for (int64_t c = 0; c < ncells; c++) {
        const double e = expect[c] * (double)draws, d = (double)observed[c] - e;
        chi2 += e > 0 ? d * d / e : (observed[c] ? INFINITY : 0);
    }
    const double pvalue = ncells > 1 ? gamma_q((double)(ncells - 1) / 2, chi2 / 2) : (observed[0] == draws ? 1 : 0);
    if (!(pvalue > 1e-6)) fail_msg("%s: chi-square %.1f over %lld cells, p-value %.3g", what, chi2, (long long)ncells, pvalue);
    free(cell_of);
    free(expect);
    free(observed);
    return pvalue;
}

static void test_binomial_fit(void **state) {
    (void)state;
    /* Each algorithm, both sides of the switch (n p = 10), the symmetry, the edges, huge n. */
    const double points[][2] = {
        {0, 0.3},     {10, 0},        {10, 1},      {1, 0.5},       {5, 0.25},      {20, 0.49},
        {21, 0.49},   {25, 0.399},    {26, 0.39},   {100, 0.3},     {30, 0.9},      {1000, 0.5},
        {1e6, 0.4},   {2147483648.0, 3e-9},         {2147483648.0, 0.3},            {50, 0.999},
        {1e4, 1e-6},  {40, 0.75},     {200, 0.05},  {1e9, 1e-8},
    };
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "binomial(%.0f, %g)", points[i][0], points[i][1]);
        const int64_t centre = (int64_t)floor((points[i][0] + 1) * points[i][1]) < (int64_t)points[i][0]
                                   ? (int64_t)floor((points[i][0] + 1) * points[i][1])
                                   : (int64_t)points[i][0];
        chi_square(draw_binomial, binomial_pmf, points[i], centre, 2000000, 1000 + i, what);
    }
}

static void test_poisson_fit(void **state) {
    (void)state;
    const double points[][1] = {{0}, {1e-8}, {0.5}, {1}, {5}, {9.99}, {10}, {10.01}, {50}, {1e4}, {1e6}, {1e10}};
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "poisson(%g)", points[i][0]);
        chi_square(draw_poisson, poisson_pmf, points[i], (int64_t)floor(points[i][0]), 2000000, 2000 + i, what);
    }
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

/* Multinomial: every row sums to n exactly, and the marginals are Binomial(n, p_i) — for n = 12 (the
 * categorical trials) and n = 30 (the conditional binomials). */
static void test_multinomial(void **state) {
    (void)state;
    const double probs[5] = {0.1, 0.0, 0.45, 0.3, 0.15};
    const int64_t sizes[2] = {12, 30}, rows = 200000;
    for (int si = 0; si < 2; si++) {
        const int64_t n = sizes[si];
        int64_t counts[5], *first = malloc(sizeof(int64_t) * (size_t)rows), *fourth = malloc(sizeof(int64_t) * (size_t)rows);
        sbx_rng rng;
        sbx_rng_init(&rng, 99, 3);
        for (int64_t r = 0; r < rows; r++) {
            sbx_rng_cursor cur;
            assert_int_equal(sbx_rng_cursor_init(&rng, r, &cur), SBX_OK);
            assert_int_equal(sbx_multinomial(&cur, n, probs, 5, 0, counts), SBX_OK);
            assert_int_equal(counts[0] + counts[1] + counts[2] + counts[3] + counts[4], n);
            assert_int_equal(counts[1], 0);
            first[r] = counts[2];
            fourth[r] = counts[4];
        }
        /* The marginals of categories 2 and 4 against Binomial(n, 0.45) and Binomial(n, 0.15), binned. */
        for (int which = 0; which < 2; which++) {
            const int64_t *got = which ? fourth : first;
            const double par[2] = {(double)n, which ? 0.15 : 0.45};
            double e[31] = {0}, chi2 = 0, e_tail = 0, o_tail = 0;
            int64_t o[31] = {0};
            int cells = 0;
            for (int64_t r = 0; r < rows; r++) o[got[r]]++;
            for (int k = 0; k <= n; k++) e[k] = binomial_pmf(k, par) * (double)rows;
            for (int k = 0; k <= n; k++) {
                if (e[k] < 20) {
                    e_tail += e[k];
                    o_tail += (double)o[k];
                    continue;
                }
                chi2 += ((double)o[k] - e[k]) * ((double)o[k] - e[k]) / e[k];
                cells++;
            }
            if (e_tail > 0) {
                chi2 += (o_tail - e_tail) * (o_tail - e_tail) / e_tail;
                cells++;
            }
            if (!(gamma_q((cells - 1) / 2.0, chi2 / 2) > 1e-6))
                fail_msg("multinomial n = %lld, category %d: chi-square %.1f over %d cells", (long long)n, which ? 4 : 2,
                         chi2, cells);
        }
        free(first);
        free(fourth);
    }
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
    /* Column positions uniform: chi-square over the 300 columns. */
    double col[300] = {0}, chi2 = 0;
    for (int64_t k = 0; k < m[0]->nnz; k++) col[m[0]->indices[k]]++;
    for (int c = 0; c < 300; c++) chi2 += (col[c] - (double)m[0]->nnz / 300) * (col[c] - (double)m[0]->nnz / 300) / ((double)m[0]->nnz / 300);
    assert_true(gamma_q(299 / 2.0, chi2 / 2) > 1e-6);
    /* Values: Binomial(5, 0.25) given >= 1. */
    double obs[6] = {0}, chi = 0;
    const double par[2] = {5, 0.25};
    for (int64_t k = 0; k < m[0]->nnz; k++) obs[(int)((float *)m[0]->data)[k]]++;
    assert_true(obs[0] == 0);
    for (int v = 1; v <= 5; v++) {
        const double e = binomial_pmf(v, par) / q0 * (double)m[0]->nnz;
        chi += (obs[v] - e) * (obs[v] - e) / e;
    }
    assert_true(gamma_q(4 / 2.0, chi / 2) > 1e-6);
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
    sbx_sparse *x, *y[2];
    assert_int_equal(sbx_random_binomial(&rng, 1, 0.3, 3000, 100, SBX_CSR, SBX_FLOAT64, &x), SBX_OK);
    for (int64_t k = 0; k < x->nnz; k++) ((double *)x->data)[k] = 2.5; /* every mean 2.5 */
    for (int t = 0; t < 2; t++) {
        sbx_set_num_threads(t + 1);
        assert_int_equal(sbx_random_poisson(&rng, x, &y[t]), SBX_OK);
    }
    sbx_set_num_threads(0);
    same_matrix(y[0], y[1]);
    assert_int_equal(sbx_sparse_validate(y[0]), SBX_OK);
    /* The zeros are gone: P(0) = exp(-2.5); the kept values follow Poisson(2.5) given >= 1. */
    const double p0 = exp(-2.5), n = (double)x->nnz;
    assert_true(fabs((double)y[0]->nnz - n * (1 - p0)) < 6 * sqrt(n * p0 * (1 - p0)));
    double obs[8] = {0}, chi = 0, tail_e = 0;
    const double par[1] = {2.5};
    for (int64_t k = 0; k < y[0]->nnz; k++) {
        const double v = ((double *)y[0]->data)[k];
        assert_true(v >= 1);
        obs[v >= 7 ? 7 : (int)v]++;
    }
    for (int v = 1; v <= 7; v++) {
        double e = v < 7 ? poisson_pmf(v, par) : 0;
        if (v == 7) {
            for (int w = 1; w < 7; w++) tail_e += poisson_pmf(w, par);
            e = 1 - p0 - tail_e;
        }
        e *= (double)y[0]->nnz / (1 - p0);
        chi += (obs[v] - e) * (obs[v] - e) / e;
    }
    assert_true(gamma_q(6 / 2.0, chi / 2) > 1e-6);
    sbx_sparse_free(y[0]);
    sbx_sparse_free(y[1]);
    /* A negative mean is an error naming the entry. */
    ((double *)x->data)[3] = -1;
    sbx_sparse *bad = NULL;
    assert_int_equal(sbx_random_poisson(&rng, x, &bad), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "stored value 3"));
    assert_null(bad);
    sbx_sparse_free(x);
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_cursor_layout),
        cmocka_unit_test(test_gamma_q),
        cmocka_unit_test(test_binomial_fit),
        cmocka_unit_test(test_poisson_fit),
        cmocka_unit_test(test_multinomial),
        cmocka_unit_test(test_bad_parameters),
        cmocka_unit_test(test_sparse_binomial),
        cmocka_unit_test(test_sparse_poisson),
        cmocka_unit_test(test_sparse_multinomial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
