/* bench_gemm.c — GEMM throughput on the shapes of the models' linear layers.
 *
 *   make bench BENCH=gemm
 *
 * First the machine's FMA peak at 1 and 2 threads and its read bandwidth
 * from memory (both measured, see bench/gemm_bench.h: the two sides of the
 * roofline in book chapter 01), then one line per shape, transpose and
 * thread count:
 *   bench op=gemm m=257 n=4096 k=1024 trans=NN threads=2 kernel=avx2-fma gflops=.. peak_frac=..
 * trans=NT is how sc_linear uses it: y = x·Wᵀ with W stored (out, in).
 * Each is followed by an op=gemm-per-core line: the same product timed by
 * CPU time, flops per second of busy core, which stays meaningful when
 * other processes share the machine (wall time then does not).
 * `make bench-blas` prints the same lines for OpenBLAS beside ours.
 */
#include "bench_util.h"
#include "bench/gemm_bench.h"

static void run_sc_gemm(gemm_shape s, int trans_b, const gemm_operands *o)
{
    sc_gemm(0, trans_b, s.m, s.n, s.k, o->a, s.k, o->b, trans_b ? s.k : s.n, o->c, s.n, 0);
}

static void run_sc_gemm_ref(gemm_shape s, int trans_b, const gemm_operands *o)
{
    sc_gemm_ref(0, trans_b, s.m, s.n, s.k, o->a, s.k, o->b, trans_b ? s.k : s.n, o->c, s.n, 0);
}

void bench_gemm(void)
{
    double peak[3] = {0.0, 0.0, 0.0};
    for (int threads = 1; threads <= 2; threads++) {
        peak[threads] = gemm_bench_fma_peak(threads);
        printf("bench op=fma-peak threads=%d gflops=%.1f\n", threads, peak[threads]);
    }
    printf("bench op=read-bandwidth threads=1 gbps=%.1f\n", gemm_bench_read_bandwidth());
    for (int threads = 1; threads <= 2; threads++) {
        sc_set_threads(threads);
        for (size_t i = 0; i < GEMM_BENCH_N_SHAPES; i++) {
            gemm_shape s = gemm_bench_shapes[i];
            gemm_operands o = gemm_bench_alloc(s);
            for (int trans_b = 0; trans_b <= 1; trans_b++) {
                double cpu, t = gemm_bench_best_seconds(run_sc_gemm, s, trans_b, &o, &cpu);
                gemm_bench_print("gemm", sc_gemm_kernel_name(), s, trans_b, threads,
                                 gemm_bench_gflops(s, t), peak[threads]);
                /* per busy core, by CPU time: what each core achieved while
                 * it ran, whatever other processes took from us */
                gemm_bench_print("gemm-per-core", sc_gemm_kernel_name(), s, trans_b, threads,
                                 gemm_bench_gflops(s, cpu), peak[1]);
            }
            gemm_bench_free(&o);
        }
    }
    sc_set_threads(0);

    /* The triple loop on the first shape, for scale (one thread). */
    gemm_shape s = gemm_bench_shapes[0];
    gemm_operands o = gemm_bench_alloc(s);
    for (int trans_b = 0; trans_b <= 1; trans_b++) {
        double t = gemm_bench_best_seconds(run_sc_gemm_ref, s, trans_b, &o, NULL);
        gemm_bench_print("gemm-ref", "triple-loop", s, trans_b, 1, gemm_bench_gflops(s, t), peak[1]);
    }
    gemm_bench_free(&o);
}
