/* Exact samplers: binomial (inversion / BTRS), Poisson (multiplication / PTRS), multinomial
 * (conditional binomials). References are in random.h; the constants of BTRS and PTRS are Hormann's. */
#include <math.h>

#include "random/internal.h"
#include "sparsebox/random.h"

#define LOG_SQRT_2PI 0.91893853320467274178

/* fc(k) = log k! - [(k + 1/2) log(k + 1) - (k + 1) + log sqrt(2 pi)], the tail of Stirling's series
 * at k + 1: lgamma itself for small k, the series 1/12z - 1/360z^3 + 1/1260z^5 (z = k + 1) above. */
static double stirling_tail(double k) {
    if (k < 10) return lgamma(k + 1) - ((k + 0.5) * log(k + 1) - (k + 1) + LOG_SQRT_2PI);
    const double z = k + 1, z2 = z * z;
    return (1.0 / 12 - (1.0 / 360 - 1.0 / (1260 * z2)) / z2) / z;
}

/* Each thread keeps the set-up of its last inversion and multiplication: loops of draws with the
 * same parameters then skip the exp and log1p. */
static _Thread_local struct {
    int64_t n;
    double p, r0, cdf[17]; /* cdf[k] = P(X <= k) for n <= 16 */
} last_binomial = {-1, 0, 0, {0}};
static _Thread_local struct {
    double lam, limit;
} last_poisson = {-1, 0};

/* Binomial(n, p), p <= 1/2, n p < 10: inversion along the chain P(x) = P(x-1) ((n+1)/x - 1) p/q. */
static int64_t binomial_inversion(sbx_rng_cursor *cur, int64_t n, double p) {
    const double q = 1 - p, s = p / q, a = ((double)n + 1) * s;
    if (last_binomial.n != n || last_binomial.p != p) {
        last_binomial.n = n;
        last_binomial.p = p;
        last_binomial.r0 = exp((double)n * log1p(-p));
        double r = last_binomial.r0, acc = 0;
        for (int64_t k = 0; k <= n && n <= 16; k++) { /* the CDF, for the table path below */
            if (k > 0) r *= a / (double)k - s;
            last_binomial.cdf[k] = acc += r;
        }
        if (n <= 16) last_binomial.cdf[n] = 1;
    }
    if (n <= 16) {
        /* Small n: inversion of the CDF table with u = (w1 2^21 + (w2 >> 11)) 2^-53, the second word
         * drawn only when [w1, w1 + 1) 2^-32 holds a CDF value (the result is the 53-bit one). */
        const double *cdf = last_binomial.cdf;
        const uint32_t w1 = sbx__rng_u32(cur);
        const double lo = (double)w1 * 0x1.0p-32, hi = ((double)w1 + 1) * 0x1.0p-32;
        int64_t k = 0;
        for (int64_t j = 0; j < n; j++) k += lo >= cdf[j];
        if (k == n || hi <= cdf[k]) return k;
        const double u = ((double)w1 * 0x1.0p21 + (double)(sbx__rng_u32(cur) >> 11)) * 0x1.0p-53;
        for (k = 0; k < n && u >= cdf[k]; k++) {
        }
        return k;
    }
    const double r0 = last_binomial.r0;
    for (;;) {
        double u = sbx__rng_double(cur), r = r0;
        int64_t x = 0;
        while (u > r && x < n) {
            u -= r;
            x++;
            r *= a / (double)x - s;
        }
        if (u <= r) return x; /* else the rounding left mass past n: draw again */
    }
}

/* Binomial(n, p), p <= 1/2, n p >= 10: BTRS; its set-up for the last (n, p) is kept per thread (hm, the
 * mode's Stirling terms, made when a rejection test first needs them). */
static _Thread_local struct {
    int64_t n;
    double p, b, a, c, vr, alpha, r, m, hm;
} last_btrs = {-1, 0, 0, 0, 0, 0, 0, 0, 0, 0};

static int64_t binomial_btrs(sbx_rng_cursor *cur, int64_t n, double p) {
    const double nd = (double)n;
    if (last_btrs.n != n || last_btrs.p != p) {
        const double q = 1 - p, spq = sqrt(nd * p * q), b = 1.15 + 2.53 * spq;
        last_btrs.n = n;
        last_btrs.p = p;
        last_btrs.b = b;
        last_btrs.a = -0.0873 + 0.0248 * b + 0.01 * p;
        last_btrs.c = nd * p + 0.5;
        last_btrs.vr = 0.92 - 4.2 / b;
        last_btrs.alpha = (2.83 + 5.1 / b) * spq;
        last_btrs.r = p / q;
        last_btrs.m = floor((nd + 1) * p);
        last_btrs.hm = NAN;
    }
    const double b = last_btrs.b, a = last_btrs.a, c = last_btrs.c, vr = last_btrs.vr, alpha = last_btrs.alpha;
    const double r = last_btrs.r, m = last_btrs.m;
    for (;;) {
        const double u = sbx__rng_double(cur) - 0.5, v0 = sbx__rng_double(cur), us = 0.5 - fabs(u);
        const double kd = floor((2 * a / us + b) * u + c);
        if (kd < 0 || kd > nd) continue;
        if (us >= 0.07 && v0 <= vr) return (int64_t)kd;
        const double v = log(v0 * alpha / (a / (us * us) + b));
        if (last_btrs.hm != last_btrs.hm) last_btrs.hm = stirling_tail(m) + stirling_tail(nd - m);
        const double bound = (m + 0.5) * log((m + 1) / (r * (nd - m + 1))) + (nd + 1) * log((nd - m + 1) / (nd - kd + 1)) +
                             (kd + 0.5) * log(r * (nd - kd + 1) / (kd + 1)) + last_btrs.hm - stirling_tail(kd) -
                             stirling_tail(nd - kd);
        if (v <= bound) return (int64_t)kd;
    }
}

sbx_status sbx_binomial(sbx_rng_cursor *cur, int64_t n, double p, int64_t *out) {
    if (!cur || !out) return sbx__error(SBX_ERR_ARG, "sbx_binomial: cursor or out is NULL");
    if (n < 0) return sbx__error(SBX_ERR_ARG, "binomial n = %lld is negative", (long long)n);
    if (!(p >= 0 && p <= 1)) return sbx__error(SBX_ERR_ARG, "binomial p = %g is outside [0, 1]", p);
    if (n == 0 || p == 0) {
        *out = 0;
        return SBX_OK;
    }
    if (p == 1) {
        *out = n;
        return SBX_OK;
    }
    const double pp = p <= 0.5 ? p : 1 - p;
    const int64_t x = (double)n * pp < 10 ? binomial_inversion(cur, n, pp) : binomial_btrs(cur, n, pp);
    *out = p <= 0.5 ? x : n - x;
    return SBX_OK;
}

/* Poisson(lam), lam < 10: the number of uniforms whose running product stays above exp(-lam). */
static int64_t poisson_multiplication(sbx_rng_cursor *cur, double lam) {
    if (last_poisson.lam != lam) {
        last_poisson.lam = lam;
        last_poisson.limit = exp(-lam);
    }
    const double limit = last_poisson.limit;
    double prod = 1;
    int64_t k = -1;
    do {
        k++;
        prod *= 1 - sbx__rng_double(cur); /* in (0, 1] */
    } while (prod > limit);
    return k;
}

/* Poisson(lam), lam >= 10: PTRS; its set-up for the last lam is kept per thread. */
static _Thread_local struct {
    double lam, loglam, b, a, log_invalpha, vr;
} last_ptrs = {-1, 0, 0, 0, 0, 0};

static int64_t poisson_ptrs(sbx_rng_cursor *cur, double lam) {
    if (last_ptrs.lam != lam) {
        const double b = 0.931 + 2.53 * sqrt(lam);
        last_ptrs.lam = lam;
        last_ptrs.loglam = log(lam);
        last_ptrs.b = b;
        last_ptrs.a = -0.059 + 0.02483 * b;
        last_ptrs.log_invalpha = log(1.1239 + 1.1328 / (b - 3.4));
        last_ptrs.vr = 0.9277 - 3.6224 / (b - 2);
    }
    const double loglam = last_ptrs.loglam, b = last_ptrs.b, a = last_ptrs.a, vr = last_ptrs.vr;
    const double log_invalpha = last_ptrs.log_invalpha;
    for (;;) {
        const double u = sbx__rng_double(cur) - 0.5, v = sbx__rng_double(cur), us = 0.5 - fabs(u);
        const double kd = floor((2 * a / us + b) * u + lam + 0.43);
        if (us >= 0.07 && v <= vr) return (int64_t)kd;
        if (kd < 0 || kd > 4 * lam + 1e3 || (us < 0.013 && v > us)) continue; /* far past any mass */
        if (log(v) + log_invalpha - log(a / (us * us) + b) <= -lam + kd * loglam - lgamma(kd + 1)) return (int64_t)kd;
    }
}

sbx_status sbx_poisson(sbx_rng_cursor *cur, double lam, int64_t *out) {
    if (!cur || !out) return sbx__error(SBX_ERR_ARG, "sbx_poisson: cursor or out is NULL");
    if (!(lam >= 0 && lam <= SBX_POISSON_MAX_LAM))
        return sbx__error(SBX_ERR_ARG, "Poisson lam = %g is outside [0, %g]", lam, SBX_POISSON_MAX_LAM);
    *out = lam == 0 ? 0 : lam < 10 ? poisson_multiplication(cur, lam) : poisson_ptrs(cur, lam);
    return SBX_OK;
}

sbx_status sbx_multinomial(sbx_rng_cursor *cur, int64_t n, const double *probs, int64_t k, int renormalize,
                           int64_t *counts) {
    if (!cur || !counts || (k > 0 && !probs)) return sbx__error(SBX_ERR_ARG, "sbx_multinomial: a pointer is NULL");
    if (n < 0) return sbx__error(SBX_ERR_ARG, "multinomial n = %lld is negative", (long long)n);
    if (k < 0) return sbx__error(SBX_ERR_ARG, "multinomial k = %lld is negative", (long long)k);
    double total = 0;
    int64_t last = -1; /* the last category with mass: it takes what is left */
    for (int64_t i = 0; i < k; i++) {
        if (!(probs[i] >= 0) || isinf(probs[i]))
            return sbx__error(SBX_ERR_ARG, "multinomial probs[%lld] = %g is negative or not finite", (long long)i, probs[i]);
        total += probs[i];
        if (probs[i] > 0) last = i;
    }
    if (n > 0 && last < 0) return sbx__error(SBX_ERR_ARG, "multinomial n = %lld over probabilities summing to 0", (long long)n);
    if (!renormalize && k > 0 && fabs(total - 1) > 1e-6)
        return sbx__error(SBX_ERR_ARG, "multinomial probabilities sum to %.17g, not 1 within 1e-6 (renormalize to accept)",
                          total);
    if (n <= 16) { /* few trials: each picks its category by inversion of the cumulative masses */
        for (int64_t i = 0; i < k; i++) counts[i] = 0;
        for (int64_t t = 0; t < n; t++) {
            const double u = sbx__rng_double(cur) * total;
            double acc = 0;
            int64_t pick = last; /* rounding past the end lands on the last category with mass */
            for (int64_t i = 0; i < last; i++) {
                acc += probs[i];
                if (u < acc) {
                    pick = i;
                    break;
                }
            }
            counts[pick]++;
        }
        return SBX_OK;
    }
    double left = total;
    int64_t nleft = n;
    for (int64_t i = 0; i < k; i++) {
        int64_t x = 0;
        if (i == last) {
            x = nleft;
        } else if (i < last && nleft > 0 && probs[i] > 0) {
            double pi = left > 0 ? probs[i] / left : 1; /* rounding can leave too little mass */
            SBX_CHECK(sbx_binomial(cur, nleft, pi < 1 ? pi : 1, &x));
        }
        counts[i] = x;
        nleft -= x;
        left -= probs[i];
    }
    return SBX_OK;
}
