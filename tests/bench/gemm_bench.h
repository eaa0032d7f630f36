/* gemm_bench.h — what bench_gemm.c and bench/blas.c share: the shapes, the
 * timing rule, the machine's measured FMA peak and the line format, so the
 * two programs print figures that can be compared line by line. */
#ifndef GEMM_BENCH_H
#define GEMM_BENCH_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "scale.h"

/* Linear layers of the encoders this project runs, as (M, N, K) of
 * y (M, N) = x (M, K) · Wᵀ: ViT-L/14 on one image (257 tokens) — the
 * attention/MLP projections — BERT-base on 8 prompts of 77 tokens, and a
 * square reference. */
typedef struct {
    int64_t m, n, k;
} gemm_shape;

static const gemm_shape gemm_bench_shapes[] = {
    {257, 1024, 1024}, {257, 4096, 1024}, {257, 1024, 4096},   /* ViT-L/14 */
    {616, 768, 768},   {616, 3072, 768},                       /* BERT-base, 8×77 */
    {1024, 1024, 1024},
};
#define GEMM_BENCH_N_SHAPES (sizeof gemm_bench_shapes / sizeof gemm_bench_shapes[0])

static inline double gemm_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds used by all threads of this process so far. */
static inline double gemm_bench_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Operands for one shape: A (M, K); B (K, N) for NN or (N, K) for NT —
 * the same K·N floats either way; C (M, N). Filled with small values so
 * nothing overflows or turns denormal. */
typedef struct {
    float *a, *b, *c;
} gemm_operands;

static inline gemm_operands gemm_bench_alloc(gemm_shape s)
{
    gemm_operands o;
    o.a = malloc((size_t)(s.m * s.k) * sizeof(float));
    o.b = malloc((size_t)(s.k * s.n) * sizeof(float));
    o.c = malloc((size_t)(s.m * s.n) * sizeof(float));
    if (!o.a || !o.b || !o.c) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < s.m * s.k; i++) o.a[i] = (float)(i % 13) * 0.01f - 0.06f;
    for (int64_t i = 0; i < s.k * s.n; i++) o.b[i] = (float)(i % 11) * 0.01f - 0.05f;
    for (int64_t i = 0; i < s.m * s.n; i++) o.c[i] = 0.0f;
    return o;
}

static inline void gemm_bench_free(gemm_operands *o)
{
    free(o->a);
    free(o->b);
    free(o->c);
}

/* One product C = A·op(B) by some implementation. */
typedef void (*gemm_bench_fn)(gemm_shape s, int trans_b, const gemm_operands *o);

/* Best wall-clock time of repeated runs after one warm-up: at least 3 runs
 * and at least 0.3 s in all. The best run is the one least disturbed by
 * other processes on the machine. When cpu_seconds is not NULL it gets the
 * least CPU time (all threads together) of any run: unlike wall time it
 * does not grow while another process holds the core, so on a shared
 * machine flops / cpu_seconds shows what each busy core achieved. */
static inline double gemm_bench_best_seconds(gemm_bench_fn fn, gemm_shape s, int trans_b,
                                             const gemm_operands *o, double *cpu_seconds)
{
    fn(s, trans_b, o);
    double best = 1e30, best_cpu = 1e30, total = 0.0;
    for (int run = 0; run < 3 || total < 0.3; run++) {
        double c0 = gemm_bench_cpu_now(), t0 = gemm_bench_now();
        fn(s, trans_b, o);
        double t = gemm_bench_now() - t0, c = gemm_bench_cpu_now() - c0;
        total += t;
        if (t < best) best = t;
        if (c < best_cpu) best_cpu = c;
    }
    if (cpu_seconds) *cpu_seconds = best_cpu;
    return best;
}

static inline double gemm_bench_gflops(gemm_shape s, double seconds)
{
    return 2.0 * (double)s.m * (double)s.n * (double)s.k / seconds * 1e-9;
}

/* ---- the FMA peak ---------------------------------------------------------- */

/* Zen 4 has two 256-bit FMA pipes: 2 pipes × 8 floats × 2 flops = 32 flops
 * per cycle per core, at whatever clock the core runs (the boost clock is
 * not in /proc/cpuinfo). So the peak is measured: each thread runs twelve
 * independent chains of 8-wide FMAs (enough to cover latency 4 × 2 pipes),
 * nothing else, for a fixed count. (AVX-512 does not raise it: Zen 4 runs
 * a 512-bit FMA as two 256-bit halves.) */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define GEMM_BENCH_FMA_ITERS 20000000L

#define FMA12(f)                                                         \
    x0 = f(x0, m, d); x1 = f(x1, m, d); x2 = f(x2, m, d); x3 = f(x3, m, d);     \
    x4 = f(x4, m, d); x5 = f(x5, m, d); x6 = f(x6, m, d); x7 = f(x7, m, d);     \
    x8 = f(x8, m, d); x9 = f(x9, m, d); x10 = f(x10, m, d); x11 = f(x11, m, d);

/* Runs the chains and stores this thread's rate in GFLOP/s per CPU second
 * at *(double *)out: CPU time, not wall time, so that another process
 * taking the core for a while does not lower the figure. */
__attribute__((target("avx2,fma")))
static void *gemm_bench_fma_loop(void *out)
{
    struct timespec c0, c1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    __m256 m = _mm256_set1_ps(0.999999f), d = _mm256_set1_ps(1e-6f);
    /* distinct starting values, or the compiler merges identical chains */
    __m256 x0 = _mm256_set1_ps(1.00f), x1 = _mm256_set1_ps(1.01f), x2 = _mm256_set1_ps(1.02f),
           x3 = _mm256_set1_ps(1.03f), x4 = _mm256_set1_ps(1.04f), x5 = _mm256_set1_ps(1.05f),
           x6 = _mm256_set1_ps(1.06f), x7 = _mm256_set1_ps(1.07f), x8 = _mm256_set1_ps(1.08f),
           x9 = _mm256_set1_ps(1.09f), x10 = _mm256_set1_ps(1.10f), x11 = _mm256_set1_ps(1.11f);
    for (long i = 0; i < GEMM_BENCH_FMA_ITERS; i++) {
        FMA12(_mm256_fmadd_ps)
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)),
                             _mm256_add_ps(_mm256_add_ps(x4, x5), _mm256_add_ps(x6, x7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(x8, x9), _mm256_add_ps(x10, x11)));
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    float keep[8];
    _mm256_storeu_ps(keep, s);   /* keeps the chains alive */
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec);
    *(double *)out = keep[0] == 12345.0f ? 0.0 : GEMM_BENCH_FMA_ITERS * 12.0 * 16.0 / cpu * 1e-9;
    return NULL;
}
#undef FMA12

/* Peak GFLOP/s of `threads` cores: that many threads run the FMA loop at
 * once (so each core runs at the clock it holds with the others busy), and
 * their per-CPU-second rates add up. 0 when the CPU has no FMA. The best
 * of three tries. */
static inline double gemm_bench_fma_peak(int threads)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0.0;
    if (threads > 64) threads = 64;
    double best = 0.0;
    for (int attempt = 0; attempt < 3; attempt++) {
        pthread_t tid[64];
        double rate[64];
        for (int t = 1; t < threads; t++)
            if (pthread_create(&tid[t], NULL, gemm_bench_fma_loop, &rate[t]) != 0) return 0.0;
        gemm_bench_fma_loop(&rate[0]);
        double sum = rate[0];
        for (int t = 1; t < threads; t++) {
            pthread_join(tid[t], NULL);
            sum += rate[t];
        }
        if (sum > best) best = sum;
    }
    return best;
}
#else
static inline double gemm_bench_fma_peak(int threads)
{
    (void)threads;
    return 0.0;
}
#endif

/* ---- memory bandwidth ------------------------------------------------------ */

/* Read bandwidth from DRAM, GB/s, for the roofline's memory side: touch one
 * float in every 64-byte line of a 256 MiB array (the hardware fetches
 * whole lines), so the loop waits on memory, not on additions. Best of
 * three passes. */
static inline double gemm_bench_read_bandwidth(void)
{
    const size_t n = (size_t)64 << 20;   /* floats */
    float *x = malloc(n * sizeof(float));
    if (!x) return 0.0;
    for (size_t i = 0; i < n; i++) x[i] = 1.0f;
    double best = 1e30;
    volatile float keep = 0.0f;
    for (int pass = 0; pass < 3; pass++) {
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        double t0 = gemm_bench_now();
        for (size_t i = 0; i < n; i += 64) {
            s0 += x[i];
            s1 += x[i + 16];
            s2 += x[i + 32];
            s3 += x[i + 48];
        }
        double dt = gemm_bench_now() - t0;
        keep = s0 + s1 + s2 + s3;
        if (dt < best) best = dt;
    }
    (void)keep;
    free(x);
    return (double)(n * sizeof(float)) / best * 1e-9;
}

/* bench op=gemm m=257 n=4096 k=1024 trans=NN threads=2 ... gflops=.. peak_frac=.. */
static inline void gemm_bench_print(const char *op, const char *kernel, gemm_shape s, int trans_b,
                                    int threads, double gflops, double peak)
{
    printf("bench op=%s m=%lld n=%lld k=%lld trans=%s threads=%d kernel=%s gflops=%.1f",
           op, (long long)s.m, (long long)s.n, (long long)s.k, trans_b ? "NT" : "NN",
           threads, kernel, gflops);
    if (peak > 0.0) printf(" peak_frac=%.2f", gflops / peak);
    printf("\n");
    fflush(stdout);
}

#endif
