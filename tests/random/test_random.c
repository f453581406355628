/* Tests of the random generator: Philox4x32-10's published known answers and the cursor layout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sparsebox.h"

/* The known-answer vectors for philox4x32 with 10 rounds published with Random123 (kat_vectors):
 * counter, key, expected output. */
static const struct {
    uint32_t ctr[4], key[2], out[4];
} kat[] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

static void test_philox_known_answers(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        sbx_philox4x32_10(kat[i].ctr, kat[i].key, out);
        assert_memory_equal(out, kat[i].out, sizeof out);
    }
}

/* Value k of position p is word k % 4 of the block (k / 4, p, p >> 32, stream) under the seed. */
static void test_cursor_layout(void **state) {
    (void)state;
    sbx_rng rng;
    sbx_rng_cursor cur;
    const uint64_t seed = 0x0123456789abcdefULL;
    const int64_t position = 0x100000002LL;
    sbx_rng_init(&rng, seed, 7);
    assert_int_equal(sbx_rng_cursor_init(&rng, position, &cur), SBX_OK);
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)}, want[8];
    uint32_t c0[4] = {0, 2, 1, 7}, c1[4] = {1, 2, 1, 7};
    sbx_philox4x32_10(c0, key, want);
    sbx_philox4x32_10(c1, key, want + 4);
    for (int k = 0; k < 6; k++) assert_int_equal(sbx_rng_u32(&cur), want[k]);
    assert_true(sbx_rng_u64(&cur) == ((uint64_t)want[6] | (uint64_t)want[7] << 32));
    /* Doubles: 53 bits from one 64-bit word, in [0, 1). */
    assert_int_equal(sbx_rng_cursor_init(&rng, 0, &cur), SBX_OK);
    for (int i = 0; i < 1000; i++) {
        double u = sbx_rng_double(&cur);
        assert_true(u >= 0.0 && u < 1.0);
    }
    /* The same (seed, stream, position) gives the same values; another stream does not. */
    sbx_rng other;
    sbx_rng_cursor a, b;
    sbx_rng_init(&other, seed, 8);
    assert_int_equal(sbx_rng_cursor_init(&rng, 5, &a), SBX_OK);
    assert_int_equal(sbx_rng_cursor_init(&other, 5, &b), SBX_OK);
    assert_true(sbx_rng_u64(&a) != sbx_rng_u64(&b));
    assert_int_equal(sbx_rng_cursor_init(&rng, -1, &a), SBX_ERR_ARG);
    assert_non_null(strstr(sbx_last_error(), "position -1"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_cursor_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
