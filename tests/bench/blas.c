/* blas.c — the GEMM benchmark against OpenBLAS, side by side.
 *
 *   make bench-blas      (needs Debian's libopenblas-dev; never part of the
 *                         build or the tests)
 *
 * For every shape, transpose and thread count it times sc_gemm and
 * OpenBLAS's cblas_sgemm in the same process, alternating between them so
 * that a disturbance from other processes hits both, and prints
 *   bench op=gemm          ... gflops=..
 *   bench op=gemm-openblas ... gflops=..
 *   bench op=gemm-ratio    ... ratio=..   (sc_gemm / OpenBLAS, by wall time;
 *                                          one thread also ratio_cpu=, by CPU time)
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>

#include "gemm_bench.h"

static void run_sc_gemm(gemm_shape s, int trans_b, const gemm_operands *o)
{
    sc_gemm(0, trans_b, s.m, s.n, s.k, o->a, s.k, o->b, trans_b ? s.k : s.n, o->c, s.n, 0);
}

static void run_openblas(gemm_shape s, int trans_b, const gemm_operands *o)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (int)s.m, (int)s.n, (int)s.k, 1.0f, o->a, (int)s.k, o->b,
                (int)(trans_b ? s.k : s.n), 0.0f, o->c, (int)s.n);
}

/* OpenBLAS's idle threads spin for a while after a call; a short pause
 * lets them sleep before sc_gemm is timed. */
static void settle(void)
{
    struct timespec pause = {0, 100000000};
    nanosleep(&pause, NULL);
}

int main(void)
{
    printf("bench op=openblas-info core=%s\n", openblas_get_corename());
    double peak[3] = {0.0, 0.0, 0.0};
    for (int threads = 1; threads <= 2; threads++) {
        peak[threads] = gemm_bench_fma_peak(threads);
        printf("bench op=fma-peak threads=%d gflops=%.1f\n", threads, peak[threads]);
    }
    for (int threads = 1; threads <= 2; threads++) {
        sc_set_threads(threads);
        openblas_set_num_threads(threads);
        for (size_t i = 0; i < GEMM_BENCH_N_SHAPES; i++) {
            gemm_shape s = gemm_bench_shapes[i];
            gemm_operands o = gemm_bench_alloc(s);
            for (int trans_b = 0; trans_b <= 1; trans_b++) {
                /* Two rounds, alternating; each keeps its best. */
                double ours = 1e30, theirs = 1e30, ours_cpu = 1e30, theirs_cpu = 1e30;
                for (int round = 0; round < 2; round++) {
                    double cpu;
                    settle();
                    double t = gemm_bench_best_seconds(run_sc_gemm, s, trans_b, &o, &cpu);
                    if (t < ours) ours = t;
                    if (cpu < ours_cpu) ours_cpu = cpu;
                    t = gemm_bench_best_seconds(run_openblas, s, trans_b, &o, &cpu);
                    if (t < theirs) theirs = t;
                    if (cpu < theirs_cpu) theirs_cpu = cpu;
                }
                gemm_bench_print("gemm", sc_gemm_kernel_name(), s, trans_b, threads,
                                 gemm_bench_gflops(s, ours), peak[threads]);
                gemm_bench_print("gemm-openblas", "openblas", s, trans_b, threads,
                                 gemm_bench_gflops(s, theirs), peak[threads]);
                printf("bench op=gemm-ratio m=%lld n=%lld k=%lld trans=%s threads=%d ratio=%.2f",
                       (long long)s.m, (long long)s.n, (long long)s.k, trans_b ? "NT" : "NN",
                       threads, theirs / ours);
                /* With one thread, CPU time compares the two fairly even on
                 * a busy machine. (With more, OpenBLAS's idle workers spin
                 * and bill CPU time, so only wall time is fair.) */
                if (threads == 1) printf(" ratio_cpu=%.2f", theirs_cpu / ours_cpu);
                printf("\n");
            }
            gemm_bench_free(&o);
        }
    }
    return 0;
}
