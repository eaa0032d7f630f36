/* check_scale.c — tests for scale.c: errors, sizes, arenas, random numbers. */
#include <math.h>
#include <string.h>

#include "check_util.h"

START_TEST(test_fail_formats_sentence)
{
    sc_err err;
    sc_status s = sc_fail(&err, SC_EFORMAT, "%s: shape (%d,%d) but expected (%d,%d)", "ln.npy", 4, 8, 4, 16);
    ck_assert_int_eq(s, SC_EFORMAT);
    ck_assert_str_eq(err.msg, "ln.npy: shape (4,8) but expected (4,16)");
    ck_assert_int_eq(sc_fail(NULL, SC_EIO, "ignored"), SC_EIO);
    ck_assert_str_eq(sc_strerror(SC_OK), "success");
    ck_assert_str_eq(sc_strerror(SC_ESHAPE), "shape mismatch");
}
END_TEST

START_TEST(test_size_overflow)
{
    size_t r;
    ck_assert(sc_mul_ok(3, 5, &r) && r == 15);
    ck_assert(!sc_mul_ok(SIZE_MAX / 2 + 1, 2, &r));
    ck_assert(sc_mul_ok(0, SIZE_MAX, &r) && r == 0);
    ck_assert(sc_add_ok(SIZE_MAX - 1, 1, &r) && r == SIZE_MAX);
    ck_assert(!sc_add_ok(SIZE_MAX, 1, &r));
}
END_TEST

START_TEST(test_arena_alignment_and_rewind)
{
    sc_arena a;
    sc_arena_init(&a, "test", 1024, 0);
    char *p1 = sc_arena_alloc(&a, 10);
    ck_assert_ptr_nonnull(p1);
    ck_assert_uint_eq((uintptr_t)p1 % 64, 0);
    sc_arena_mark m = sc_arena_get_mark(&a);
    char *p2 = sc_arena_alloc(&a, 100);
    ck_assert_uint_eq((uintptr_t)p2 % 64, 0);
    /* Larger than a block: gets a block of its own. */
    char *big = sc_arena_alloc(&a, 5000);
    ck_assert_ptr_nonnull(big);
    memset(big, 7, 5000);
    size_t reserved = a.reserved;
    sc_arena_rewind(&a, m);
    /* After a rewind the same sequence reuses the blocks it already has. */
    char *q2 = sc_arena_alloc(&a, 100);
    ck_assert_ptr_eq(q2, p2);
    char *big2 = sc_arena_alloc(&a, 5000);
    ck_assert_ptr_nonnull(big2);
    ck_assert_uint_eq(a.reserved, reserved);
    ck_assert_uint_ge(a.peak, 5000);
    sc_arena_reset(&a);
    ck_assert_ptr_eq(sc_arena_alloc(&a, 10), p1);
    sc_arena_free(&a);
}
END_TEST

START_TEST(test_arena_limit)
{
    sc_arena a;
    sc_arena_init(&a, "capped", 4096, 10000);
    ck_assert_ptr_nonnull(sc_arena_alloc(&a, 4000));
    ck_assert_ptr_null(sc_arena_alloc(&a, 8000));
    ck_assert_ptr_null(sc_arena_alloc(&a, SIZE_MAX - 8));
    ck_assert_ptr_null(sc_arena_calloc(&a, SIZE_MAX / 2, 4));
    sc_arena_free(&a);
}
END_TEST

START_TEST(test_rng_properties)
{
    sc_rng r1, r2;
    sc_rng_seed(&r1, 42);
    sc_rng_seed(&r2, 42);
    for (int i = 0; i < 100; i++) ck_assert_uint_eq(sc_rng_u32(&r1), sc_rng_u32(&r2));
    sc_rng_seed(&r2, 43);
    ck_assert_uint_ne(sc_rng_u32(&r1), sc_rng_u32(&r2));
    /* Moments of 200 000 draws: mean 0.5 / var 1/12 for uniform, 0 / 1
     * for normal, each within about 5 standard errors. */
    double su = 0, su2 = 0, sn = 0, sn2 = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double u = sc_rng_uniform(&r1);
        ck_assert(u >= 0 && u < 1);
        su += u;
        su2 += u * u;
        double z = sc_rng_normal(&r1);
        sn += z;
        sn2 += z * z;
    }
    ck_assert_double_eq_tol(su / n, 0.5, 0.004);
    ck_assert_double_eq_tol(su2 / n - (su / n) * (su / n), 1.0 / 12, 0.002);
    ck_assert_double_eq_tol(sn / n, 0.0, 0.012);
    ck_assert_double_eq_tol(sn2 / n, 1.0, 0.02);
    int items[50], seen[50] = {0};
    for (int i = 0; i < 50; i++) items[i] = i;
    sc_rng_shuffle(&r1, items, 50);
    for (int i = 0; i < 50; i++) seen[items[i]]++;
    for (int i = 0; i < 50; i++) ck_assert_int_eq(seen[i], 1);
    for (int i = 0; i < 1000; i++) ck_assert_uint_lt(sc_rng_below(&r1, 7), 7);
}
END_TEST

Suite *suite_scale(void)
{
    Suite *s = suite_create("scale");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_fail_formats_sentence);
    tcase_add_test(tc, test_size_overflow);
    tcase_add_test(tc, test_arena_alignment_and_rewind);
    tcase_add_test(tc, test_arena_limit);
    tcase_add_test(tc, test_rng_properties);
    suite_add_tcase(s, tc);
    return s;
}
