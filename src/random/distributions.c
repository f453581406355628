/* Exact samplers: binomial (inversion / BTRS), Poisson (multiplication / PTRS), multinomial
 * (conditional binomials). References are in random.h; the constants of BTRS and PTRS are Hormann's. */
#include <math.h>
#include <string.h>

#include "random/internal.h"
#include "sparsebox/random.h"

#define LOG_SQRT_2PI 0.91893853320467274178

/* The samplers' bodies are inlined into each clone of sbx_binomial and sbx_poisson (SBX_CLONES). */
#define HOT static inline __attribute__((always_inline))

/* log k! for k = 0..9 (the logarithms of the exact factorials). */
static const double LOG_FACTORIAL[10] = {0.0,
                                         0.0,
                                         0.6931471805599453,
                                         1.791759469228055,
                                         3.1780538303479458,
                                         4.787491742782046,
                                         6.579251212010101,
                                         8.525161361065415,
                                         10.60460290274525,
                                         12.801827480081469};

/* fc(k) = log k! - [(k + 1/2) log(k + 1) - (k + 1) + log sqrt(2 pi)], the tail of Stirling's series
 * at z = k + 1, for an integral k >= 0: from the table for small k, above it the series 1/12z - 1/360z^3
 * + 1/1260z^5 - 1/1680z^7 + 1/1188z^9 (Bernoulli numbers; the next term is below 1e-14 for z >= 11). */
static double stirling_tail(double k) {
    if (k < 10) return LOG_FACTORIAL[(int)k] - ((k + 0.5) * log(k + 1) - (k + 1) + LOG_SQRT_2PI);
    const double iz = 1 / (k + 1), iz2 = iz * iz;
    return iz * (1.0 / 12 - iz2 * (1.0 / 360 - iz2 * (1.0 / 1260 - iz2 * (1.0 / 1680 - iz2 / 1188))));
}

/* log k! for an integral k >= 0. */
static double log_factorial(double k) {
    return k < 10 ? LOG_FACTORIAL[(int)k] : (k + 0.5) * log(k + 1) - (k + 1) + LOG_SQRT_2PI + stirling_tail(k);
}

/* Poisson(lam) for lam < 10 is inverted over the CDF P(X <= k), k <= POISSON_KMAX (the mass above it
 * is below 1e-29), built by cdf_step from P(0) = exp(-lam); a u at or above the last value (the
 * rounding's leftover, about 1e-16) is drawn again. A cached table and the chain made on the fly give
 * the same values, so a result does not depend on which one a thread had. */
#define POISSON_KMAX 64
#define GUIDE 64 /* guide[g]: the smallest k with cdf[k] > g / GUIDE (Chen and Asau's indexed search) */

/* 1/k for k = 1..64: the CDF steps below multiply by it rather than divide (a step's factor then
 * does not wait for a division, and the chain is a multiply and an add). */
#define INV4(k) 1.0 / (k), 1.0 / (k + 1), 1.0 / (k + 2), 1.0 / (k + 3)
#define INV16(k) INV4(k), INV4(k + 4), INV4(k + 8), INV4(k + 12)
const double sbx__inverse[65] = {0,        INV16(1), INV16(17), INV16(33), INV4(49), INV4(53),
                                 INV4(57), 1.0 / 61, 1.0 / 62,  1.0 / 63,  1.0 / 64};

/* A step of a CDF made from P(0) by P(k) = P(k-1) (a (1/k) - s), returning cdf[k] = cdf[k-1] + P(k):
 * Poisson, a = lam, s = 0; binomial with p <= 1/2, P(k) = P(k-1) ((n+1)/k - 1) p/q, a = (n+1) p/q,
 * s = p/q. With n p < 10 the binomial mass above k = 64 is below C(n, 65) p^65 < (n p)^65 / 65! < 1e-25. */
#define BINOMIAL_KMAX 64
#define BOUNDS_HALF 2048
static inline double cdf_step(double a, double s, int64_t k, double *r, double acc) {
    *r *= a * sbx__inverse[k] - s;
    return acc + *r;
}

/* Each thread keeps set-ups of recent parameters, so draws with parameters seen before skip the exp,
 * log and table work: binomial inversion tables in slots chosen by (n, p) (a multinomial's conditional
 * binomials come back to the same few), the Poisson table of the last mean (built when it comes twice in
 * a row), the BTRS and PTRS set-ups of the last parameters, and E(k) (below) of one of them. */
#define INV_SLOT_BITS 6
typedef struct {
    int64_t n;
    double p, b, a, c, vr, alpha, lr, m, fixed; /* fixed: the bound's constant part, NAN until needed */
} btrs_params;
typedef struct {
    int64_t n, seen_n;
    double p, seen_p, cdf[BINOMIAL_KMAX + 1]; /* cdf[k] = P(X <= k), k <= min(n, 64) */
    uint8_t guide[GUIDE];
} inv_table;
typedef struct {
    inv_table inv[1 << INV_SLOT_BITS];
    btrs_params btrs;
    struct {
        double lam, seen, cdf[POISSON_KMAX + 1];
        uint8_t guide[GUIDE];
    } pinv;
    struct {
        double lam, loglam, b, a, log_alpha, vr, m;
    } ptrs;
    struct { /* E(k) of BTRS or PTRS (the owner), |k - m| < BOUNDS_HALF: see kept */
        int owner;
        uint32_t generation;
        uint32_t tag[2 * BOUNDS_HALF]; /* apart from the values: the tags of the k drawn often stay in L1 */
        double value[2 * BOUNDS_HALF];
    } bounds;
} setups;
/* All zero at first: no sampler is called with n, p or lam zero, so nothing matches the cache. */
static _Thread_local setups cache;

/* guide[g] = the smallest k <= last with cdf[k] > g / GUIDE. */
static void make_guide(const double *cdf, int64_t last, uint8_t *guide) {
    for (int g = 0, k = 0; g < GUIDE; g++) {
        while (k < last && cdf[k] <= (double)g / GUIDE) k++;
        guide[g] = (uint8_t)k;
    }
}

/* The inversion shared by the binomial (n > 16) and Poisson samplers: the smallest k <= last with
 * u < cdf[k], u of 53 bits read one word first (sbx__u53); a u at or above cdf[last] (the rounding's
 * leftover) is drawn again. With a table (cdf, guide), the search starts at the guide's entry; without
 * (cdf NULL), the CDF is made along the way from P(0) = p0 by cdf_step(a, s), the steps the table was
 * made by, so both give the same k. */
HOT int64_t invert(sbx_rng_cursor *cur, const double *cdf, const uint8_t *guide, int64_t last, double p0, double a,
                   double s) {
    for (;;) {
        const uint32_t w1 = sbx__rng_u32(cur);
        const double lo = (double)w1 * 0x1.0p-32, hi = ((double)w1 + 1) * 0x1.0p-32;
        int64_t k;
        double r = 0, acc;
        if (cdf) {
            k = guide[w1 >> 26];
            while (k < last && lo >= cdf[k]) k++;
            acc = cdf[k];
        } else {
            k = 0;
            acc = r = p0;
            while (k < last && lo >= acc) acc = cdf_step(a, s, ++k, &r, acc);
        }
        if (lo >= acc) continue; /* past the CDF */
        if (hi <= acc) return k;
        const double u = sbx__u53(w1, sbx__rng_u32(cur));
        while (k < last && u >= acc) acc = cdf ? cdf[++k] : cdf_step(a, s, ++k, &r, acc);
        if (u < acc) return k;
    }
}

/* A slot among 2^INV_SLOT_BITS for (n, p): the top bits of a multiplicative hash. */
static inline unsigned slot_of(int64_t n, double p) {
    uint64_t bits;
    memcpy(&bits, &p, sizeof bits);
    return (unsigned)(((uint64_t)n * 0x9E3779B97F4A7C15u ^ bits) * 0xD6E8FEB86659FD93u >> (64 - INV_SLOT_BITS));
}

/* Binomial(n, p), p <= 1/2, n p < 10: inversion of the CDF made by cdf_step from
 * P(0) = exp(n log1p(-p)), with a 53-bit uniform read one word first (sbx__u53); a uniform past the
 * rounded CDF (at k = min(n, 64)) is drawn again. Tables are kept per thread in INV_SLOTS slots chosen by
 * (n, p) (a multinomial's conditional binomials come back to the same few). n <= 16: the table is made
 * at once (its last value set to 1) and k counted without branches (w1 decides when as many CDF values
 * lie below hi as at or below lo); larger n: the table is made when (n, p) comes to its slot twice in a
 * row, and the CDF is made along the way otherwise, by the same steps. */
HOT int64_t binomial_inversion(setups *su, sbx_rng_cursor *cur, int64_t n, double p) {
    const double q = 1 - p, s = p / q, a = ((double)n + 1) * s;
    const int64_t last = n < BINOMIAL_KMAX ? n : BINOMIAL_KMAX;
    inv_table *t = &su->inv[slot_of(n, p)];
    double *cdf = t->cdf;
    if ((t->n != n || t->p != p) && (n <= 16 || (t->seen_n == n && t->seen_p == p))) {
        double r = exp((double)n * log1p(-p)), acc = r;
        cdf[0] = acc;
        for (int64_t k = 1; k <= last; k++) cdf[k] = acc = cdf_step(a, s, k, &r, acc);
        if (n <= 16) cdf[n] = 1;
        if (n > 16) make_guide(cdf, last, t->guide); /* n <= 16 counts without it */
        t->n = n;
        t->p = p;
    }
    t->seen_n = n;
    t->seen_p = p;
    if (n <= 16) {
        const uint32_t w1 = sbx__rng_u32(cur);
        const double lo = (double)w1 * 0x1.0p-32, hi = ((double)w1 + 1) * 0x1.0p-32;
        int64_t k = 0, below = 0;
        for (int64_t j = 0; j < n; j++) {
            k += lo >= cdf[j];
            below += hi > cdf[j];
        }
        if (below == k) return k;
        const double u = sbx__u53(w1, sbx__rng_u32(cur));
        while (k < n && u >= cdf[k]) k++;
        return k;
    }
    const int table = t->n == n && t->p == p;
    return invert(cur, table ? cdf : NULL, t->guide, last, table ? 0 : exp((double)n * log1p(-p)), a, s);
}

/* BTRS and PTRS (Hormann's transformed rejection) share these steps. A point (u, v) uniform on
 * [-1/2, 1/2) x [0, 1) gives k = floor((2 a / us + b) u + c), us = 1/2 - |u|, accepted at once in the box
 * us >= 0.07, v <= vr and otherwise when v us^2 <= E(k) (a + b us^2), E(k) the pmf ratio of each sampler
 * (Hormann's test v alpha / (a / us^2 + b) <= ..., in logarithms there; here without the division).
 * E(k) for k within BOUNDS_HALF of the mode (index i = k - mode + BOUNDS_HALF) is kept per thread once
 * made, tagged with the generation of the parameters it was made for: other parameters or another
 * sampler start a new generation, so nothing is cleared. A kept value is the one made
 * on the spot, so results never depend on what a thread kept. Once E(k) is kept, the box and the test
 * are decided together (one branch, taken about as often as a draw is rejected, instead of the box's
 * branch mispredicted whenever a point falls outside it). */
typedef enum { NO_OWNER, BTRS, PTRS } bounds_owner;

/* Called by a sampler whose parameters changed or which does not own the kept values. */
static void new_generation(setups *su, bounds_owner owner) {
    su->bounds.owner = owner;
    if (++su->bounds.generation == 0) { /* wrapped: values of the old generation 0 could match */
        memset(su->bounds.tag, 0, sizeof su->bounds.tag);
        su->bounds.generation = 1;
    }
}

/* 1 and *e = E(k) when it is kept at index i. */
HOT int kept(const setups *su, double i, double *e) {
    const int j = i >= 0 && i < 2 * BOUNDS_HALF ? (int)i : 0;
    *e = su->bounds.value[j];
    return i >= 0 && i < 2 * BOUNDS_HALF && su->bounds.tag[j] == su->bounds.generation;
}

/* Keeps E(k) = e at index i when it is within the window; returns e. */
HOT double keep(setups *su, double i, double e) {
    if (i >= 0 && i < 2 * BOUNDS_HALF) {
        su->bounds.value[(int)i] = e;
        su->bounds.tag[(int)i] = su->bounds.generation;
    }
    return e;
}

/* Binomial(n, p), p <= 1/2, n p >= 10: BTRS, c = n p + 1/2, E(k) = exp(bound(k)) / alpha with
 * bound(k) = fixed - (n+1) log(n-k+1) + (k+1/2) log(r (n-k+1)/(k+1)) - fc(k) - fc(n-k) the log of
 * f(k) / f(m) (r = p / q, m the mode), fixed = (m+1/2) log((m+1)/(r (n-m+1))) + (n+1) log(n-m+1) + fc(m)
 * + fc(n-m) made when first needed. */
static double btrs_bound(btrs_params *t, double kd) {
    const double nd = (double)t->n;
    if (t->fixed != t->fixed) {
        const double m = t->m;
        t->fixed = (m + 0.5) * (log(m + 1) - t->lr - log(nd - m + 1)) + (nd + 1) * log(nd - m + 1) + stirling_tail(m) +
                   stirling_tail(nd - m);
    }
    const double l = log(nd - kd + 1);
    return exp(t->fixed - (nd + 1) * l + (kd + 0.5) * (t->lr + l - log(kd + 1)) - stirling_tail(kd) -
               stirling_tail(nd - kd)) /
           t->alpha;
}

static __attribute__((noinline)) void btrs_setup(btrs_params *t, int64_t n, double p) {
    const double nd = (double)n, q = 1 - p, spq = sqrt(nd * p * q), b = 1.15 + 2.53 * spq;
    t->n = n;
    t->p = p;
    t->b = b;
    t->a = -0.0873 + 0.0248 * b + 0.01 * p;
    t->c = nd * p + 0.5;
    t->vr = 0.92 - 4.2 / b;
    t->alpha = (2.83 + 5.1 / b) * spq;
    t->lr = log(p / q);
    t->m = floor((nd + 1) * p);
    t->fixed = NAN;
}

HOT int64_t binomial_btrs(setups *su, sbx_rng_cursor *cur, int64_t n, double p) {
    const double nd = (double)n;
    btrs_params *t = &su->btrs;
    if (t->n != n || t->p != p) {
        btrs_setup(t, n, p);
        new_generation(su, BTRS);
    } else if (su->bounds.owner != BTRS) {
        new_generation(su, BTRS);
    }
    const double b = t->b, a = t->a, c = t->c, vr = t->vr, m = t->m;
    for (;;) {
        double u, v, e;
        sbx__rng_double2(cur, &u, &v);
        u -= 0.5;
        const double us = 0.5 - fabs(u);
        const double kd = floor((2 * a / us + b) * u + c);
        if (kd < 0 || kd > nd) continue;
        const int box = (us >= 0.07) & (v <= vr);
        const double us2 = us * us, i = kd - m + BOUNDS_HALF;
        if (kept(su, i, &e)) {
            if (box | (v * us2 <= e * (a + b * us2))) return (int64_t)kd;
            continue;
        }
        if (box) return (int64_t)kd;
        if (v * us2 <= keep(su, i, btrs_bound(t, kd)) * (a + b * us2)) return (int64_t)kd;
    }
}

/* Binomial(n, p) with n >= 0, 0 <= p <= 1. */
HOT int64_t binomial(setups *su, sbx_rng_cursor *cur, int64_t n, double p) {
    if (n == 0 || p == 0) return 0;
    if (p == 1) return n;
    const double pp = p <= 0.5 ? p : 1 - p;
    const int64_t x = (double)n * pp < 10 ? binomial_inversion(su, cur, n, pp) : binomial_btrs(su, cur, n, pp);
    return p <= 0.5 ? x : n - x;
}

SBX_CLONES sbx_status sbx_binomial(sbx_rng_cursor *cur, int64_t n, double p, int64_t *out) {
    if (!cur || !out) return sbx__error(SBX_ERR_ARG, "sbx_binomial: cursor or out is NULL");
    if (n < 0) return sbx__error(SBX_ERR_ARG, "binomial n = %lld is negative", (long long)n);
    if (!(p >= 0 && p <= 1)) return sbx__error(SBX_ERR_ARG, "binomial p = %g is outside [0, 1]", p);
    *out = binomial(&cache, cur, n, p);
    return SBX_OK;
}

SBX_CLONES void sbx__binomial_each(sbx_rng_cursor *cur, int count, int64_t n, double p, int64_t *values) {
    setups *su = &cache;
    for (int i = 0; i < count; i++) values[i] = binomial(su, &cur[i], n, p);
}

/* Poisson(lam), lam < 10: inversion (see POISSON_KMAX), one word first (sbx__u53). With a table the
 * search starts at the guide's entry; without, the CDF is made along the way by the same steps. */
HOT int64_t poisson_inversion(setups *su, sbx_rng_cursor *cur, double lam) {
    if (su->pinv.lam != lam && su->pinv.seen == lam) { /* the second draw in a row with this mean: make the table */
        double r = sbx__exp_neg(lam), acc = r;
        su->pinv.cdf[0] = acc;
        for (int64_t k = 1; k <= POISSON_KMAX; k++) su->pinv.cdf[k] = acc = cdf_step(lam, 0, k, &r, acc);
        make_guide(su->pinv.cdf, POISSON_KMAX, su->pinv.guide);
        su->pinv.lam = lam;
    }
    const int table = su->pinv.lam == lam;
    su->pinv.seen = lam;
    const double p0 = table ? 0 : sbx__exp_neg(lam);
    return invert(cur, table ? su->pinv.cdf : NULL, su->pinv.guide, POISSON_KMAX, p0, lam, 0);
}

/* Poisson(lam), lam >= 10: PTRS, c = lam + 0.43, E(k) = exp(-lam + k log lam - log k!) / alpha (the
 * difference of terms near lam log lam: exact to about 1e-5 in the log at the largest lam accepted). */
static double ptrs_bound(setups *su, double kd) {
    return exp(-su->ptrs.lam + kd * su->ptrs.loglam - log_factorial(kd) - su->ptrs.log_alpha);
}

HOT int64_t poisson_ptrs(setups *su, sbx_rng_cursor *cur, double lam) {
    if (su->ptrs.lam != lam) {
        const double b = 0.931 + 2.53 * sqrt(lam);
        su->ptrs.lam = lam;
        su->ptrs.loglam = log(lam);
        su->ptrs.b = b;
        su->ptrs.a = -0.059 + 0.02483 * b;
        su->ptrs.log_alpha = log(1.1239 + 1.1328 / (b - 3.4));
        su->ptrs.vr = 0.9277 - 3.6224 / (b - 2);
        su->ptrs.m = floor(lam);
        new_generation(su, PTRS);
    } else if (su->bounds.owner != PTRS) {
        new_generation(su, PTRS);
    }
    const double b = su->ptrs.b, a = su->ptrs.a, vr = su->ptrs.vr, m = su->ptrs.m;
    for (;;) {
        double u, v, e;
        sbx__rng_double2(cur, &u, &v);
        u -= 0.5;
        const double us = 0.5 - fabs(u);
        const double kd = floor((2 * a / us + b) * u + lam + 0.43);
        const int box = (us >= 0.07) & (v <= vr);
        const double us2 = us * us, i = kd - m + BOUNDS_HALF;
        if (kept(su, i, &e)) { /* only a k that passed the checks below is kept */
            if (box | (v * us2 <= e * (a + b * us2))) return (int64_t)kd;
            continue;
        }
        if (box) return (int64_t)kd;
        if (kd < 0 || kd > 4 * lam + 1e3 || (us < 0.013 && v > us)) continue; /* far past any mass */
        if (v * us2 <= keep(su, i, ptrs_bound(su, kd)) * (a + b * us2)) return (int64_t)kd;
    }
}

/* Poisson(lam), 0 <= lam <= SBX_POISSON_MAX_LAM. */
HOT int64_t poisson(setups *su, sbx_rng_cursor *cur, double lam) {
    return lam == 0 ? 0 : lam < 10 ? poisson_inversion(su, cur, lam) : poisson_ptrs(su, cur, lam);
}

SBX_CLONES sbx_status sbx_poisson(sbx_rng_cursor *cur, double lam, int64_t *out) {
    if (!cur || !out) return sbx__error(SBX_ERR_ARG, "sbx_poisson: cursor or out is NULL");
    if (!(lam >= 0 && lam <= SBX_POISSON_MAX_LAM))
        return sbx__error(SBX_ERR_ARG, "Poisson lam = %g is outside [0, %g]", lam, SBX_POISSON_MAX_LAM);
    *out = poisson(&cache, cur, lam);
    return SBX_OK;
}

SBX_CLONES void sbx__poisson_each(sbx_rng_cursor *cur, int count, double lam, const double *lams, int64_t *values) {
    setups *su = &cache;
    for (int i = 0; i < count; i++) values[i] = poisson(su, &cur[i], lams ? lams[i] : lam);
}

/* The smallest j >= i with x < cum[j] among j < last, else last; *acc holds cum[i] on entry (cum[j] =
 * probs[0] + ... + probs[j], summed in order) and cum[j] on return. */
static inline int64_t category(const double *probs, int64_t last, double x, int64_t i, double *acc) {
    while (i < last && x >= *acc) {
        i++;
        if (i < last) *acc += probs[i];
    }
    return i;
}

#define CUM_MAX 32
SBX_CLONES void sbx__multinomial_draw(sbx_rng_cursor *cur, int64_t n, const double *probs, int64_t k,
                                      int64_t *counts) {
    double total = 0;
    int64_t last = -1; /* the last category with mass: it takes what is left */
    for (int64_t i = 0; i < k; i++) {
        total += probs[i];
        if (probs[i] > 0) last = i;
        counts[i] = 0;
    }
    if (n <= 16 && last < CUM_MAX) { /* as below, the category counted without branches: w1 decides when
                                          * as many cumulative masses lie at or below hi as below lo */
        double cum[CUM_MAX], acc = 0;
        for (int64_t i = 0; i < last; i++) cum[i] = acc += probs[i];
        for (int64_t t = 0; t < n; t++) {
            const uint32_t w1 = sbx__rng_u32(cur);
            const double lo = (double)w1 * 0x1.0p-32 * total, hi = ((double)w1 + 1) * 0x1.0p-32 * total;
            int64_t i = 0, above = 0;
            for (int64_t j = 0; j < last; j++) {
                i += lo >= cum[j];
                above += hi >= cum[j];
            }
            if (above != i) {
                const double u = sbx__u53(w1, sbx__rng_u32(cur)) * total;
                while (i < last && u >= cum[i]) i++;
            }
            counts[i]++;
        }
        return;
    }
    if (n <= 16) { /* few trials: each picks its category by inversion of u = U total, one word first */
        for (int64_t t = 0; t < n; t++) {
            const uint32_t w1 = sbx__rng_u32(cur);
            const double lo = (double)w1 * 0x1.0p-32 * total, hi = ((double)w1 + 1) * 0x1.0p-32 * total;
            double acc = probs[0];
            int64_t i = category(probs, last, lo, 0, &acc);
            if (i < last && !(hi < acc)) i = category(probs, last, sbx__u53(w1, sbx__rng_u32(cur)) * total, i, &acc);
            counts[i]++;
        }
        return;
    }
    double left = total;
    int64_t nleft = n;
    for (int64_t i = 0; i <= last && nleft > 0; i++) {
        int64_t x = nleft;
        if (i < last && probs[i] > 0) {
            const double pi = left > 0 ? probs[i] / left : 1; /* rounding can leave too little mass */
            sbx_binomial(cur, nleft, pi < 1 ? pi : 1, &x);
        } else if (i < last) {
            x = 0;
        }
        counts[i] = x;
        nleft -= x;
        left -= probs[i];
    }
}

sbx_status sbx_multinomial(sbx_rng_cursor *cur, int64_t n, const double *probs, int64_t k, int renormalize,
                           int64_t *counts) {
    if (!cur || !counts || (k > 0 && !probs)) return sbx__error(SBX_ERR_ARG, "sbx_multinomial: a pointer is NULL");
    if (n < 0) return sbx__error(SBX_ERR_ARG, "multinomial n = %lld is negative", (long long)n);
    if (k < 0) return sbx__error(SBX_ERR_ARG, "multinomial k = %lld is negative", (long long)k);
    double total = 0;
    int mass = 0;
    for (int64_t i = 0; i < k; i++) {
        if (!(probs[i] >= 0) || isinf(probs[i]))
            return sbx__error(SBX_ERR_ARG, "multinomial probs[%lld] = %g is negative or not finite", (long long)i,
                              probs[i]);
        total += probs[i];
        mass |= probs[i] > 0;
    }
    if (n > 0 && !mass)
        return sbx__error(SBX_ERR_ARG, "multinomial n = %lld over probabilities summing to 0", (long long)n);
    if (!renormalize && k > 0 && fabs(total - 1) > 1e-6)
        return sbx__error(SBX_ERR_ARG,
                          "multinomial probabilities sum to %.17g, not 1 within 1e-6 (renormalize to accept)", total);
    sbx__multinomial_draw(cur, n, probs, k, counts);
    return SBX_OK;
}
