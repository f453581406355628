/* Goodness of fit of the samplers (binomial, Poisson, multinomial) and of the sparse random matrices
 * against their exact pmfs, with fixed seeds.
 *
 * A parameter point draws N values (multinomial: rows), counts them into cells (one per outcome; the
 * outcomes of mass below 1e-14 share one cell) and applies two tests, each at significance 0.5e-6,
 * so that a correct sampler fails a point less than once in 10^6 runs:
 *  - Pearson's chi-square over cells of at least 20 expected counts (neighbouring cells merged);
 *  - the z-score of every cell of mass >= 1e-3, against the Bonferroni bound for that many cells.
 * Without an argument N is what the z-test needs to catch a 1% error in a cell of mass 1e-3 at least
 * half the time: 0.01 sqrt(N 1e-3) >= z, N = (z / 0.01)^2 / 1e-3, about 3.5e8 (larger errors and
 * larger cells are caught more surely), for every point of every sampler.
 * The sparse ops draw matrices until their values reach N (at most most_matrices matrices). An
 * argument sets N instead: the sanitizer build runs a short pass (it checks memory and undefined
 * behaviour; the release build checks the statistics).
 *
 * The draws of a point come in chunks of 4096 from a cursor at position chunk number, shared out
 * among threads; the counts, and so the verdicts, do not depend on the thread count. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "sparsebox.h"

#define CHUNK 4096
#define ALPHA 0.5e-6    /* each of the two tests */
#define BIG_CELL 1e-3   /* cells the z-test watches */
#define ERROR_SIZE 0.01 /* the relative error the default N catches in such a cell */
#define MAX_HIST 3

static int64_t fixed_draws; /* from the command line; 0: the N above */

/* --- statistics ---------------------------------------------------------------------------------- */

/* The regularised upper incomplete gamma function Q(a, x) (the chi-square survival function is
 * Q(df / 2, x / 2)): its power series below a + 1, its continued fraction (modified Lentz) above. */
static double gamma_q(double a, double x) {
    if (x <= 0) return 1;
    const double lead = a * log(x) - x - lgamma(a);
    if (x < a + 1) {
        double term = 1 / a, sum = term;
        for (int n = 1; n < 1000000 && fabs(term) > fabs(sum) * 1e-16; n++) {
            term *= x / (a + n);
            sum += term;
        }
        return 1 - sum * exp(lead);
    }
    double b = x + 1 - a, c = 1e300, d = 1 / b, h = d;
    for (int i = 1; i < 1000000; i++) {
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

/* The z with P(|Z| > z) = alpha for a standard normal Z, by bisection on erfc. */
static double z_two_sided(double alpha) {
    double lo = 0, hi = 40;
    for (int i = 0; i < 200; i++) {
        const double mid = (lo + hi) / 2;
        if (erfc(mid / sqrt(2)) > alpha)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

static void test_statistics(void **state) {
    (void)state;
    /* Chi-square survival values from scipy.stats.chi2.isf, normal quantiles from scipy.stats.norm. */
    assert_true(fabs(gamma_q(0.5, 3.841458820694124 / 2) - 0.05) < 1e-9); /* df 1 */
    assert_true(fabs(gamma_q(5, 23.209251158954356 / 2) - 0.01) < 1e-9);   /* df 10 */
    assert_true(fabs(gamma_q(50, 149.4492527790389 / 2) - 0.001) < 1e-9);  /* df 100 */
    assert_true(fabs(z_two_sided(0.05) - 1.959963984540054) < 1e-9);
    assert_true(fabs(z_two_sided(1e-6) - 4.891638475698358) < 1e-9);
}

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* --- the laws ------------------------------------------------------------------------------------ */

static double log_choose(double n, double k) { return lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1); }

static double binomial_pmf(double k, double n, double p) {
    if (k < 0 || k > n) return 0;
    if (p == 0) return k == 0;
    if (p == 1) return k == n;
    return exp(log_choose(n, k) + k * log(p) + (n - k) * log1p(-p));
}

static double poisson_pmf(double k, double lam) {
    if (k < 0) return 0;
    if (lam == 0) return k == 0;
    return exp(-lam + k * log(lam) - lgamma(k + 1));
}

/* A histogram's cells: cell 0 holds the outcomes of negligible mass, cell 1 + (x - lo) outcome x for
 * lo <= x <= hi. */
typedef struct {
    int64_t lo, hi, ncells;
    double *mass;
} cells;

/* The outcomes around centre whose mass exceeds 1e-14. */
static void cells_of_pmf(double (*pmf)(double, double, double), double a, double b, int64_t centre, cells *c) {
    int64_t lo = centre, hi = centre;
    while (lo > 0 && pmf((double)(lo - 1), a, b) > 1e-14) lo--;
    while (pmf((double)(hi + 1), a, b) > 1e-14) hi++;
    c->lo = lo;
    c->hi = hi;
    c->ncells = hi - lo + 2;
    c->mass = calloc((size_t)c->ncells, sizeof(double));
    double inside = 0;
    for (int64_t x = lo; x <= hi; x++) inside += c->mass[1 + x - lo] = pmf((double)x, a, b);
    c->mass[0] = inside < 1 ? 1 - inside : 0;
}

static inline int64_t cell_index(const cells *c, int64_t x) { return x < c->lo || x > c->hi ? 0 : 1 + x - c->lo; }

/* --- a point: its draws, counts and tests ------------------------------------------------------- */

typedef enum { BINOMIAL, POISSON, MULTINOMIAL } kind;

typedef struct {
    kind kind;
    double n, p, lam;
    int64_t k;
    const double *probs;
    int nhist;
    cells hist[MAX_HIST];
    int64_t watch[MAX_HIST]; /* multinomial marginals: the category histogram h counts; -1: the joint */
    int64_t radix;           /* joint outcomes: counts as digits of base n + 1 */
} point;

/* One draw, counted into each histogram. Returns 0, or 1 for a failed call or a row whose counts do
 * not sum to n (no cmocka assertion here: this runs on worker threads). */
static int draw_into(const point *pt, sbx_rng_cursor *cur, int64_t *counts) {
    int64_t x = 0, v[64];
    switch (pt->kind) {
    case BINOMIAL:
        if (sbx_binomial(cur, (int64_t)pt->n, pt->p, &x) != SBX_OK) return 1;
        counts[cell_index(&pt->hist[0], x)]++;
        return 0;
    case POISSON:
        if (sbx_poisson(cur, pt->lam, &x) != SBX_OK) return 1;
        counts[cell_index(&pt->hist[0], x)]++;
        return 0;
    case MULTINOMIAL:
        if (sbx_multinomial(cur, (int64_t)pt->n, pt->probs, pt->k, 0, v) != SBX_OK) return 1;
        int64_t sum = 0, code = 0;
        for (int64_t i = pt->k - 1; i >= 0; i--) {
            sum += v[i];
            if (v[i] < 0) return 1;
            if (pt->watch[0] < 0) code = code * pt->radix + v[i];
        }
        if (sum != (int64_t)pt->n) return 1;
        for (int h = 0, at = 0; h < pt->nhist; at += (int)pt->hist[h].ncells, h++)
            counts[at + cell_index(&pt->hist[h], pt->watch[h] < 0 ? code : v[pt->watch[h]])]++;
        return 0;
    }
    return 1;
}

/* The z-test's bound for the cells of mass >= BIG_CELL of histograms h[0..nhist-1], and their number. */
static double z_bound(const cells *h, int nhist, int *watched) {
    *watched = 0;
    for (int j = 0; j < nhist; j++)
        for (int64_t i = 0; i < h[j].ncells; i++) *watched += h[j].mass[i] >= BIG_CELL;
    return z_two_sided(ALPHA / (*watched > 0 ? *watched : 1));
}

/* The draws a point makes: the command line's number, else what the z-test needs (see the top). */
static int64_t draws_for(const cells *h, int nhist) {
    int watched;
    const double z = z_bound(h, nhist, &watched);
    return fixed_draws ? fixed_draws : (int64_t)ceil(z * z / (ERROR_SIZE * ERROR_SIZE) / BIG_CELL);
}

/* How the counts of a histogram vary. A sample of `draws` outcomes (free = 0): the counts are
 * multinomial, Pearson's statistic has cells - 1 degrees of freedom. Counts of independent cells
 * (free = 1, each cell a sum of Bernoulli trials of probability q): each count has variance E (1 - q),
 * the statistic sum (O - E)^2 / (E (1 - q)) has one degree of freedom per cell. */
typedef struct {
    int free;
    double q;
} spread;
static const spread SAMPLE = {0, 0};

/* Chi-square p-value of one histogram: neighbouring cells merged until each expects >= 20. */
static double chi_square_p(const cells *c, const int64_t *obs, double draws, spread how, int *merged_cells) {
    double chi2 = 0, e = 0, o = 0;
    int n = 0;
    for (int64_t i = 0; i < c->ncells; i++) {
        e += c->mass[i] * draws;
        o += (double)obs[i];
        if (e >= 20 || i + 1 == c->ncells) {
            if (e > 0) {
                chi2 += (o - e) * (o - e) / (how.free ? e * (1 - how.q) : e);
                n++;
            } else if (o > 0) {
                chi2 = INFINITY; /* an outcome of mass 0 */
            }
            e = o = 0;
        }
    }
    *merged_cells = n;
    const int df = how.free ? n : n - 1;
    return df > 0 ? gamma_q(df / 2.0, chi2 / 2) : (isinf(chi2) ? 0 : 1);
}

/* Both tests on histograms h[0..nhist-1] (their counts one after another in counts) of `draws`
 * draws each; frees the histograms' masses. */
static void judge(cells *h, int nhist, const int64_t *counts, int64_t draws, spread how, const char *what) {
    int watched, worst_cells = 0;
    const double z = z_bound(h, nhist, &watched);
    double worst_z = 0, worst_p = 1;
    for (int j = 0, at = 0; j < nhist; at += (int)h[j].ncells, j++) {
        int merged;
        const double p = chi_square_p(&h[j], counts + at, (double)draws, how, &merged);
        if (p < worst_p || j == 0) {
            worst_p = p;
            worst_cells = merged;
        }
        for (int64_t i = 0; i < h[j].ncells; i++) {
            const double m = h[j].mass[i];
            if (m < BIG_CELL || m * (double)draws < 20) continue; /* no normal approximation below 20 */
            const double e = m * (double)draws, v = e * (1 - (how.free ? how.q : m));
            const double zi = ((double)counts[at + i] - e) / sqrt(v);
            if (fabs(zi) > fabs(worst_z)) worst_z = zi;
        }
    }
    printf("  %-52s N %11lld  cells %7d  chi-square p %.3g  watched %4d  max |z| %.2f (bound %.2f)\n", what,
           (long long)draws, worst_cells, worst_p, watched, fabs(worst_z), z);
    fflush(stdout);
    for (int j = 0; j < nhist; j++) free(h[j].mass);
    if (!(worst_p > ALPHA) || !(fabs(worst_z) < z))
        fail_msg("%s: chi-square p-value %.3g (bound %.1g), max |z| %.2f (bound %.2f)", what, worst_p, ALPHA,
                 fabs(worst_z), z);
}

static void run_point(point *pt, const char *what, uint64_t seed) {
    const double t0 = seconds_now();
    int64_t draws = draws_for(pt->hist, pt->nhist);
    int64_t total = 0;
    for (int h = 0; h < pt->nhist; h++) total += pt->hist[h].ncells;
    int64_t *counts = calloc((size_t)total, sizeof(int64_t));
    const int64_t chunks = (draws + CHUNK - 1) / CHUNK;
    sbx_rng rng;
    int bad = 0;
    sbx_rng_init(&rng, seed, 0);
#pragma omp parallel reduction(| : bad)
    {
        int64_t *mine = calloc((size_t)total, sizeof(int64_t));
        bad |= !mine;
#pragma omp for schedule(dynamic, 16)
        for (int64_t ch = 0; ch < chunks; ch++) {
            sbx_rng_cursor cur;
            bad |= sbx_rng_cursor_init(&rng, ch, &cur) != SBX_OK;
            const int64_t end = (ch + 1) * CHUNK < draws ? (ch + 1) * CHUNK : draws;
            for (int64_t i = ch * CHUNK; i < end && mine; i++) bad |= draw_into(pt, &cur, mine);
        }
#pragma omp critical
        for (int64_t i = 0; i < total && mine; i++) counts[i] += mine[i];
        free(mine);
    }
    if (bad) fail_msg("%s: a draw failed, or a multinomial row did not sum to n", what);
    char label[128];
    snprintf(label, sizeof label, "%s [%.1f s]", what, seconds_now() - t0);
    judge(pt->hist, pt->nhist, counts, draws, SAMPLE, label);
    free(counts);
}

/* --- the samplers ------------------------------------------------------------------------------- */

static void test_binomial_fit(void **state) {
    (void)state;
    /* Every algorithm (n <= 16 table, chained inversion, BTRS), both sides of the switch at n p = 10,
     * the symmetry p > 1/2, the edges (n = 0, p in {0, 1}), n = 2^31, huge n with tiny p. */
    const double points[][2] = {
        {0, 0.3},      {10, 0},       {10, 1},      {1, 0.5},     {3, 0.5},          {5, 0.25},
        {16, 0.3},     {16, 0.5},     {17, 0.3},    {2, 0.9},     {12, 0.999999},    {7, 1e-10},
        {20, 0.49},    {21, 0.49},    {25, 0.399},  {26, 0.39},   {999, 0.01},       {1000, 0.01},
        {200, 0.05},   {60, 0.2},     {100, 0.3},   {30, 0.9},    {40, 0.75},        {50, 0.999},
        {100, 1e-3},   {1e4, 1e-6},   {1000, 0.5},  {1e5, 0.5},   {1e6, 0.4},        {1e9, 1e-8},
        {2147483648.0, 3e-9},         {2147483648.0, 0.3},
    };
    const int count = (int)(sizeof points / sizeof points[0]);
    assert_true(count >= 30);
    for (int i = 0; i < count; i++) {
        point pt = {.kind = BINOMIAL, .n = points[i][0], .p = points[i][1], .nhist = 1};
        const double mode = floor((pt.n + 1) * pt.p);
        cells_of_pmf(binomial_pmf, pt.n, pt.p, (int64_t)(mode < pt.n ? mode : pt.n), &pt.hist[0]);
        char what[64];
        snprintf(what, sizeof what, "binomial(%.0f, %g)", pt.n, pt.p);
        run_point(&pt, what, 1000 + (uint64_t)i);
    }
}

static double poisson_of(double k, double lam, double unused) {
    (void)unused;
    return poisson_pmf(k, lam);
}

static void test_poisson_fit(void **state) {
    (void)state;
    /* Inversion below 10 (on both sides of the switch), PTRS above, up to SBX_POISSON_MAX_LAM. */
    const double points[] = {0,   1e-8, 1e-3, 0.1, 0.5, 1,   2,   3,   5,   7.5, 9.99, 9.999999, 10,  10.01, 12,
                             15,  20,   30,   50,  100, 500, 1e3, 5e3, 1e4, 1e5, 1e6,  1e7,      1e8, 1e9,   1e10};
    const int count = (int)(sizeof points / sizeof points[0]);
    assert_true(count >= 30);
    for (int i = 0; i < count; i++) {
        point pt = {.kind = POISSON, .lam = points[i], .nhist = 1};
        cells_of_pmf(poisson_of, pt.lam, 0, (int64_t)floor(pt.lam), &pt.hist[0]);
        char what[64];
        snprintf(what, sizeof what, "poisson(%g)", pt.lam);
        run_point(&pt, what, 2000 + (uint64_t)i);
    }
}

/* The joint law of a multinomial row, cells indexed by the counts as digits of base n + 1 (categories
 * of mass 0 included, their count always 0). */
static void joint_cells(const point *pt, cells *c) {
    int64_t codes = 1;
    for (int64_t i = 0; i < pt->k; i++) codes *= pt->radix;
    c->lo = 0;
    c->hi = codes - 1;
    c->ncells = codes + 1;
    c->mass = calloc((size_t)c->ncells, sizeof(double));
    for (int64_t code = 0; code < codes; code++) {
        int64_t rest = code, sum = 0;
        double logp = lgamma(pt->n + 1);
        for (int64_t i = 0; i < pt->k && logp > -INFINITY; i++) {
            const int64_t ci = rest % pt->radix;
            rest /= pt->radix;
            sum += ci;
            logp -= lgamma((double)ci + 1);
            if (ci > 0) logp += pt->probs[i] > 0 ? (double)ci * log(pt->probs[i]) : -INFINITY;
        }
        if (sum == (int64_t)pt->n) c->mass[1 + code] = exp(logp);
    }
}

static void test_multinomial_fit(void **state) {
    (void)state;
    static const double two[] = {0.2, 0.8}, half[] = {0.5, 0.5}, three[] = {0.2, 0.3, 0.5},
                        four[] = {0.1, 0.2, 0.3, 0.4},
                        quarter[] = {0.25, 0.25, 0.25, 0.25}, five[] = {0.1, 0, 0.45, 0.3, 0.15}, one[] = {1},
                        lopsided[] = {1e-3, 0.999}, last[] = {0, 0, 1}, third[] = {0.3, 0.3, 0.4},
                        skew[] = {0.7, 0.2, 0.1}, tiny[] = {0.05, 0.9, 0.05}, six[] = {0.1, 0.1, 0.1, 0.1, 0.1, 0.5};
    /* The categorical trials (n <= 16) and the conditional binomials (n > 16) on both sides of the
     * switch; zero masses first, inside and last; one category; n = 0. */
    const struct {
        double n;
        int64_t k;
        const double *probs;
    } points[] = {
        {0, 2, half},      {1, 1, one},        {1, 2, two},        {1, 4, four},       {2, 2, lopsided},
        {3, 3, three},     {4, 3, last},       {5, 4, four},       {5, 5, five},       {6, 3, third},
        {8, 2, half},      {10, 3, skew},      {12, 5, five},      {16, 2, half},      {16, 4, quarter},
        {16, 3, tiny},     {17, 2, half},      {17, 4, quarter},   {17, 3, tiny},      {20, 3, three},
        {24, 2, two},      {30, 5, five},      {40, 3, skew},      {50, 2, lopsided},  {60, 4, four},
        {100, 2, half},    {100, 3, third},    {3, 6, six},        {7, 6, six},        {30, 6, six},
        {1000, 3, three},
    };
    const int count = (int)(sizeof points / sizeof points[0]);
    assert_true(count >= 30);
    for (int i = 0; i < count; i++) {
        point pt = {.kind = MULTINOMIAL, .n = points[i].n, .k = points[i].k, .probs = points[i].probs};
        pt.radix = (int64_t)pt.n + 1;
        double codes = 1;
        for (int64_t j = 0; j < pt.k; j++) codes *= (double)pt.radix;
        if (codes <= 1 << 20) { /* the joint law */
            pt.nhist = 1;
            pt.watch[0] = -1;
            joint_cells(&pt, &pt.hist[0]);
        } else { /* the marginals of the first, a middle and the last category: Binomial(n, p_i) */
            const int64_t watch[MAX_HIST] = {0, pt.k / 2, pt.k - 1};
            pt.nhist = MAX_HIST;
            for (int h = 0; h < MAX_HIST; h++) {
                pt.watch[h] = watch[h];
                const double pi = pt.probs[watch[h]], mode = floor((pt.n + 1) * pi);
                cells_of_pmf(binomial_pmf, pt.n, pi, (int64_t)(mode < pt.n ? mode : pt.n), &pt.hist[h]);
            }
        }
        char what[64];
        snprintf(what, sizeof what, "multinomial(%.0f, k=%lld, p0=%g)", pt.n, (long long)pt.k, pt.probs[0]);
        run_point(&pt, what, 3000 + (uint64_t)i);
    }
}

/* --- the sparse random matrices ------------------------------------------------------------------ */

/* A value of a matrix as a double. */
static double value_at(const sbx_sparse *m, int64_t k) {
    switch (m->dtype) {
    case SBX_FLOAT32: return ((const float *)m->data)[k];
    case SBX_FLOAT64: return ((const double *)m->data)[k];
    case SBX_INT16: return ((const int16_t *)m->data)[k];
    case SBX_INT32: return ((const int32_t *)m->data)[k];
    default: return ((const int64_t *)m->data)[k];
    }
}

/* Position j of a line of m elements, each equally likely. */
static void uniform_cells(int64_t m, cells *c) {
    c->lo = 0;
    c->hi = m - 1;
    c->ncells = m + 1;
    c->mass = calloc((size_t)c->ncells, sizeof(double));
    for (int64_t j = 0; j < m; j++) c->mass[1 + j] = 1.0 / (double)m;
}

/* A law given that its value is not 0, where q0 = P(X != 0) is given exactly. */
static void truncated_cells(double (*pmf)(double, double, double), double a, double b, int64_t centre, double q0,
                            cells *c) {
    cells_of_pmf(pmf, a, b, centre, c);
    double inside = 0;
    for (int64_t x = c->lo; x <= c->hi; x++) {
        double *m = &c->mass[1 + x - c->lo];
        *m = x == 0 ? 0 : *m / q0;
        inside += *m;
    }
    c->mass[0] = inside < 1 ? 1 - inside : 0;
}

/* How many matrices to draw: enough for the values' draws (draws_for), at most `most`. */
static int64_t repeats(const cells *values, double values_per_matrix, int64_t most) {
    const double want = (double)draws_for(values, 1) / values_per_matrix;
    return want < 1 ? 1 : want > (double)most ? most : (int64_t)ceil(want);
}

/* Binomial(n, p) matrices: the entries per line ~ Binomial(minor, q0), their positions uniform, their
 * values Binomial(n, p) given >= 1; matrix r drawn with stream r. */
static void sparse_binomial_point(int64_t n, double p, int64_t rows, int64_t cols, sbx_format format,
                                  sbx_dtype dtype, int64_t most) {
    const int64_t major = format == SBX_CSR ? rows : cols, minor = format == SBX_CSR ? cols : rows;
    const double q0 = p == 1 ? 1 : -expm1((double)n * log1p(-p)), mode = floor(((double)n + 1) * p);
    cells per_line, position, value;
    cells_of_pmf(binomial_pmf, (double)minor, q0, (int64_t)floor(((double)minor + 1) * q0), &per_line);
    uniform_cells(minor, &position);
    truncated_cells(binomial_pmf, (double)n, p, (int64_t)(mode < (double)n ? mode : (double)n), q0, &value);
    const int64_t reps = repeats(&value, (double)rows * (double)cols * q0, most);
    int64_t *c_line = calloc((size_t)per_line.ncells, sizeof(int64_t));
    int64_t *c_pos = calloc((size_t)position.ncells, sizeof(int64_t));
    int64_t *c_val = calloc((size_t)value.ncells, sizeof(int64_t)), nnz = 0;
    for (int64_t r = 0; r < reps; r++) {
        sbx_rng rng;
        sbx_sparse *m;
        sbx_rng_init(&rng, 20261127, (uint32_t)r);
        assert_int_equal(sbx_random_binomial(&rng, n, p, rows, cols, format, dtype, &m), SBX_OK);
        assert_int_equal(sbx_sparse_validate(m), SBX_OK);
        for (int64_t i = 0; i < major; i++) c_line[cell_index(&per_line, m->indptr[i + 1] - m->indptr[i])]++;
        for (int64_t k = 0; k < m->nnz; k++) {
            const double v = value_at(m, k);
            if (!(v >= 1 && v <= (double)n)) fail_msg("binomial(%lld, %g) matrix: value %g", (long long)n, p, v);
            c_pos[cell_index(&position, m->indices[k])]++;
            c_val[cell_index(&value, (int64_t)v)]++;
        }
        nnz += m->nnz;
        sbx_sparse_free(m);
    }
    char what[3][96];
    const char *form = format == SBX_CSR ? "CSR" : "CSC";
    snprintf(what[0], sizeof what[0], "B(%lld,%g) %lldx%lld %s: entries per line", (long long)n, p, (long long)rows,
             (long long)cols, form);
    snprintf(what[1], sizeof what[1], "B(%lld,%g) %lldx%lld %s: positions", (long long)n, p, (long long)rows,
             (long long)cols, form);
    snprintf(what[2], sizeof what[2], "B(%lld,%g) %lldx%lld %s: values", (long long)n, p, (long long)rows,
             (long long)cols, form);
    judge(&per_line, 1, c_line, major * reps, SAMPLE, what[0]);
    /* Each (line, position) is non-zero independently with probability q0: a position's count over
     * the lines is Binomial(lines, q0). Tested on the rarer event (zeros when q0 > 1/2), whose counts
     * are far enough from 0 or the number of lines for the normal approximation. */
    const int64_t lines = major * reps;
    const double q = q0 <= 0.5 ? q0 : 1 - q0;
    if (q0 > 0.5)
        for (int64_t j = 0; j < minor; j++) c_pos[1 + j] = lines - c_pos[1 + j];
    judge(&position, 1, c_pos, (int64_t)llround((double)lines * (double)minor * q), (spread){1, q}, what[1]);
    judge(&value, 1, c_val, nnz, SAMPLE, what[2]);
    free(c_line);
    free(c_pos);
    free(c_val);
}

static int64_t most_matrices = 1000; /* 40 for the short pass */

static void test_sparse_binomial_fit(void **state) {
    (void)state;
    /* Each way of drawing: lines cell by cell (P0 < 0.7, n <= 4096; p > 1/2 mirrored), tabled gaps with
     * tabled values, gaps by logarithm (P0 > 0.998), n > 4096 with values by inversion (P0 >= 1/2) and
     * by rejection (P0 < 1/2); CSR and CSC; several dtypes. */
    sparse_binomial_point(5, 0.25, 1000, 1000, SBX_CSR, SBX_FLOAT32, most_matrices);
    sparse_binomial_point(20, 0.5, 300, 500, SBX_CSC, SBX_INT16, most_matrices);
    sparse_binomial_point(3, 0.9, 500, 300, SBX_CSR, SBX_FLOAT64, most_matrices);
    sparse_binomial_point(5, 0.02, 1000, 1000, SBX_CSR, SBX_FLOAT32, most_matrices);
    sparse_binomial_point(100, 0.001, 2000, 500, SBX_CSC, SBX_INT32, most_matrices);
    sparse_binomial_point(1, 0.001, 2000, 2000, SBX_CSR, SBX_FLOAT32, most_matrices);
    sparse_binomial_point(5000, 1e-5, 1000, 1000, SBX_CSR, SBX_FLOAT64, most_matrices);
    sparse_binomial_point(5000, 0.3, 100, 200, SBX_CSC, SBX_FLOAT64, most_matrices);
}

/* Poisson over a fixed structure with every mean lam: the kept entries are a subset of x's, their
 * values Poisson(lam) given >= 1, and their number over all matrices within 6 standard deviations of
 * nnz(x) P(X >= 1). */
static void sparse_poisson_point(double lam, int64_t most) {
    sbx_rng rng;
    sbx_sparse *x;
    sbx_rng_init(&rng, 11, 0);
    assert_int_equal(sbx_random_binomial(&rng, 1, 0.5, 1000, 2000, SBX_CSR, SBX_FLOAT64, &x), SBX_OK);
    for (int64_t k = 0; k < x->nnz; k++) ((double *)x->data)[k] = lam;
    const double q0 = -expm1(-lam);
    cells value;
    truncated_cells(poisson_of, lam, 0, (int64_t)floor(lam), q0, &value);
    const int64_t reps = repeats(&value, (double)x->nnz * q0, most);
    int64_t *c_val = calloc((size_t)value.ncells, sizeof(int64_t)), kept = 0;
    for (int64_t r = 0; r < reps; r++) {
        sbx_sparse *y;
        sbx_rng_init(&rng, 12, (uint32_t)r);
        assert_int_equal(sbx_random_poisson(&rng, x, &y), SBX_OK);
        assert_int_equal(sbx_sparse_validate(y), SBX_OK);
        for (int64_t i = 0; i < y->nrows; i++) { /* y's entries of row i are among x's */
            int64_t at = x->indptr[i];
            for (int64_t k = y->indptr[i]; k < y->indptr[i + 1]; k++) {
                while (at < x->indptr[i + 1] && x->indices[at] < y->indices[k]) at++;
                if (at == x->indptr[i + 1] || x->indices[at] != y->indices[k]) fail_msg("poisson: entry not in x");
                const double v = value_at(y, k);
                if (!(v >= 1)) fail_msg("poisson(%g) matrix: stored value %g", lam, v);
                c_val[cell_index(&value, (int64_t)v)]++;
            }
        }
        kept += y->nnz;
        sbx_sparse_free(y);
    }
    const double trials = (double)x->nnz * (double)reps;
    if (fabs((double)kept - trials * q0) > 6 * sqrt(trials * q0 * (1 - q0)))
        fail_msg("poisson(%g): %lld entries kept of %.0f, expected %.1f", lam, (long long)kept, trials, trials * q0);
    char what[96];
    snprintf(what, sizeof what, "Poisson(%g) on 1000x2000 CSR: values", lam);
    judge(&value, 1, c_val, kept, SAMPLE, what);
    free(c_val);
    sbx_sparse_free(x);
}

static void test_sparse_poisson_fit(void **state) {
    (void)state;
    const double lams[] = {1e-3, 0.5, 2.5, 9.99, 10, 50, 1e4};
    for (size_t i = 0; i < sizeof lams / sizeof lams[0]; i++) sparse_poisson_point(lams[i], most_matrices / 10);
}

/* Multinomial rows of one probability vector in different columns (CSR, or CSC converted): every row
 * sums to n exactly, and the counts of the first and last categories are Binomial(n, p_i). */
static void sparse_multinomial_point(int64_t n, const double *probs, int64_t k, sbx_format format, int64_t most) {
    const int64_t rows = 20000, cols = 50;
    int64_t *indptr = malloc(sizeof(int64_t) * (size_t)(rows + 1));
    int64_t *indices = malloc(sizeof(int64_t) * (size_t)(rows * k));
    double *data = malloc(sizeof(double) * (size_t)(rows * k));
    indptr[0] = 0;
    for (int64_t r = 0; r < rows; r++) { /* category i in column (r + 7 i) mod cols, each row's sorted */
        int64_t c0 = r % cols, at = r * k;
        for (int64_t i = 0; i < k; i++) {
            const int64_t col = (c0 + 7 * i) % cols;
            int64_t j = at + i;
            while (j > at && indices[j - 1] > col) { /* insertion keeps the row sorted, the values with it */
                indices[j] = indices[j - 1];
                data[j] = data[j - 1];
                j--;
            }
            indices[j] = col;
            data[j] = probs[i];
        }
        indptr[r + 1] = (r + 1) * k;
    }
    sbx_sparse csr = {SBX_CSR, SBX_FLOAT64, rows, cols, rows * k, indptr, indices, data}, *p = &csr, *converted = NULL;
    if (format == SBX_CSC) {
        assert_int_equal(sbx_sparse_convert(&csr, SBX_CSC, &converted), SBX_OK);
        p = converted;
    }
    sbx_array nn = {SBX_INT64, 0, {0}, &n};
    cells h[2];
    const int64_t watch[2] = {0, k - 1};
    for (int j = 0; j < 2; j++) {
        const double pi = probs[watch[j]], mode = floor(((double)n + 1) * pi);
        cells_of_pmf(binomial_pmf, (double)n, pi, (int64_t)(mode < (double)n ? mode : (double)n), &h[j]);
    }
    const int64_t reps = repeats(&h[0], (double)rows, most);
    int64_t *counts = calloc((size_t)(h[0].ncells + h[1].ncells), sizeof(int64_t));
    int64_t *row_sum = malloc(sizeof(int64_t) * (size_t)rows);
    for (int64_t rep = 0; rep < reps; rep++) {
        sbx_rng rng;
        sbx_sparse *m, *m_csr = NULL;
        sbx_rng_init(&rng, 13, (uint32_t)rep);
        assert_int_equal(sbx_random_multinomial(&rng, &nn, p, 0, &m), SBX_OK);
        assert_int_equal(m->format, format);
        if (format == SBX_CSC) assert_int_equal(sbx_sparse_convert(m, SBX_CSR, &m_csr), SBX_OK);
        const sbx_sparse *rm = m_csr ? m_csr : m;
        for (int64_t r = 0; r < rows; r++) {
            row_sum[r] = 0;
            for (int64_t q = rm->indptr[r]; q < rm->indptr[r + 1]; q++) {
                const int64_t col = rm->indices[q], v = (int64_t)value_at(rm, q);
                row_sum[r] += v;
                if (col == r % cols) counts[cell_index(&h[0], v)]++; /* the first category */
                if (col == (r % cols + 7 * (k - 1)) % cols)          /* the last */
                    counts[h[0].ncells + cell_index(&h[1], v)]++;
            }
            if (row_sum[r] != n)
                fail_msg("multinomial row %lld sums to %lld, not %lld", (long long)r, (long long)row_sum[r], (long long)n);
        }
        sbx_sparse_free(m);
        sbx_sparse_free(m_csr);
    }
    char what[96];
    snprintf(what, sizeof what, "Multinomial(%lld, k=%lld) %s: marginals", (long long)n, (long long)k,
             format == SBX_CSR ? "CSR" : "CSC");
    judge(h, 2, counts, rows * reps, SAMPLE, what);
    free(counts);
    free(row_sum);
    free(indptr);
    free(indices);
    free(data);
    sbx_sparse_free(converted);
}

static void test_sparse_multinomial_fit(void **state) {
    (void)state;
    static const double four[] = {0.1, 0.2, 0.3, 0.4}, three[] = {0.5, 0.2, 0.3};
    sparse_multinomial_point(5, four, 4, SBX_CSR, most_matrices / 10);
    sparse_multinomial_point(40, three, 3, SBX_CSC, most_matrices / 10);
}

int main(int argc, char **argv) {
    if (argc > 1) fixed_draws = atoll(argv[1]);
    if (fixed_draws) most_matrices = 40;
    if (argc > 2 || fixed_draws < 0) {
        fprintf(stderr, "usage: %s [draws per point]\n", argv[0]);
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_statistics),
        cmocka_unit_test(test_binomial_fit),
        cmocka_unit_test(test_poisson_fit),
        cmocka_unit_test(test_multinomial_fit),
        cmocka_unit_test(test_sparse_binomial_fit),
        cmocka_unit_test(test_sparse_poisson_fit),
        cmocka_unit_test(test_sparse_multinomial_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
