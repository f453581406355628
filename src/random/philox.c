/* Philox4x32-10 and the generator's cursors. The round function, multipliers and key increments are
 * those of Salmon et al., SC'11 (Random123): each round maps (c0, c1, c2, c3) under key (k0, k1) to
 * (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0)), and the key grows by (W0, W1)
 * between rounds. */
#include <string.h>

#include "random/internal.h"

#if defined(__x86_64__) && !defined(SBX_SANITIZE)
#include <immintrin.h>
#define HAVE_AVX512_PATH 1 /* and the AVX2 path */
#endif

#define M0 0xD2511F53u
#define M1 0xCD9E8D57u
#define W0 0x9E3779B9u
#define W1 0xBB67AE85u

void sbx_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += W0;
            k1 += W1;
        }
        const uint64_t p0 = (uint64_t)M0 * c0, p1 = (uint64_t)M1 * c2;
        const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c0 = n0;
        c1 = (uint32_t)p1;
        c2 = n2;
        c3 = (uint32_t)p0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

void sbx_rng_init(sbx_rng *rng, uint64_t seed, uint32_t stream) {
    if (!rng) return;
    rng->seed = seed;
    rng->stream = stream;
}

sbx_status sbx_rng_cursor_init(const sbx_rng *rng, int64_t position, sbx_rng_cursor *cur) {
    if (!rng || !cur) return sbx__error(SBX_ERR_ARG, "sbx_rng_cursor_init: rng or cursor is NULL");
    if (position < 0) return sbx__error(SBX_ERR_ARG, "position %lld is negative", (long long)position);
    cur->key[0] = (uint32_t)rng->seed;
    cur->key[1] = (uint32_t)(rng->seed >> 32);
    cur->ctr[0] = 0;
    cur->ctr[1] = (uint32_t)position;
    cur->ctr[2] = (uint32_t)((uint64_t)position >> 32);
    cur->ctr[3] = rng->stream;
    cur->used = cur->have = 0;
    return SBX_OK;
}

/* SBX_RNG_BATCH blocks at once from counters c[0..3][b] (b = 0 .. SBX_RNG_BATCH - 1; not modified)
 * under key: the
 * same rounds as sbx_philox4x32_10, block b's words going to out[4b .. 4b+3]. Eight blocks per vector
 * of 64-bit lanes, each lane holding a 32-bit word, so that a lane's product is the full
 * 32 x 32 -> 64-bit product a round needs. */
typedef uint64_t lanes __attribute__((vector_size(64)));
#define LANE_BLOCKS ((int)(sizeof(lanes) / sizeof(uint64_t)))
typedef uint32_t counters[4][SBX_RNG_BATCH];

#ifdef HAVE_AVX512_PATH
/* With AVX-512 intrinsics: each product is one vpmuludq (the portable version compiles to a full
 * 64 x 64-bit multiply). The two groups of 8 blocks go through the rounds side by side, so that one
 * group's multiplies run while the other waits for its own. A lane's high half is left as it falls
 * (vpmuludq reads only the low halves, and a shift right by 32 brings down only the product's high
 * word): a round is two multiplies, two shifts and two three-way xors (vpternlogq). */
#define GROUPS (SBX_RNG_BATCH / 8)
#define AVX512_ROUNDS __attribute__((target("avx512f"), always_inline)) static inline
#define XOR3 0x96 /* vpternlogq's truth table for a ^ b ^ c */
AVX512_ROUNDS void rounds_avx512(__m512i *c0, __m512i *c1, __m512i *c2, __m512i *c3, const uint32_t key[2]) {
    const __m512i m0 = _mm512_set1_epi64(M0), m1 = _mm512_set1_epi64(M1);
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += W0;
            k1 += W1;
        }
        const __m512i key0 = _mm512_set1_epi64(k0), key1 = _mm512_set1_epi64(k1);
        for (int g = 0; g < GROUPS; g++) {
            const __m512i p0 = _mm512_mul_epu32(c0[g], m0), p1 = _mm512_mul_epu32(c2[g], m1);
            c0[g] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), c1[g], key0, XOR3);
            c1[g] = p1;
            c2[g] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), c3[g], key1, XOR3);
            c3[g] = p0;
        }
    }
}

/* The words after the rounds, block by block: lanes (w0 | w1 << 32) and (w2 | w3 << 32) (the low
 * halves of c0 and c2 blended with c1 and c3 shifted up), interleaved by two permutes per group. */
AVX512_ROUNDS void store_avx512(const __m512i *c0, const __m512i *c1, const __m512i *c2, const __m512i *c3,
                                uint32_t *out) {
    const __m512i first = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0);
    const __m512i second = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
    for (int g = 0; g < GROUPS; g++) {
        const __m512i a = _mm512_mask_blend_epi32(0xAAAA, c0[g], _mm512_slli_epi64(c1[g], 32));
        const __m512i b = _mm512_mask_blend_epi32(0xAAAA, c2[g], _mm512_slli_epi64(c3[g], 32));
        _mm512_storeu_si512((void *)(out + 32 * g), _mm512_permutex2var_epi64(a, first, b));
        _mm512_storeu_si512((void *)(out + 32 * g + 16), _mm512_permutex2var_epi64(a, second, b));
    }
}

/* The blocks of counters (ctr[0] + b, ctr[1], ctr[2], ctr[3]), b < SBX_RNG_BATCH: a cursor's next
 * batch, its counters made in the lanes. */
__attribute__((target("avx512f"))) static void batch_avx512(const uint32_t ctr[4], const uint32_t key[2],
                                                            uint32_t *out) {
    __m512i c0[GROUPS], c1[GROUPS], c2[GROUPS], c3[GROUPS];
    const __m512i low = _mm512_set1_epi64(0xFFFFFFFF), lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    for (int g = 0; g < GROUPS; g++) {
        const __m512i start = _mm512_set1_epi64((int64_t)ctr[0] + 8 * g);
        c0[g] = _mm512_and_si512(_mm512_add_epi64(start, lane), low); /* 32-bit counters wrap */
        c1[g] = _mm512_set1_epi64(ctr[1]);
        c2[g] = _mm512_set1_epi64(ctr[2]);
        c3[g] = _mm512_set1_epi64(ctr[3]);
    }
    rounds_avx512(c0, c1, c2, c3, key);
    store_avx512(c0, c1, c2, c3, out);
}

/* The same with AVX2 (CPUs without AVX-512): four blocks per vector, SBX_RNG_BATCH / 4 groups side by
 * side, each product one vpmuludq, the three-way xors two vpxor each. */
#define GROUPS2 (SBX_RNG_BATCH / 4)
#define AVX2_ROUNDS __attribute__((target("avx2"), always_inline)) static inline
/* The ten rounds' keys (k0, k1 of round j at keys[2 j], keys[2 j + 1]) as vectors, made once per call:
 * broadcast inside the rounds they went through the stack, and the 16 counter vectors spilled. */
AVX2_ROUNDS void round_keys_avx2(const uint32_t key[2], __m256i keys[20]) {
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += W0;
            k1 += W1;
        }
        keys[2 * round] = _mm256_set1_epi64x(k0);
        keys[2 * round + 1] = _mm256_set1_epi64x(k1);
    }
}

AVX2_ROUNDS void rounds_avx2(__m256i *c0, __m256i *c1, __m256i *c2, __m256i *c3, const __m256i keys[20]) {
    const __m256i m0 = _mm256_set1_epi64x(M0), m1 = _mm256_set1_epi64x(M1);
    _Pragma("GCC unroll 10") for (int round = 0; round < 10; round++)
        _Pragma("GCC unroll 4") for (int g = 0; g < GROUPS2; g++) {
            const __m256i p0 = _mm256_mul_epu32(c0[g], m0), p1 = _mm256_mul_epu32(c2[g], m1);
            c0[g] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1[g]), keys[2 * round]);
            c1[g] = p1;
            c2[g] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3[g]), keys[2 * round + 1]);
            c3[g] = p0;
        }
}

/* Block by block as store_avx512: (w0 | w1 << 32) and (w2 | w3 << 32) of blocks 0-3 interleaved by
 * unpacking within 128-bit halves, then joining halves. */
AVX2_ROUNDS void store_avx2(const __m256i *c0, const __m256i *c1, const __m256i *c2, const __m256i *c3,
                            uint32_t *out) {
    for (int g = 0; g < GROUPS2; g++) {
        const __m256i a = _mm256_blend_epi32(c0[g], _mm256_slli_epi64(c1[g], 32), 0xAA);
        const __m256i b = _mm256_blend_epi32(c2[g], _mm256_slli_epi64(c3[g], 32), 0xAA);
        const __m256i lo = _mm256_unpacklo_epi64(a, b), hi = _mm256_unpackhi_epi64(a, b); /* blocks 0, 2 / 1, 3 */
        _mm256_storeu_si256((void *)(out + 16 * g), _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256((void *)(out + 16 * g + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
    }
}

__attribute__((target("avx2"))) static void batch_avx2(const uint32_t ctr[4], const uint32_t key[2], uint32_t *out) {
    __m256i c0[GROUPS2], c1[GROUPS2], c2[GROUPS2], c3[GROUPS2];
    const __m256i low = _mm256_set1_epi64x(0xFFFFFFFF), lane = _mm256_set_epi64x(3, 2, 1, 0);
    for (int g = 0; g < GROUPS2; g++) {
        const __m256i start = _mm256_set1_epi64x((int64_t)ctr[0] + 4 * g);
        c0[g] = _mm256_and_si256(_mm256_add_epi64(start, lane), low);
        c1[g] = _mm256_set1_epi64x(ctr[1]);
        c2[g] = _mm256_set1_epi64x(ctr[2]);
        c3[g] = _mm256_set1_epi64x(ctr[3]);
    }
    __m256i keys[20];
    round_keys_avx2(key, keys);
    rounds_avx2(c0, c1, c2, c3, keys);
    store_avx2(c0, c1, c2, c3, out);
}

AVX2_ROUNDS void position_counters_avx2(const sbx_rng *rng, int64_t position, uint32_t block, __m256i *c0,
                                        __m256i *c1, __m256i *c2, __m256i *c3) {
    const __m256i low = _mm256_set1_epi64x(0xFFFFFFFF), lane = _mm256_set_epi64x(3, 2, 1, 0);
    for (int g = 0; g < GROUPS2; g++) {
        const __m256i p =
            _mm256_add_epi64(_mm256_set1_epi64x((long long)((uint64_t)position + 4u * (unsigned)g)), lane);
        c0[g] = _mm256_set1_epi64x(block);
        c1[g] = _mm256_and_si256(p, low);
        c2[g] = _mm256_srli_epi64(p, 32);
        c3[g] = _mm256_set1_epi64x(rng->stream);
    }
}

__attribute__((target("avx2"))) static void positions_avx2(const sbx_rng *rng, int64_t position, uint32_t block,
                                                            uint32_t *out) {
    __m256i c0[GROUPS2], c1[GROUPS2], c2[GROUPS2], c3[GROUPS2];
    const uint32_t key[2] = {(uint32_t)rng->seed, (uint32_t)(rng->seed >> 32)};
    position_counters_avx2(rng, position, block, c0, c1, c2, c3);
    __m256i keys[20];
    round_keys_avx2(key, keys);
    rounds_avx2(c0, c1, c2, c3, keys);
    store_avx2(c0, c1, c2, c3, out);
}

/* Word 0 of block 0 of count positions: c0's low halves, gathered to the low 128 bits. */
__attribute__((target("avx2"))) static void first_words_avx2(const sbx_rng *rng, int64_t position, int64_t count,
                                                              uint32_t *out) {
    const uint32_t key[2] = {(uint32_t)rng->seed, (uint32_t)(rng->seed >> 32)};
    const __m256i evens = _mm256_set_epi32(7, 5, 3, 1, 6, 4, 2, 0);
    __m256i keys[20];
    round_keys_avx2(key, keys);
    for (int64_t i = 0; i < count; i += SBX_RNG_BATCH) {
        __m256i c0[GROUPS2], c1[GROUPS2], c2[GROUPS2], c3[GROUPS2];
        position_counters_avx2(rng, position + i, 0, c0, c1, c2, c3);
        rounds_avx2(c0, c1, c2, c3, keys);
        for (int g = 0; g < GROUPS2; g++)
            _mm_storeu_si128((void *)(out + i + 4 * g),
                             _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(c0[g], evens)));
    }
}

/* The vector path this CPU takes: 2 AVX-512, 1 AVX2, 0 none (the portable code). */
static int vector_path(void) { return __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0; }
#endif

SBX_CLONES static void blocks_portable(counters c, const uint32_t key[2], uint32_t *out) {
    const lanes low = (lanes){0} + 0xFFFFFFFFu, m0 = (lanes){0} + M0, m1 = (lanes){0} + M1;
    for (int g = 0; g < SBX_RNG_BATCH; g += LANE_BLOCKS) {
        lanes c0, c1, c2, c3;
        for (int b = 0; b < LANE_BLOCKS; b++) {
            c0[b] = c[0][g + b];
            c1[b] = c[1][g + b];
            c2[b] = c[2][g + b];
            c3[b] = c[3][g + b];
        }
        uint32_t k0 = key[0], k1 = key[1];
        for (int round = 0; round < 10; round++) {
            if (round > 0) {
                k0 += W0;
                k1 += W1;
            }
            const lanes p0 = (c0 & low) * m0, p1 = (c2 & low) * m1;
            const lanes n0 = (p1 >> 32) ^ c1 ^ k0, n2 = (p0 >> 32) ^ c3 ^ k1;
            c0 = n0;
            c1 = p1 & low;
            c2 = n2;
            c3 = p0 & low;
        }
        for (int b = 0; b < LANE_BLOCKS; b++) {
            uint32_t *w = out + 4 * (g + b);
            w[0] = (uint32_t)c0[b];
            w[1] = (uint32_t)c1[b];
            w[2] = (uint32_t)c2[b];
            w[3] = (uint32_t)c3[b];
        }
    }
}

/* The next SBX_RNG_BATCH blocks of a cursor. */
static void refill_batch(sbx_rng_cursor *cur) {
#ifdef HAVE_AVX512_PATH
    const int vector = vector_path();
    if (vector == 2) batch_avx512(cur->ctr, cur->key, cur->words);
    if (vector == 1) batch_avx2(cur->ctr, cur->key, cur->words);
#else
    const int vector = 0;
#endif
    if (!vector) {
        counters c;
        for (int b = 0; b < SBX_RNG_BATCH; b++) {
            c[0][b] = cur->ctr[0] + (uint32_t)b;
            c[1][b] = cur->ctr[1];
            c[2][b] = cur->ctr[2];
            c[3][b] = cur->ctr[3];
        }
        blocks_portable(c, cur->key, cur->words);
    }
    cur->ctr[0] += SBX_RNG_BATCH; /* 2^32 blocks (2^34 words) per position before it wraps */
    cur->used = 0;
    cur->have = 4 * SBX_RNG_BATCH;
}

#ifdef HAVE_AVX512_PATH
/* The counters (block, position + b, its high word, stream) of positions position + b, b < SBX_RNG_BATCH. */
AVX512_ROUNDS void position_counters(const sbx_rng *rng, int64_t position, uint32_t block, __m512i *c0, __m512i *c1,
                                     __m512i *c2, __m512i *c3) {
    const __m512i low = _mm512_set1_epi64(0xFFFFFFFF), lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    for (int g = 0; g < GROUPS; g++) {
        const __m512i p = _mm512_add_epi64(_mm512_set1_epi64((long long)((uint64_t)position + 8u * (unsigned)g)), lane);
        c0[g] = _mm512_set1_epi64(block);
        c1[g] = _mm512_and_si512(p, low);
        c2[g] = _mm512_srli_epi64(p, 32);
        c3[g] = _mm512_set1_epi64(rng->stream);
    }
}

/* Block `block` of positions position + b, b < SBX_RNG_BATCH. */
__attribute__((target("avx512f"))) static void positions_avx512(const sbx_rng *rng, int64_t position, uint32_t block,
                                                                uint32_t *out) {
    __m512i c0[GROUPS], c1[GROUPS], c2[GROUPS], c3[GROUPS];
    const uint32_t key[2] = {(uint32_t)rng->seed, (uint32_t)(rng->seed >> 32)};
    position_counters(rng, position, block, c0, c1, c2, c3);
    rounds_avx512(c0, c1, c2, c3, key);
    store_avx512(c0, c1, c2, c3, out);
}

/* Word 0 of block 0 of count positions, SBX_RNG_BATCH at a time: c0's low halves, narrowed by vpmovqd. */
__attribute__((target("avx512f"))) static void first_words_avx512(const sbx_rng *rng, int64_t position, int64_t count,
                                                                  uint32_t *out) {
    const uint32_t key[2] = {(uint32_t)rng->seed, (uint32_t)(rng->seed >> 32)};
    for (int64_t i = 0; i < count; i += SBX_RNG_BATCH) {
        __m512i c0[GROUPS], c1[GROUPS], c2[GROUPS], c3[GROUPS];
        position_counters(rng, position + i, 0, c0, c1, c2, c3);
        rounds_avx512(c0, c1, c2, c3, key);
        for (int g = 0; g < GROUPS; g++) _mm256_storeu_si256((void *)(out + i + 8 * g), _mm512_cvtepi64_epi32(c0[g]));
    }
}
#endif

void sbx__rng_blocks(const sbx_rng *rng, int64_t position, uint32_t block, uint32_t *words) {
#ifdef HAVE_AVX512_PATH
    const int vector = vector_path();
    if (vector) {
        (vector == 2 ? positions_avx512 : positions_avx2)(rng, position, block, words);
        return;
    }
#endif
    counters c;
    const uint32_t key[2] = {(uint32_t)rng->seed, (uint32_t)(rng->seed >> 32)};
    for (int b = 0; b < SBX_RNG_BATCH; b++) {
        const uint64_t p = (uint64_t)position + (uint64_t)b;
        c[0][b] = block;
        c[1][b] = (uint32_t)p;
        c[2][b] = (uint32_t)(p >> 32);
        c[3][b] = rng->stream;
    }
    blocks_portable(c, key, words);
}

void sbx__rng_first_words(const sbx_rng *rng, int64_t position, int64_t count, uint32_t *words) {
#ifdef HAVE_AVX512_PATH
    const int vector = vector_path();
    if (vector) {
        (vector == 2 ? first_words_avx512 : first_words_avx2)(rng, position, count, words);
        return;
    }
#endif
    uint32_t block[4 * SBX_RNG_BATCH];
    for (int64_t i = 0; i < count; i += SBX_RNG_BATCH) {
        sbx__rng_blocks(rng, position + i, 0, block);
        for (int b = 0; b < SBX_RNG_BATCH; b++) words[i + b] = block[4 * b];
    }
}

void sbx__rng_cursors(const sbx_rng *rng, int64_t position, int count, int blocks_each, sbx_rng_cursor *cur) {
    uint32_t words[2][4 * SBX_RNG_BATCH];
    for (int k = 0; k < blocks_each; k++) sbx__rng_blocks(rng, position, (uint32_t)k, words[k]);
    for (int b = 0; b < count; b++) {
        sbx_rng_cursor_init(rng, position + b, &cur[b]);
        for (int k = 0; k < blocks_each; k++) memcpy(cur[b].words + 4 * k, words[k] + 4 * b, 4 * sizeof(uint32_t));
        cur[b].ctr[0] = (uint32_t)blocks_each;
        cur[b].have = 4 * blocks_each;
    }
}

/* Blocks are made as a position consumes them: the first alone, the next two one by one (most
 * positions of a sparse matrix need one to three doubles), then 16 at a time. The words are the
 * same whatever the schedule: word k is always word k % 4 of block k / 4. */
void sbx__rng_refill(sbx_rng_cursor *cur) {
    if (cur->ctr[0] < 3) {
        sbx_philox4x32_10(cur->ctr, cur->key, cur->words);
        cur->ctr[0]++;
        cur->used = 0;
        cur->have = 4;
    } else {
        refill_batch(cur);
    }
}

uint32_t sbx_rng_u32(sbx_rng_cursor *cur) { return sbx__rng_u32(cur); }

uint64_t sbx_rng_u64(sbx_rng_cursor *cur) {
    const uint64_t lo = sbx__rng_u32(cur);
    return lo | (uint64_t)sbx__rng_u32(cur) << 32;
}

double sbx_rng_double(sbx_rng_cursor *cur) { return sbx__rng_double(cur); }
