/* Poisson draws at many positions with their own means (the sparse Poisson's entries): the means below
 * 10 are inverted in vector lanes, eight at a time with AVX-512, four with AVX2. A lane does what poisson_inversion does for one
 * position without a table: P(0) = sbx__exp_neg(lam) (the same operations in the lanes), the CDF made
 * by the same steps (r *= lam / k, acc += r, k from 1), stopped at the first k with lo < acc for
 * lo = w1 2^-32, w1 the position's first word. When hi = (w1 + 1) 2^-32 <= acc too, every 53-bit u
 * read from w1 gives k, which is then the scalar sampler's answer; otherwise (a CDF value within the
 * word's step, or past k = 64), and for means of 10 and up, the position is drawn by the scalar
 * sampler from its own cursor. So the values are those of sbx__poisson_each at every position. */
#include "random/internal.h"

#if defined(__x86_64__) && !defined(SBX_SANITIZE)
#include <immintrin.h>
#define HAVE_AVX512_PATH 1 /* and the AVX2 path */
#endif

#define LANES 8
#define SMALL_LAM 10.0 /* poisson() inverts below it */

#ifdef HAVE_AVX512_PATH
#define AVX512 __attribute__((target("avx512f")))

/* The positions the lanes left open, by the scalar sampler. */
static void poisson_scalar(const sbx_rng *rng, int64_t position, const double *lam, int64_t *value) {
    sbx_rng_cursor cur;
    sbx_rng_cursor_init(rng, position, &cur);
    sbx__poisson_each(&cur, 1, 0, lam, value);
}

/* sbx__exp_neg in lanes, operation for operation. */
AVX512 static inline __m512d exp_neg_lanes(__m512d lam) {
    const __m512d shift = _mm512_set1_pd(SBX_EXP_SHIFT);
    const __m512d x = _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(lam), _mm512_set1_epi64(INT64_MIN)));
    const __m512d s = _mm512_add_pd(_mm512_mul_pd(x, _mm512_set1_pd(SBX_EXP_LOG2E)), shift);
    const __m512d n = _mm512_sub_pd(s, shift);
    const __m512d r = _mm512_sub_pd(_mm512_sub_pd(x, _mm512_mul_pd(n, _mm512_set1_pd(SBX_EXP_LN2_HI))),
                                    _mm512_mul_pd(n, _mm512_set1_pd(SBX_EXP_LN2_LO)));
    __m512d e = _mm512_set1_pd(sbx__exp_taylor[SBX_EXP_DEGREE]);
    for (int k = SBX_EXP_DEGREE - 1; k >= 0; k--)
        e = _mm512_add_pd(_mm512_mul_pd(e, r), _mm512_set1_pd(sbx__exp_taylor[k]));
    const __m512i bits = _mm512_slli_epi64(_mm512_add_epi64(_mm512_castpd_si512(s), _mm512_set1_epi64(1023)), 52);
    return _mm512_mul_pd(e, _mm512_castsi512_pd(bits));
}

/* The positions go SPAN at a time through three passes, each of independent steps that the core
 * overlaps: their first words (sbx__rng_first_words), P(0) of each mean, and the CDF steps, GROUP =
 * 32 positions in VECTORS = 4 vectors of lanes together (open[v] gets the lanes of vector v that their
 * first word left open). */
#define SPAN 512
#define GROUP (2 * SBX_RNG_BATCH)
#define VECTORS (GROUP / LANES)
#define EAGER 4 /* steps taken before the loop asks whether any lane is left (a masked step changes nothing) */

/* The CDF steps. Only acc and k are masked: r, unmasked, is the same in a lane still stepping, and a
 * lane that has stopped never reads it again; so r's chain of multiplies does not wait for the
 * compare. */
AVX512 static inline void invert_lanes(const double *lams, const double *p0, const uint32_t *w1, int64_t *values,
                                       __mmask8 *open) {
    const __m512d one = _mm512_set1_pd(1), big = _mm512_set1_pd(0x1p52), step = _mm512_set1_pd(0x1.0p-32);
    const __m512i minus_one = _mm512_set1_epi64(-1);
    __m512d lam[VECTORS], lo[VECTORS], r[VECTORS], acc[VECTORS];
    __m512i k[VECTORS];
    __mmask8 small[VECTORS], active[VECTORS], any = 0;
    for (int v = 0; v < VECTORS; v++) {
        lam[v] = _mm512_loadu_pd(lams + LANES * v);
        /* w1 as a double: its bits under the exponent of 2^52, less 2^52 */
        const __m512i wi = _mm512_cvtepu32_epi64(_mm256_loadu_si256((const void *)(w1 + LANES * v)));
        lo[v] = _mm512_mul_pd(_mm512_sub_pd(_mm512_castsi512_pd(_mm512_or_si512(wi, _mm512_castpd_si512(big))), big),
                              step);
        small[v] = _mm512_cmp_pd_mask(lam[v], _mm512_set1_pd(SMALL_LAM), _CMP_LT_OQ);
        r[v] = acc[v] = _mm512_loadu_pd(p0 + LANES * v);
        k[v] = _mm512_setzero_si512();
        active[v] = small[v] & _mm512_cmp_pd_mask(lo[v], acc[v], _CMP_GE_OQ);
        any |= active[v];
    }
    for (int j = 1; (any || j <= EAGER) && j < 65; j++) { /* the lanes still below their k step together */
        const __m512d inv = _mm512_set1_pd(sbx__inverse[j]);
        any = 0;
        for (int v = 0; v < VECTORS; v++) {
            r[v] = _mm512_mul_pd(r[v], _mm512_mul_pd(lam[v], inv));
            acc[v] = _mm512_mask_add_pd(acc[v], active[v], acc[v], r[v]);
            k[v] = _mm512_mask_sub_epi64(k[v], active[v], k[v], minus_one); /* an integer add: not the FP port */
            active[v] = _mm512_mask_cmp_pd_mask(active[v], lo[v], acc[v], _CMP_GE_OQ);
            any |= active[v];
        }
    }
    for (int v = 0; v < VECTORS; v++) {
        const __m512i wi = _mm512_cvtepu32_epi64(_mm256_loadu_si256((const void *)(w1 + LANES * v)));
        const __m512d w = _mm512_sub_pd(_mm512_castsi512_pd(_mm512_or_si512(wi, _mm512_castpd_si512(big))), big);
        const __m512d hi = _mm512_mul_pd(_mm512_add_pd(w, one), step);
        const __mmask8 decided =
            small[v] & _mm512_cmp_pd_mask(lo[v], acc[v], _CMP_LT_OQ) & _mm512_cmp_pd_mask(hi, acc[v], _CMP_LE_OQ);
        open[v] = (__mmask8)~decided;
        _mm512_storeu_si512((void *)(values + LANES * v), k[v]);
    }
}

AVX512 static void draw_avx512(const sbx_rng *rng, int64_t first, int64_t count, const double *lams,
                               int64_t *values) {
    uint32_t w1[SPAN];
    double p0[SPAN];
    const int64_t grouped = count / GROUP * GROUP;
    for (int64_t s = 0; s < grouped; s += SPAN) {
        const int64_t n = grouped - s < SPAN ? grouped - s : SPAN;
        sbx__rng_first_words(rng, first + s, n, w1);
        for (int64_t i = 0; i < n; i += LANES) _mm512_storeu_pd(p0 + i, exp_neg_lanes(_mm512_loadu_pd(lams + s + i)));
        for (int64_t i = 0; i < n; i += GROUP) {
            __mmask8 open[VECTORS];
            invert_lanes(lams + s + i, p0 + i, w1 + i, values + s + i, open);
            for (int v = 0; v < VECTORS; v++)
                for (unsigned m = open[v]; m; m &= m - 1) {
                    const int64_t at = s + i + LANES * v + __builtin_ctz(m);
                    poisson_scalar(rng, first + at, &lams[at], &values[at]);
                }
        }
    }
    for (int64_t i = grouped; i < count; i++) poisson_scalar(rng, first + i, &lams[i], &values[i]); /* the last few */
}

/* The same with AVX2 (CPUs without AVX-512), four lanes a vector and GROUP2 positions a group; lane
 * masks are vectors of all-one lanes, and a masked add adds r & mask (a zero where the lane has
 * stopped, which leaves acc as it is). */
#define AVX2 __attribute__((target("avx2")))
#define LANES2 4
#define GROUP2 SBX_RNG_BATCH
#define VECTORS2 (GROUP2 / LANES2)

/* sbx__exp_neg of EXP2 vectors of means (4 EXP2 positions) side by side, operation for operation. Each
 * lane's Horner chain (13 multiply-adds) waits on itself: one vector at a time left the core waiting
 * on it (perf: 45 % of draw_avx2's time in this loop); four chains in flight fill it. */
#define EXP2 4
_Static_assert(GROUP2 % (EXP2 * LANES2) == 0 && SPAN % (EXP2 * LANES2) == 0,
               "draw_avx2 hands exp_neg_lanes_avx2 whole groups");
AVX2 static inline void exp_neg_lanes_avx2(const double *lam, double *p0) {
    const __m256d shift = _mm256_set1_pd(SBX_EXP_SHIFT);
    __m256d r[EXP2], e[EXP2];
    __m256i bits[EXP2];
    _Pragma("GCC unroll 8") for (int v = 0; v < EXP2; v++) {
        const __m256d x = _mm256_xor_pd(_mm256_loadu_pd(lam + LANES2 * v), _mm256_set1_pd(-0.0));
        const __m256d s = _mm256_add_pd(_mm256_mul_pd(x, _mm256_set1_pd(SBX_EXP_LOG2E)), shift);
        const __m256d n = _mm256_sub_pd(s, shift);
        r[v] = _mm256_sub_pd(_mm256_sub_pd(x, _mm256_mul_pd(n, _mm256_set1_pd(SBX_EXP_LN2_HI))),
                             _mm256_mul_pd(n, _mm256_set1_pd(SBX_EXP_LN2_LO)));
        bits[v] = _mm256_slli_epi64(_mm256_add_epi64(_mm256_castpd_si256(s), _mm256_set1_epi64x(1023)), 52);
        e[v] = _mm256_set1_pd(sbx__exp_taylor[SBX_EXP_DEGREE]);
    }
    for (int k = SBX_EXP_DEGREE - 1; k >= 0; k--) {
        const __m256d c = _mm256_set1_pd(sbx__exp_taylor[k]);
        _Pragma("GCC unroll 8") for (int v = 0; v < EXP2; v++) e[v] = _mm256_add_pd(_mm256_mul_pd(e[v], r[v]), c);
    }
    _Pragma("GCC unroll 8") for (int v = 0; v < EXP2; v++)
        _mm256_storeu_pd(p0 + LANES2 * v, _mm256_mul_pd(e[v], _mm256_castsi256_pd(bits[v])));
}

/* w1[0 .. 3] as doubles: their bits under the exponent of 2^52, less 2^52 (exact). */
AVX2 static inline __m256d words_avx2(const uint32_t *w1) {
    const __m256d big = _mm256_set1_pd(0x1p52);
    const __m256i wi = _mm256_cvtepu32_epi64(_mm_loadu_si128((const void *)w1));
    return _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(wi, _mm256_castpd_si256(big))), big);
}

/* invert_lanes's steps; open: a bit per position of the group that the lanes left open. */
AVX2 static inline unsigned invert_lanes_avx2(const double *lams, const double *p0, const uint32_t *w1,
                                              int64_t *values) {
    const __m256d step = _mm256_set1_pd(0x1.0p-32), one = _mm256_set1_pd(1);
    __m256d lam[VECTORS2], lo[VECTORS2], r[VECTORS2], acc[VECTORS2], small[VECTORS2], active[VECTORS2];
    __m256i k[VECTORS2];
    int any = 0;
    __m256d some = _mm256_setzero_pd();
    for (int v = 0; v < VECTORS2; v++) {
        lam[v] = _mm256_loadu_pd(lams + LANES2 * v);
        lo[v] = _mm256_mul_pd(words_avx2(w1 + LANES2 * v), step);
        small[v] = _mm256_cmp_pd(lam[v], _mm256_set1_pd(SMALL_LAM), _CMP_LT_OQ);
        r[v] = _mm256_loadu_pd(p0 + LANES2 * v);
        /* a lane not inverted here starts above every lo (2), so that lo >= acc never holds for it */
        acc[v] = _mm256_blendv_pd(_mm256_set1_pd(2), r[v], small[v]);
        k[v] = _mm256_setzero_si256();
        active[v] = _mm256_cmp_pd(lo[v], acc[v], _CMP_GE_OQ);
        some = _mm256_or_pd(some, active[v]);
    }
    any = _mm256_movemask_pd(some);
    /* A lane that has stopped (lo < acc) adds nothing to acc again, so lo >= acc stays false for it:
     * active is that compare alone, and one movemask of the lanes' OR asks whether any is left. */
    for (int j = 1; (any || j <= EAGER) && j < 65; j++) {
        const __m256d inv = _mm256_set1_pd(sbx__inverse[j]);
        some = _mm256_setzero_pd();
        for (int v = 0; v < VECTORS2; v++) {
            r[v] = _mm256_mul_pd(r[v], _mm256_mul_pd(lam[v], inv));
            acc[v] = _mm256_add_pd(acc[v], _mm256_and_pd(r[v], active[v]));
            k[v] = _mm256_sub_epi64(k[v], _mm256_castpd_si256(active[v])); /* an all-one lane is -1 */
            active[v] = _mm256_cmp_pd(lo[v], acc[v], _CMP_GE_OQ);
            some = _mm256_or_pd(some, active[v]);
        }
        any = _mm256_movemask_pd(some);
    }
    unsigned open = 0;
    for (int v = 0; v < VECTORS2; v++) {
        const __m256d hi = _mm256_mul_pd(_mm256_add_pd(words_avx2(w1 + LANES2 * v), one), step);
        const __m256d decided = _mm256_and_pd(_mm256_and_pd(small[v], _mm256_cmp_pd(lo[v], acc[v], _CMP_LT_OQ)),
                                              _mm256_cmp_pd(hi, acc[v], _CMP_LE_OQ));
        open |= (unsigned)(~_mm256_movemask_pd(decided) & 0xF) << (LANES2 * v);
        _mm256_storeu_si256((void *)(values + LANES2 * v), k[v]);
    }
    return open;
}

AVX2 static void draw_avx2(const sbx_rng *rng, int64_t first, int64_t count, const double *lams, int64_t *values) {
    uint32_t w1[SPAN];
    double p0[SPAN];
    const int64_t grouped = count / GROUP2 * GROUP2;
    for (int64_t s = 0; s < grouped; s += SPAN) {
        const int64_t n = grouped - s < SPAN ? grouped - s : SPAN;
        sbx__rng_first_words(rng, first + s, n, w1);
        for (int64_t i = 0; i < n; i += EXP2 * LANES2) exp_neg_lanes_avx2(lams + s + i, p0 + i); /* n: groups */
        for (int64_t i = 0; i < n; i += GROUP2)
            for (unsigned m = invert_lanes_avx2(lams + s + i, p0 + i, w1 + i, values + s + i); m; m &= m - 1) {
                const int64_t at = s + i + __builtin_ctz(m);
                poisson_scalar(rng, first + at, &lams[at], &values[at]);
            }
    }
    for (int64_t i = grouped; i < count; i++) poisson_scalar(rng, first + i, &lams[i], &values[i]);
}
#endif

void sbx__poisson_positions(const sbx_rng *rng, int64_t first, int64_t count, const double *lams, int vector,
                            int64_t *values) {
#ifdef HAVE_AVX512_PATH
    if (vector && __builtin_cpu_supports("avx512f")) {
        draw_avx512(rng, first, count, lams, values);
        return;
    }
    if (vector && __builtin_cpu_supports("avx2")) {
        draw_avx2(rng, first, count, lams, values);
        return;
    }
#endif
    (void)vector;
    for (int64_t i = 0; i < count; i += SBX_RNG_BATCH) { /* 16 cursors at a time, their first blocks together */
        sbx_rng_cursor cur[SBX_RNG_BATCH];
        const int c = count - i < SBX_RNG_BATCH ? (int)(count - i) : SBX_RNG_BATCH;
        sbx__rng_cursors(rng, first + i, c, 1, cur);
        sbx__poisson_each(cur, c, 0, lams + i, values + i);
    }
}
