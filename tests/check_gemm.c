/* check_gemm.c — tests for tensor.c sections 3 (threads) and 4 (GEMM).
 *
 * The reference loop is checked first against products worked out by
 * hand; the packed kernels are then checked against it on awkward shapes,
 * every transpose, both accumulate modes, padded leading dimensions, each
 * kernel this CPU runs (sc__gemm_force) and 1–4 threads.
 *
 * Tolerance. Both sides sum K products in float, in different orders (and
 * the AVX2 kernel fuses multiply and add), so each may be off from the
 * exact sum by about K·eps·Σ_k |a_ik·b_kj| (the standard bound for
 * recursive summation). An element passes when
 *   |got − ref| ≤ 2·(K + 2)·eps·(Σ_k |a_ik·b_kj| + |C_ij before|),
 * the Σ computed in double. That bound is tight enough to catch one
 * product lost or counted twice, or a wrong transpose.
 */
#define _POSIX_C_SOURCE 200809L
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"

/* ---- helpers -------------------------------------------------------------- */

/* One random problem with the given leading-dimension padding. */
typedef struct {
    int trans_a, trans_b;
    int64_t M, N, K, lda, ldb, ldc;
    float *A, *B, *C0;   /* C0: C before the product */
} problem;

static problem problem_new(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                           int64_t pad, uint64_t seed)
{
    problem p = {trans_a, trans_b, M, N, K, 0, 0, 0, NULL, NULL, NULL};
    int64_t a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
    int64_t b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    p.lda = a_cols + pad;
    p.ldb = b_cols + 2 * pad;
    p.ldc = N + pad;
    /* +1 keeps malloc(0) out of the picture for empty operands */
    p.A = malloc((size_t)(a_rows * p.lda + 1) * sizeof(float));
    p.B = malloc((size_t)(b_rows * p.ldb + 1) * sizeof(float));
    p.C0 = malloc((size_t)(M * p.ldc + 1) * sizeof(float));
    ck_assert(p.A && p.B && p.C0);
    sc_fill_normal(p.A, a_rows * p.lda, seed, 1.0f);
    sc_fill_normal(p.B, b_rows * p.ldb, seed + 1, 1.0f);
    sc_fill_normal(p.C0, M * p.ldc, seed + 2, 1.0f);
    return p;
}

static void problem_free(problem *p)
{
    free(p->A);
    free(p->B);
    free(p->C0);
}

static float *c_copy(const problem *p)
{
    float *c = malloc((size_t)(p->M * p->ldc + 1) * sizeof(float));
    ck_assert_ptr_nonnull(c);
    memcpy(c, p->C0, (size_t)(p->M * p->ldc) * sizeof(float));
    return c;
}

static float *run_gemm(const problem *p, int accumulate)
{
    float *c = c_copy(p);
    sc_gemm(p->trans_a, p->trans_b, p->M, p->N, p->K, p->A, p->lda, p->B, p->ldb,
            c, p->ldc, accumulate);
    return c;
}

static double a_at(const problem *p, int64_t i, int64_t k)
{
    return p->trans_a ? p->A[k * p->lda + i] : p->A[i * p->lda + k];
}

static double b_at(const problem *p, int64_t k, int64_t j)
{
    return p->trans_b ? p->B[j * p->ldb + k] : p->B[k * p->ldb + j];
}

/* got against ref within the K·eps bound above; the padding columns of C
 * (j ≥ N) must be untouched. Check asserts only on failure: each passing
 * ck_assert is logged by Check, and there are millions of elements. */
static void check_product(const char *what, const problem *p, int accumulate,
                          const float *got, const float *ref)
{
    double gamma = 2.0 * (double)(p->K + 2) * FLT_EPSILON;
    for (int64_t i = 0; i < p->M; i++) {
        for (int64_t j = 0; j < p->N; j++) {
            double mag = accumulate ? fabs(p->C0[i * p->ldc + j]) : 0.0;
            for (int64_t k = 0; k < p->K; k++) mag += fabs(a_at(p, i, k) * b_at(p, k, j));
            double g = got[i * p->ldc + j], r = ref[i * p->ldc + j];
            if (!(fabs(g - r) <= gamma * mag))
                ck_abort_msg("%s: %s %dx%d M=%lld N=%lld K=%lld acc=%d: C[%lld][%lld] = %.9g, "
                             "reference %.9g, allowed error %.3g", what, sc_gemm_kernel_name(),
                             p->trans_a, p->trans_b, (long long)p->M, (long long)p->N,
                             (long long)p->K, accumulate, (long long)i, (long long)j, g, r,
                             gamma * mag);
        }
        for (int64_t j = p->N; j < p->ldc; j++)
            if (memcmp(&got[i * p->ldc + j], &p->C0[i * p->ldc + j], sizeof(float)) != 0)
                ck_abort_msg("%s: padding C[%lld][%lld] was written", what, (long long)i, (long long)j);
    }
}

/* How many kernels this CPU runs (levels 0 .. n-1 of sc__gemm_force). */
static int n_levels(void)
{
    int top = sc__gemm_force(99);
    sc__gemm_force(-1);
    return top + 1;
}

/* ---- the reference against hand-computed products --------------------------- */

/*   op(A) = | 1 2 3 |   op(B) = |  1 0 |   op(A)·op(B) = |  6  7 |
 *           | 4 5 6 |           |  1 2 |                 | 15 16 |
 *                               |  1 1 |
 * Each operand stored plain or transposed, with a padding column (9). */
START_TEST(test_gemm_ref_by_hand)
{
    const float a_plain[2 * 4] = {1, 2, 3, 9, 4, 5, 6, 9};          /* (2, 3), lda 4 */
    const float a_trans[3 * 3] = {1, 4, 9, 2, 5, 9, 3, 6, 9};       /* (3, 2), lda 3 */
    const float b_plain[3 * 3] = {1, 0, 9, 1, 2, 9, 1, 1, 9};       /* (3, 2), ldb 3 */
    const float b_trans[2 * 4] = {1, 1, 1, 9, 0, 2, 1, 9};          /* (2, 3), ldb 4 */
    const float want[4] = {6, 7, 15, 16};
    for (int ta = 0; ta <= 1; ta++)
        for (int tb = 0; tb <= 1; tb++) {
            float c[4] = {100, 200, 300, 400};
            sc_gemm_ref(ta, tb, 2, 2, 3, ta ? a_trans : a_plain, ta ? 3 : 4,
                        tb ? b_trans : b_plain, tb ? 4 : 3, c, 2, 0);
            for (int i = 0; i < 4; i++) ck_assert_float_eq(c[i], want[i]);
            sc_gemm_ref(ta, tb, 2, 2, 3, ta ? a_trans : a_plain, ta ? 3 : 4,
                        tb ? b_trans : b_plain, tb ? 4 : 3, c, 2, 1);
            for (int i = 0; i < 4; i++) ck_assert_float_eq(c[i], 2 * want[i]);
            /* and the fast path on the same tiny problem */
            float d[4] = {1, 1, 1, 1};
            sc_gemm(ta, tb, 2, 2, 3, ta ? a_trans : a_plain, ta ? 3 : 4,
                    tb ? b_trans : b_plain, tb ? 4 : 3, d, 2, 1);
            for (int i = 0; i < 4; i++) ck_assert_float_eq(d[i], want[i] + 1);
        }
}
END_TEST

/* ---- the fast path against the reference ------------------------------------- */

/* (M, N, K): ones, primes, the small-product path, shapes that cross each
 * block size (mr 6 / nr 16, mc 96, kc 512, nc 1024) with a remainder. */
static const int64_t shapes[][3] = {
    {1, 1, 1},    {1, 37, 1},  {37, 1, 1},   {1, 1, 37},   {7, 7, 7},
    {33, 33, 33}, {1, 257, 7}, {257, 1, 33}, {2, 3, 600},  {65, 70, 66},
    {97, 33, 7},  {31, 17, 1100}, {257, 1030, 77},
};

START_TEST(test_gemm_matches_reference)
{
    int levels = n_levels();
    for (int level = 0; level < levels; level++) {
        sc__gemm_force(level);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int t = 0; t < 4; t++) {
                int ta = t & 1, tb = t >> 1;
                problem p = problem_new(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2],
                                        (int64_t)(s % 3) * 3, 100 + s);
                for (int accumulate = 0; accumulate <= 1; accumulate++) {
                    float *ref = c_copy(&p);
                    sc_gemm_ref(ta, tb, p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, ref, p.ldc, accumulate);
                    float *got = run_gemm(&p, accumulate);
                    check_product("sc_gemm vs sc_gemm_ref", &p, accumulate, got, ref);
                    free(ref);
                    free(got);
                }
                problem_free(&p);
            }
    }
    sc__gemm_force(-1);
}
END_TEST

/* K = 0 is an empty sum: C = 0, or C unchanged when accumulating. M = 0 or
 * N = 0 touch nothing. */
START_TEST(test_gemm_empty)
{
    float c[6] = {1, 2, 3, 4, 5, 6};
    const float dummy[1] = {7};
    sc_gemm(0, 0, 2, 3, 0, dummy, 1, dummy, 3, c, 3, 1);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(c[i], (float)(i + 1));
    sc_gemm(1, 1, 2, 3, 0, dummy, 2, dummy, 1, c, 3, 0);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(c[i], 0.0f);
    c[0] = 5;
    sc_gemm(0, 0, 0, 3, 4, dummy, 4, dummy, 3, c, 3, 0);
    sc_gemm(0, 0, 2, 0, 4, dummy, 4, dummy, 1, c, 1, 0);
    ck_assert_float_eq(c[0], 5.0f);
}
END_TEST

/* Threads split C, never K, so every element is summed in the same order:
 * the bits must not change with the thread count. */
START_TEST(test_gemm_threads_bit_identical)
{
    int levels = n_levels();
    for (int level = 0; level < levels; level++) {
        sc__gemm_force(level);
        for (int t = 0; t < 4; t++) {
            problem p = problem_new(t & 1, t >> 1, 203, 530, 600, 1, 7 + t);
            sc_set_threads(1);
            float *one = run_gemm(&p, 1);
            float *ref = c_copy(&p);
            sc_gemm_ref(p.trans_a, p.trans_b, p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, ref, p.ldc, 1);
            check_product("one thread vs reference", &p, 1, one, ref);
            for (int threads = 2; threads <= 4; threads++) {
                sc_set_threads(threads);
                float *many = run_gemm(&p, 1);
                ck_assert_msg(memcmp(one, many, (size_t)(p.M * p.ldc) * sizeof(float)) == 0,
                              "%s %dx%d: %d threads differ from 1 thread", sc_gemm_kernel_name(),
                              p.trans_a, p.trans_b, threads);
                free(many);
            }
            free(one);
            free(ref);
            problem_free(&p);
        }
    }
    sc_set_threads(0);
    sc__gemm_force(-1);
}
END_TEST

/* Products that fit in L2 skip packing (A and B read where they are
 * stored, the product turned around to Cᵀ = op(B)ᵀ op(A)ᵀ when op(B) is
 * stored transposed): the bits must be those of the packed path, for each
 * transpose, partial tiles, leading dimensions a multiple of 1 KiB (packed
 * after all) and 1–2 threads. The first shapes are those of adapter
 * training (batch 64 or 5 prompts, width 768, rank 192). */
START_TEST(test_gemm_direct_same_bits)
{
    static const int64_t shapes_direct[][4] = {
        /* M, N, K, padding */
        {64, 192, 768, 0}, {64, 768, 192, 0}, {768, 192, 64, 0}, {5, 192, 768, 0}, {69, 64, 768, 0},
        {37, 45, 600, 3},  {7, 100, 33, 1},   {100, 7, 33, 2},   {16, 16, 16, 0},
    };
    int levels = n_levels();
    for (int level = 0; level < levels; level++) {
        sc__gemm_force(level);
        for (size_t s = 0; s < sizeof shapes_direct / sizeof shapes_direct[0]; s++)
            for (int t = 0; t < 4; t++) {
                const int64_t *sh = shapes_direct[s];
                problem p = problem_new(t & 1, t >> 1, sh[0], sh[1], sh[2], sh[3], 300 + s);
                for (int accumulate = 0; accumulate <= 1; accumulate++) {
                    sc__gemm_direct(0);
                    float *packed = run_gemm(&p, accumulate);
                    sc__gemm_direct(1);
                    for (int threads = 1; threads <= 2; threads++) {
                        sc_set_threads(threads);
                        float *direct = run_gemm(&p, accumulate);
                        if (threads == 1) {
                            float *ref = c_copy(&p);
                            sc_gemm_ref(p.trans_a, p.trans_b, p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, ref, p.ldc,
                                        accumulate);
                            check_product("in place vs reference", &p, accumulate, direct, ref);
                            free(ref);
                        }
                        ck_assert_msg(memcmp(packed, direct, (size_t)(p.M * p.ldc) * sizeof(float)) == 0,
                                      "%s %dx%d M=%lld N=%lld K=%lld acc=%d threads=%d: in place differs from packed",
                                      sc_gemm_kernel_name(), p.trans_a, p.trans_b, (long long)p.M, (long long)p.N,
                                      (long long)p.K, accumulate, threads);
                        free(direct);
                    }
                    free(packed);
                }
                problem_free(&p);
            }
    }
    sc_set_threads(0);
    sc__gemm_force(-1);
}
END_TEST

/* SCALE_NO_SIMD selects the portable kernel (re-read by sc__gemm_force(-1)). */
START_TEST(test_gemm_no_simd_env)
{
    setenv("SCALE_NO_SIMD", "1", 1);
    ck_assert_int_eq(sc__gemm_force(-1), 0);
    ck_assert_int_eq(sc_gemm_simd(), 0);
    ck_assert_str_eq(sc_gemm_kernel_name(), "portable");
    setenv("SCALE_NO_SIMD", "0", 1);
    int level = sc__gemm_force(-1);
    ck_assert_int_eq(sc_gemm_simd(), level > 0);
    unsetenv("SCALE_NO_SIMD");
    sc__gemm_force(-1);
}
END_TEST

/* ---- the thread pool ----------------------------------------------------------- */

static void count_item(void *arg, int64_t i)
{
    int *hits = arg;
    hits[i]++;
}

START_TEST(test_parallel_for_covers_each_index_once)
{
    const int64_t sizes[] = {0, 1, 2, 3, 17, 1000, 100003};
    for (int threads = 1; threads <= 4; threads++) {
        sc_set_threads(threads);
        ck_assert_int_eq(sc_threads(), threads);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int64_t n = sizes[s];
            int *hits = calloc((size_t)n + 1, sizeof(int));
            ck_assert_ptr_nonnull(hits);
            sc_parallel_for(n, count_item, hits);
            for (int64_t i = 0; i < n; i++)
                if (hits[i] != 1)
                    ck_abort_msg("threads=%d n=%lld: index %lld ran %d times",
                                 threads, (long long)n, (long long)i, hits[i]);
            free(hits);
        }
    }
    sc_set_threads(0);
    ck_assert_int_ge(sc_threads(), 1);
}
END_TEST

/* A task that itself calls sc_parallel_for (and sc_gemm, which does too)
 * must finish: the inner call runs serially on the task's thread. */
typedef struct {
    int *hits;       /* (20, 30) */
    float *c;        /* (20, 64 × 64) */
    const float *a;  /* (64, 64) */
} nested_job;

static void nested_inner(void *arg, int64_t j)
{
    int *row = arg;
    row[j]++;
}

static void nested_outer(void *arg, int64_t i)
{
    nested_job *job = arg;
    sc_parallel_for(30, nested_inner, job->hits + i * 30);
    sc_gemm(0, 0, 64, 64, 64, job->a, 64, job->a, 64, job->c + i * 64 * 64, 64, 0);
}

START_TEST(test_parallel_for_nested)
{
    float *a = malloc(64 * 64 * sizeof(float));
    float *c = malloc(20 * 64 * 64 * sizeof(float));
    float *ref = malloc(64 * 64 * sizeof(float));
    int *hits = calloc(20 * 30, sizeof(int));
    ck_assert(a && c && ref && hits);
    sc_fill_normal(a, 64 * 64, 3, 1.0f);
    sc_gemm_ref(0, 0, 64, 64, 64, a, 64, a, 64, ref, 64, 0);
    nested_job job = {hits, c, a};
    for (int threads = 1; threads <= 4; threads++) {
        sc_set_threads(threads);
        memset(hits, 0, 20 * 30 * sizeof(int));
        sc_parallel_for(20, nested_outer, &job);
        for (int i = 0; i < 20 * 30; i++)
            if (hits[i] != 1) ck_abort_msg("threads=%d: inner index %d ran %d times", threads, i, hits[i]);
        for (int i = 0; i < 20; i++)
            sc_check_close("nested gemm", c + i * 64 * 64, ref, 64 * 64, 1e-4, 1e-4);
    }
    sc_set_threads(0);
    free(a);
    free(c);
    free(ref);
    free(hits);
}
END_TEST

Suite *suite_gemm(void)
{
    Suite *s = suite_create("gemm");
    TCase *tc = tcase_create("gemm_ref");
    tcase_add_test(tc, test_gemm_ref_by_hand);
    suite_add_tcase(s, tc);
    tc = tcase_create("gemm");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_gemm_matches_reference);
    tcase_add_test(tc, test_gemm_empty);
    tcase_add_test(tc, test_gemm_threads_bit_identical);
    tcase_add_test(tc, test_gemm_direct_same_bits);
    tcase_add_test(tc, test_gemm_no_simd_env);
    suite_add_tcase(s, tc);
    tc = tcase_create("threads");
    tcase_add_test(tc, test_parallel_for_covers_each_index_once);
    tcase_add_test(tc, test_parallel_for_nested);
    suite_add_tcase(s, tc);
    return s;
}
