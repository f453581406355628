/* The sparse random matrices: Binomial (geometric gaps and zero-truncated values), Poisson and
 * Multinomial over a given structure. Every draw comes from a position fixed by the arguments (see
 * random.h), so results do not depend on the thread count. */
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "random/internal.h"
#include "sparse/internal.h"
#include "sparsebox/random.h"

/* The gap before the next non-zero of a line: Geometric with P(no draw is zero) = 1 - P0, L = log P0.
 * Returns a value > limit when the line ends first. */
static double next_gap(sbx_rng_cursor *cur, double L, double limit) {
    if (L == -INFINITY) return 0; /* every draw is non-zero */
    const double g = floor(log(1 - sbx__rng_double(cur)) / L); /* 1 - u in (0, 1] */
    return g > limit ? limit + 1 : g;
}

/* What a Binomial(n, p) matrix needs: L = log P(0), and for n <= TABLE_MAX the CDF, so that a value
 * is one uniform and a search (inversion, exact up to the doubles' rounding of the pmf). */
#define TABLE_MAX 4096
typedef struct {
    int64_t n;
    double p, L, *cdf; /* cdf[k] = P(X <= k), k = 0..n, cdf[n] = 1; NULL when n > TABLE_MAX */
} binomial_law;

static sbx_status law_make(int64_t n, double p, binomial_law *law) {
    law->n = n;
    law->p = p;
    law->L = n == 0 || p == 0 ? 0 : (double)n * log1p(-p);
    law->cdf = NULL;
    if (n > TABLE_MAX || law->L == 0 || p == 1) return SBX_OK;
    SBX_CHECK(sbx__alloc(n + 1, sizeof(double), &law->cdf, "binomial table"));
    /* The pmf from the mode outward would be more accurate in the tails; from P(0) it is exact
     * enough for n <= 4096 with p <= 1/2, mirrored for p > 1/2. */
    const double pp = p <= 0.5 ? p : 1 - p, s = pp / (1 - pp), a = ((double)n + 1) * s;
    double r = exp((double)n * log1p(-pp)), acc = 0;
    for (int64_t k = 0; k <= n; k++) {
        if (k > 0) r *= a / (double)k - s;
        law->cdf[p <= 0.5 ? k : n - k] = r; /* pmf first, summed below */
    }
    for (int64_t k = 0; k <= n; k++) law->cdf[k] = (acc += law->cdf[k]);
    for (int64_t k = 0; k <= n; k++) law->cdf[k] /= acc;
    law->cdf[n] = 1;
    return SBX_OK;
}

/* The smallest k with u < cdf[k], searching from k0: for small n a count of the cdf values at or
 * below u (no branch to mispredict), else a walk (short tables) or a bisection. */
static inline int64_t law_search(const binomial_law *law, double u, int64_t k0) {
    if (law->n <= 16) {
        int64_t k = k0;
        for (int64_t j = k0; j < law->n; j++) k += u >= law->cdf[j];
        return k;
    }
    int64_t lo = k0, hi = law->n;
    if (law->n * law->p < 16) { /* short: walk */
        while (lo < hi && u >= law->cdf[lo]) lo++;
        return lo;
    }
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (u < law->cdf[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* A value by inversion of the table with a uniform u of 53 bits, u = (w1 2^21 + (w2 >> 11)) 2^-53, whose
 * second word w2 is drawn only when the first leaves the answer open: u lies in [w1, w1 + 1) 2^-32, and
 * when no CDF value falls inside that interval every u in it gives the same k (about n in 2^32 draws
 * need the second word). The result is that of the full 53-bit inversion. */
static inline int64_t law_draw(const binomial_law *law, sbx_rng_cursor *cur) {
    const uint32_t w1 = sbx__rng_u32(cur);
    const double lo = (double)w1 * 0x1.0p-32, hi = ((double)w1 + 1) * 0x1.0p-32;
    const int64_t k = law_search(law, lo, 0);
    if (k == law->n || hi <= law->cdf[k]) return k;
    const uint32_t w2 = sbx__rng_u32(cur);
    return law_search(law, ((double)w1 * 0x1.0p21 + (double)(w2 >> 11)) * 0x1.0p-53, 0);
}

/* A value given that it is at least 1. */
static int64_t law_truncated(const binomial_law *law, sbx_rng_cursor *cur) {
    if (law->cdf) { /* inversion over k >= 1: u in [P0, 1) */
        const double p0 = law->cdf[0];
        return law_search(law, p0 + (1 - p0) * sbx__rng_double(cur), 1);
    }
    int64_t x = 0; /* rejection: P0 < 1/2 here (n > TABLE_MAX: n p is large or p tiny; see below) */
    if (exp(law->L) < 0.5) {
        while (x == 0) sbx_binomial(cur, law->n, law->p, &x);
        return x;
    }
    /* Inversion over k >= 1 for a huge n with a tiny p: P(1) = n p (1-p)^(n-1), mass 1 - P0. */
    const double p = law->p, q = 1 - p, s = p / q, a = ((double)law->n + 1) * s, mass = -expm1(law->L);
    const double r1 = exp(log((double)law->n) + log(p) + ((double)law->n - 1) * log1p(-p));
    for (;;) {
        double u = sbx__rng_double(cur) * mass, r = r1;
        x = 1;
        while (u > r && x < law->n) {
            u -= r;
            x++;
            r *= a / (double)x - s;
        }
        if (u <= r) return x;
    }
}

/* A thread's share of the lines: its entries, in line order. */
typedef struct {
    int64_t *index, *value;
    int64_t used, cap;
    sbx_status st;
} piece;

static void piece_grow(piece *pc) {
    const int64_t cap = pc->cap < 4096 ? 4096 : 2 * pc->cap;
    if ((pc->st = sbx__grow(cap, sizeof(int64_t), &pc->index, "binomial entries")) != SBX_OK ||
        (pc->st = sbx__grow(cap, sizeof(int64_t), &pc->value, "binomial entries")) != SBX_OK)
        return;
    pc->cap = cap;
}

static inline void piece_push(piece *pc, int64_t index, int64_t value) {
    if (pc->used == pc->cap) {
        if (pc->st == SBX_OK) piece_grow(pc);
        if (pc->used == pc->cap) return; /* out of memory: pc->st says so */
    }
    pc->index[pc->used] = index;
    pc->value[pc->used++] = value;
}

/* Line i: with dense lines (P0 < DENSE), one value per element from position 2i (law_draw: one word,
 * rarely two); otherwise the gaps from position 2i and the values from position 2i + 1. Returns the
 * line's entry count. */
#define DENSE 0.7
static int64_t binomial_line(const sbx_rng *rng, const binomial_law *law, int64_t i, int64_t minor, piece *pc) {
    sbx_rng_cursor a, b;
    const int64_t before = pc->used;
    sbx_rng_cursor_init(rng, 2 * i, &a);
    if (law->cdf && law->cdf[0] < DENSE) {
        while (pc->st == SBX_OK && pc->cap - pc->used < minor) piece_grow(pc); /* room for the whole line */
        if (pc->st != SBX_OK) return 0;
        int64_t *restrict idx = pc->index, *restrict val = pc->value, used = pc->used;
        for (int64_t j = 0; j < minor; j++) { /* written always, kept when non-zero: no branch */
            const int64_t k = law_draw(law, &a);
            idx[used] = j;
            val[used] = k;
            used += k > 0;
        }
        pc->used = used;
    } else {
        const double limit = (double)minor;
        sbx_rng_cursor_init(rng, 2 * i + 1, &b);
        for (double j = next_gap(&a, law->L, limit); j < limit; j += 1 + next_gap(&a, law->L, limit))
            piece_push(pc, (int64_t)j, law_truncated(law, &b));
    }
    return pc->used - before;
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
    binomial_law law;
    sbx_sparse *m = NULL;
    piece *pieces = NULL;
    SBX_CHECK(law_make(n, p, &law));
    const int nt = major < 64 ? 1 : sbx__threads();
    sbx_status st = sbx__sparse_new(format, dtype, nrows, ncols, 0, 1, &m);
    if (st == SBX_OK) st = sbx__alloc(nt, sizeof(piece), &pieces, "binomial pieces");
    if (st == SBX_OK && law.L != 0) { /* one pass: each thread a block of lines, into its own piece */
        /* Room for the expected entries and 6 standard deviations more, so a piece rarely grows. */
        const double q0 = -expm1(law.L), cells = (double)minor * (double)(major / nt + 1);
        const double expect = cells * q0 + 6 * sqrt(cells * q0) + 4096;
        const int64_t room = expect < (double)minor * (double)major ? (int64_t)expect : (int64_t)((double)minor * major) + 1;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int t = 0; t < nt; t++) {
            piece *pc = &pieces[t];
            if ((pc->st = sbx__alloc_raw(room, sizeof(int64_t), &pc->index, "binomial entries")) == SBX_OK &&
                (pc->st = sbx__alloc_raw(room, sizeof(int64_t), &pc->value, "binomial entries")) == SBX_OK)
                pc->cap = room;
            for (int64_t i = major / nt * t; i < (t + 1 == nt ? major : major / nt * (t + 1)); i++)
                m->indptr[i + 1] = binomial_line(rng, &law, i, minor, pc);
        }
        for (int t = 0; t < nt && st == SBX_OK; t++) st = pieces[t].st;
    }
    if (st == SBX_OK) { /* the pieces, in order, make the matrix */
        for (int64_t i = 0; i < major; i++) m->indptr[i + 1] += m->indptr[i];
        m->nnz = m->indptr[major];
        sbx__free(m->indices);
        sbx__free(m->data);
        m->indices = m->data = NULL;
        st = sbx__alloc_raw(m->nnz, sizeof(int64_t), &m->indices, "binomial indices");
        if (st == SBX_OK) st = sbx__alloc_raw(m->nnz, sbx_dtype_size(dtype), &m->data, "binomial values");
        for (int64_t t = 0, at = 0; t < nt && st == SBX_OK; at += pieces[t].used, t++) {
            if (pieces[t].used == 0) continue;
            memcpy(m->indices + at, pieces[t].index, (size_t)pieces[t].used * sizeof(int64_t));
            st = sbx__cast((char *)m->data + (size_t)at * sbx_dtype_size(dtype), dtype, pieces[t].value, SBX_INT64,
                           pieces[t].used, "binomial values");
        }
    }
    for (int t = 0; pieces && t < nt; t++) {
        sbx__free(pieces[t].index);
        sbx__free(pieces[t].value);
    }
    sbx__free(pieces);
    sbx__free(law.cdf);
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
        const int64_t groups = (x->nnz + SBX_RNG_BATCH - 1) / SBX_RNG_BATCH;
        const int nt = x->nnz < 4096 ? 1 : sbx__threads();
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t g = 0; g < groups; g++) { /* 16 entries at a time: their first blocks in vector lanes */
            sbx_rng_cursor cur[SBX_RNG_BATCH];
            const int64_t k0 = g * SBX_RNG_BATCH;
            const int count = x->nnz - k0 < SBX_RNG_BATCH ? (int)(x->nnz - k0) : SBX_RNG_BATCH;
            sbx__rng_cursors(rng, k0, count, cur);
            for (int b = 0; b < count; b++) sbx_poisson(&cur[b], sbx__get_f64(x->data, x->dtype, k0 + b), &draws[k0 + b]);
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
