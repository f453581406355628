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

#if defined(__x86_64__) && !defined(SBX_SANITIZE)
#include <immintrin.h>
#define HAVE_AVX512_PATH 1
#endif

/* A table inversion: the smallest k with u < cdf[k] (k = last + 1 when u >= cdf[last]) for
 * u = a + b U, U uniform in [0, 1) read one word first (sbx__u53; u is monotone in U, so the interval
 * of U that one word leaves open maps to an interval of u). The search starts at a guide entry (Chen
 * and Asau's indexed search): guide[g] is the smallest k with cdf[k] > a + b g / GUIDE. */
#define GUIDE_BITS 8
#define GUIDE (1 << GUIDE_BITS)
typedef struct {
    double *cdf, a, b; /* cdf non-decreasing; NULL: no table */
    int64_t last;
    int32_t guide[GUIDE];
} table;

static void table_guide(table *t) {
    int64_t k = 0;
    for (int g = 0; g < GUIDE; g++) {
        const double u = t->a + t->b * ((double)g / GUIDE);
        while (k <= t->last && t->cdf[k] <= u) k++;
        t->guide[g] = (int32_t)k;
    }
}

static inline int64_t table_draw(const table *t, sbx_rng_cursor *cur) {
    const uint32_t w1 = sbx__rng_u32(cur);
    const double lo = t->a + t->b * ((double)w1 * 0x1.0p-32), hi = t->a + t->b * (((double)w1 + 1) * 0x1.0p-32);
    int64_t k = t->guide[w1 >> (32 - GUIDE_BITS)];
    while (k <= t->last && lo >= t->cdf[k]) k++;
    if (k > t->last || hi < t->cdf[k]) return k; /* every u of the interval gives k */
    const double u = t->a + t->b * sbx__u53(w1, sbx__rng_u32(cur));
    while (k <= t->last && u >= t->cdf[k]) k++;
    return k;
}

/* What a Binomial(n, p) matrix needs. L = log P0, P0 = P(a draw is 0) = (1-p)^n.
 * - value: for n <= TABLE_MAX the CDF P(X <= k), k = 0..n (exact up to the doubles' rounding of the
 *   pmf), read with u = U on dense lines and u = P0 + (1 - P0) U (a value given that it is not 0) on
 *   sparse ones; no table for a larger n.
 * - gap: the gap before a line's next non-zero is Geometric, P(G <= g) = 1 - P0^(g+1). With
 *   P0 <= GAP_TABLE_P0 a table of it up to the g where P0^(g+1) < 2^-10, a draw past the table adding
 *   the table's length and drawing again (the geometric forgets); above, floor(log(1 - U) / L).
 * Which way a matrix is drawn depends on (n, p) only. */
#define TABLE_MAX 4096
#define DENSE 0.7 /* P0 below it: lines drawn cell by cell */
#define GAP_TABLE_P0 0.998
typedef struct {
    int64_t n;
    double p, L;
    int dense;
    table value, gap;
} binomial_law;

static void law_free(binomial_law *law) {
    sbx__free(law->value.cdf);
    sbx__free(law->gap.cdf);
}

static sbx_status law_make(int64_t n, double p, binomial_law *law) {
    memset(law, 0, sizeof *law);
    law->n = n;
    law->p = p;
    law->L = n == 0 || p == 0 ? 0 : (double)n * log1p(-p);
    if (law->L == 0 || p == 1) return SBX_OK; /* all zeros, or no zeros (L = -inf) */
    const double p0 = exp(law->L);
    if (n <= TABLE_MAX) {
        double *cdf;
        SBX_CHECK(sbx__alloc(n + 1, sizeof(double), &cdf, "binomial table"));
        /* The pmf from the mode outward would be more accurate in the tails; from P(0) it is exact
         * enough for n <= 4096 with p <= 1/2, mirrored for p > 1/2. */
        const double pp = p <= 0.5 ? p : 1 - p, s = pp / (1 - pp), a = ((double)n + 1) * s;
        /* P(0) underflows where n log(1 - p) is below about -745 (n = 3000, p = 0.3), and a chain from
         * 0 stays 0: start it from a scaled P(0) there, scaling the entries made so far down whenever
         * it grows large (the sum below normalises; each step grows it at most n + 1 times). */
        const double l0 = (double)n * log1p(-pp);
        double r = exp(l0 < -700 ? -700 : l0), acc = 0;
        for (int64_t k = 0; k <= n; k++) {
            if (k > 0) r *= a / (double)k - s;
            if (r > 1e200) {
                for (int64_t j = 0; j < k; j++) cdf[p <= 0.5 ? j : n - j] *= 1e-200;
                r *= 1e-200;
            }
            cdf[p <= 0.5 ? k : n - k] = r; /* pmf first, summed below */
        }
        for (int64_t k = 0; k <= n; k++) cdf[k] = (acc += cdf[k]);
        for (int64_t k = 0; k <= n; k++) cdf[k] /= acc;
        cdf[n] = 1;
        law->dense = cdf[0] < DENSE;
        law->value = (table){.cdf = cdf, .last = n, .a = law->dense ? 0 : cdf[0], .b = law->dense ? 1 : 1 - cdf[0]};
        table_guide(&law->value);
    }
    if (!law->dense && p0 <= GAP_TABLE_P0) {
        const int64_t len = (int64_t)ceil(-10 * 0.69314718055994531 / law->L) + 1; /* P0^len < 2^-10 */
        double *cdf, tail = 1;
        const sbx_status st = sbx__alloc(len, sizeof(double), &cdf, "geometric table");
        if (st != SBX_OK) {
            law_free(law);
            return st;
        }
        for (int64_t g = 0; g < len; g++) cdf[g] = 1 - (tail *= p0);
        law->gap = (table){.cdf = cdf, .last = len - 1, .a = 0, .b = 1};
        table_guide(&law->gap);
    }
    return SBX_OK;
}

/* The gap before the next non-zero of a line; a value > limit when the line ends first. */
static inline double next_gap(const binomial_law *law, sbx_rng_cursor *cur, double limit) {
    if (law->L == -INFINITY) return 0; /* every draw is non-zero */
    double g;
    if (law->gap.cdf) {
        int64_t k, past = 0;
        while ((k = table_draw(&law->gap, cur)) > law->gap.last && past <= (int64_t)limit) past += k;
        g = (double)(past + k);
    } else {
        g = floor(log(1 - sbx__rng_double(cur)) / law->L); /* 1 - U in (0, 1] */
    }
    return g > limit ? limit + 1 : g;
}

/* A value given that it is at least 1. */
static int64_t law_truncated(const binomial_law *law, sbx_rng_cursor *cur) {
    if (law->value.cdf) return table_draw(&law->value, cur); /* u in [P0, 1) */
    int64_t x = 0; /* n > TABLE_MAX: rejection while P0 < 1/2 (n p is large or p tiny; see below) */
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

/* A thread's share of the lines: its entries, in line order, the values in vtype (the matrix's
 * dtype when float32, float64 or int64; else int64, cast and checked at the end). */
typedef struct {
    int64_t *index;
    void *value;
    sbx_dtype vtype;
    int64_t used, cap, at; /* at: where the piece goes in the matrix */
    sbx_status st;
} piece;

static void piece_grow(piece *pc) {
    const int64_t cap = pc->cap < 4096 ? 4096 : 2 * pc->cap;
    if ((pc->st = sbx__grow(cap, sizeof(int64_t), &pc->index, "binomial entries")) != SBX_OK ||
        (pc->st = sbx__grow(cap, sbx_dtype_size(pc->vtype), &pc->value, "binomial entries")) != SBX_OK)
        return;
    pc->cap = cap;
}

/* value (at most the dtype's exact maximum, checked beforehand) as entry `at` of vtype's array. */
static inline void put_value(void *val, sbx_dtype vtype, int64_t at, int64_t value) {
    if (vtype == SBX_FLOAT32)
        ((float *)val)[at] = (float)value;
    else if (vtype == SBX_FLOAT64)
        ((double *)val)[at] = (double)value;
    else
        ((int64_t *)val)[at] = value;
}

static inline void piece_push(piece *pc, int64_t index, int64_t value) {
    if (pc->used == pc->cap) {
        if (pc->st == SBX_OK) piece_grow(pc);
        if (pc->used == pc->cap) return; /* out of memory: pc->st says so */
    }
    pc->index[pc->used] = index;
    put_value(pc->value, pc->vtype, pc->used++, value);
}

/* A dense line's minor values (written always, kept when non-zero: no branch), values of type T. */
#define DENSE_LINE(T)                                                                                                  \
    for (int64_t j = 0; j < minor; j++) {                                                                              \
        const int64_t k = table_draw(&law->value, &a);                                                                 \
        idx[used] = j;                                                                                                 \
        ((T *)val)[used] = (T)k;                                                                                       \
        used += k > 0;                                                                                                 \
    }

/* Line i: dense lines (law->dense) draw one value per element from position 2i; sparse lines draw
 * their gaps from position 2i and their values from position 2i + 1. Returns the line's entry count. */
static int64_t binomial_line(const sbx_rng *rng, const binomial_law *law, int64_t i, int64_t minor, piece *pc) {
    sbx_rng_cursor a, b;
    const int64_t before = pc->used;
    sbx_rng_cursor_init(rng, 2 * i, &a);
    if (law->dense) {
        while (pc->st == SBX_OK && pc->cap - pc->used < minor) piece_grow(pc); /* room for the whole line */
        if (pc->st != SBX_OK) return 0;
        int64_t *restrict idx = pc->index, used = pc->used;
        void *restrict val = pc->value;
        if (pc->vtype == SBX_FLOAT32)
            DENSE_LINE(float)
        else if (pc->vtype == SBX_FLOAT64)
            DENSE_LINE(double)
        else
            DENSE_LINE(int64_t)
        pc->used = used;
    } else {
        const double limit = (double)minor;
        sbx_rng_cursor_init(rng, 2 * i + 1, &b);
        for (double j = next_gap(law, &a, limit); j < limit; j += 1 + next_gap(law, &a, limit))
            piece_push(pc, (int64_t)j, law_truncated(law, &b));
    }
    return pc->used - before;
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
    if ((double)n > sbx__dtype_exact_max(dtype))
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
    const sbx_dtype vtype = dtype == SBX_FLOAT32 || dtype == SBX_FLOAT64 ? dtype : SBX_INT64;
    if (st == SBX_OK && law.L != 0) { /* one pass: each thread a block of lines, into its own piece */
        /* Room for the expected entries and 6 standard deviations more, so a piece rarely grows; piece
         * 0's for the whole matrix, since its arrays become the matrix's (see below). */
        const double q0 = -expm1(law.L), all = (double)minor * (double)major;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int t = 0; t < nt; t++) {
            const double cells = t == 0 ? all : (double)minor * (double)(major / nt + 1);
            const double expect = cells * q0 + 6 * sqrt(cells * q0) + 4096;
            const int64_t room = expect < all ? (int64_t)expect : (int64_t)all + 1;
            piece local = {.vtype = vtype}, *pc = &local; /* a copy on this thread's stack: no cache line shared */
            if ((pc->st = sbx__alloc_raw(room, sizeof(int64_t), &pc->index, "binomial entries")) == SBX_OK &&
                (pc->st = sbx__alloc_raw(room, sbx_dtype_size(vtype), &pc->value, "binomial entries")) == SBX_OK)
                pc->cap = room;
            for (int64_t i = major / nt * t; i < (t + 1 == nt ? major : major / nt * (t + 1)); i++)
                m->indptr[i + 1] = binomial_line(rng, &law, i, minor, pc);
            pieces[t] = local;
        }
        for (int t = 0; t < nt && st == SBX_OK; t++) st = pieces[t].st;
        /* A worker's message went to that worker's thread: say it again on this one. */
        if (st != SBX_OK) st = sbx__error(st, "binomial entries: cannot allocate the entries of a %lld x %lld matrix",
                                          (long long)nrows, (long long)ncols);
    }
    if (st == SBX_OK) { /* the pieces, in order, make the matrix */
        for (int64_t i = 0; i < major; i++) m->indptr[i + 1] += m->indptr[i];
        m->nnz = m->indptr[major];
        /* Piece 0's arrays, grown if the others do not fit after it (rare), become the matrix's when its
         * values are in the dtype: with one thread nothing is copied. */
        const int direct = vtype == dtype && pieces[0].index;
        if (direct) {
            piece *p0 = &pieces[0];
            st = sbx__grow(m->nnz, sizeof(int64_t), &p0->index, "binomial indices");
            if (st == SBX_OK) st = sbx__grow(m->nnz, sbx_dtype_size(dtype), &p0->value, "binomial values");
        }
        sbx__free(m->indices);
        sbx__free(m->data);
        m->indices = m->data = NULL;
        if (direct && st == SBX_OK) {
            m->indices = pieces[0].index;
            m->data = pieces[0].value;
            pieces[0].index = NULL;
            pieces[0].value = NULL;
        } else if (st == SBX_OK) {
            st = sbx__alloc_raw(m->nnz, sizeof(int64_t), &m->indices, "binomial indices");
            if (st == SBX_OK) st = sbx__alloc_raw(m->nnz, sbx_dtype_size(dtype), &m->data, "binomial values");
        }
        if (st == SBX_OK) {
            for (int t = 0; t < nt; t++) pieces[t].at = t == 0 ? 0 : pieces[t - 1].at + pieces[t - 1].used;
#pragma omp parallel for num_threads(nt) schedule(static)
            for (int t = 0; t < nt; t++) { /* each thread moves its own piece (piece 0: in place if direct) */
                piece *pc = &pieces[t];
                if (pc->used == 0 || (direct && t == 0)) continue;
                memcpy(m->indices + pc->at, pc->index, (size_t)pc->used * sizeof(int64_t));
                char *data = (char *)m->data + (size_t)pc->at * sbx_dtype_size(dtype);
                pc->st = sbx__cast(data, dtype, pc->value, vtype, pc->used, "binomial values");
            }
            for (int t = 0; t < nt && st == SBX_OK; t++) st = pieces[t].st;
            if (st != SBX_OK) st = sbx__error(st, "binomial values: %s cannot hold them", sbx_dtype_name(dtype));
        }
    }
    for (int t = 0; pieces && t < nt; t++) {
        sbx__free(pieces[t].index);
        sbx__free(pieces[t].value);
    }
    sbx__free(pieces);
    law_free(&law);
    if (st != SBX_OK) {
        sbx_sparse_free(m);
        return st;
    }
    *out = m;
    return SBX_OK;
}

/* The first error in x's indices or means, as a serial check names it: the structure first (so that
 * the message is sbx_sparse_validate_structure's), then the first mean outside [0, max]. */
static sbx_status poisson_input_error(const sbx_sparse *x, const double *lam) {
    SBX_CHECK(sbx_sparse_validate_structure(x));
    for (int64_t k = 0; k < x->nnz; k++)
        if (!(lam[k] >= 0 && lam[k] <= SBX_POISSON_MAX_LAM))
            return sbx__error(SBX_ERR_ARG, "x: stored value %lld (%s %lld) = %g is not a mean in [0, %g]", (long long)k,
                              x->format == SBX_CSR ? "row" : "column", (long long)sbx__sparse_line_of(x, k), lam[k],
                              SBX_POISSON_MAX_LAM);
    return SBX_ERR_ARG; /* not reached: a thread saw a bad entry */
}

/* A thread's block of lines for the sparse Poisson: lines [line0, line1), entries [k0, k1); where it
 * keeps its non-zero draws (idx and val from k0 on, val in vtype), how many, where they go in the
 * result, and whether an index or a mean was bad. */
typedef struct {
    int64_t line0, line1, k0, k1, kept, at;
    int64_t *idx;
    void *val;
    sbx_dtype vtype;
    int bad;
    sbx_status st;
} poisson_part;

/* The first line i with indptr[i] >= k (a block of lines starts there). */
static int64_t line_at(const int64_t *indptr, int64_t major, int64_t k) {
    int64_t lo = 0, hi = major;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (indptr[mid] < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

#define POISSON_CHUNK 512 /* entries drawn at a time into a buffer on the stack */
#define EIGHTS (POISSON_CHUNK / 8 + 1)

/* Whether any of n entries has an index outside [0, minor) or a mean outside [0, max] (NaN included):
 * one pass without branches, in vectors (a third of the sparse Poisson's time was this test written
 * with && and ||). */
SBX_CLONES static int entries_bad(const int64_t *index, const double *lam, int64_t n, uint64_t minor) {
    int bad = 0;
    for (int64_t k = 0; k < n; k++)
        bad |= ((uint64_t)index[k] >= minor) | !(lam[k] >= 0) | !(lam[k] <= SBX_POISSON_MAX_LAM);
    return bad;
}

/* A chunk's n draws, their entries' indices xi: the non-zero ones appended to idx and val (vtype
 * float64, float32 or int64) from kept on; entry 8 g + j's draw non-zero iff bit j of nonzero[g], and
 * before[g] the count kept before entry 8 g (before[n / 8 + 1] too). Returns the new count. */
/* One entry, its draw d and index i, written at kept; the count kept moves on when d is not zero. */
static inline int64_t keep_one(int64_t d, int64_t i, int64_t *restrict idx, void *val, sbx_dtype vtype,
                               int64_t kept) {
    idx[kept] = i;
    if (vtype == SBX_FLOAT64)
        ((double *)val)[kept] = (double)d;
    else if (vtype == SBX_FLOAT32)
        ((float *)val)[kept] = (float)d;
    else
        ((int64_t *)val)[kept] = d;
    return kept + (d != 0);
}

static int64_t keep_scalar(const int64_t *drawn, const int64_t *xi, int64_t n, int64_t *restrict idx, void *val,
                           sbx_dtype vtype, int64_t kept, uint8_t *nonzero, int64_t *before) {
    for (int64_t g = 0; g * 8 <= n; g++) {
        before[g] = kept;
        unsigned bits = 0;
        for (int64_t k = 8 * g; k < 8 * g + 8 && k < n; k++) {
            bits |= (unsigned)(drawn[k] != 0) << (k - 8 * g);
            kept = keep_one(drawn[k], xi[k], idx, val, vtype, kept);
        }
        nonzero[g] = (uint8_t)bits;
    }
    return kept;
}

#ifdef HAVE_AVX512_PATH
/* keep_scalar eight at a time: the non-zero lanes compressed to the front of a vector and stored
 * masked. A draw (below 2^52) becomes a double exactly by its bits under the exponent of 2^52, less
 * 2^52; a float from that double is the float C makes from the integer (one rounding either way). */
__attribute__((target("avx512f,popcnt"))) static int64_t keep_avx512(const int64_t *drawn, const int64_t *xi, int64_t n,
                                                               int64_t *idx, void *val, sbx_dtype vtype, int64_t kept,
                                                               uint8_t *nonzero, int64_t *before) {
    const __m512i big = _mm512_set1_epi64(0x4330000000000000); /* 2^52's bits */
    for (int64_t g = 0; g * 8 <= n; g++) {
        before[g] = kept;
        const __mmask8 in = (__mmask8)(n - 8 * g >= 8 ? 0xFF : (1u << (n - 8 * g)) - 1);
        const __m512i d = _mm512_maskz_loadu_epi64(in, drawn + 8 * g);
        const __mmask8 nz = _mm512_mask_cmpneq_epi64_mask(in, d, _mm512_setzero_si512());
        const __mmask8 out = (__mmask8)((1u << __builtin_popcount(nz)) - 1);
        const __m512i i = _mm512_maskz_loadu_epi64(in, xi + 8 * g);
        _mm512_mask_storeu_epi64(idx + kept, out, _mm512_maskz_compress_epi64(nz, i));
        if (vtype == SBX_INT64) {
            _mm512_mask_storeu_epi64((int64_t *)val + kept, out, _mm512_maskz_compress_epi64(nz, d));
        } else {
            const __m512d v = _mm512_sub_pd(_mm512_castsi512_pd(_mm512_or_si512(d, big)), _mm512_castsi512_pd(big));
            const __m512d c = _mm512_maskz_compress_pd(nz, v);
            if (vtype == SBX_FLOAT64)
                _mm512_mask_storeu_pd((double *)val + kept, out, c);
            else
                _mm512_mask_storeu_ps((float *)val + kept, out, _mm512_castps256_ps512(_mm512_cvtpd_ps(c)));
        }
        nonzero[g] = nz;
        kept += __builtin_popcount(nz);
    }
    return kept;
}

/* keep_scalar four at a time with AVX2, which has no compress: the non-zero lanes moved to the front
 * by a permutation of 32-bit halves looked up by their mask, and stored whole (the lanes past the
 * kept ones are written over by the next store, and stay inside the draws so far: each vector is four
 * entries of this block). Entries past the last whole vector go one at a time, as keep_scalar. Draws
 * become doubles as in keep_avx512, floats from those doubles. */
#define FRONT(a, b, c, d) {2 * (a), 2 * (a) + 1, 2 * (b), 2 * (b) + 1, 2 * (c), 2 * (c) + 1, 2 * (d), 2 * (d) + 1}
__attribute__((target("avx2,popcnt"))) static int64_t keep_avx2(const int64_t *drawn, const int64_t *xi, int64_t n,
                                                             int64_t *idx, void *val, sbx_dtype vtype, int64_t kept,
                                                             uint8_t *nonzero, int64_t *before) {
    /* front[m]: the 32-bit halves of the lanes set in m first, in order (the rest: any) */
    static const int32_t front[16][8] = {FRONT(0, 0, 0, 0), FRONT(0, 0, 0, 0), FRONT(1, 0, 0, 0), FRONT(0, 1, 0, 0),
                                         FRONT(2, 0, 0, 0), FRONT(0, 2, 0, 0), FRONT(1, 2, 0, 0), FRONT(0, 1, 2, 0),
                                         FRONT(3, 0, 0, 0), FRONT(0, 3, 0, 0), FRONT(1, 3, 0, 0), FRONT(0, 1, 3, 0),
                                         FRONT(2, 3, 0, 0), FRONT(0, 2, 3, 0), FRONT(1, 2, 3, 0), FRONT(0, 1, 2, 3)};
    const __m256i big = _mm256_set1_epi64x(0x4330000000000000); /* 2^52's bits */
    for (int64_t g = 0; g * 8 <= n; g++) {
        before[g] = kept;
        unsigned bits = 0;
        for (int64_t h = 8 * g; h < 8 * g + 8 && h < n; h += 4) {
            if (h + 4 > n) { /* the last entries, one at a time */
                for (int64_t k = h; k < n; k++) {
                    bits |= (unsigned)(drawn[k] != 0) << (k - 8 * g);
                    kept = keep_one(drawn[k], xi[k], idx, val, vtype, kept);
                }
                break;
            }
            const __m256i d = _mm256_loadu_si256((const void *)(drawn + h));
            const unsigned nz =
                (unsigned)~_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(d, _mm256_setzero_si256()))) & 0xF;
            const __m256i perm = _mm256_loadu_si256((const void *)front[nz]);
            const __m256i i = _mm256_loadu_si256((const void *)(xi + h));
            _mm256_storeu_si256((void *)(idx + kept), _mm256_permutevar8x32_epi32(i, perm));
            if (vtype == SBX_INT64) {
                _mm256_storeu_si256((void *)((int64_t *)val + kept), _mm256_permutevar8x32_epi32(d, perm));
            } else {
                const __m256d v = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(d, big)), _mm256_castsi256_pd(big));
                const __m256 c = _mm256_permutevar8x32_ps(_mm256_castpd_ps(v), perm);
                if (vtype == SBX_FLOAT64) {
                    _mm256_storeu_ps((float *)((double *)val + kept), c);
                } else { /* the four doubles to floats, in order, in the low half */
                    _mm_storeu_ps((float *)val + kept, _mm256_cvtpd_ps(_mm256_castps_pd(c)));
                }
            }
            bits |= nz << (h - 8 * g);
            kept += __builtin_popcount(nz);
        }
        nonzero[g] = (uint8_t)bits;
    }
    return kept;
}
#undef FRONT
#endif

/* The bits set in a byte (without the popcnt instruction, which the default target lacks). */
static inline int64_t ones8(unsigned b) {
    b = b - ((b >> 1) & 0x55);
    b = (b & 0x33) + ((b >> 2) & 0x33);
    return (b + (b >> 4)) & 0x0F;
}

/* A block's entries: their indices and means checked, drawn a chunk at a time, the non-zero draws
 * kept in order at pt->idx[k0 ..] and pt->val[k0 ..], line i's count of kept entries so far (from the
 * block's start) in indptr[i + 1]. */
static void poisson_block(const sbx_rng *rng, const sbx_sparse *x, const double *lam, int64_t *indptr,
                          poisson_part *pt) {
    const uint64_t minor = (uint64_t)sbx_sparse_minor(x);
    const int64_t *xp = x->indptr, *xi = x->indices;
    int64_t drawn[POISSON_CHUNK], before[EIGHTS], line = pt->line0, kept = 0;
    uint8_t nonzero[EIGHTS];
    int64_t *idx = pt->idx + pt->k0;
    void *val = (char *)pt->val + (size_t)pt->k0 * sbx_dtype_size(pt->vtype);
#ifdef HAVE_AVX512_PATH
    const int vector = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
#endif
    for (int64_t c = pt->k0; c < pt->k1; c += POISSON_CHUNK) {
        const int64_t n = pt->k1 - c < POISSON_CHUNK ? pt->k1 - c : POISSON_CHUNK;
        if (entries_bad(xi + c, lam + c, n, minor)) {
            pt->bad = 1;
            return;
        }
        sbx__poisson_positions(rng, c, n, lam + c, 1, drawn);
#ifdef HAVE_AVX512_PATH
        if (vector == 2)
            kept = keep_avx512(drawn, xi + c, n, idx, val, pt->vtype, kept, nonzero, before);
        else if (vector == 1)
            kept = keep_avx2(drawn, xi + c, n, idx, val, pt->vtype, kept, nonzero, before);
        else
#endif
            kept = keep_scalar(drawn, xi + c, n, idx, val, pt->vtype, kept, nonzero, before);
        for (; line < pt->line1 && xp[line + 1] <= c + n; line++) { /* the lines that end in this chunk */
            const int64_t e = xp[line + 1] - c;
            indptr[line + 1] = before[e / 8] + ones8(nonzero[e / 8] & ((1u << (e % 8)) - 1));
        }
    }
    while (line < pt->line1) indptr[++line] = kept;
    pt->kept = kept;
}

/* The entries the blocks kept, and whether any saw a bad index or mean. */
static int64_t blocks_kept(const poisson_part *parts, int nt, int *bad) {
    int64_t total = 0;
    *bad = 0;
    for (int t = 0; t < nt; t++) {
        *bad |= parts[t].bad;
        total += parts[t].kept;
    }
    return total;
}

/* Whether the result takes block 0's arrays (values kept in its dtype, at least half the entries
 * kept), else exact arrays of its own, no more than half wasted. */
static int keeps_block0(sbx_dtype vtype, sbx_dtype dtype, int64_t total, int64_t nnz) {
    return vtype == dtype && total >= nnz / 2;
}

/* One parallel region: each thread takes a block of lines holding about nnz / nt entries and runs
 * poisson_block over it. Block 0 keeps its draws in arrays with room for every entry (the result's,
 * when it keeps at least half the entries: then with one thread nothing is copied); the others in
 * scratch arrays. Once every block is done, each thread works out from the blocks' counts (the same
 * on every thread) where each block goes; where the result needs arrays of its own the calling
 * thread makes them, the team waiting; each thread moves its kept entries to their place (values cast
 * to x's dtype where they were kept as int64) and adds the entries of the blocks before its own to
 * its lines' counts. No pass over the entries is serial. The team meets after the draws, again before
 * the moves only when the result needs arrays of its own, and at the region's end; it used to meet
 * four times in every case (2 threads spent about 20 % of a call of 10^4 entries waiting, perf
 * [Zen 5]). */
sbx_status sbx_random_poisson(const sbx_rng *rng, const sbx_sparse *x, sbx_sparse **out) {
    if (!rng || !out) return sbx__error(SBX_ERR_ARG, "sbx_random_poisson: rng or out is NULL");
    SBX_CHECK(sbx__sparse_check_indptr(x, "matrix"));
    const int64_t nnz = x->nnz, major = sbx_sparse_major(x);
    const int nt = nnz < 4 * POISSON_CHUNK ? 1 : sbx__threads();
    /* float64, float32 and int64 draws are kept in x's dtype; other dtypes' as int64, then checked */
    const sbx_dtype vtype = x->dtype == SBX_FLOAT64 || x->dtype == SBX_FLOAT32 ? x->dtype : SBX_INT64;
    const size_t vsize = sbx_dtype_size(vtype), dsize = sbx_dtype_size(x->dtype);
    double *means = NULL;
    int64_t *idx0 = NULL, *index = NULL, *own_idx = NULL;
    void *val0 = NULL, *value = NULL, *own_val = NULL;
    poisson_part *parts = NULL;
    sbx_sparse *m = NULL;
    sbx_status st = sbx__alloc_raw(nnz, sizeof(int64_t), &idx0, "Poisson draws");
    if (st == SBX_OK) st = sbx__alloc_raw(nnz, vsize, &val0, "Poisson draws");
    if (st == SBX_OK && nt > 1) st = sbx__alloc_raw(nnz, sizeof(int64_t), &index, "Poisson draws");
    if (st == SBX_OK && nt > 1) st = sbx__alloc_raw(nnz, vsize, &value, "Poisson draws");
    if (st == SBX_OK) st = sbx__alloc(nt, sizeof(poisson_part), &parts, "Poisson blocks");
    if (st == SBX_OK && x->dtype != SBX_FLOAT64) st = sbx__alloc_raw(nnz, sizeof(double), &means, "Poisson means");
    if (st == SBX_OK) st = sbx__sparse_new(x->format, x->dtype, x->nrows, x->ncols, 0, 0, &m);
    if (st != SBX_OK) goto done;
    const double *lam = means ? means : x->data;
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
        for (int t = 0; t < nt; t++) { /* block t, whatever the team's size */
            poisson_part *pt = &parts[t];
            pt->line0 = line_at(x->indptr, major, nnz / nt * t);
            pt->line1 = t + 1 == nt ? major : line_at(x->indptr, major, nnz / nt * (t + 1));
            pt->k0 = x->indptr[pt->line0];
            pt->k1 = x->indptr[pt->line1];
            pt->idx = t == 0 ? idx0 : index;
            pt->val = t == 0 ? val0 : value;
            pt->vtype = vtype;
            for (int64_t k = pt->k0; k < pt->k1 && means; k++) means[k] = sbx__get_f64(x->data, x->dtype, k);
            poisson_block(rng, x, lam, m->indptr, pt);
        }
        /* every block is done (the loop's barrier): the same counts, so the same choices, everywhere */
        int bad;
        const int64_t total = blocks_kept(parts, nt, &bad);
        const int in_place = keeps_block0(vtype, x->dtype, total, nnz);
        if (!bad && !in_place) {
#pragma omp master
            {
                st = sbx__alloc_raw(total, sizeof(int64_t), &own_idx, "Poisson indices");
                if (st == SBX_OK) st = sbx__alloc_raw(total, dsize, &own_val, "Poisson values");
            }
#pragma omp barrier
        }
        if (!bad && st == SBX_OK) { /* st is written only in the branch above, before its barrier */
            int64_t *to_idx = in_place ? idx0 : own_idx;
            char *to_val = in_place ? val0 : own_val;
#pragma omp for schedule(static) nowait
            for (int t = 0; t < nt; t++) {
                poisson_part *pt = &parts[t];
                int64_t at = 0;
                for (int u = 0; u < t; u++) at += parts[u].kept;
                pt->at = at;
                for (int64_t i = pt->line0; i < pt->line1; i++) m->indptr[i + 1] += pt->at;
                if (in_place && t == 0) continue; /* already in place */
                if (pt->kept > 0) memcpy(to_idx + pt->at, pt->idx + pt->k0, (size_t)pt->kept * sizeof(int64_t));
                const char *kept_values = (const char *)pt->val + (size_t)pt->k0 * vsize;
                pt->st = sbx__cast(to_val + (size_t)pt->at * dsize, x->dtype, kept_values, vtype, pt->kept,
                                   "Poisson draws");
            }
        }
    }
    int failed;
    const int64_t total = blocks_kept(parts, nt, &failed);
    if (st == SBX_OK && failed) st = poisson_input_error(x, lam);
    /* A worker's message went to that worker's thread: say it again on this one. */
    for (int t = 0; t < nt && st == SBX_OK; t++)
        if (parts[t].st != SBX_OK)
            st = sbx__error(parts[t].st, "Poisson draws: %s cannot hold them", sbx_dtype_name(x->dtype));
    if (st == SBX_OK) {
        const int in_place = keeps_block0(vtype, x->dtype, total, nnz);
        sbx__free(m->indices);
        sbx__free(m->data);
        m->nnz = total;
        if (in_place) {
            m->indices = idx0;
            m->data = val0;
            idx0 = NULL;
            val0 = NULL;
        } else {
            m->indices = own_idx;
            m->data = own_val;
            own_idx = NULL;
            own_val = NULL;
        }
        *out = m;
        m = NULL;
    }
done:
    sbx_sparse_free(m);
    sbx__free(means);
    sbx__free(idx0);
    sbx__free(val0);
    sbx__free(index);
    sbx__free(value);
    sbx__free(own_idx);
    sbx__free(own_val);
    sbx__free(parts);
    return st;
}

/* n for row r (n has 1 or nrows values). */
static int64_t row_n(const sbx_array *n, int64_t r) {
    return (int64_t)sbx__get_f64(n->data, n->dtype, n->ndim == 0 || n->shape[0] == 1 ? 0 : r);
}

/* Multinomial over the rows of a CSR matrix. */
/* 1 when row r of p (values pv) cannot be drawn: empty with n > 0, a probability negative or not
 * finite, or a sum not 1 within 1e-6 (renormalize: not positive); with report, the error says which. */
static int bad_row(const sbx_sparse *p, const double *pv, const sbx_array *n, int64_t r, int renormalize, int report) {
    const int64_t lo = p->indptr[r], hi = p->indptr[r + 1], nr = row_n(n, r);
    double sum = 0;
    if (nr > 0 && hi == lo) {
        if (report) sbx__error(SBX_ERR_ARG, "p: row %lld is empty but n = %lld", (long long)r, (long long)nr);
        return 1;
    }
    for (int64_t k = lo; k < hi; k++) {
        if (!(pv[k] >= 0) || isinf(pv[k])) {
            if (report)
                sbx__error(SBX_ERR_ARG, "p: row %lld has probability %g (column %lld), negative or not finite",
                           (long long)r, pv[k], (long long)p->indices[k]);
            return 1;
        }
        sum += pv[k];
    }
    if (hi > lo && (renormalize ? !(sum > 0) : fabs(sum - 1) > 1e-6)) {
        if (report)
            sbx__error(SBX_ERR_ARG,
                       renormalize ? "p: row %lld sums to %.17g, not a positive mass"
                                   : "p: row %lld sums to %.17g, not 1 within 1e-6 (renormalize to accept)",
                       (long long)r, sum);
        return 1;
    }
    return 0;
}

static sbx_status multinomial_csr(const sbx_rng *rng, const sbx_array *n, const sbx_sparse *p, int renormalize,
                                  sbx_sparse **out) {
    const int64_t rows = p->nrows, nnz = p->nnz;
    const int nt = nnz < 20000 ? 1 : sbx__threads();
    double *converted = NULL; /* p's values as doubles when they are not */
    int64_t *counts = NULL, first_bad = rows;
    sbx_sparse *m = NULL;
    sbx_status st = SBX_OK;
    if (p->dtype != SBX_FLOAT64) {
        SBX_CHECK(sbx__alloc_raw(nnz, sizeof(double), &converted, "multinomial probabilities"));
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t k = 0; k < nnz; k++) converted[k] = sbx__get_f64(p->data, p->dtype, k);
    }
    const double *pv = converted ? converted : p->data;
    /* Every row is checked first, so that sampling cannot fail; the error names the first bad row. */
#pragma omp parallel for num_threads(nt) schedule(static) reduction(min : first_bad)
    for (int64_t r = 0; r < rows; r++)
        if (r < first_bad && bad_row(p, pv, n, r, renormalize, 0)) first_bad = r;
    if (first_bad < rows) {
        bad_row(p, pv, n, first_bad, renormalize, 1);
        st = SBX_ERR_ARG;
    }
    if (st == SBX_OK) st = sbx__alloc_raw(nnz, sizeof(int64_t), &counts, "multinomial counts");
    if (st == SBX_OK) st = sbx__sparse_new(SBX_CSR, p->dtype, p->nrows, p->ncols, nnz, 0, &m);
    if (st == SBX_OK) {
        const int nt = nnz < 20000 ? 1 : sbx__threads();
        const int64_t groups = (rows + SBX_RNG_BATCH - 1) / SBX_RNG_BATCH;
        sbx_status *cast = NULL;
        st = sbx__alloc(nt, sizeof(sbx_status), &cast, "multinomial statuses");
        if (st == SBX_OK) {
#pragma omp parallel num_threads(nt)
            {
#pragma omp for schedule(static)
                for (int64_t g = 0; g < groups; g++) { /* 16 rows at a time: their first 2 blocks in vector lanes */
                    sbx_rng_cursor cur[SBX_RNG_BATCH];
                    const int64_t r0 = g * SBX_RNG_BATCH;
                    const int count = rows - r0 < SBX_RNG_BATCH ? (int)(rows - r0) : SBX_RNG_BATCH;
                    sbx__rng_cursors(rng, r0, count, 2, cur);
                    for (int b = 0; b < count; b++) {
                        const int64_t lo = p->indptr[r0 + b], hi = p->indptr[r0 + b + 1];
                        sbx__multinomial_draw(&cur[b], row_n(n, r0 + b), pv + lo, hi - lo, counts + lo);
                    }
                }
#pragma omp for schedule(static)
                for (int t = 0; t < nt; t++) { /* the counts in p's dtype and p's indices, a slice per thread */
                    const int64_t k0 = nnz / nt * t, k1 = t + 1 == nt ? nnz : nnz / nt * (t + 1);
                    cast[t] = sbx__cast((char *)m->data + (size_t)k0 * sbx_dtype_size(m->dtype), m->dtype, counts + k0,
                                        SBX_INT64, k1 - k0, "multinomial counts");
                    if (k1 > k0) memcpy(m->indices + k0, p->indices + k0, (size_t)(k1 - k0) * sizeof(int64_t));
                }
            }
            for (int t = 0; t < nt && st == SBX_OK; t++) st = cast[t];
            if (st != SBX_OK) st = sbx__error(st, "multinomial counts: %s cannot hold them", sbx_dtype_name(p->dtype));
        }
        sbx__free(cast);
    }
    if (st == SBX_OK) {
        memcpy(m->indptr, p->indptr, (size_t)(rows + 1) * sizeof(int64_t));
        *out = m;
        m = NULL;
    }
    sbx_sparse_free(m);
    sbx__free(counts);
    sbx__free(converted);
    return st;
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
