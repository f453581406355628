/* The generator's fast path, shared by the samplers of this folder. */
#ifndef SBX_RANDOM_INTERNAL_H
#define SBX_RANDOM_INTERNAL_H

#include "core/internal.h"
#include "sparsebox/random.h"

/* count (<= SBX_RNG_BATCH) cursors at positions position .. position + count - 1, their first blocks
 * made together in vector lanes: the same values as sbx_rng_cursor_init's cursors. */
void sbx__rng_cursors(const sbx_rng *rng, int64_t position, int count, sbx_rng_cursor *cur);

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

#endif
