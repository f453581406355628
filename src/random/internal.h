/* The generator's fast path, shared by the samplers of this folder. */
#ifndef SBX_RANDOM_INTERNAL_H
#define SBX_RANDOM_INTERNAL_H

#include <string.h>

#include "core/internal.h"
#include "sparsebox/random.h"

/* count (<= SBX_RNG_BATCH) cursors at positions position .. position + count - 1, their first
 * blocks_each (1 or 2) blocks made together in vector lanes: the same values as sbx_rng_cursor_init's
 * cursors. */
void sbx__rng_cursors(const sbx_rng *rng, int64_t position, int count, int blocks_each, sbx_rng_cursor *cur);

/* Block `block` (4 words) of each of the SBX_RNG_BATCH positions position .. position + 15, made
 * together in vector lanes: position + b's words at words[4 b .. 4 b + 3] (positions past INT64_MAX
 * wrap: their words are not for use). */
void sbx__rng_blocks(const sbx_rng *rng, int64_t position, uint32_t block, uint32_t *words);

/* Word 0 of block 0 (a position's first word) of the count positions position .. position + count - 1,
 * count a multiple of SBX_RNG_BATCH: words[i] is position + i's. */
void sbx__rng_first_words(const sbx_rng *rng, int64_t position, int64_t count, uint32_t *words);

/* Makes the next words of a cursor (philox.c). */
void sbx__rng_refill(sbx_rng_cursor *cur);

static inline uint32_t sbx__rng_u32(sbx_rng_cursor *cur) {
    if (cur->used == cur->have) sbx__rng_refill(cur);
    return cur->words[cur->used++];
}

/* A double in [0, 1) with 53 bits: the high 53 of a 64-bit word (first word in the low half). */
static inline double sbx__rng_double(sbx_rng_cursor *cur) {
    const uint64_t lo = sbx__rng_u32(cur), w = lo | (uint64_t)sbx__rng_u32(cur) << 32;
    return (double)(w >> 11) * 0x1.0p-53;
}

/* What sbx__draw draws at each position: Binomial(n, p); Poisson(lam); Multinomial(n, probs[0..k-1])
 * (checked beforehand). */
typedef enum { SBX__BINOMIAL, SBX__POISSON, SBX__MULTINOMIAL } sbx__law_kind;
typedef struct {
    sbx__law_kind kind;
    int64_t n, k;
    double p, lam;
    const double *probs;
} sbx__law;

/* values[i * width ..] from a cursor at position first + i, for i < lines: 16 cursors at a time with
 * their first blocks made together, the lines shared out among threads (fill.c). */
void sbx__draw(const sbx_rng *rng, const sbx__law *d, int64_t first, int64_t lines, int64_t width, int64_t *values);

/* values[i] = a draw from cur[i], i < count, with parameters checked beforehand: Binomial(n, p);
 * Poisson(lams[i]), or Poisson(lam) when lams is NULL. The samplers' set-ups are found once for all. */
void sbx__binomial_each(sbx_rng_cursor *cur, int count, int64_t n, double p, int64_t *values);
void sbx__poisson_each(sbx_rng_cursor *cur, int count, double lam, const double *lams, int64_t *values);

/* values[i] = Poisson(lams[i]) from a cursor at position first + i, i < count, with means checked
 * beforehand: the same values as sbx__poisson_each on such cursors. With vector set and AVX-512 or
 * AVX2 at hand, the means below 10 are inverted eight or four at a time in vector lanes from the first word of each
 * position, and a position that word leaves open (or a mean of 10 and up) is drawn by
 * sbx__poisson_each; otherwise every position is (poisson_lanes.c). */
void sbx__poisson_positions(const sbx_rng *rng, int64_t first, int64_t count, const double *lams, int vector,
                            int64_t *values);

/* 1/k for k = 0..64 (0 at 0): the Poisson CDF's steps multiply by it rather than divide. */
extern const double sbx__inverse[65];

/* exp(-lam) for 0 <= lam <= 10, within 2 units in the last place, by operations that the vector lanes
 * of poisson_lanes.c repeat one for one (no fused multiply-adds: the library is compiled without
 * contraction), so that both give the same bits: lam = n ln 2 - r with n an integer (rounded by
 * adding and subtracting 1.5 2^52, whose low bits then hold n) and |r| <= ln 2 / 2, ln 2 in two parts
 * (fdlibm's ln2HI and ln2LO, n ln2HI exact), e^r by its Taylor series to degree 13 (the next term is
 * below 5e-18), times 2^n made from n's bits. */
#define SBX_EXP_SHIFT 0x1.8p52
#define SBX_EXP_LOG2E 0x1.71547652b82fep0
#define SBX_EXP_LN2_HI 0x1.62e42fee00000p-1
#define SBX_EXP_LN2_LO 0x1.a39ef35793c76p-33
#define SBX_EXP_DEGREE 13
static const double sbx__exp_taylor[SBX_EXP_DEGREE + 1] = { /* 1/k!, correctly rounded */
    0x1p0,  0x1p0, 0x1p-1, 0x1.5555555555555p-3, 0x1.5555555555555p-5, 0x1.1111111111111p-7,
    0x1.6c16c16c16c17p-10, 0x1.a01a01a01a01ap-13, 0x1.a01a01a01a01ap-16, 0x1.71de3a556c734p-19,
    0x1.27e4fb7789f5cp-22, 0x1.ae64567f544e4p-26, 0x1.1eed8eff8d898p-29, 0x1.6124613a86d09p-33};
static inline double sbx__exp_neg(double lam) {
    const double x = -lam, s = x * SBX_EXP_LOG2E + SBX_EXP_SHIFT, n = s - SBX_EXP_SHIFT;
    const double r = (x - n * SBX_EXP_LN2_HI) - n * SBX_EXP_LN2_LO;
    double e = sbx__exp_taylor[SBX_EXP_DEGREE], scale;
    for (int k = SBX_EXP_DEGREE - 1; k >= 0; k--) e = e * r + sbx__exp_taylor[k];
    uint64_t bits;
    memcpy(&bits, &s, sizeof bits);
    bits = (bits + 1023) << 52; /* s's low bits are 2^51 + n: this leaves (n + 1023) << 52, 2^n's bits */
    memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

/* The largest count a dtype holds exactly (float32: 2^24, int8: 127, bool: 1, ...). */
double sbx__dtype_exact_max(sbx_dtype dtype);

/* sbx_multinomial without its checks (probs >= 0 and finite, some mass when n > 0); k >= 1 when n > 0. */
void sbx__multinomial_draw(sbx_rng_cursor *cur, int64_t n, const double *probs, int64_t k, int64_t *counts);

/* Two doubles, as two sbx__rng_double calls give them, with one check for the four words. */
static inline void sbx__rng_double2(sbx_rng_cursor *cur, double *a, double *b) {
    if (cur->have - cur->used >= 4) {
        const uint32_t *w = cur->words + cur->used;
        cur->used += 4;
        *a = (double)(((uint64_t)w[0] | (uint64_t)w[1] << 32) >> 11) * 0x1.0p-53;
        *b = (double)(((uint64_t)w[2] | (uint64_t)w[3] << 32) >> 11) * 0x1.0p-53;
        return;
    }
    *a = sbx__rng_double(cur);
    *b = sbx__rng_double(cur);
}

/* Inversion reading one word first: u = (w1 2^21 + (w2 >> 11)) 2^-53 (53 bits) lies in [w1, w1 + 1) 2^-32
 * whatever w2 is, so when no CDF value falls inside that interval, w1 alone gives the answer and w2 is
 * not drawn (about one draw in 2^32 / (values in the table) needs it). Results are those of the
 * 53-bit inversion. */
static inline double sbx__u53(uint32_t w1, uint32_t w2) {
    return ((double)w1 * 0x1.0p21 + (double)(w2 >> 11)) * 0x1.0p-53;
}

#endif
