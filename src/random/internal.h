/* The generator's fast path, shared by the samplers of this folder. */
#ifndef SBX_RANDOM_INTERNAL_H
#define SBX_RANDOM_INTERNAL_H

#include "core/internal.h"
#include "sparsebox/random.h"

/* count (<= SBX_RNG_BATCH) cursors at positions position .. position + count - 1, their first
 * blocks_each (1 or 2) blocks made together in vector lanes: the same values as sbx_rng_cursor_init's
 * cursors. */
void sbx__rng_cursors(const sbx_rng *rng, int64_t position, int count, int blocks_each, sbx_rng_cursor *cur);

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

/* What sbx__draw draws at each position: Binomial(n, p); Poisson(lam), or Poisson(lams[i]) at the
 * i-th position when lams is set; Multinomial(n, probs[0..k-1]) (checked beforehand). */
typedef enum { SBX__BINOMIAL, SBX__POISSON, SBX__MULTINOMIAL } sbx__law_kind;
typedef struct {
    sbx__law_kind kind;
    int64_t n, k;
    double p, lam;
    const double *probs, *lams;
} sbx__law;

/* values[i * width ..] from a cursor at position first + i, for i < lines: 16 cursors at a time with
 * their first blocks made together, the lines shared out among threads (fill.c). */
void sbx__draw(const sbx_rng *rng, const sbx__law *d, int64_t first, int64_t lines, int64_t width, int64_t *values);

/* values[i] = a draw from cur[i], i < count, with parameters checked beforehand: Binomial(n, p);
 * Poisson(lams[i]), or Poisson(lam) when lams is NULL. The samplers' set-ups are found once for all. */
void sbx__binomial_each(sbx_rng_cursor *cur, int count, int64_t n, double p, int64_t *values);
void sbx__poisson_each(sbx_rng_cursor *cur, int count, double lam, const double *lams, int64_t *values);

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
