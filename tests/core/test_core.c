/* Tests of the core module: status names, errors, dtypes, checked sizes, dense arrays, threads. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/internal.h"
#include "sparsebox/core.h"

/* The status, and a message holding `needle`. */
static void expect_error(sbx_status got, sbx_status want, const char *needle) {
    assert_int_equal(got, want);
    if (!strstr(sbx_last_error(), needle)) fail_msg("message '%s' lacks '%s'", sbx_last_error(), needle);
}

static void test_status_names(void **state) {
    (void)state;
    const char *seen[7];
    for (int s = 0; s <= SBX_ERR_UNSUPPORTED; s++) {
        seen[s] = sbx_status_str((sbx_status)s);
        assert_non_null(seen[s]);
        for (int t = 0; t < s; t++) assert_string_not_equal(seen[s], seen[t]);
    }
    assert_string_equal(sbx_status_str(SBX_OK), "ok");
    assert_string_equal(sbx_status_str((sbx_status)99), "unknown status");
    /* Pinned numbers. */
    assert_int_equal(SBX_ERR_ARG, 1);
    assert_int_equal(SBX_ERR_UNSUPPORTED, 6);
}

static void test_dtypes(void **state) {
    (void)state;
    static const size_t sizes[SBX_NUM_DTYPES] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 1};
    for (int t = 0; t < SBX_NUM_DTYPES; t++) {
        sbx_dtype back;
        assert_int_equal(sbx_dtype_size((sbx_dtype)t), sizes[t]);
        assert_int_equal(sbx_dtype_parse(sbx_dtype_name((sbx_dtype)t), &back), SBX_OK);
        assert_int_equal(back, t);
    }
    sbx_dtype d;
    assert_int_equal(sbx_dtype_parse("double", &d), SBX_OK);
    assert_int_equal(d, SBX_FLOAT64);
    assert_int_equal(sbx_dtype_size((sbx_dtype)11), 0);
    assert_string_equal(sbx_dtype_name((sbx_dtype)-1), "invalid");
}

static void test_dtype_parse_errors(void **state) {
    (void)state;
    sbx_dtype d = SBX_INT8;
    expect_error(sbx_dtype_parse("float16", &d), SBX_ERR_ARG, "'float16'");
    expect_error(sbx_dtype_parse("", &d), SBX_ERR_ARG, "unknown");
    expect_error(sbx_dtype_parse("Float32", &d), SBX_ERR_ARG, "Float32");
    expect_error(sbx_dtype_parse(NULL, &d), SBX_ERR_ARG, "NULL");
    expect_error(sbx_dtype_parse("int8", NULL), SBX_ERR_ARG, "NULL");
    assert_int_equal(d, SBX_INT8); /* untouched */
}

static void test_checked_arithmetic(void **state) {
    (void)state;
    int64_t r = 7;
    assert_int_equal(sbx_mul_i64(3037000499, 3037000499, &r), SBX_OK);
    assert_true(r == 3037000499LL * 3037000499LL);
    expect_error(sbx_mul_i64(3037000500, 3037000500, &r), SBX_ERR_OVERFLOW, "3037000500");
    expect_error(sbx_mul_i64(INT64_MIN, -1, &r), SBX_ERR_OVERFLOW, "overflows");
    expect_error(sbx_add_i64(INT64_MAX, 1, &r), SBX_ERR_OVERFLOW, "overflows");
    assert_int_equal(sbx_add_i64(INT64_MAX, -1, &r), SBX_OK);
    assert_true(r == INT64_MAX - 1);
}

static void test_shape_numel(void **state) {
    (void)state;
    int64_t n = -1, s3[3] = {2, 3, 4}, big[3] = {1LL << 32, 1LL << 32, 1}, zero[3] = {1LL << 40, 1LL << 40, 0};
    int64_t neg[2] = {3, -2};
    assert_int_equal(sbx_shape_numel(3, s3, &n), SBX_OK);
    assert_int_equal(n, 24);
    assert_int_equal(sbx_shape_numel(0, NULL, &n), SBX_OK);
    assert_int_equal(n, 1);
    assert_int_equal(sbx_shape_numel(3, zero, &n), SBX_OK); /* empty, whatever the other extents */
    assert_int_equal(n, 0);
    expect_error(sbx_shape_numel(3, big, &n), SBX_ERR_OVERFLOW, "overflows int64");
    expect_error(sbx_shape_numel(2, neg, &n), SBX_ERR_ARG, "shape[1] = -2");
    expect_error(sbx_shape_numel(9, s3, &n), SBX_ERR_ARG, "ndim 9");
    expect_error(sbx_shape_numel(-1, s3, &n), SBX_ERR_ARG, "ndim -1");
    expect_error(sbx_shape_numel(2, NULL, &n), SBX_ERR_ARG, "NULL");
}

static void test_array_create_copy(void **state) {
    (void)state;
    int64_t shape[3] = {2, 3, 5};
    sbx_array *a = NULL, *b = NULL;
    assert_int_equal(sbx_array_create(SBX_INT16, 3, shape, &a), SBX_OK);
    assert_int_equal(sbx_array_numel(a), 30);
    for (int i = 0; i < 30; i++) assert_int_equal(((int16_t *)a->data)[i], 0); /* zero-filled */
    for (int i = 0; i < 30; i++) ((int16_t *)a->data)[i] = (int16_t)(i * 7 - 100);
    assert_int_equal(sbx_array_copy(a, &b), SBX_OK);
    assert_int_equal(b->ndim, 3);
    assert_memory_equal(b->shape, a->shape, sizeof a->shape);
    assert_memory_equal(b->data, a->data, 30 * sizeof(int16_t));
    assert_ptr_not_equal(b->data, a->data);
    sbx_array_free(a);
    sbx_array_free(b);
    sbx_array_free(NULL);
    /* Empty and 0-d arrays. */
    int64_t empty[2] = {0, 4};
    assert_int_equal(sbx_array_create(SBX_FLOAT32, 2, empty, &a), SBX_OK);
    assert_int_equal(sbx_array_numel(a), 0);
    sbx_array_free(a);
    assert_int_equal(sbx_array_create(SBX_FLOAT64, 0, NULL, &a), SBX_OK);
    assert_int_equal(sbx_array_numel(a), 1);
    sbx_array_free(a);
}

static void test_array_create_errors(void **state) {
    (void)state;
    sbx_array *a = NULL;
    int64_t neg[2] = {2, -1}, huge[2] = {INT64_MAX / 2, 3}, big[1] = {INT64_MAX / 4};
    expect_error(sbx_array_create(SBX_FLOAT32, 2, neg, &a), SBX_ERR_ARG, "negative");
    expect_error(sbx_array_create(SBX_FLOAT32, 2, huge, &a), SBX_ERR_OVERFLOW, "overflows");
    expect_error(sbx_array_create(SBX_FLOAT64, 1, big, &a), SBX_ERR_OVERFLOW, "bytes");
    expect_error(sbx_array_create((sbx_dtype)42, 1, big, &a), SBX_ERR_ARG, "dtype 42");
    expect_error(sbx_array_create(SBX_FLOAT32, 1, big, NULL), SBX_ERR_ARG, "NULL");
    assert_null(a);
}

/* A one-element array of dtype holding the bytes of *value. */
static sbx_array *scalar(sbx_dtype dtype, const void *value) {
    sbx_array *a;
    int64_t one = 1;
    assert_int_equal(sbx_array_create(dtype, 1, &one, &a), SBX_OK);
    memcpy(a->data, value, sbx_dtype_size(dtype));
    return a;
}

static void test_cast_exact(void **state) {
    (void)state;
    double d = -3.0;
    sbx_array *a = scalar(SBX_FLOAT64, &d), *b;
    assert_int_equal(sbx_array_cast(a, SBX_INT8, &b), SBX_OK);
    assert_int_equal(((int8_t *)b->data)[0], -3);
    sbx_array_free(b);
    assert_int_equal(sbx_array_cast(a, SBX_BOOL, &b), SBX_OK);
    assert_int_equal(((uint8_t *)b->data)[0], 1);
    sbx_array_free(b);
    sbx_array_free(a);
    int64_t big = INT64_MAX;
    a = scalar(SBX_INT64, &big);
    assert_int_equal(sbx_array_cast(a, SBX_UINT64, &b), SBX_OK);
    assert_true(((uint64_t *)b->data)[0] == (uint64_t)INT64_MAX);
    sbx_array_free(b);
    sbx_array_free(a);
    uint64_t u = UINT64_MAX;
    a = scalar(SBX_UINT64, &u);
    assert_int_equal(sbx_array_cast(a, SBX_FLOAT32, &b), SBX_OK); /* rounds, as C does */
    assert_true(((float *)b->data)[0] == 18446744073709551616.0f);
    sbx_array_free(b);
    sbx_array_free(a);
}

/* Casting `value` of `from` to `to` fails, naming the value. */
static void cast_fails(sbx_dtype from, const void *value, sbx_dtype to, const char *needle) {
    sbx_array *a = scalar(from, value), *b = NULL;
    expect_error(sbx_array_cast(a, to, &b), SBX_ERR_ARG, needle);
    assert_null(b);
    sbx_array_free(a);
}

static void test_cast_refuses_truncation(void **state) {
    (void)state;
    double half = 1.5, nan = NAN, big = 1e39, two63 = 9223372036854775808.0, neg = -1.0;
    int32_t i300 = 300, ineg = -1;
    uint64_t u = (uint64_t)INT64_MAX + 1;
    cast_fails(SBX_FLOAT64, &half, SBX_INT32, "1.5");
    cast_fails(SBX_FLOAT64, &nan, SBX_INT64, "nan");
    cast_fails(SBX_FLOAT64, &big, SBX_FLOAT32, "float32");
    cast_fails(SBX_FLOAT64, &two63, SBX_INT64, "9.2233720368547758e+18");
    cast_fails(SBX_FLOAT64, &neg, SBX_UINT8, "-1");
    cast_fails(SBX_INT32, &i300, SBX_UINT8, "300");
    cast_fails(SBX_INT32, &i300, SBX_INT8, "element 0");
    cast_fails(SBX_INT32, &ineg, SBX_UINT64, "-1");
    cast_fails(SBX_UINT64, &u, SBX_INT64, "9223372036854775808");
}

static void test_allocation_failures(void **state) {
    (void)state;
    int64_t shape[2] = {4, 4};
    sbx_array *a = NULL;
    for (int64_t k = 1; k <= 2; k++) {
        sbx__alloc_fail_at(k);
        expect_error(sbx_array_create(SBX_FLOAT64, 2, shape, &a), SBX_ERR_NOMEM, "cannot allocate");
        assert_null(a);
    }
    sbx__alloc_fail_at(3);
    assert_int_equal(sbx_array_create(SBX_FLOAT64, 2, shape, &a), SBX_OK);
    sbx__alloc_fail_at(0);
    sbx_array *b = NULL;
    sbx__alloc_fail_at(2);
    expect_error(sbx_array_copy(a, &b), SBX_ERR_NOMEM, "array data");
    sbx__alloc_fail_at(0);
    assert_null(b);
    sbx_array_free(a);
}

static void test_threads(void **state) {
    (void)state;
    sbx_set_num_threads(3);
    assert_int_equal(sbx_get_num_threads(), 3);
    sbx_set_num_threads(0);
    setenv("SBX_NUM_THREADS", "5", 1);
    assert_int_equal(sbx_get_num_threads(), 5);
    setenv("SBX_NUM_THREADS", "zero", 1); /* ignored: falls back to OpenMP's default */
    assert_true(sbx_get_num_threads() >= 1);
    unsetenv("SBX_NUM_THREADS");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names),        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_dtype_parse_errors),  cmocka_unit_test(test_checked_arithmetic),
        cmocka_unit_test(test_shape_numel),         cmocka_unit_test(test_array_create_copy),
        cmocka_unit_test(test_array_create_errors), cmocka_unit_test(test_cast_exact),
        cmocka_unit_test(test_cast_refuses_truncation), cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
