/* The samplers on arbitrary parameters: the bytes pick a sampler (binomial, Poisson, multinomial, their
 * fills, the sparse random matrices) and its parameters, NaN, infinities and negative values
 * included, with array sizes capped. Checks: a refusal leaves a message and sets no output; a draw lies
 * in its support (0..n, >= 0, counts summing to n with none where the probability is 0); a sparse
 * result is valid, stores no zero (Binomial, Poisson) and keeps its input's structure (Poisson's
 * before the zeros go, Multinomial's); the same call twice gives the same bytes. */
#include <math.h>
#include <string.h>

#include "fuzz.h"

#define MAX_SIDE 24
#define MAX_K 8

/* A parameter: mostly in a sensible range, sometimes any double. */
static double param(fuzz_bytes *b, double scale) {
    uint8_t c = fuzz_u8(b);
    if (c < 200) return c / 199.0 * scale;
    return fuzz_f64(b);
}

static int64_t count(fuzz_bytes *b) {
    uint8_t c = fuzz_u8(b);
    if (c < 200) return c % 40;
    if (c < 250) return (int64_t)(fuzz_u64(b) >> (fuzz_u8(b) % 64));
    return -(int64_t)fuzz_u8(b);
}

static void refused(sbx_status st, const char *call) { fuzz_check_failure(st, call); }

static void scalar(fuzz_bytes *b, sbx_rng *rng) {
    sbx_rng_cursor c1, c2;
    int64_t pos = (int64_t)(fuzz_u64(b) >> 1), out = -7, again = -7;
    FUZZ_REQUIRE(sbx_rng_cursor_init(rng, pos, &c1) == SBX_OK && sbx_rng_cursor_init(rng, pos, &c2) == SBX_OK, "cursor");
    sbx_status st, st2;
    switch (fuzz_range(b, 0, 2)) {
    case 0: {
        int64_t n = count(b);
        double p = param(b, 1.0);
        fuzz_clear_error();
        st = sbx_binomial(&c1, n, p, &out);
        st2 = sbx_binomial(&c2, n, p, &again);
        if (st != SBX_OK) {
            refused(st, "sbx_binomial");
            FUZZ_REQUIRE(out == -7, "a refused call set its output");
            FUZZ_REQUIRE(n < 0 || !(p >= 0 && p <= 1), "sbx_binomial refused n %lld p %g", (long long)n, p);
            return;
        }
        FUZZ_REQUIRE(out >= 0 && out <= n, "Binomial(%lld, %g) gave %lld", (long long)n, p, (long long)out);
        break;
    }
    case 1: {
        double lam = param(b, 30.0);
        if (fuzz_u8(b) & 1) lam *= 1e8;
        fuzz_clear_error();
        st = sbx_poisson(&c1, lam, &out);
        st2 = sbx_poisson(&c2, lam, &again);
        if (st != SBX_OK) {
            refused(st, "sbx_poisson");
            FUZZ_REQUIRE(out == -7, "a refused call set its output");
            FUZZ_REQUIRE(!(lam >= 0 && lam <= SBX_POISSON_MAX_LAM), "sbx_poisson refused lam %g", lam);
            return;
        }
        FUZZ_REQUIRE(out >= 0, "Poisson(%g) gave %lld", lam, (long long)out);
        break;
    }
    default: {
        int64_t n = count(b), k = fuzz_range(b, -1, MAX_K), counts[MAX_K], counts2[MAX_K];
        int renorm = fuzz_u8(b) & 1;
        double probs[MAX_K];
        for (int i = 0; i < MAX_K; i++) {
            probs[i] = fuzz_u8(b) & 1 ? 0 : param(b, 1.0);
            counts[i] = counts2[i] = -7;
        }
        /* Often a vector that sums to one. */
        if (fuzz_u8(b) & 1) {
            double sum = 0;
            for (int i = 0; i < k; i++) sum += probs[i];
            for (int i = 0; i < k && sum > 0; i++) probs[i] /= sum;
        }
        fuzz_clear_error();
        st = sbx_multinomial(&c1, n, probs, k, renorm, counts);
        st2 = sbx_multinomial(&c2, n, probs, k, renorm, counts2);
        if (st != SBX_OK) {
            refused(st, "sbx_multinomial");
            for (int i = 0; i < MAX_K; i++) FUZZ_REQUIRE(counts[i] == -7, "a refused call set counts[%d]", i);
            return;
        }
        int64_t total = 0;
        for (int i = 0; i < k; i++) {
            FUZZ_REQUIRE(counts[i] >= 0 && (counts[i] == 0 || probs[i] > 0), "count %d is %lld with probability %g", i,
                         (long long)counts[i], probs[i]);
            total += counts[i];
        }
        FUZZ_REQUIRE(total == n, "the counts sum to %lld, not %lld", (long long)total, (long long)n);
        FUZZ_REQUIRE(!memcmp(counts, counts2, sizeof counts), "two draws from the same cursor differ");
        return;
    }
    }
    FUZZ_REQUIRE(st2 == SBX_OK && out == again, "two draws from the same cursor differ");
}

static void fill(fuzz_bytes *b, sbx_rng *rng) {
    sbx_dtype dtype = (sbx_dtype)fuzz_range(b, 0, SBX_NUM_DTYPES - 1);
    int64_t shape[2] = {fuzz_range(b, 0, 6), fuzz_range(b, 0, MAX_K)}, first = fuzz_range(b, 0, 1000);
    if (fuzz_u8(b) == 255) first = (int64_t)(fuzz_u64(b) >> 1);
    sbx_array *a = NULL, *c = NULL;
    FUZZ_REQUIRE(sbx_array_create(dtype, 2, shape, &a) == SBX_OK && sbx_array_create(dtype, 2, shape, &c) == SBX_OK,
                 "sbx_array_create");
    int which = (int)fuzz_range(b, 0, 2);
    int64_t n = count(b);
    double p = param(b, which == 1 ? 20.0 : 1.0), probs[MAX_K];
    for (int i = 0; i < MAX_K; i++) probs[i] = 1.0 / (double)(shape[1] ? shape[1] : 1);
    if (fuzz_u8(b) & 1) probs[0] = p;
    int renorm = fuzz_u8(b) & 1;
    sbx_status st, st2;
    fuzz_clear_error();
    if (which == 0) {
        st = sbx_binomial_fill(rng, n, p, first, a);
        st2 = sbx_binomial_fill(rng, n, p, first, c);
    } else if (which == 1) {
        st = sbx_poisson_fill(rng, p, first, a);
        st2 = sbx_poisson_fill(rng, p, first, c);
    } else {
        st = sbx_multinomial_fill(rng, n, probs, shape[1], renorm, first, a);
        st2 = sbx_multinomial_fill(rng, n, probs, shape[1], renorm, first, c);
    }
    if (st != SBX_OK) refused(st, "a fill");
    else FUZZ_REQUIRE(st2 == SBX_OK && fuzz_arrays_equal(a, c), "two fills differ");
    for (int64_t i = 0; st == SBX_OK && i < sbx_array_numel(a); i++) {
        sbx_array *f = NULL;
        FUZZ_REQUIRE(sbx_array_cast(a, SBX_FLOAT64, &f) == SBX_OK, "cast");
        double v = ((double *)f->data)[i];
        FUZZ_REQUIRE(v >= 0 && (which == 1 || v <= (double)n), "element %lld is %g", (long long)i, v);
        sbx_array_free(f);
    }
    sbx_array_free(a);
    sbx_array_free(c);
}

/* A small valid sparse matrix of float64 values from param(). */
static sbx_sparse *small_sparse(fuzz_bytes *b, double scale) {
    int64_t nrows = fuzz_range(b, 0, 6), ncols = fuzz_range(b, 0, 6);
    sbx_array *d = NULL;
    sbx_sparse *m = NULL;
    int64_t shape[2] = {nrows, ncols};
    FUZZ_REQUIRE(sbx_array_create(SBX_FLOAT64, 2, shape, &d) == SBX_OK, "sbx_array_create");
    for (int64_t i = 0; i < nrows * ncols; i++) ((double *)d->data)[i] = fuzz_u8(b) & 1 ? param(b, scale) : 0;
    FUZZ_REQUIRE(sbx_sparse_from_dense(d, fuzz_u8(b) & 1 ? SBX_CSC : SBX_CSR, &m) == SBX_OK, "sbx_sparse_from_dense");
    sbx_array_free(d);
    return m;
}

static void sparse_random(fuzz_bytes *b, sbx_rng *rng) {
    sbx_sparse *m = NULL, *m2 = NULL, *x = NULL;
    sbx_status st, st2;
    int which = (int)fuzz_range(b, 0, 2);
    int64_t n = count(b);
    fuzz_clear_error();
    if (which == 0) {
        double p = param(b, 1.0);
        int64_t nrows = fuzz_range(b, -1, MAX_SIDE), ncols = fuzz_range(b, -1, MAX_SIDE);
        sbx_format format = (sbx_format)fuzz_range(b, 0, 2);
        sbx_dtype dtype = (sbx_dtype)fuzz_range(b, 0, SBX_NUM_DTYPES);
        st = sbx_random_binomial(rng, n, p, nrows, ncols, format, dtype, &m);
        st2 = sbx_random_binomial(rng, n, p, nrows, ncols, format, dtype, &m2);
    } else if (which == 1) {
        x = small_sparse(b, 20.0);
        st = sbx_random_poisson(rng, x, &m);
        st2 = sbx_random_poisson(rng, x, &m2);
    } else {
        x = small_sparse(b, 1.0);
        int64_t nshape = fuzz_u8(b) & 1 ? 1 : x->nrows;
        sbx_array *na = NULL;
        FUZZ_REQUIRE(sbx_array_create(SBX_INT64, 1, &nshape, &na) == SBX_OK, "sbx_array_create");
        for (int64_t i = 0; i < nshape; i++) ((int64_t *)na->data)[i] = count(b);
        st = sbx_random_multinomial(rng, na, x, fuzz_u8(b) & 1, &m);
        st2 = sbx_random_multinomial(rng, na, x, 1, &m2);
        sbx_array_free(na);
    }
    if (st != SBX_OK) {
        refused(st, "a sparse random matrix");
        FUZZ_REQUIRE(!m, "a refused call set its output");
    } else {
        FUZZ_REQUIRE(sbx_sparse_validate(m) == SBX_OK, "the sparse random matrix is malformed");
        if (which != 2) {
            sbx_sparse *z = NULL;
            FUZZ_REQUIRE(sbx_sparse_copy(m, &z) == SBX_OK && sbx_sparse_eliminate_zeros(z) == SBX_OK &&
                             z->nnz == m->nnz, "the sparse random matrix stores zeros");
            sbx_sparse_free(z);
        }
        if (which == 2)
            FUZZ_REQUIRE(m->nnz == x->nnz && !memcmp(m->indptr, x->indptr, (size_t)(sbx_sparse_major(x) + 1) * 8),
                         "Multinomial changed the structure");
        if (which != 2 || st2 == SBX_OK) /* the second multinomial renormalises: it may differ */
            FUZZ_REQUIRE(st2 == SBX_OK && (which == 2 || fuzz_sparse_equal(m, m2, 1)), "two draws differ");
    }
    sbx_sparse_free(m);
    sbx_sparse_free(m2);
    sbx_sparse_free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_bytes b = {data, size};
    sbx_rng rng;
    uint64_t seed = fuzz_u64(&b);
    sbx_rng_init(&rng, seed, fuzz_u32(&b));
    switch (fuzz_range(&b, 0, 2)) {
    case 0: scalar(&b, &rng); break;
    case 1: fill(&b, &rng); break;
    default: sparse_random(&b, &rng); break;
    }
    return 0;
}
