/* bench_tsne.c — exact t-SNE (loss.c section 10) on Gaussian clusters.
 *
 *   bench op=tsne n=... dims=... iters=1000 seconds=... ms_per_iter=... kl=... trust=...
 *
 * The cost is O(n² d) once for the affinities and O(n²) per iteration;
 * the paper's Fig. 4 maps 100 report embeddings, Derm7p's test split has
 * 395 images. */
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <stdlib.h>

static void clusters(float *X, int *label, int64_t n, int64_t d, int k)
{
    sc_rng rng;
    sc_rng_seed(&rng, 42);
    float *centre = malloc((size_t)(k * d) * sizeof *centre);
    for (int64_t i = 0; i < k * d; i++) centre[i] = 4.0f * sc_rng_normal(&rng);
    for (int64_t i = 0; i < n; i++) {
        label[i] = (int)(i % k);
        for (int64_t c = 0; c < d; c++) X[i * d + c] = centre[label[i] * d + c] + sc_rng_normal(&rng);
    }
    free(centre);
}

static void bench_one(int64_t n, int64_t d)
{
    float *X = malloc((size_t)(n * d) * sizeof *X);
    int *label = malloc((size_t)n * sizeof *label);
    double *Y = malloc((size_t)(2 * n) * sizeof *Y);
    clusters(X, label, n, d, 8);
    sc_tsne_config cfg = sc_tsne_defaults();
    double kl, trust = 0;
    sc_err err;
    double t0 = bench_now();
    sc_status st = sc_tsne(Y, X, n, d, &cfg, &kl, &err);
    double seconds = bench_now() - t0;
    if (st != SC_OK) {
        printf("bench op=tsne n=%lld dims=%lld error=\"%s\"\n", (long long)n, (long long)d, err.msg);
    } else {
        sc_trustworthiness(X, d, Y, 2, n, 5, &trust, &err);
        printf("bench op=tsne n=%lld dims=%lld iters=%d seconds=%.3f ms_per_iter=%.3f kl=%.4f trust=%.4f "
               "knn_acc=%.4f threads=%d peak_rss_mib=%.1f\n",
               (long long)n, (long long)d, cfg.iters, seconds, 1e3 * seconds / cfg.iters, kl, trust,
               sc_knn_accuracy(Y, 2, label, n, 5), sc_threads(), bench_peak_rss_mib());
    }
    fflush(stdout);
    free(X);
    free(label);
    free(Y);
}

void bench_tsne(void)
{
    bench_one(100, 768);  /* Fig. 4: 100 reports */
    bench_one(400, 768);  /* a Derm7p test split */
    bench_one(1000, 64);
    bench_one(2000, 64);
}
