/* The sparse random matrices: Binomial (geometric gaps and zero-truncated values), Poisson and
 * Multinomial over a given structure. Every draw comes from a position fixed by the arguments (see
 * random.h), so results do not depend on the thread count. */
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/internal.h"
#include "sparse/internal.h"
#include "sparsebox/random.h"

/* The gap before the next non-zero of a line: Geometric with P(no draw is zero) = 1 - P0, L = log P0.
 * Returns a value > limit when the line ends first. */
static double next_gap(sbx_rng_cursor *cur, double L, double limit) {
    if (L == -INFINITY) return 0; /* every draw is non-zero */
    const double g = floor(log(1 - sbx_rng_double(cur)) / L); /* 1 - u in (0, 1] */
    return g > limit ? limit + 1 : g;
}

/* Binomial(n, p) conditioned on being at least 1, n >= 1, 0 < p; L = n log(1 - p). */
static int64_t truncated_binomial(sbx_rng_cursor *cur, int64_t n, double p, double L) {
    int64_t x = 0;
    if (exp(L) < 0.5) { /* rejection: each try succeeds with probability above 1/2 */
        while (x == 0) sbx_binomial(cur, n, p, &x);
        return x;
    }
    /* Inversion over k >= 1 (here p < 1/2 and n p < 1): P(1) = n p (1-p)^(n-1), mass 1 - P0. */
    const double q = 1 - p, s = p / q, a = ((double)n + 1) * s;
    const double r1 = exp(log((double)n) + log(p) + ((double)n - 1) * log1p(-p)), mass = -expm1(L);
    for (;;) {
        double u = sbx_rng_double(cur) * mass, r = r1;
        x = 1;
        while (u > r && x < n) {
            u -= r;
            x++;
            r *= a / (double)x - s;
        }
        if (u <= r) return x;
    }
}

/* The largest count a dtype holds exactly, for the check of n. */
static double dtype_exact_max(sbx_dtype dtype) {
    switch (dtype) {
    case SBX_FLOAT32: return 16777216.0;
    case SBX_FLOAT64: return 9007199254740992.0;
    case SBX_INT8: return 127;
    case SBX_INT16: return 32767;
    case SBX_INT32: return 2147483647.0;
    case SBX_UINT8: return 255;
    case SBX_UINT16: return 65535;
    case SBX_UINT32: return 4294967295.0;
    case SBX_BOOL: return 1;
    default: return 9.3e18; /* int64, uint64: any int64 n */
    }
}

sbx_status sbx_random_binomial(const sbx_rng *rng, int64_t n, double p, int64_t nrows, int64_t ncols, sbx_format format,
                               sbx_dtype dtype, sbx_sparse **out) {
    if (!rng || !out) return sbx__error(SBX_ERR_ARG, "sbx_random_binomial: rng or out is NULL");
    if (n < 0) return sbx__error(SBX_ERR_ARG, "binomial n = %lld is negative", (long long)n);
    if (!(p >= 0 && p <= 1)) return sbx__error(SBX_ERR_ARG, "binomial p = %g is outside [0, 1]", p);
    if (nrows < 0 || ncols < 0)
        return sbx__error(SBX_ERR_ARG, "shape (%lld, %lld) has a negative extent", (long long)nrows, (long long)ncols);
    if (format != SBX_CSR && format != SBX_CSC)
        return sbx__error(SBX_ERR_ARG, "format %d is neither SBX_CSR nor SBX_CSC", (int)format);
    if (!sbx__dtype_valid(dtype)) return sbx__error(SBX_ERR_ARG, "dtype %d is not an sbx_dtype", (int)dtype);
    if ((double)n > dtype_exact_max(dtype))
        return sbx__error(SBX_ERR_ARG, "binomial n = %lld: draws up to n do not fit %s exactly", (long long)n,
                          sbx_dtype_name(dtype));
    const int64_t major = format == SBX_CSR ? nrows : ncols, minor = format == SBX_CSR ? ncols : nrows;
    const double L = n == 0 || p == 0 ? 0 : (double)n * log1p(-p), limit = (double)minor;
    sbx_sparse *m = NULL;
    int64_t *values = NULL;
    SBX_CHECK(sbx__sparse_new(format, dtype, nrows, ncols, 0, 1, &m));
    sbx__free(m->indices); /* sized below, once nnz is known */
    sbx__free(m->data);
    m->indices = NULL;
    m->data = NULL;
    int64_t *ip = m->indptr;
    const int nt = major < 4096 ? 1 : sbx__threads();
    if (L != 0) { /* pass 1: the gaps alone, to size the matrix */
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t i = 0; i < major; i++) {
            sbx_rng_cursor gaps;
            sbx_rng_cursor_init(rng, 2 * i, &gaps);
            int64_t count = 0;
            for (double j = next_gap(&gaps, L, limit); j < limit; j += 1 + next_gap(&gaps, L, limit)) count++;
            ip[i + 1] = count;
        }
    }
    for (int64_t i = 0; i < major; i++) ip[i + 1] += ip[i]; /* at most nrows * ncols: no overflow */
    m->nnz = ip[major];
    sbx_status st = sbx__alloc_raw(m->nnz, sizeof(int64_t), &m->indices, "binomial indices");
    if (st == SBX_OK) st = sbx__alloc_raw(m->nnz, sbx_dtype_size(dtype), &m->data, "binomial values");
    if (st == SBX_OK) st = sbx__alloc_raw(m->nnz, sizeof(int64_t), &values, "binomial draws");
    if (st == SBX_OK && m->nnz > 0) { /* pass 2: the same gaps, and the values */
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t i = 0; i < major; i++) {
            sbx_rng_cursor gaps, draws;
            sbx_rng_cursor_init(rng, 2 * i, &gaps);
            sbx_rng_cursor_init(rng, 2 * i + 1, &draws);
            int64_t at = ip[i];
            for (double j = next_gap(&gaps, L, limit); j < limit; j += 1 + next_gap(&gaps, L, limit)) {
                m->indices[at] = (int64_t)j;
                values[at++] = truncated_binomial(&draws, n, p, L);
            }
        }
    }
    if (st == SBX_OK) st = sbx__cast(m->data, dtype, values, SBX_INT64, m->nnz, "binomial values");
    sbx__free(values);
    if (st != SBX_OK) {
        sbx_sparse_free(m);
        return st;
    }
    *out = m;
    return SBX_OK;
}

sbx_status sbx_random_poisson(const sbx_rng *rng, const sbx_sparse *x, sbx_sparse **out) {
    if (!rng || !out) return sbx__error(SBX_ERR_ARG, "sbx_random_poisson: rng or out is NULL");
    SBX_CHECK(sbx_sparse_validate_structure(x));
    for (int64_t k = 0; k < x->nnz; k++) {
        const double lam = sbx__get_f64(x->data, x->dtype, k);
        if (!(lam >= 0 && lam <= SBX_POISSON_MAX_LAM))
            return sbx__error(SBX_ERR_ARG, "x: stored value %lld (%s %lld) = %g is not a mean in [0, %g]", (long long)k,
                              x->format == SBX_CSR ? "row" : "column", (long long)sbx__sparse_line_of(x, k), lam,
                              SBX_POISSON_MAX_LAM);
    }
    sbx_sparse *m = NULL;
    int64_t *draws = NULL;
    SBX_CHECK(sbx_sparse_copy(x, &m));
    sbx_status st = sbx__alloc_raw(x->nnz, sizeof(int64_t), &draws, "Poisson draws");
    if (st == SBX_OK) {
        const int nt = x->nnz < 20000 ? 1 : sbx__threads();
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t k = 0; k < x->nnz; k++) {
            sbx_rng_cursor cur;
            sbx_rng_cursor_init(rng, k, &cur);
            sbx_poisson(&cur, sbx__get_f64(x->data, x->dtype, k), &draws[k]);
        }
        st = sbx__cast(m->data, m->dtype, draws, SBX_INT64, x->nnz, "Poisson draws");
    }
    if (st == SBX_OK) st = sbx_sparse_eliminate_zeros(m);
    sbx__free(draws);
    if (st != SBX_OK) {
        sbx_sparse_free(m);
        return st;
    }
    *out = m;
    return SBX_OK;
}

/* n for row r (n has 1 or nrows values). */
static int64_t row_n(const sbx_array *n, int64_t r) {
    return (int64_t)sbx__get_f64(n->data, n->dtype, sbx_array_numel(n) == 1 ? 0 : r);
}

/* Multinomial over the rows of a CSR matrix. */
static sbx_status multinomial_csr(const sbx_rng *rng, const sbx_array *n, const sbx_sparse *p, int renormalize,
                                  sbx_sparse **out) {
    const int64_t rows = p->nrows;
    int64_t widest = 0;
    for (int64_t r = 0; r < rows; r++) { /* every row checked first, so sampling cannot fail */
        const int64_t lo = p->indptr[r], hi = p->indptr[r + 1], nr = row_n(n, r);
        double sum = 0;
        if (hi - lo > widest) widest = hi - lo;
        if (nr > 0 && hi == lo) return sbx__error(SBX_ERR_ARG, "p: row %lld is empty but n = %lld", (long long)r, (long long)nr);
        for (int64_t k = lo; k < hi; k++) {
            const double v = sbx__get_f64(p->data, p->dtype, k);
            if (!(v >= 0) || isinf(v))
                return sbx__error(SBX_ERR_ARG, "p: row %lld has probability %g (column %lld), negative or not finite",
                                  (long long)r, v, (long long)p->indices[k]);
            sum += v;
        }
        if (hi > lo && (renormalize ? !(sum > 0) : fabs(sum - 1) > 1e-6))
            return sbx__error(SBX_ERR_ARG, renormalize ? "p: row %lld sums to %.17g, not a positive mass"
                                                       : "p: row %lld sums to %.17g, not 1 within 1e-6 (renormalize to accept)",
                              (long long)r, sum);
    }
    sbx_sparse *m = NULL;
    int64_t *counts = NULL;
    double *probs = NULL;
    const int nt = p->nnz < 20000 ? 1 : sbx__threads();
    SBX_CHECK(sbx_sparse_copy(p, &m));
    sbx_status st = sbx__alloc_raw(p->nnz, sizeof(int64_t), &counts, "multinomial counts");
    if (st == SBX_OK) st = sbx__alloc_raw(widest * nt, sizeof(double), &probs, "multinomial probabilities");
    if (st == SBX_OK) {
#pragma omp parallel num_threads(nt)
        {
            int t = 0;
#ifdef _OPENMP
            t = omp_get_thread_num();
#endif
            double *pr = probs + (int64_t)t * widest;
#pragma omp for schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                const int64_t lo = p->indptr[r], hi = p->indptr[r + 1];
                sbx_rng_cursor cur;
                sbx_rng_cursor_init(rng, r, &cur);
                for (int64_t k = lo; k < hi; k++) pr[k - lo] = sbx__get_f64(p->data, p->dtype, k);
                sbx_multinomial(&cur, row_n(n, r), pr, hi - lo, renormalize, counts + lo);
            }
        }
        st = sbx__cast(m->data, m->dtype, counts, SBX_INT64, p->nnz, "multinomial counts");
    }
    sbx__free(counts);
    sbx__free(probs);
    if (st != SBX_OK) {
        sbx_sparse_free(m);
        return st;
    }
    *out = m;
    return SBX_OK;
}

sbx_status sbx_random_multinomial(const sbx_rng *rng, const sbx_array *n, const sbx_sparse *p, int renormalize,
                                  sbx_sparse **out) {
    if (!rng || !out || !n) return sbx__error(SBX_ERR_ARG, "sbx_random_multinomial: rng, n or out is NULL");
    SBX_CHECK(sbx_sparse_validate_structure(p));
    const int64_t count = sbx_array_numel(n);
    if (!sbx__dtype_valid(n->dtype) || (count > 0 && !n->data))
        return sbx__error(SBX_ERR_ARG, "n is not a valid array");
    if (count != 1 && (n->ndim != 1 || count != p->nrows))
        return sbx__error(SBX_ERR_ARG, "n has %lld values; it needs 1 or one per row (%lld)", (long long)count,
                          (long long)p->nrows);
    for (int64_t i = 0; i < count; i++) {
        const double v = sbx__get_f64(n->data, n->dtype, i);
        if (!(v >= 0 && v <= 9007199254740992.0) || v != floor(v))
            return sbx__error(SBX_ERR_ARG, "n[%lld] = %g is not a non-negative integer", (long long)i, v);
    }
    if (p->format == SBX_CSR) return multinomial_csr(rng, n, p, renormalize, out);
    sbx_sparse *csr = NULL, *drawn = NULL; /* CSC: rows are read through the CSR form */
    SBX_CHECK(sbx_sparse_convert(p, SBX_CSR, &csr));
    sbx_status st = multinomial_csr(rng, n, csr, renormalize, &drawn);
    sbx_sparse_free(csr);
    if (st == SBX_OK) {
        st = sbx_sparse_convert(drawn, SBX_CSC, out);
        sbx_sparse_free(drawn);
    }
    return st;
}
